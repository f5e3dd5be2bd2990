"""SaliencyView: input tokens coloured by their attribution; pick the method, target or contrast in the view.

For a generation, it shows the output × input matrix; clicking an output token lays its row over
the text. Recomputing runs :func:`~llmasos_widgets.analyses.attribution.attribute` on a worker thread and
streams progress. See DESIGN.md ("SaliencyView") for the requests.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import torch
import traitlets

from ..analyses.attribution import METHODS, SIGNED, Attribution, attribute, ig_shortfall
from ..core import checks
from ..core.trace import Trace
from . import summary, wire
from .base import ViewBase
from .panels import panel
from .protocol import Reply, request
from .wire import Arrays

# How the view scales each row of scores to colours, and what each means (the view's scale picker).
NORMALIZATIONS = {
    "max_abs": "each row divided by its largest |score| (the strongest token at full colour)",
    "sum_abs": "each score as its share of the row's total |score| (a spread-out row stays pale)",
    "none": "every row divided by the largest |score| of all rows (rows comparable)",
}


@panel("saliency", title="Saliency", follows=("selected_token",), inputs=("attribution",), order=30)
class SaliencyView(ViewBase):
    """Token attributions of an :class:`~llmasos_widgets.analyses.attribution.Attribution`, recomputable in the view.

    Parameters
    ----------
    result : Attribution or Trace
        From :func:`llmasos_widgets.attribute` (it keeps the model and the input, so the view can
        recompute it with another method, target or contrast). Or a Trace of a causal model: the
        view shows at once and computes ``method`` (for the model's next token, or each generated
        token) when the page first asks, on the kernel's worker thread with progress.
    method : str, optional
        With a Trace: the method computed first (default ``"input_x_gradient"``: one backward pass).
    normalize : str
        One of :data:`NORMALIZATIONS` (the ``normalizations`` trait): ``"max_abs"`` (each row scaled
        by its largest magnitude), ``"sum_abs"`` or ``"none"``.
    n_candidates : int
        How many of the model's top next tokens the target picker offers.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> view = lw.SaliencyView(lw.attribute(model, "The cat sat", target=" on", method="saliency"))
    >>> view.method, view.target, view.target_tokens
    ('saliency', ' on', [' on'])
    >>> later = lw.SaliencyView(model.trace("The cat sat"))  # computed when first shown, or here:
    >>> later.version, later.recompute(progress=False).method, later.version
    (0, 'input_x_gradient', 1)

    """

    front_end = "saliency"
    method = traitlets.Unicode("").tag(sync=True)
    methods = traitlets.List(traitlets.Unicode(), default_value=list(METHODS), read_only=True).tag(sync=True)
    target = traitlets.Unicode("").tag(sync=True)
    contrast = traitlets.Unicode("").tag(sync=True)
    candidates = traitlets.List(traitlets.Unicode()).tag(sync=True)
    target_tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    is_matrix = traitlets.Bool(False).tag(sync=True)
    can_retarget = traitlets.Bool(True).tag(sync=True)
    normalize = traitlets.Unicode("max_abs").tag(sync=True)  # one of normalizations: [value, what it means]
    normalizations = traitlets.List(default_value=list(NORMALIZATIONS.items()), read_only=True).tag(sync=True)
    selected_row = traitlets.Int(0).tag(sync=True)
    version = traitlets.Int(0).tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)
    convergence = traitlets.Unicode("").tag(sync=True)  # IG's points and completeness gap, "" for other methods

    def __init__(
        self,
        result: Attribution | Trace,
        *,
        method: str | None = None,
        normalize: str = "max_abs",
        n_candidates: int = 8,
        **kwargs: Any,
    ) -> None:
        self._lock = threading.Lock()
        self._computing = threading.Lock()  # one first computation, however many requests wait for it
        if isinstance(result, Trace):
            trace, model, self.result = result, result.model, None
            if not model.is_causal:
                raise ValueError(
                    f"{model.name} is an encoder: give SaliencyView an Attribution from "
                    "lw.attribute(model, text, reference='...')"
                )
            self._first = {"method": method or "input_x_gradient"}
            is_matrix = any(trace.generated)
        elif isinstance(result, Attribution):
            if method is not None:
                raise ValueError("method= goes with a Trace; an Attribution has its own (view.recompute(method=...))")
            model, self.result, is_matrix = result.model, result, result.is_matrix
            trace = result.source if isinstance(result.source, Trace) else model.trace(result.source)
        else:
            raise ValueError(
                f"SaliencyView needs an Attribution (from lw.attribute) or a Trace, not {type(result).__name__}"
            )
        candidates: list[str] = []
        if not is_matrix and model.is_causal:
            candidates = [p.token for p in trace.top_predictions(-1, k=n_candidates)]
        super().__init__(
            trace,
            normalize=normalize,
            candidates=candidates,
            is_matrix=is_matrix,
            can_retarget=not is_matrix and model.is_causal,
            **kwargs,
        )
        if self.result is not None:
            self._show(self.result)
        else:
            self.method = self._first["method"]

    @classmethod
    def for_explorer(cls, host: Any, name: str, trace: Trace, *, attribution: Attribution | None = None) -> ViewBase:
        try:  # without an attribution, the panel computes input x gradient when the page first asks
            return cls._as_panel(host, name, attribution or trace)
        except ValueError as e:
            raise ValueError(f"{e}; give the Explorer attribution=lw.attribute(model, text, ...)") from e

    @traitlets.validate("normalize")
    def _check_normalize(self, proposal: Any) -> str:
        if proposal["value"] not in NORMALIZATIONS:
            raise ValueError(f"normalize {proposal['value']!r} is not one of {', '.join(NORMALIZATIONS)}")
        return str(proposal["value"])

    @traitlets.validate("selected_row")
    def _check_row(self, proposal: Any) -> int:
        value, n = proposal["value"], 1 if self.result is None else len(self.result.target_tokens)
        return checks.index(value, n, "row", "this attribution has target rows")

    def _show(self, result: Attribution) -> None:
        """Make ``result`` the one shown (traits first, then ``version`` tells the view to fetch it)."""
        with self._lock:
            self.result = result
            settings = result.settings
            with self.hold_trait_notifications():
                self.method = result.method
                own = result.target_tokens[0] if self.can_retarget else ""  # the model's own next token
                self.target = settings.get("target") or own
                self.contrast = settings.get("contrast") or ""
                self.target_tokens = result.target_tokens
                self.selected_row = 0
                self.notice = _notice(result)
                self.convergence = _convergence(result)
                self.version += 1

    def recompute(self, progress: Any = True, **changes: Any) -> Attribution:
        """Recompute with some arguments changed (``method=``, ``target=``, ``contrast=``...) and show it.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> view = lw.SaliencyView(lw.attribute(lw.load_model("tiny-llama"), "The cat sat", method="saliency"))
        >>> view.recompute(method="input_x_gradient").method
        'input_x_gradient'

        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if self.result is None:  # the first computation, of a view built on a Trace
                result = attribute(self.trace.model, self.trace, progress=progress, **{**self._first, **changes})
            else:
                result = self.result.recompute(progress=progress, **changes)
        for w in caught:  # shown in the view (notice) and, as usual, in the cell
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self._show(result)
        return result

    # -- requests ------------------------------------------------------------------------------
    def _summary(self) -> list[str]:
        if self.result is None:
            return [f"method {self.method}: computed when the view first asks for it (a kernel is needed)"]
        result, row = self.result, self.selected_row
        lines = [f"method {result.method}; target {summary.quote(result.target_tokens[row])}"]
        if self.contrast:
            lines[0] += f" (contrast {summary.quote(self.contrast)})"
        scores = result.scores[row].float()
        order = scores.abs().argsort(descending=True)[:3]
        shown = ", ".join(
            f"{summary.quote(result.input_tokens[int(i)])} {summary.number(float(scores[i]))}" for i in order
        )
        lines.append(f"largest scores: {shown}")
        if self.convergence:
            lines.append(self.convergence)
        return lines

    def _summary_scores(self) -> list[float] | None:
        if self.result is None or self.result.scores.shape[-1] != len(self.tokens):
            return None
        return [float(s) for s in self.result.scores[self.selected_row].float()]

    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        self._ensure_result(progress=False)
        return [{"what": "scores", "version": self.version}], (
            "the scores shown are recorded; another method, target or contrast needs the kernel"
        )

    def _ensure_result(self, progress: Any) -> None:
        with self._computing:
            if self.result is None:
                self.recompute(progress=progress)

    @request("scores", stream=True)
    def _stream_scores(self, reply: Reply, version: int | None = None) -> None:
        # A worker thread: a view built on a Trace computes its first result here, with progress.
        self._ensure_result(progress=lambda done, total: reply.progress(done, total))
        with self._lock:
            fields, arrays = _payload(self.result, self.version)
        reply.done(fields, arrays)

    @request("recompute", stream=True)
    def _stream_recompute(self, reply: Reply, method: str, target: str = "", contrast: str = "", **_: Any) -> None:
        changes: dict[str, Any] = {"method": method}
        if self.can_retarget:
            changes["target"] = target or None
            changes["contrast"] = contrast or None
        result = self.recompute(progress=lambda done, total: reply.progress(done, total), **changes)
        if reply.cancelled:
            return
        fields, arrays = _payload(result, self.version)
        reply.done(fields, arrays)


def _notice(result: Attribution) -> str:
    notes = []
    if result.n_nonfinite:
        notes.append(
            f"{result.n_nonfinite} score(s) are NaN or infinite (baseline={result.settings['baseline']!r}); "
            "they are drawn hatched, not coloured"
        )
    shortfall = ig_shortfall(result)
    if shortfall:
        notes.append(shortfall)
    return "; ".join(notes)


def _convergence(result: Attribution) -> str:
    """E.g. "integrated gradients: 445 path points, completeness gap 0.07 % (adaptive)"."""
    gap, steps = result.completeness_gap, result.ig_steps
    if gap is None or steps is None:
        return ""
    points = f"{steps[0]}" if min(steps) == max(steps) else f"{min(steps)}–{max(steps)}"
    how = "adaptive" if result.settings["n_steps"] is None else str(result.settings["ig_rule"])
    worst = "worst " if len(steps) > 1 else ""
    return f"integrated gradients: {points} path points, {worst}completeness gap {float(gap.max()):.2%} ({how})"


def _payload(result: Attribution, version: int) -> tuple[dict[str, Any], Arrays]:
    delta = result.convergence_delta
    fields = {
        "version": version,
        "method": result.method,
        "signed": SIGNED[result.method],
        "target_tokens": result.target_tokens,
        "contrast_tokens": result.contrast_tokens or [],
        "positions": result.positions,
        "objective": [float(v) for v in result.objective],
        "delta": [float(v) for v in delta] if delta is not None else None,
        "n_nonfinite": result.n_nonfinite,
        "n_inputs": len(result.input_tokens),
    }
    arrays = [
        wire.encode("scores", result.scores.float(), "float32"),  # NaN/inf travel as they are
        wire.encode("mask", result.mask.to(torch.uint8), "uint8"),
    ]
    return fields, arrays
