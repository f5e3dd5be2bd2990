"""LensView: the logit lens, the model's best guess at every position after every layer.

Each layer's residual output goes through the final norm and the unembedding; the view gets, layer
by layer, the top token and its probability at every position, and asks for a cell's top-k when
it is clicked. See DESIGN.md, "LensView".
"""

from __future__ import annotations

from typing import Any

import traitlets

from . import _wire
from ._base import Arrays, Reply, ViewBase
from .neurons import logit_lens
from .trace import Trace


class LensView(ViewBase):
    """The logit lens over a trace, linked to the token selection.

    Parameters
    ----------
    trace : Trace
        From ``model.trace(text)`` (a model with a language-model head).
    k : int
        Tokens listed for a clicked cell (1 to 50).
    layer, token : int, optional
        Initial selection.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> view = lw.LensView(lw.load_model("tiny-llama").trace("The cat sat on the mat"), layer=1, token=2)
    >>> view.n_layers, view.selected_layer, view.selected_token
    (2, 1, 2)

    """

    front_end = "lens"
    n_layers = traitlets.Int().tag(sync=True)
    k = traitlets.Int(10).tag(sync=True)

    def __init__(
        self, trace: Trace, *, k: int = 10, layer: int | None = None, token: int | None = None, **kwargs: Any
    ) -> None:
        self._check_trace(trace)
        if trace.model.adapter.unembed() is None:
            raise ValueError(f"{trace.model.name} has no language-model head: the logit lens needs one")
        super().__init__(trace, n_layers=trace.n_layers, k=k, **kwargs)
        if layer is not None:
            self.selected_layer = self.trace.check_layer(layer)
        if token is not None:
            self.selected_token = token

    @traitlets.validate("k")
    def _check_k(self, proposal: Any) -> int:
        k = proposal["value"]
        if not isinstance(k, int) or not 1 <= k <= 50:
            raise ValueError(f"k must be an int from 1 to 50, got {k!r}")
        return int(k)

    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        n_layers, T = self.trace.n_layers, len(self.trace)
        requests: list[dict[str, Any]] = [{"what": "lens"}]
        if n_layers * T <= 4096:  # a cell's top-k is small; thousands of them are not
            cells = [
                {"what": "cell", "layer": layer, "position": p, "k": self.k}
                for layer in range(n_layers)
                for p in range(T)
            ]
            return requests + cells, f"the lens and every cell's top-{self.k} are recorded"
        return (
            requests,
            "the lens is recorded; a cell's top-k needs the kernel (the text is too long to record them all)",
        )

    def _stream_lens(self, reply: Reply) -> None:
        """One chunk per layer: the top token and its probability at every position."""
        n = self.trace.n_layers
        for layer in range(n):
            if reply.cancelled:
                return
            lens = logit_lens(self.trace, layer, k=1)
            ids = lens.ids[:, 0]
            vocab = {str(i): self.trace.model.decode_token(i) for i in sorted(set(ids.tolist()))}
            arrays = [_wire.encode("ids", ids, "int32"), _wire.encode("probs", lens.probs[:, 0], "float16")]
            reply.chunk({"layer": layer, "vocab": vocab}, arrays)
            reply.progress(layer + 1, n)
        reply.done({"layers": n}, [])

    def _serve_cell(self, layer: int, position: int, k: int = 10) -> tuple[dict[str, Any], Arrays]:
        """The top-``k`` tokens at one layer and position."""
        if not isinstance(k, int) or not 1 <= k <= 50:
            raise ValueError(f"k must be an int from 1 to 50, got {k!r}")
        position = self.trace.check_position(position)
        lens = logit_lens(self.trace, layer, k=k, positions=slice(position, position + 1))
        ids = lens.ids[0]
        fields = {
            "layer": lens.layer,
            "position": position,
            "tokens": [self.trace.model.decode_token(i) for i in ids.tolist()],
        }
        return fields, [_wire.encode("ids", ids, "int32"), _wire.encode("probs", lens.probs[0], "float32")]
