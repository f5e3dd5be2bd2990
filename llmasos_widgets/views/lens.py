"""LensView: the logit lens, the model's best guess at every position after every layer.

Each layer's residual output goes through the final norm and the unembedding; the view gets, layer
by layer, the top token and its probability at the positions it shows (blocks of ``BLOCK`` positions:
a full lens at 2,048 tokens would be 3.5 TFLOP of unembedding, a block 0.03), and asks for a cell's
top-k when it is clicked. See DESIGN.md, "LensView".
"""

from __future__ import annotations

import math
from typing import Any

import torch
import traitlets

from ..analyses.lens import logit_lens, logit_lens_block
from ..core import checks
from ..core.trace import Trace
from . import summary, wire
from .base import ViewBase
from .panels import panel
from .protocol import Reply, request
from .wire import Arrays

# Positions per lens request: the grid shows 48 columns, 6 or 7 blocks, asked nearest the selected
# token first (a block of SmolLM2 is 30 x 8 unembeddings, about 0.1 s on 2 cores, so a click does
# not wait long behind the block before it).
BLOCK = 8
EXPORT_ALL_BLOCKS = 512  # up to this many tokens an exported file holds the whole lens


@panel("lens", title="Logit lens", follows=("selected_token", "selected_layer"), order=50)
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
    block = traitlets.Int(BLOCK, read_only=True).tag(sync=True)  # positions per `lens` request

    def __init__(
        self, trace: Trace, *, k: int = 10, layer: int | None = None, token: int | None = None, **kwargs: Any
    ) -> None:
        self._check_trace(trace)
        if trace.model.adapter.unembed() is None:
            raise ValueError(f"{trace.model.name} has no language-model head: the logit lens needs one")
        self._kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # position -> its column (_columns)
        super().__init__(trace, n_layers=trace.n_layers, k=k, **kwargs)
        if layer is not None:
            self.selected_layer = self.trace.check_layer(layer)
        if token is not None:
            self.selected_token = token

    @traitlets.validate("k")
    def _check_k(self, proposal: Any) -> int:
        return checks.int_in("k", proposal["value"], 1, 50)

    def _summary(self) -> list[str]:
        last, n = len(self.tokens) - 1, self.n_layers
        layers = sorted({n // 4, n // 2, (3 * n) // 4, n - 1})
        ids, probs = logit_lens_block(self.trace, slice(last, last + 1), layers=range(n))
        decode = self.trace.model.decode_token
        shown = ", ".join(
            f"L{layer} {summary.quote(decode(int(ids[layer, 0])))} {summary.number(float(probs[layer, 0]))}"
            for layer in layers
        )
        return [f"top token after {summary.quote(self.tokens[last])} by layer (logit lens): {shown}"]

    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        n_layers, T = self.trace.n_layers, len(self.trace)
        n_blocks = math.ceil(T / BLOCK)
        if T <= EXPORT_ALL_BLOCKS:
            blocks, lens = range(n_blocks), "the lens"
        else:  # the first positions and the selected token's
            blocks = sorted({0, max(self.selected_token, 0) // BLOCK})
            lens = f"the lens at positions {', '.join(f'{b * BLOCK}..{min(T, (b + 1) * BLOCK) - 1}' for b in blocks)}"
        requests: list[dict[str, Any]] = [{"what": "lens", "block": b} for b in blocks]
        if n_layers * T <= 4096:  # a cell's top-k is small; thousands of them are not
            cells = [
                {"what": "cell", "layer": layer, "position": p, "k": self.k}
                for layer in range(n_layers)
                for p in range(T)
            ]
            return requests + cells, f"{lens} and every cell's top-{self.k} are recorded"
        return requests, f"{lens} is recorded; a cell's top-k needs the kernel (too many cells to record them all)"

    def _prefetch(self, order: list[int], budget: int) -> list[tuple[int, dict[str, Any]]]:
        """Every token's column (what a click draws first), the grid's blocks, and the cells at the selected layer.

        A column is one unembedding per layer (about 11 ms on 2 cores for SmolLM2): the worker computes one
        at a time while the page is quiet, so a click waits behind one at most. A block comes right after the
        last of its columns, and is made of them (``_columns``): the grid is drawn from the page too.
        """
        asked: list[tuple[int, dict[str, Any]]] = []
        last_of_block: dict[int, int] = {}
        for d, p in enumerate(order):
            asked.append((d, {"what": "column", "position": p}))
            last_of_block[p // BLOCK] = d
            if self.selected_layer >= 0:
                asked.append((d, {"what": "cell", "layer": self.selected_layer, "position": p, "k": self.k}))
        asked += [(d, {"what": "lens", "block": b}) for b, d in last_of_block.items()]
        return asked

    def _columns(self, positions: range, reply: Reply | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The top token and its probability after every layer at ``positions`` (``[layer, position]``).

        Each position's column is computed once and kept (a few hundred bytes), so the grid's blocks and the
        clicks' columns share the work. Every layer in one unembedding (in chunks of layers it took three times
        as long). None if ``reply`` was cancelled before it started.
        """
        missing = [p for p in positions if p not in self._kept]
        if missing:
            if reply is not None and reply.cancelled:
                return None
            computed = range(min(missing), max(missing) + 1)
            ids, probs = logit_lens_block(self.trace, slice(computed.start, computed.stop))
            for j, p in enumerate(computed):
                self._kept[p] = (ids[:, j].clone(), probs[:, j].clone())
        kept = [self._kept[p] for p in positions]
        return torch.stack([i for i, _ in kept], 1), torch.stack([p for _, p in kept], 1)

    def _vocab(self, ids: torch.Tensor) -> dict[str, str]:
        return {str(i): self.trace.model.decode_token(i) for i in sorted(set(ids.flatten().tolist()))}

    @request("lens", stream=True)
    def _stream_lens(self, reply: Reply, block: int = 0) -> None:
        """The top token and its probability after every layer, at the block's positions (one answer)."""
        T = len(self.trace)
        n_blocks = math.ceil(T / BLOCK)
        block = checks.index(block, n_blocks, "block", f"{T} tokens make lens blocks")
        positions = range(block * BLOCK, min(T, (block + 1) * BLOCK))
        columns = self._columns(positions, reply)  # a newer lens request skips this if it has not started
        if columns is None:
            return
        ids, probs = columns
        arrays = [wire.encode("ids", ids, "int32"), wire.encode("probs", probs, "float16")]
        reply.done({"block": block, "start": positions.start, "vocab": self._vocab(ids)}, arrays)

    @request("column")
    def _serve_column(self, position: int) -> tuple[dict[str, Any], Arrays]:
        """The top token after every layer at one position: what a click needs first (30 unembeddings)."""
        position = self.trace.check_position(position)
        columns = self._columns(range(position, position + 1))
        assert columns is not None
        ids, probs = columns[0][:, 0], columns[1][:, 0]
        fields = {"position": position, "vocab": self._vocab(ids)}
        return fields, [wire.encode("ids", ids, "int32"), wire.encode("probs", probs, "float16")]

    @request("cell")
    def _serve_cell(self, layer: int, position: int, k: int = 10) -> tuple[dict[str, Any], Arrays]:
        """The top-``k`` tokens at one layer and position."""
        checks.int_in("k", k, 1, 50)
        position = self.trace.check_position(position)
        lens = logit_lens(self.trace, layer, k=k, positions=slice(position, position + 1))
        ids = lens.ids[0]
        fields = {
            "layer": lens.layer,
            "position": position,
            "tokens": [self.trace.model.decode_token(i) for i in ids.tolist()],
        }
        return fields, [wire.encode("ids", ids, "int32"), wire.encode("probs", lens.probs[0], "float32")]
