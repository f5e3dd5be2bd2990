"""TokensView: the text as the model's tokens; click one to see the model's next-token predictions."""

from __future__ import annotations

from typing import Any

import torch
import traitlets

from ..core import checks
from ..core.trace import Trace
from . import summary, wire
from .base import ViewBase
from .panels import panel
from .protocol import request
from .wire import Arrays


@panel("tokens", title="Next-token predictions", follows=("selected_token",), order=10)
class TokensView(ViewBase):
    """The tokens of a trace; clicking a token selects it and shows the top-k predictions there.

    Parameters
    ----------
    trace : Trace
        From ``model.trace(text)`` or ``model.generate_trace(prompt)`` (generated tokens are marked).
    k : int
        How many predictions to show (1 to 50).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> view = lw.TokensView(lw.load_model("tiny-llama").trace("The capital of France is"))
    >>> view.selected_token = 2
    >>> view.selected_token
    2

    """

    front_end = "tokens"
    k = traitlets.Int(5).tag(sync=True)

    def __init__(self, trace: Trace, *, k: int = 5, **kwargs: Any) -> None:
        super().__init__(trace, k=k, **kwargs)

    @classmethod
    def for_explorer(cls, host: Any, name: str, trace: Trace, **inputs: Any) -> ViewBase:
        if trace.model.adapter.unembed() is None:
            raise ValueError(f"{trace.model.name} has no language-model head: next-token predictions need one")
        return cls._as_panel(host, name, trace)

    @traitlets.validate("k")
    def _check_k(self, proposal: Any) -> int:
        return checks.int_in("k", proposal["value"], 1, 50)

    def _summary(self) -> list[str]:
        if self.trace.model.adapter.unembed() is None:
            return ["no language-model head: no next-token predictions"]
        preds = self.trace.top_predictions(-1, k=min(self.k, 5))
        shown = ", ".join(f"{summary.quote(p.token)} {summary.number(p.prob)}" for p in preds)
        return [f"next token after {summary.quote(self.tokens[-1])}: {shown}"]

    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        requests = [{"what": "predictions", "position": p, "k": self.k} for p in range(len(self.trace))]
        return requests, f"the top-{self.k} next tokens at every token are recorded"

    def _prefetch(self, order: list[int], budget: int) -> list[tuple[int, dict[str, Any]]]:
        """Every token's top-k (a few bytes each): the whole text, nearest first."""
        return [(d, {"what": "predictions", "position": p, "k": self.k}) for d, p in enumerate(order)]

    @request("predictions")
    def _serve_predictions(self, position: int, k: int = 5) -> tuple[dict[str, Any], Arrays]:
        checks.int_in("k", k, 1, 50)
        preds = self.trace.top_predictions(position, k=k)
        ids = torch.tensor([p.id for p in preds], dtype=torch.int32)
        probs = torch.tensor([p.prob for p in preds], dtype=torch.float32)
        fields = {"position": self.trace.check_position(position), "tokens": [p.token for p in preds]}
        return fields, [wire.encode("ids", ids, "int32"), wire.encode("probs", probs, "float32")]
