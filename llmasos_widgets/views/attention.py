"""AttentionView: every layer and head at a glance, click a token to drill in, click a head for its pattern.

The kernel sends only what is on screen: thumbnails streamed layer by layer, one token's rows when
it is clicked (max-pooled to the thumbnails' width), a window of one pattern at the resolution it is
drawn. See DESIGN.md for the requests.
"""

from __future__ import annotations

import concurrent.futures
import itertools
from pathlib import Path
from typing import Any

import torch
import traitlets

from ..analyses.attention import AGGREGATES, SCORE_NAMES, AttentionIndex, pool
from ..core import checks
from ..core.trace import Trace
from . import summary, wire
from .base import ViewBase
from .panels import panel
from .protocol import Reply, request
from .wire import Arrays

PANELS = ("overview", "head", "matrix")
DIRECTIONS = ("from", "to")
SORT_ORDERS = ("", *SCORE_NAMES)
# Label and one-line description of each choice above (and of attention.AGGREGATES). The view builds
# its tabs, buttons and menus from the read-only traits `panels`, `directions`, `aggregates` and
# `sort_orders`, which list [value, label, description] in the order of these tuples.
LABELS = {
    "overview": ("Overview", "A thumbnail per layer and head"),
    "head": ("Head", "Lines from each query token to the keys it looks at, a colour per head"),
    "matrix": ("Matrix", "One head's full pattern: wheel to zoom, drag to pan"),
    "from": ("from token", "Where the selected token looks (its row)"),
    "to": ("to token", "Who looks at the selected token (its column)"),
    "mean": ("mean of heads", "The mean over the heads of the selected layer"),
    "rollout": ("rollout", "Attention rollout up to the selected layer (Abnar & Zuidema 2020)"),
    "": ("none", "Each layer's heads in their own order"),
    "entropy": ("entropy", "Low entropy (focused heads) first"),
    "prev_token": ("previous-token", "Most weight on the previous token first"),
    "sink": ("first-token (sink)", "Most weight on the first token first"),
}
MAX_HEAD_WINDOW = 256  # the head view draws lines between at most this many tokens a side


def _choices(values: tuple[str, ...]) -> Any:
    """A read-only synced trait listing [value, label, description] for each of ``values``."""
    return traitlets.List(default_value=[[v, *LABELS[v]] for v in values], read_only=True).tag(sync=True)


def default_thumb_size(n_tokens: int) -> int:
    """Pixels per thumbnail side: enough to see structure, small enough to stream fast.

    Examples
    --------
    >>> default_thumb_size(20), default_thumb_size(512), default_thumb_size(4096)
    (20, 32, 48)

    """
    return min(n_tokens, 32 if n_tokens <= 1024 else 48)


@panel("attention", title="Attention", follows=("selected_token", "selected_layer", "selected_head"), order=20)
class AttentionView(ViewBase):
    """Attention of every layer and head, linked to the token selection.

    Parameters
    ----------
    trace : Trace
        From ``model.trace(text)`` or ``model.generate_trace(prompt)``.
    layer, head, token : int, optional
        Initial selection.
    rollout_limit : int
        Longest text (tokens) for which attention rollout is computed (it costs T³ per layer).
    max_tokens : int
        Longest text the view accepts; each head's T × T pattern is computed in turn.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> view = lw.AttentionView(lw.load_model("tiny-llama").trace("The cat sat on the mat"), layer=1, head=2)
    >>> view.selected_layer, view.selected_head, view.panel
    (1, 2, 'overview')

    """

    front_end = "attention"
    n_layers = traitlets.Int().tag(sync=True)
    n_heads = traitlets.Int().tag(sync=True)
    panel = traitlets.Unicode("overview").tag(sync=True)
    direction = traitlets.Unicode("from").tag(sync=True)
    aggregate = traitlets.Unicode("").tag(sync=True)
    heads = traitlets.List(traitlets.Int()).tag(sync=True)
    sort_by = traitlets.Unicode("").tag(sync=True)
    thumb_size = traitlets.Int(32).tag(sync=True)
    rollout_limit = traitlets.Int(1024).tag(sync=True)
    panels = _choices(PANELS)
    directions = _choices(DIRECTIONS)
    aggregates = _choices(AGGREGATES)
    sort_orders = _choices(SORT_ORDERS)

    def __init__(
        self,
        trace: Trace,
        *,
        layer: int | None = None,
        head: int | None = None,
        token: int | None = None,
        rollout_limit: int = 1024,
        max_tokens: int = 8192,
        **kwargs: Any,
    ) -> None:
        self._check_trace(trace)
        if len(trace) > max_tokens:
            raise ValueError(
                f"this trace has {len(trace)} tokens; AttentionView computes each head's T x T pattern in "
                f"turn and accepts up to max_tokens={max_tokens} ({max_tokens**2 * 4 / 2**20:.0f} MB a head). "
                "Trace a shorter text, or raise max_tokens if you have the memory."
            )
        self.index = AttentionIndex(trace, rollout_limit=rollout_limit)
        super().__init__(
            trace,
            n_layers=trace.n_layers,
            n_heads=trace.n_heads,
            thumb_size=default_thumb_size(len(trace)),
            rollout_limit=rollout_limit,
            **kwargs,
        )
        if layer is not None:
            self.selected_layer = self.trace.check_layer(layer)
        if head is not None:
            self.selected_head = head
            self.heads = [self.selected_head]
        if token is not None:
            self.selected_token = token
        self._snapshots: dict[int, tuple[Path, concurrent.futures.Future[Path]]] = {}
        self._snapshot_ids = itertools.count(1)

    # -- trait checks --------------------------------------------------------------------------
    @traitlets.validate("panel")
    def _check_panel(self, proposal: Any) -> str:
        return _one_of("panel", proposal["value"], PANELS)

    @traitlets.validate("direction")
    def _check_direction(self, proposal: Any) -> str:
        return _one_of("direction", proposal["value"], DIRECTIONS)

    @traitlets.validate("aggregate")
    def _check_aggregate(self, proposal: Any) -> str:
        return _one_of("aggregate", proposal["value"], ("", *AGGREGATES))

    @traitlets.validate("sort_by")
    def _check_sort_by(self, proposal: Any) -> str:
        return _one_of("sort_by", proposal["value"], SORT_ORDERS)

    @traitlets.validate("heads")
    def _check_heads(self, proposal: Any) -> list[int]:
        return [self._index._check_head(h) for h in proposal["value"]]

    @property
    def _index(self) -> AttentionIndex:
        assert self.index is not None
        return self.index

    # -- requests ----------------------------------------------------------------------------------
    # An exported file keeps the tokens' pooled rows (what the overview draws for a clicked token) for as
    # many tokens as fit in this many bytes: where each token looks ("from") first, then who looks at it
    # ("to"), since "from" is what a click shows first.
    export_token_bytes = 3 * 2**20

    @property
    def token_bins(self) -> int:
        """Bins a clicked token's rows are max-pooled to for the overview: its thumbnails' width, at most T.

        The page asks for this many (js/attention/overview.ts) and the prefetch and an exported file record
        the same, so their answers are found by the same key.
        """
        return max(1, min(self.thumb_size, len(self.trace)))

    def _token_bytes(self) -> int:
        """What one pooled token answer weighs: the heads' and aggregates' bins (uint8) and their maxima."""
        L, H = self.trace.n_layers, self.trace.n_heads
        aggregates = 2 if len(self.trace) <= self._index.rollout_limit else 1
        return (L * H + L * aggregates) * (self.token_bins + 4) + 512

    def _summary(self) -> list[str]:
        lines = [f"{self.n_layers} layers x {self.n_heads} heads; panel: {self.panel}"]
        if self.selected_layer >= 0 and self.selected_head >= 0:
            query = self.selected_token if self.selected_token >= 0 else len(self.tokens) - 1
            row = self.trace.attention(self.selected_layer)[self.selected_head, query].float()
            top = row.topk(min(3, query + 1))
            shown = ", ".join(
                f"{summary.quote(self.tokens[int(i)])} {summary.number(float(w))}"
                for w, i in zip(top.values, top.indices, strict=True)
            )
            head = f"L{self.selected_layer}H{self.selected_head}"
            lines.append(f"{head}: from {summary.quote(self.tokens[query])} (#{query}) most weight on {shown}")
        return lines

    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        T = len(self.trace)
        fit = self.export_token_bytes // self._token_bytes()  # tokens' answers, "from" ones first
        kept = {d: min(T, max(0, fit - i * T)) for i, d in enumerate(DIRECTIONS)}
        requests: list[dict[str, Any]] = [{"what": "overview", "size": self.thumb_size}]
        bins = self.token_bins
        requests += [
            {"what": "token", "position": p, "direction": d, "bins": bins} for d in DIRECTIONS for p in range(kept[d])
        ]

        def which(k: int) -> str:
            return "every token" if k == T else f"tokens 0..{k - 1}"

        if kept["from"] == 0:
            rows = "no token's rows (the text is too long)"
        elif kept["to"] == 0:
            rows = f"where {which(kept['from'])} look (not who looks at them)"
        else:
            rows = f"where every token looks and who looks at {which(kept['to'])}"
        return requests, f"the overview and {rows} are recorded; head patterns and zoomed matrices need the kernel"

    def _prefetch(self, order: list[int], budget: int) -> list[tuple[int, dict[str, Any]]]:
        """Every token's pooled rows nearest the selection first, as many as half the ``budget`` holds."""
        bins, direction = self.token_bins, self.direction
        return [
            (d, {"what": "token", "position": p, "direction": direction, "bins": bins})
            for d, p in enumerate(order[: budget // 2 // self._token_bytes()])
        ]

    @request("overview", stream=True)
    def _stream_overview(self, reply: Reply, size: int) -> None:
        size = checks.int_in("size", size, 1, 256)
        n_layers = self.trace.n_layers
        for layer in range(n_layers):
            if reply.cancelled:
                return
            ov = self._index.overview(layer, size)
            peak = ov.thumbs.amax(dim=(-2, -1)).clamp_min(1e-12)  # [head]
            arrays = [
                wire.encode("thumbs", ov.thumbs / peak[:, None, None], "uint8"),
                wire.encode("thumb_max", peak, "float32"),
                wire.encode("scores", ov.scores, "float32"),
            ]
            if ov.rollout is not None:
                arrays.append(wire.encode("rollout", ov.rollout / ov.rollout.max(), "uint8"))
            reply.chunk({"layer": layer, "score_names": list(SCORE_NAMES)}, arrays)
            reply.progress(layer + 1, n_layers)
        reply.done({"layers": n_layers}, [])

    @request("token")
    def _serve_token(
        self, position: int, direction: str = "from", bins: int | None = None
    ) -> tuple[dict[str, Any], Arrays]:
        """A token's attention in every layer and head: whole rows (float16), or max-pooled to ``bins``.

        Pooled, each head's bins go as the square root of the weight in uint8 (a thumbnail's bar is √weight
        high, so the error stays under half a pixel for bars up to 255 px) with each row's exact maximum.
        """
        direction = _one_of("direction", direction, DIRECTIONS)
        position = self.trace.check_position(position)
        if bins is not None:
            pooled = self._index.pooled_token(position, direction, min(bins, len(self.trace)))
            arrays = [
                wire.encode("root", pooled.heads.sqrt(), "uint8"),
                wire.encode("sharpness", pooled.heads.amax(-1), "float32"),
                wire.encode("root_mean", pooled.mean.sqrt(), "uint8"),
                wire.encode("mean_max", pooled.mean.amax(-1), "float32"),
            ]
            if pooled.rollout is not None:
                arrays.append(wire.encode("root_rollout", pooled.rollout.sqrt(), "uint8"))
                arrays.append(wire.encode("rollout_max", pooled.rollout.amax(-1), "float32"))
            return {"position": position, "direction": direction, "bins": pooled.mean.shape[-1]}, arrays
        values = self._index.rows(position) if direction == "from" else self._index.columns(position)
        arrays = [
            wire.encode("rows", values, "float16"),
            wire.encode("sharpness", values.amax(-1), "float32"),
        ]
        if len(self.trace) <= self._index.rollout_limit:
            arrays.append(wire.encode("rollout", self._index.token_rollout(position, direction), "float16"))
        return {"position": position, "direction": direction}, arrays

    @request("pattern")
    def _serve_pattern(
        self,
        layer: int,
        q0: int,
        q1: int,
        k0: int,
        k1: int,
        size: int = 512,
        head: int | None = None,
        aggregate: str = "",
    ) -> tuple[dict[str, Any], Arrays]:
        size = checks.int_in("size", size, 1, 2048)
        window = self._index.window(layer, head, aggregate, q0, q1, k0, k1)
        pooled = pool(window, size)
        fields = {
            "layer": self.trace.check_layer(layer),
            "head": head,
            "aggregate": aggregate,
            "q0": q0,
            "q1": q1,
            "k0": k0,
            "k1": k1,
            "q_step": (q1 - q0) / pooled.shape[0],
            "k_step": (k1 - k0) / pooled.shape[1],
        }
        return fields, [wire.encode("pattern", pooled, "uint8")]

    @request("heads")
    def _serve_heads(
        self, layer: int, heads: list[int], q0: int, q1: int, k0: int, k1: int
    ) -> tuple[dict[str, Any], Arrays]:
        if not isinstance(heads, list) or not heads:
            raise ValueError("heads must be a non-empty list of head indices")
        if q1 - q0 > MAX_HEAD_WINDOW or k1 - k0 > MAX_HEAD_WINDOW:
            raise ValueError(f"the head view draws at most {MAX_HEAD_WINDOW} tokens a side; ask for a smaller window")
        patterns = torch.stack([self._index.window(layer, h, "", q0, q1, k0, k1) for h in heads])
        fields = {"layer": layer, "heads": heads, "q0": q0, "q1": q1, "k0": k0, "k1": k1}
        return fields, [wire.encode("patterns", patterns, "uint8")]

    @request("weight")
    def _serve_weight(
        self, layer: int, q: int, k: int, head: int | None = None, aggregate: str = ""
    ) -> tuple[dict[str, Any], Arrays]:
        q, k = self.trace.check_position(q), self.trace.check_position(k)
        value = float(self._index.window(layer, head, aggregate, q, q + 1, k, k + 1)[0, 0])
        return {"layer": layer, "head": head, "aggregate": aggregate, "q": q, "k": k, "value": value}, []

    # -- export --------------------------------------------------------------------------------
    def save_png(self, path: str | Path) -> concurrent.futures.Future[Path]:
        """Ask the displayed view for a PNG of its current panel and write it to ``path``.

        The view renders the picture, so it must be on screen. The file is written when the view
        answers, after the current cell has finished (the kernel reads widget messages between
        cells): the returned future resolves to the path then.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> view = lw.AttentionView(lw.load_model("tiny-gpt2").trace("Hello world"))
        >>> future = view.save_png("attention.png")
        >>> future.done()  # no front-end in a doctest: nothing answered yet
        False

        """
        request_id = next(self._snapshot_ids)
        future: concurrent.futures.Future[Path] = concurrent.futures.Future()
        self._snapshots[request_id] = (Path(path), future)
        self.send({"type": "snapshot", "id": request_id})
        return future

    def _on_snapshot(self, content: dict[str, Any], buffers: Any) -> None:
        entry = self._snapshots.pop(content.get("id"), None)  # type: ignore[arg-type]
        if entry is None:
            return
        path, future = entry
        if content.get("error") or not buffers:
            future.set_exception(RuntimeError(f"the view could not export a PNG: {content.get('error', 'no data')}"))
            return
        data = bytes(buffers[0])
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            future.set_exception(RuntimeError("the view sent something that is not a PNG"))
            return
        path.write_bytes(data)
        future.set_result(path)


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} {value!r} is not one of {shown}")
    return str(value)
