"""PatchingView: an activation-patching grid, streamed as it is computed; click a cell for that patched run.

The grid is a :class:`~llmasos_widgets.analyses.causal.Patching` experiment's scores (0 = the corrupt run's
metric, 1 = the clean run's): token rows × layer columns for the residual stream, attention and MLP
outputs, layer rows × head columns for heads. The exact grid is swept on the kernel's worker thread and
streamed group by group (one token row, or five layers of heads, a chunk); attribution patching is one
forward and one backward pass. See DESIGN.md ("PatchingView") for the requests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import traitlets
from torch import Tensor

from ..analyses.causal import DIRECTIONS, METHODS, SITES, Metric, Patching, PatchResult
from ..core import checks
from ..core.models import LanguageModel
from . import summary, wire
from .base import ViewBase
from .protocol import Reply, request
from .wire import Arrays

EXPORT_ALL_CELLS = 120  # up to this many cells an exported file holds every cell's patched run
EXPORT_TOP_CELLS = 20  # else the strongest cells of each grid (and the selected one)


class PatchingView(ViewBase):
    """An activation-patching grid, exact or attribution, with a patched run's predictions on a click.

    Parameters
    ----------
    source : PatchResult, Patching or LanguageModel
        A finished grid (``lw.patch(...)``: shown at once), an experiment (``lw.Patching(...)``: swept
        on the kernel's worker thread when the view is shown, rows streamed as they are computed), or
        a model with ``clean``, ``corrupt`` and ``metric`` (the experiment is built here).
    clean, corrupt : str, optional
        With a model: the two prompts (the same number of tokens).
    metric : Metric or callable, optional
        With a model: what is read from the logits (``lw.logit_diff(...)``, ``lw.prob(...)``...).
    over, direction, positions
        With a model: as in :class:`~llmasos_widgets.analyses.causal.Patching`.
    method : {"exact", "attribution"}, optional
        The grid shown first (a result's own method by default, else ``"exact"``).
    k : int
        Top next tokens listed for a clicked cell (1 to 50).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> view = lw.PatchingView(model, "The cat is in the", "The dog is in the", metric=lw.logit_diff(" cat", " the"))
    >>> view.over, view.method, view.differs
    ('resid', 'exact', [False, True, False, False, False])
    >>> res = lw.patch(model, "The cat is in the", "The dog is in the", metric=lw.logit_diff(" cat", " the"))
    >>> sorted(lw.PatchingView(res).results)
    ['exact']

    """

    front_end = "patching"
    n_layers = traitlets.Int().tag(sync=True)
    n_heads = traitlets.Int().tag(sync=True)
    over = traitlets.Unicode("resid").tag(sync=True)  # one of causal.SITES; fixed by the experiment
    patch_direction = traitlets.Unicode("denoise").tag(sync=True)  # one of causal.DIRECTIONS
    method = traitlets.Unicode("exact").tag(sync=True)
    methods = traitlets.List(traitlets.Unicode(), default_value=list(METHODS), read_only=True).tag(sync=True)
    sites = traitlets.List(traitlets.Unicode(), default_value=list(SITES), read_only=True).tag(sync=True)
    metric_name = traitlets.Unicode("").tag(sync=True)
    clean_metric = traitlets.Float(0.0).tag(sync=True)
    corrupt_metric = traitlets.Float(0.0).tag(sync=True)
    corrupt_tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    differs = traitlets.List(traitlets.Bool()).tag(sync=True)  # where the corrupt prompt's token differs
    positions = traitlets.List(traitlets.Int()).tag(sync=True)  # positions patched (swept columns)
    k = traitlets.Int(5).tag(sync=True)

    def __init__(
        self,
        source: PatchResult | Patching | LanguageModel,
        clean: str | None = None,
        corrupt: str | None = None,
        *,
        metric: Metric | Callable[[Tensor], Tensor] | None = None,
        over: str = "resid",
        direction: str = "denoise",
        positions: Sequence[int] | None = None,
        method: str | None = None,
        k: int = 5,
        **kwargs: Any,
    ) -> None:
        results: dict[str, PatchResult] = {}
        if isinstance(source, LanguageModel):
            if clean is None or corrupt is None or metric is None:
                raise ValueError(
                    "PatchingView(model, clean, corrupt, metric=...) needs both prompts and a metric, e.g. "
                    "metric=lw.logit_diff(' Mary', ' John')"
                )
            experiment = Patching(source, clean, corrupt, metric, over=over, direction=direction, positions=positions)
        else:
            if clean is not None or corrupt is not None or metric is not None or positions is not None:
                raise ValueError(
                    "clean, corrupt, metric and positions go with a model: a Patching or PatchResult has its own"
                )
            if isinstance(source, PatchResult):
                if source.experiment is None:
                    raise ValueError(
                        "this PatchResult has no experiment (run on NDIF, or loaded without a model): a view "
                        "re-runs clicked cells, so load it with its model, lw.load(path, model)"
                    )
                experiment, results[source.method] = source.experiment, source
            elif isinstance(source, Patching):
                experiment = source
            else:
                raise ValueError(
                    "PatchingView needs a PatchResult (lw.patch), a Patching (lw.Patching) or a model with "
                    f"clean, corrupt and metric; got {type(source).__name__}"
                )
        self.experiment = experiment
        self.results = results  # method -> finished PatchResult (an interrupted sweep leaves none)
        self._lock = threading.Lock()  # one computation at a time: the engine runs on the worker thread
        model = experiment.model
        # The clean prompt's trace: the text traits and the selection checks.
        trace = model.trace(experiment.clean_text)
        if method is None:
            method = next(iter(results), "exact")
        super().__init__(
            trace,
            n_layers=model.n_layers,
            n_heads=model.n_heads,
            over=experiment.over,
            patch_direction=experiment.direction,
            method=method,
            metric_name=experiment.metric_name,
            clean_metric=experiment.clean_metric,
            corrupt_metric=experiment.corrupt_metric,
            corrupt_tokens=experiment.corrupt_tokens,
            differs=(experiment.clean.ids != experiment.corrupt.ids).tolist(),
            positions=experiment.positions,
            k=k,
            **kwargs,
        )

    @traitlets.validate("method")
    def _check_method(self, proposal: Any) -> str:
        return _one_of("method", proposal["value"], METHODS)

    @traitlets.validate("k")
    def _check_k(self, proposal: Any) -> int:
        return checks.int_in("k", proposal["value"], 1, 50)

    @traitlets.validate("over")
    def _check_over(self, proposal: Any) -> str:
        return _one_of("over", proposal["value"], SITES)

    @traitlets.validate("patch_direction")
    def _check_direction(self, proposal: Any) -> str:
        return _one_of("patch_direction", proposal["value"], DIRECTIONS)

    @property
    def result(self) -> PatchResult | None:
        """The grid of ``method`` when it has been computed, else None."""
        return self.results.get(self.method)

    # -- computing -----------------------------------------------------------------------------
    def compute(
        self, method: str | None = None, *, should_stop: Callable[[], bool] | None = None
    ) -> PatchResult | None:
        """Compute the grid of ``method`` (the view's by default) in the kernel, and keep it.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> view = lw.PatchingView(lw.load_model("tiny-llama"), "The cat is in the", "The dog is in the",
        ...                        metric=lw.logit_diff(" cat", " the"))
        >>> view.compute("attribution").method
        'attribution'

        """
        method = _one_of("method", method or self.method, METHODS)
        self._sweep(method, rerun=False, should_stop=should_stop)
        return self.results.get(method)

    def _sweep(
        self,
        method: str,
        *,
        rerun: bool,
        should_stop: Callable[[], bool] | None = None,
        on_group: Callable[[list[tuple[int, int]], Tensor, int, int], None] | None = None,
    ) -> None:
        """Compute the grid of ``method``; ``on_group(cells, metric values, done, total)`` as each group is done.

        A kept grid is not computed again (unless ``rerun``); an interrupted exact sweep keeps nothing.
        A callback, not a generator: a generator would hold the lock between its yields, for as long as
        whoever iterates it keeps it (an exception's traceback, say), and block every later sweep.
        """
        with self._lock:
            if should_stop is not None and should_stop():
                return
            if method in self.results and not rerun:
                return
            experiment = self.experiment
            if method == "attribution":
                self.results["attribution"] = experiment.attribution()
                return
            began = time.perf_counter()
            values = torch.full(experiment.shape, float("nan"))
            total, done = experiment.n_cells, 0
            for cells, got in experiment.sweep(should_stop=should_stop):
                for (layer, index), value in zip(cells, got.tolist(), strict=True):
                    values[layer, index] = value
                done += len(cells)
                if on_group is not None:
                    on_group(cells, got, done, total)
            if should_stop is not None and should_stop():
                return
            self.results["exact"] = experiment.as_result("exact", values, time.perf_counter() - began)

    def _payload(self, method: str) -> tuple[dict[str, Any], Arrays]:
        res = self.results[method]
        other = self.results.get("attribution" if method == "exact" else "exact")
        correlation = res.correlation(other) if other is not None else None
        fields = {
            "method": method,
            "seconds": res.seconds,
            "correlation": correlation if correlation is not None and math.isfinite(correlation) else None,
            "shape": list(res.scores.shape),
        }
        arrays = [
            wire.encode("scores", res.scores.float(), "float32"),  # NaN where not swept: drawn grey
            wire.encode("values", res.values.float(), "float32"),
        ]
        return fields, arrays

    # -- requests ------------------------------------------------------------------------------
    @request("sweep", stream=True)
    def _stream_sweep(self, reply: Reply, method: str = "exact", rerun: bool = False) -> None:
        """The grid of ``method``: exact cells streamed in groups (chunks + progress), then the whole grid."""
        method = _one_of("method", method, METHODS)

        def stop() -> bool:
            return reply.cancelled

        def send(cells: list[tuple[int, int]], got: Tensor, done: int, total: int) -> None:
            if reply.cancelled:
                return
            where = torch.tensor(cells, dtype=torch.int32).view(-1, 2)
            arrays = [
                wire.encode("layers", where[:, 0], "int32"),
                wire.encode("indices", where[:, 1], "int32"),
                wire.encode("values", got.float(), "float32"),
                wire.encode("scores", self.experiment.normalise(got.float()), "float32"),
            ]
            reply.chunk({"method": method, "done": done, "total": total}, arrays)
            reply.progress(done, total)

        self._sweep(method, rerun=bool(rerun), should_stop=stop, on_group=send)
        if reply.cancelled or method not in self.results:
            return  # a newer sweep took over: it answers
        if method == "exact" and "attribution" not in self.results:
            self.compute("attribution")  # one forward and backward: the correlation comes with it
        reply.done(*self._payload(method))

    @request("cell")
    def _serve_cell(self, layer: int, index: int, k: int = 5) -> tuple[dict[str, Any], Arrays]:
        """One cell's patched run (computed, whichever grid is shown): its metric and top-``k`` next tokens."""
        k = checks.int_in("k", k, 1, 50)
        value, preds = self.experiment.cell_predictions(layer, index, k)
        L, cols = self.experiment.shape
        layer = checks.layer(layer, L, self.experiment.model.name)
        index = checks.index(index, cols, "index", "the grid has columns")
        fields = {
            "layer": layer,
            "index": index,
            "metric": value,
            "score": float(self.experiment.normalise(torch.tensor(value))),
            "tokens": [p.token for p in preds],
        }
        ids = torch.tensor([p.id for p in preds], dtype=torch.int32)
        probs = torch.tensor([p.prob for p in preds], dtype=torch.float32)
        return fields, [wire.encode("ids", ids, "int32"), wire.encode("probs", probs, "float32")]

    # -- export --------------------------------------------------------------------------------
    def _summary(self) -> list[str]:
        lines = [
            f"patching {self.over} ({self.patch_direction}); {self.metric_name or 'metric'}: clean "
            f"{summary.number(self.clean_metric)}, corrupt {summary.number(self.corrupt_metric)}",
            "corrupt tokens: " + summary.token_list(self.corrupt_tokens),
        ]
        result = self.results.get(self.method)
        if result is None:
            lines.append(f"{self.method}: not computed yet (a kernel is needed)")
        else:
            scores = result.scores.float()
            flat = int(scores.abs().argmax())
            row, col = divmod(flat, scores.shape[1])
            where = (
                f"head {col}"
                if self.over == "heads"
                else f"position {self.positions[col] if len(self.positions) == scores.shape[1] else col}"
            )
            lines.append(
                f"{self.method}: largest score {summary.number(float(scores[row, col]))} at layer {row}, {where}"
                " (1 = the clean metric, 0 = the corrupt one)"
            )
        return lines

    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        for method in METHODS:
            self.compute(method)
        requests: list[dict[str, Any]] = [{"what": "sweep", "method": m} for m in METHODS]
        L, cols = self.experiment.shape
        if L * cols <= EXPORT_ALL_CELLS:
            cells = [(layer, i) for layer in range(L) for i in range(cols)]
            which = "every cell's patched run"
        else:
            found = {(layer, i) for res in self.results.values() for layer, i, _ in res.top_cells(EXPORT_TOP_CELLS)}
            selected = self._selected_cell()
            if selected is not None:
                found.add(selected)
            cells = sorted(found)
            which = (
                f"the patched runs of the {EXPORT_TOP_CELLS} strongest cells of each grid"
                f"{' and the selected cell' if selected is not None else ''}"
            )
        requests += [{"what": "cell", "layer": layer, "index": i, "k": self.k} for layer, i in cells]
        note = (
            f"the exact and attribution grids and {which} (top {self.k}) are recorded; "
            "other cells' runs, another k and re-runs need the kernel"
        )
        return requests, note

    def _selected_cell(self) -> tuple[int, int] | None:
        index = self.selected_head if self.over == "heads" else self.selected_token
        return None if self.selected_layer < 0 or index < 0 else (self.selected_layer, index)


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(repr(a) for a in allowed)}")
    return str(value)
