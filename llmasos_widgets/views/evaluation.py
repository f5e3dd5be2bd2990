"""EvaluationView: which attribution to trust, drawn from an :class:`~llmasos_widgets.analyses.evaluation.Evaluation`.

Each method's deletion or insertion curve on one chart over the random floor, the table of every metric
with bootstrap intervals and a paired test against the floor, and a prompt's overlays from every method
side by side. The whole evaluation travels in one answer (``"evaluation"``), so a file written by
``save_html`` is as interactive as the live view. See DESIGN.md ("EvaluationView").
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import torch
import traitlets
from torch import Tensor

from ..analyses.attribution import SIGNED
from ..analyses.evaluation import CURVES, METRICS, Evaluation
from ..core import checks
from ..core.trace import Trace
from . import wire
from .base import ViewBase
from .panels import panel
from .protocol import Reply, request
from .wire import Arrays

FLOOR = "random"  # the method every other is tested against, and drawn dashed on every chart


def mean_curve(curves: list[Tensor]) -> tuple[Tensor, Tensor]:  # grid [g], mean [g]
    """The mean of curves of different lengths, each read as evenly spaced on [0, 1] and joined linearly.

    The grid is every point of every curve, so the mean is exact between them: its trapezoid area is
    the mean of the curves' areas (:func:`~llmasos_widgets.analyses.evaluation.auc`). A one-point
    curve is a constant.

    Examples
    --------
    >>> grid, mean = mean_curve([torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0, 0.0])])
    >>> grid.tolist(), mean.tolist()
    ([0.0, 0.5, 1.0], [1.0, 0.75, 0.0])

    """
    if not curves:
        raise ValueError("mean_curve needs at least one curve")
    knots = {0.0, 1.0}
    for c in curves:
        knots.update(i / (len(c) - 1) for i in range(len(c)) if len(c) > 1)
    grid = torch.tensor(sorted(knots), dtype=torch.float64)
    total = torch.zeros_like(grid)
    for c in curves:
        c = c.double()
        if len(c) == 1:
            total += c[0]
            continue
        x = torch.linspace(0, 1, len(c), dtype=torch.float64)
        j = torch.searchsorted(x, grid, right=True).clamp(1, len(c) - 1)
        w = (grid - x[j - 1]) / (x[j] - x[j - 1])
        total += c[j - 1] + w * (c[j] - c[j - 1])
    return grid, total / len(curves)


def reference(ev: Evaluation, metric: str) -> str:
    """The method each other is tested against on ``metric``: the random floor, else the best by its mean.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> ev = lw.evaluate(lw.load_model("tiny-llama"), ["The cat sat on the"], methods=["saliency", "random"],
    ...                  infidelity_samples=0, progress=False)
    >>> reference(ev, "deletion")
    'random'

    """
    return FLOOR if FLOOR in ev.methods else ev.ranking(metric)[0]


@panel("evaluation", title="Evaluation", follows=("selected_token",), inputs=("evaluation",), order=80)
class EvaluationView(ViewBase):
    """The faithfulness of attribution methods: curves over the random floor, the table, each prompt's overlays.

    Parameters
    ----------
    evaluation : Evaluation
        From :func:`llmasos_widgets.evaluate` (or read back with :func:`llmasos_widgets.load`); the view
        needs no model.
    curve : str
        The curve drawn first: ``"deletion"``, ``"insertion"``, ``"deletion_drop"`` or
        ``"insertion_drop"`` (the ``curve_choices`` trait says what each is).
    metric : str
        The metric whose paired tests (each method against the random floor) are listed.
    prompt : int
        The prompt shown (its curves and every method's overlay); -1: the mean over prompts.

    The token strips of the shown prompt follow ``selected_token`` (a click on a token in one method's
    strip selects it in all of them, and marks where it leaves each curve).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> ev = lw.evaluate(lw.load_model("tiny-llama"), ["The cat sat on the", "A dog ran to"],
    ...                  methods=["saliency", "random"], infidelity_samples=0, progress=False)
    >>> view = lw.EvaluationView(ev, curve="insertion")
    >>> view.methods, view.curve, view.selected_prompt, view.tokens
    (['saliency', 'random'], 'insertion', -1, [])
    >>> view.selected_prompt = 1
    >>> view.tokens == ev.prompts[1].tokens, view.text_prompt
    (True, 1)

    """

    front_end = "evaluation"
    text_optional = True  # the text shown is the selected prompt's (none for the mean over prompts)
    methods = traitlets.List(traitlets.Unicode()).tag(sync=True)
    curve = traitlets.Unicode("deletion").tag(sync=True)
    curve_choices = traitlets.List().tag(sync=True)  # [curve, what it is, higher is better], the ones computed
    metric = traitlets.Unicode("deletion").tag(sync=True)
    metric_choices = traitlets.List().tag(sync=True)  # [metric, what it is, higher is better], the ones computed
    floor = traitlets.Unicode("").tag(sync=True)  # "random" when evaluated, else ""
    prompt_texts = traitlets.List(traitlets.Unicode()).tag(sync=True)
    prompt_targets = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selected_prompt = traitlets.Int(-1).tag(sync=True)  # -1: the mean over prompts
    text_prompt = traitlets.Int(-1).tag(sync=True)  # the prompt whose tokens are the view's text (-1: none)
    baseline_token = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        evaluation: Evaluation,
        *,
        curve: str = "deletion",
        metric: str | None = None,
        prompt: int = -1,
        **kwargs: Any,
    ) -> None:
        if not isinstance(evaluation, Evaluation):
            raise ValueError(
                f"EvaluationView needs an Evaluation (from lw.evaluate or lw.load), not {type(evaluation).__name__}"
            )
        if not evaluation.prompts:
            raise ValueError("this Evaluation has no prompts to show")
        self.evaluation = ev = evaluation
        self._answer: tuple[dict[str, Any], Arrays] | None = None  # the payload, computed once
        self._answering = threading.Lock()
        self._fixed_text: int | None = None  # an Explorer's panel: its text is the Explorer's
        present = ev.metrics
        super().__init__(
            None,
            methods=list(ev.methods),
            curve_choices=[[c, METRICS[c][0], METRICS[c][1]] for c in CURVES if c in ev.prompts[0].curves],
            metric_choices=[[m, METRICS[m][0], METRICS[m][1]] for m in present],
            floor=FLOOR if FLOOR in ev.methods else "",
            prompt_texts=[p.text for p in ev.prompts],
            prompt_targets=[p.target for p in ev.prompts],
            baseline_token=_baseline_text(ev),
            model_name=ev.model_name,
            **kwargs,
        )
        self.curve = curve
        self.metric = metric or (curve if curve in present else present[0])
        self.selected_prompt = prompt

    def _summary(self) -> list[str]:
        shown = "the mean over prompts" if self.selected_prompt < 0 else f"prompt {self.selected_prompt}"
        return [
            f"{len(self.prompt_texts)} prompts; methods: {', '.join(self.methods)}",
            f"metrics: {', '.join(m for m, *_ in self.metric_choices)}; curve {self.curve} of {shown}",
        ]

    @classmethod
    def for_explorer(cls, host: Any, name: str, trace: Trace, *, evaluation: Evaluation | None = None) -> ViewBase:
        if evaluation is None:
            raise ValueError(
                "no evaluation: pass evaluation=lw.evaluate(model, prompts, methods=[...]) to the Explorer"
            )
        match = next((i for i, p in enumerate(evaluation.prompts) if p.token_ids == list(trace.token_ids)), -1)
        view = cls._as_panel(host, name, evaluation, prompt=match)
        view._fixed_text = match  # the selection is the Explorer's text's: only that prompt's strips follow it
        view.text_prompt = match
        return view

    # -- traits --------------------------------------------------------------------------------
    @traitlets.validate("curve")
    def _check_curve(self, proposal: Any) -> str:
        names = [c[0] for c in self.curve_choices]
        if proposal["value"] not in names:
            raise ValueError(f"curve {proposal['value']!r} is not one of {', '.join(names)}")
        return str(proposal["value"])

    @traitlets.validate("metric")
    def _check_metric(self, proposal: Any) -> str:
        names = [m[0] for m in self.metric_choices]
        if proposal["value"] not in names:
            raise ValueError(f"metric {proposal['value']!r} is not one of {', '.join(names)}")
        return str(proposal["value"])

    @traitlets.validate("selected_prompt")
    def _check_prompt(self, proposal: Any) -> int:
        value = proposal["value"]
        if value == -1:
            return -1
        return checks.index(value, len(self.evaluation.prompts), "prompt", "the evaluation has prompts")

    @traitlets.validate("selected_token")
    def _check_token(self, proposal: Any) -> int:
        value = proposal["value"]
        shown = self._text_index()
        if value == -1:
            return -1
        if shown == -1:
            raise ValueError("no prompt is shown: select one (selected_prompt) before a token")
        return checks.index(value, len(self.evaluation.prompts[shown].tokens), "position", "the prompt has tokens")

    def _text_index(self) -> int:
        return self.selected_prompt if self._fixed_text is None else self._fixed_text

    @traitlets.observe("selected_prompt")
    def _prompt_changed(self, change: Any) -> None:
        if self._fixed_text is None:
            self._show_prompt(change["new"])

    def _show_prompt(self, index: int) -> None:
        """Make prompt ``index`` the view's text (its tokens, the selection's); -1: no text."""
        p = self.evaluation.prompts[index] if index >= 0 else None
        with self.hold_trait_notifications():
            self.selected_token = -1
            self.text_prompt = index
            self.tokens = [] if p is None else list(p.tokens)
            self.token_ids = [] if p is None else list(p.token_ids)
            for name in ("offsets", "token_bytes", "token_messages", "token_roles", "template", "message_offsets"):
                setattr(self, name, [])  # an Evaluation keeps no offsets: the tokens' own texts show the text
            self.generated = [] if p is None else [False] * len(p.tokens)

    # -- the one answer ------------------------------------------------------------------------
    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        return [{"what": "evaluation"}], "the whole evaluation is recorded: every curve, prompt and test works"

    @request("evaluation", stream=True)
    def _evaluation(self, reply: Reply) -> None:
        # On the worker thread: the intervals and paired tests of a large evaluation take seconds.
        with self._answering:
            if self._answer is None:
                self._answer = payload(self.evaluation, progress=reply.progress)
        reply.done(*self._answer)


def _baseline_text(ev: Evaluation) -> str:
    return f"{'the pad token' if ev.baseline == 'pad' else 'token'} (id {ev.baseline_id})"


def payload(ev: Evaluation, progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, Any], Arrays]:
    """Everything the view draws: names as JSON, numbers as arrays (NaN stays NaN; JSON has none).

    ``scores`` [token of every prompt, method]; per curve ``curve/<c>``: each prompt's [method, point]
    block one after the other (``curve_lengths`` gives the points), ``grid/<c>`` and ``mean/<c>``
    [method, grid point] (:func:`mean_curve`); ``values`` [prompt, metric, method]; ``summary`` [metric,
    method, (mean, low, high)] (``Evaluation.summary``); ``paired`` [metric, method, (mean difference, low,
    high, p)] against ``references[metric]`` (``Evaluation.compare``; NaN for the reference itself).
    ``progress(done, total)`` is called after each metric's intervals and tests.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> ev = lw.evaluate(lw.load_model("tiny-llama"), ["The cat sat on the"], methods=["saliency", "random"],
    ...                  infidelity_samples=0, progress=False)
    >>> fields, arrays = payload(ev)
    >>> fields["references"]["deletion"], [d["name"] for d, _ in arrays][:2]
    ('random', ['p_target', 'scores'])

    """
    methods, metrics = ev.methods, ev.metrics
    curves = [c for c in CURVES if c in ev.prompts[0].curves]
    nan = math.nan
    summary = torch.full((len(metrics), len(methods), 3), nan, dtype=torch.float64)
    paired = torch.full((len(metrics), len(methods), 4), nan, dtype=torch.float64)
    references = {}
    for k, metric in enumerate(metrics):
        for j, iv in enumerate(ev.summary(metric).values()):
            summary[k, j] = torch.tensor([iv.mean, iv.low, iv.high], dtype=torch.float64)
        references[metric] = ref = reference(ev, metric)
        for j, m in enumerate(methods):
            if m != ref:
                t = ev.compare(metric, m, ref)
                paired[k, j] = torch.tensor([t["mean_diff"], t["low"], t["high"], t["p_value"]], dtype=torch.float64)
        if progress is not None:
            progress(k + 1, len(metrics))
    fields = {
        "methods": methods,
        "metrics": metrics,
        "higher_better": [METRICS[m][1] for m in metrics],
        "curves": curves,
        "references": references,
        "signed": [SIGNED.get(m, False) for m in methods],  # attention and random scores are non-negative
        "prompts": [{"text": p.text, "target": p.target, "tokens": list(p.tokens)} for p in ev.prompts],
        "curve_lengths": {c: [len(p.curves[c][methods[0]]) for p in ev.prompts] for c in curves},
        "n_boot": 2000,
        "level": 0.95,
    }
    arrays = [
        wire.encode("p_target", torch.tensor([p.p_target for p in ev.prompts])),
        wire.encode("scores", torch.cat([torch.stack([p.scores[m].float() for m in methods], 1) for p in ev.prompts])),
        wire.encode("values", torch.stack([ev.values(m) for m in metrics], 1)),
        wire.encode("summary", summary),
        wire.encode("paired", paired),
    ]
    for c in curves:
        blocks = [torch.stack([p.curves[c][m].double() for m in methods]) for p in ev.prompts]
        arrays.append(wire.encode(f"curve/{c}", torch.cat([b.flatten() for b in blocks])))
        means = [mean_curve([p.curves[c][m] for p in ev.prompts]) for m in methods]
        arrays.append(wire.encode(f"grid/{c}", means[0][0]))
        arrays.append(wire.encode(f"mean/{c}", torch.stack([mc for _, mc in means])))
    return fields, arrays
