"""Which attribution to trust: faithfulness metrics of every attribution method on a set of prompts.

``evaluate(model, prompts, targets, methods=[...])`` scores each method's token attributions of the
next token by what happens when the tokens it ranks first are taken away or kept: deletion and
insertion curves (Petsiuk et al. 2018, RISE), comprehensiveness and sufficiency with AOPC (DeYoung
et al. 2020, ERASER), Kendall's tau with leave-one-out, and captum's ``infidelity`` and
``sensitivity_max`` (called, not rewritten). Every perturbed input of a prompt is run in batches: one
batched forward per step of a curve (all methods together), never one call per token. Statistics
(bootstrap intervals, paired tests) are in :mod:`.evaluation_stats`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..core import checks
from ..core.hooks import hooked, post
from ..core.progress import tqdm
from ..core.trace import Trace
from .attention import AttentionIndex
from .attribution import METHODS as ATTRIBUTION_METHODS
from .attribution import attribute
from .corpus_index import fingerprint
from .evaluation_stats import Interval, bootstrap_mean, paired_test

if TYPE_CHECKING:
    from ..core.models import LanguageModel

ATTENTION_METHODS = ("attention_rollout", "attention_last")
METHODS = ATTRIBUTION_METHODS + ATTENTION_METHODS + ("random",)
DEFAULT_METHODS = (
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "feature_ablation",
    "shapley",
    "attention_rollout",
    "attention_last",
    "random",
)
ERASER_BINS = (0.01, 0.05, 0.1, 0.2, 0.5)  # DeYoung et al. 2020: top 1, 5, 10, 20, 50 % of the tokens
# metric -> (what it is, whether higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "deletion": ("area under p(target) as the top tokens are replaced by the baseline token", False),
    "insertion": ("area under p(target) as the top tokens are put back into an all-baseline input", True),
    "deletion_drop": ("area under p(target) as the top tokens are dropped from the input", False),
    "insertion_drop": ("area under p(target) as the input is built from the top tokens alone", True),
    "comprehensiveness": ("AOPC of p(x) - p(x without the top k %) over the bins (tokens dropped)", True),
    "sufficiency": ("AOPC of p(x) - p(the top k % alone) over the bins (tokens dropped)", False),
    "loo_tau": ("Kendall's tau between the scores and leave-one-out (token replaced by the baseline)", True),
    "infidelity": ("captum's infidelity: random subsets of tokens replaced, attributions scaled (normalize)", False),
    "sensitivity": ("captum's sensitivity_max: largest relative change of the scores when the embeddings move", False),
}
CURVES = ("deletion", "insertion", "deletion_drop", "insertion_drop")
MAX_POSITIONS = 4096  # tokens per batched forward


@dataclass
class PromptResult:
    """What one prompt gave: its tokens, each method's scores and curves, and the metrics."""

    text: str
    tokens: list[str]
    token_ids: list[int]
    target: str
    target_id: int
    p_target: float  # p(target | prompt)
    scores: dict[str, Tensor]  # method -> [token]
    curves: dict[str, dict[str, Tensor]]  # curve -> method -> [k] p(target) after k tokens (see Evaluation)
    metrics: dict[str, dict[str, float]]  # metric -> method -> value


@dataclass
class Evaluation:
    """Faithfulness of attribution methods over a set of prompts (see :func:`evaluate`).

    Curves are p(target) at ``k = 0..n`` tokens changed (``deletion``, ``insertion``: replaced by the
    baseline token, same length), ``k = 0..n-1`` tokens dropped (``deletion_drop``) and ``k = 1..n``
    tokens kept alone (``insertion_drop``): an empty input has no next token. A curve's area is the
    trapezoid rule over its points on ``[0, 1]`` (RISE's ``auc``).
    """

    model_name: str
    methods: list[str]
    baseline: str | int
    baseline_id: int
    bins: list[float] | str
    prompts: list[PromptResult]
    settings: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)  # the model's (a file is refused on another)

    @property
    def metrics(self) -> list[str]:
        """The metrics computed, in the order of :data:`METRICS`."""
        present = set(self.prompts[0].metrics) if self.prompts else set()
        return [m for m in METRICS if m in present]

    def values(self, metric: str) -> Tensor:  # [prompt, method]
        """The metric's value per prompt and method.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> ev = evaluate(lw.load_model("tiny-llama"), ["The cat sat on the"], methods=["saliency", "random"],
        ...               infidelity_samples=0, progress=False)
        >>> ev.values("deletion").shape
        torch.Size([1, 2])

        """
        if metric not in self.metrics:
            raise ValueError(f"metric {metric!r} is not one of {', '.join(self.metrics)}")
        return torch.tensor([[p.metrics[metric][m] for m in self.methods] for p in self.prompts], dtype=torch.float64)

    def summary(self, metric: str, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Interval]:
        """Mean of ``metric`` over prompts per method, with a percentile bootstrap interval.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> ev = evaluate(lw.load_model("tiny-llama"), ["The cat sat on the", "A dog ran to"],
        ...               methods=["saliency", "random"], infidelity_samples=0, progress=False)
        >>> iv = ev.summary("insertion")["saliency"]
        >>> iv.low <= iv.mean <= iv.high
        True

        """
        v = self.values(metric)
        return {m: bootstrap_mean(v[:, j], n_boot=n_boot, level=level, seed=seed) for j, m in enumerate(self.methods)}

    def compare(self, metric: str, a: str, b: str, *, n_perm: int = 10000, seed: int = 0) -> dict[str, float]:
        """Paired test of methods ``a`` and ``b`` on ``metric`` over the same prompts (sign-flip permutation).

        Returns the mean difference ``a - b``, its bootstrap interval and the two-sided p-value.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> ev = evaluate(lw.load_model("tiny-llama"), ["The cat sat on the", "A dog ran to"],
        ...               methods=["saliency", "random"], infidelity_samples=0, progress=False)
        >>> 0.0 <= ev.compare("insertion", "saliency", "random")["p_value"] <= 1.0
        True

        """
        for name in (a, b):
            if name not in self.methods:
                raise ValueError(f"method {name!r} was not evaluated: choose one of {', '.join(self.methods)}")
        v = self.values(metric)
        return paired_test(v[:, self.methods.index(a)], v[:, self.methods.index(b)], n_perm=n_perm, seed=seed)

    def ranking(self, metric: str) -> list[str]:
        """Methods from best to worst by their mean ``metric`` (the direction the metric rewards).

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> ev = evaluate(lw.load_model("tiny-llama"), ["The cat sat on the"], methods=["saliency", "random"],
        ...               infidelity_samples=0, progress=False)
        >>> sorted(ev.ranking("deletion"))
        ['random', 'saliency']

        """
        means = self.values(metric).mean(0)
        sign = -1.0 if METRICS[metric][1] else 1.0
        return [self.methods[j] for j in sorted(range(len(self.methods)), key=lambda j: sign * float(means[j]))]

    def table(self, *, n_boot: int = 2000, seed: int = 0) -> str:
        """A plain-text table: one row per method, each metric's mean and 95 % interval.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> ev = evaluate(lw.load_model("tiny-llama"), ["The cat sat on the"], methods=["saliency", "random"],
        ...               infidelity_samples=0, progress=False)
        >>> ev.table().splitlines()[0].split()[:2]
        ['method', 'deletion↓']

        """
        metrics = self.metrics
        cols = {m: self.summary(m, n_boot=n_boot, seed=seed) for m in metrics}
        heads = ["method"] + [m + ("↑" if METRICS[m][1] else "↓") for m in metrics]

        def num(x: float) -> str:  # rounded first, then + 0.0: a value that rounds to zero prints 0.000, never -0.000
            return f"{round(x, 3) + 0.0:.3f}"

        def cell(i: Interval) -> str:
            return f"{num(i.mean)} [{num(i.low)}, {num(i.high)}]"

        rows = [[meth] + [cell(cols[m][meth]) for m in metrics] for meth in self.methods]
        widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [heads, *rows])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this evaluation to one file; ``lw.load(path)`` reads it back (see :mod:`.results`).

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> ev = evaluate(lw.load_model("tiny-llama"), ["The cat sat on the"], methods=["saliency", "random"],
        ...               infidelity_samples=0, progress=False)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     back = lw.load(ev.save(d + "/ev.st"))
        >>> back.table() == ev.table()
        True

        """
        from .results import save

        return save(self, path)

    def __repr__(self) -> str:
        return (
            f"Evaluation({len(self.prompts)} prompts, methods {self.methods}, baseline {self.baseline!r}, "
            f"metrics {self.metrics})"
        )


# -- the public entry point ------------------------------------------------------------------------


def evaluate(
    model: LanguageModel,
    prompts: str | Sequence[str],
    targets: str | Sequence[str | None] | None = None,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    baseline: str | int = "pad",
    bins: Sequence[float] | str = ERASER_BINS,
    infidelity_samples: int = 32,
    infidelity_drop: float = 0.25,
    sensitivity_samples: int = 0,
    sensitivity_radius: float = 0.1,
    attribute_args: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Evaluation:
    """Measure how faithful each attribution method is to the model's next-token prediction.

    Parameters
    ----------
    model : LanguageModel
        A causal LM from :func:`llmasos_widgets.load_model`.
    prompts : str or list of str
        The inputs; each one's next token is explained.
    targets : str or list, optional
        One single-token target per prompt (``" Paris"``); None (or a None entry): the model's own top
        prediction.
    methods : list of str
        Any of :data:`METHODS`: every method of :func:`attribute`, ``"attention_rollout"`` (rollout to the
        last layer, the last position's row), ``"attention_last"`` (the last layer's attention from the
        last position, mean over heads) and ``"random"`` (a seeded random ranking: the floor).
    baseline : "pad" or int
        The token that replaces a removed token (the pad token, else EOS, or a token id); also the
        baseline given to :func:`attribute`, so that a method is judged with the baseline it used.
    bins : list of float or "all"
        Comprehensiveness and sufficiency bins as fractions of the tokens (ERASER's by default); a bin's
        ``k`` is ``int(fraction * n)``, bins giving 0 tokens or the same ``k`` as the bin before are left
        out (ferret's rule). ``"all"``: ``k = 1 .. n - 1``.
    infidelity_samples : int
        Perturbations per prompt for captum's ``infidelity`` (0 leaves the metric out).
    infidelity_drop : float
        Probability that a token is replaced in one infidelity perturbation.
    sensitivity_samples : int
        Perturbations per prompt for captum's ``sensitivity_max`` (0, the default, leaves it out: each
        one recomputes every method's attribution, so it costs ``sensitivity_samples + 1`` attributions).
    sensitivity_radius : float
        Half-width of sensitivity's uniform noise on each embedding coordinate, in units of the standard
        deviation of the embedding matrix (captum's ``perturb_radius`` is this times that deviation).
    attribute_args : dict, optional
        Extra arguments for :func:`attribute` (``n_steps``, ``n_samples``...).
    seed : int
        Seed of the random method and of infidelity's perturbations.
    progress : bool
        Show a progress bar over prompts.

    Returns
    -------
    Evaluation
        Per prompt: scores, curves and metrics of every method; ``summary``, ``compare``, ``ranking``.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> ev = evaluate(model, ["The capital of France is"], methods=["saliency", "feature_ablation", "random"],
    ...               infidelity_samples=4, progress=False)
    >>> ev.methods, ev.metrics[:2]
    (['saliency', 'feature_ablation', 'random'], ['deletion', 'insertion'])
    >>> curve = ev.prompts[0].curves["deletion"]["saliency"]
    >>> len(curve) == len(ev.prompts[0].tokens) + 1, abs(float(curve[0]) - ev.prompts[0].p_target) < 1e-5
    (True, True)

    """
    from ..core.models import LanguageModel

    if not isinstance(model, LanguageModel):
        raise ValueError(f"model must be a LanguageModel (from load_model), not {type(model).__name__}")
    if not model.is_causal:
        raise ValueError(f"{model.name} is an encoder: evaluate explains a causal LM's next token")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty texts")
    if targets is None or isinstance(targets, str):
        targets = [targets] * len(prompts)
    targets = list(targets)
    if len(targets) != len(prompts):
        raise ValueError(f"{len(targets)} targets for {len(prompts)} prompts: give one target per prompt (or None)")
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(f"methods {methods!r}: give distinct names, each one of {', '.join(METHODS)}")
    if isinstance(baseline, bool) or not (baseline == "pad" or isinstance(baseline, int)):
        raise ValueError(
            f"baseline must be 'pad' or a token id (a removed token is replaced by a token), got {baseline!r}"
        )
    baseline_id = model.pad_token_id if baseline == "pad" else checks.one_token(model, baseline, "baseline token")
    if bins != "all":
        if isinstance(bins, str) or not bins or not all(isinstance(b, (int, float)) and 0 < b <= 1 for b in bins):
            raise ValueError(f"bins must be 'all' or fractions in (0, 1], got {bins!r}")
        bins = sorted(float(b) for b in bins)
    checks.int_in("infidelity_samples", infidelity_samples, 0, 10**6)
    checks.int_in("sensitivity_samples", sensitivity_samples, 0, 10**6)
    if not (isinstance(sensitivity_radius, (int, float)) and 0 < sensitivity_radius < math.inf):
        raise ValueError(f"sensitivity_radius must be a positive number, got {sensitivity_radius!r}")
    if not 0 < infidelity_drop < 1:
        raise ValueError(f"infidelity_drop must be a probability in (0, 1), got {infidelity_drop!r}")
    args = dict(attribute_args or {})
    bad = {"target", "method", "baseline", "progress", "contrast", "reference"} & set(args)
    if bad:
        raise ValueError(f"attribute_args may not set {sorted(bad)}: evaluate sets them")
    results = []
    for i, (text, target) in enumerate(tqdm(list(zip(prompts, targets, strict=True)), disable=not progress)):
        results.append(
            _evaluate_prompt(
                model,
                text,
                target,
                methods,
                baseline,
                baseline_id,
                bins,
                infidelity_samples,
                infidelity_drop,
                (sensitivity_samples, float(sensitivity_radius)),
                args,
                seed + i,
            )
        )
    settings = dict(
        infidelity_samples=infidelity_samples,
        infidelity_drop=infidelity_drop,
        sensitivity_samples=sensitivity_samples,
        sensitivity_radius=float(sensitivity_radius),
        attribute_args=args,
        seed=seed,
    )
    return Evaluation(model.name, methods, baseline, baseline_id, bins, results, settings, fingerprint(model))


# -- one prompt ------------------------------------------------------------------------------------


def _evaluate_prompt(
    model: LanguageModel,
    text: str,
    target: str | None,
    methods: list[str],
    baseline: str | int,
    baseline_id: int,
    bins: list[float] | str,
    infidelity_samples: int,
    infidelity_drop: float,
    sensitivity_args: tuple[int, float],
    args: dict[str, Any],
    seed: int,
) -> PromptResult:
    trace = model.trace(text)
    ids = list(trace.token_ids)
    n = len(ids)
    target_id = (
        int(trace.top_predictions(-1, k=1)[0].id) if target is None else checks.one_token(model, target, "target")
    )
    scores = {m: method_scores(model, trace, m, target_id, baseline, args, seed, given=target) for m in methods}
    orders = {m: ranking_order(s) for m, s in scores.items()}
    p0 = float(target_probs(model, [ids], target_id)[0])
    curves: dict[str, dict[str, Tensor]] = {c: {} for c in CURVES}
    for m, order in orders.items():
        curves["deletion"][m], curves["insertion"][m] = replace_curves(model, ids, order, baseline_id, target_id)
        curves["deletion_drop"][m], curves["insertion_drop"][m] = drop_curves(model, ids, order, target_id)
    metrics: dict[str, dict[str, float]] = {c: {m: auc(curves[c][m]) for m in methods} for c in CURVES}
    ks = bin_sizes(n, bins)
    metrics["comprehensiveness"] = {m: aopc([p0 - float(curves["deletion_drop"][m][k]) for k in ks]) for m in methods}
    metrics["sufficiency"] = {m: aopc([p0 - float(curves["insertion_drop"][m][k - 1]) for k in ks]) for m in methods}
    loo = leave_one_out(model, ids, baseline_id, target_id, p0)
    metrics["loo_tau"] = {m: kendall_tau(scores[m], loo) for m in methods}
    if infidelity_samples:
        metrics["infidelity"] = {
            m: infidelity(model, ids, baseline_id, target_id, scores[m], infidelity_samples, infidelity_drop, seed)
            for m in methods
        }
    if sensitivity_args[0]:
        metrics["sensitivity"] = {
            m: sensitivity(model, trace, m, target_id, baseline, args, seed, target, *sensitivity_args) for m in methods
        }
    return PromptResult(
        text, list(trace.tokens), ids, model.decode_token(target_id), target_id, p0, scores, curves, metrics
    )


def method_scores(
    model: LanguageModel,
    trace: Any,
    method: str,
    target_id: int,
    baseline: str | int,
    args: dict[str, Any],
    seed: int,
    given: str | None = None,
) -> Tensor:  # [token]
    """One method's score per input token of ``trace`` for its next token ``target_id``.

    ``given``: the target's text as the user gave it (None: ``target_id`` is the model's top prediction).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> trace = model.trace("The cat sat")
    >>> method_scores(model, trace, "attention_last", 5, "pad", {}, 0).shape == (len(trace.token_ids),)
    True

    """
    n = len(trace.token_ids)
    if method == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(n, generator=gen, dtype=torch.float64).float()
    if method in ATTENTION_METHODS:
        index = AttentionIndex(trace)
        last = model.n_layers - 1
        matrix = index.rollout(last) if method == "attention_rollout" else index.mean(last)
        return matrix[n - 1].float().clone()
    # The trace itself (its own ids: a BOS token, a chat template) and the target as the user gave it.
    res = attribute(model, trace, target=given, method=method, baseline=baseline, progress=False, **args)
    if res.target_ids != [target_id]:
        raise ValueError(f"target {given!r} is not the single token {target_id} for {method}")
    return res.scores[0].float()


def ranking_order(scores: Tensor) -> list[int]:
    """Token positions from the highest score to the lowest; equal scores keep their order in the text.

    Examples
    --------
    >>> ranking_order(torch.tensor([0.1, 0.5, 0.1, -1.0]))
    [1, 0, 2, 3]

    """
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))


# -- batched forwards ------------------------------------------------------------------------------


def target_probs(model: LanguageModel, seqs: Sequence[Sequence[int]], target_id: int, *, log: bool = False) -> Tensor:
    """p(target) (or its log) at the last position of each sequence: sequences of one length share a forward.

    Sequences of a length run together, ``MAX_POSITIONS`` tokens per forward (no padding: a padded
    causal batch would shift rotary positions).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> p = target_probs(model, [[5, 6, 7], [5, 7], [8, 6, 7]], 9)
    >>> p.shape, bool((p > 0).all() and (p < 1).all())
    (torch.Size([3]), True)

    """
    out = torch.empty(len(seqs), dtype=torch.float64)
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        if not s:
            raise ValueError("an empty sequence has no next token")
        by_len.setdefault(len(s), []).append(i)
    head = model.model.get_output_embeddings()
    for length, rows in by_len.items():
        step = max(1, MAX_POSITIONS // length)
        for lo in range(0, len(rows), step):
            chunk = rows[lo : lo + step]
            ids = torch.tensor([list(seqs[i]) for i in chunk], device=model.device)
            with model.lock, torch.no_grad():
                hidden = model.adapter.base()(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
                logp = torch.log_softmax(head(hidden[:, -1]).double(), dim=-1)[:, target_id]
            out[chunk] = (logp if log else logp.exp()).cpu()
    return out


def replace_curves(
    model: LanguageModel, ids: list[int], order: list[int], baseline_id: int, target_id: int
) -> tuple[Tensor, Tensor]:
    """Deletion and insertion curves [n + 1]: p(target) with the first ``k`` of ``order`` replaced / kept.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> d, i = replace_curves(model, [5, 6, 7], [2, 0, 1], 0, 9)
    >>> float(d[0]) == float(i[-1])
    True

    """
    n = len(ids)
    deleted, inserted = [], []
    for k in range(n + 1):
        top = set(order[:k])
        deleted.append([baseline_id if i in top else t for i, t in enumerate(ids)])
        inserted.append([t if i in top else baseline_id for i, t in enumerate(ids)])
    p = target_probs(model, deleted + inserted, target_id)
    return p[: n + 1], p[n + 1 :]


def drop_curves(model: LanguageModel, ids: list[int], order: list[int], target_id: int) -> tuple[Tensor, Tensor]:
    """Deletion [k = 0..n-1] with the top ``k`` tokens dropped, insertion [k = 1..n] with only them kept.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> d, i = drop_curves(model, [5, 6, 7], [2, 0, 1], 9)
    >>> len(d), len(i), float(d[0]) == float(i[-1])
    (3, 3, True)

    """
    n = len(ids)
    dropped = [[t for i, t in enumerate(ids) if i not in set(order[:k])] for k in range(n)]
    kept = [[t for i, t in enumerate(ids) if i in set(order[:k])] for k in range(1, n + 1)]
    p = target_probs(model, dropped + kept, target_id)
    return p[:n], p[n:]


def leave_one_out(model: LanguageModel, ids: list[int], baseline_id: int, target_id: int, p0: float) -> Tensor:
    """Leave-one-out importance [n]: p(x) - p(x with token i replaced by the baseline), one batched forward.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> leave_one_out(model, [5, 6, 7], 0, 9, 0.5).shape
    torch.Size([3])

    """
    seqs = [[baseline_id if j == i else t for j, t in enumerate(ids)] for i in range(len(ids))]
    return p0 - target_probs(model, seqs, target_id)


# -- metrics ---------------------------------------------------------------------------------------


def auc(curve: Tensor) -> float:
    """Area under a curve sampled evenly on [0, 1] (the trapezoid rule, as RISE's ``auc``).

    Examples
    --------
    >>> auc(torch.tensor([1.0, 0.0]))
    0.5

    """
    c = curve.double()
    if len(c) == 1:
        return float(c[0])
    return float((c.sum() - c[0] / 2 - c[-1] / 2) / (len(c) - 1))


def aopc(values: list[float]) -> float:
    """The mean over bins (ERASER's AOPC); NaN when no bin applies.

    Examples
    --------
    >>> round(aopc([0.2, 0.4]), 6)
    0.3

    """
    return sum(values) / len(values) if values else math.nan


def bin_sizes(n: int, bins: list[float] | str) -> list[int]:
    """Tokens per bin for a prompt of ``n`` tokens: ``int(fraction * n)``, zeros and repeats left out.

    Examples
    --------
    >>> bin_sizes(12, [0.01, 0.05, 0.1, 0.2, 0.5]), bin_sizes(4, "all")
    ([1, 2, 6], [1, 2, 3])

    """
    if bins == "all":
        return list(range(1, n))
    ks: list[int] = []
    for b in bins:
        k = min(int(b * n), n - 1)  # all n dropped leaves no input
        if k > 0 and (not ks or k != ks[-1]):
            ks.append(k)
    return ks


def kendall_tau(a: Tensor, b: Tensor) -> float:
    """Kendall's tau-b of two score vectors (scipy); NaN for fewer than two tokens or a constant vector.

    Examples
    --------
    >>> round(kendall_tau(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.1, 0.5, 0.2])), 6)
    0.333333

    """
    from scipy.stats import kendalltau

    if len(a) < 2:
        return math.nan
    return float(kendalltau(a.double().numpy(), b.double().numpy()).statistic)


def infidelity(
    model: LanguageModel,
    ids: list[int],
    baseline_id: int,
    target_id: int,
    scores: Tensor,
    n_samples: int,
    drop: float,
    seed: int,
) -> float:
    """Captum's ``infidelity`` of token scores for log p(target) (the objective of :func:`attribute`).

    The input is a mask over tokens (1 keeps a token, 0 puts the baseline token's embedding there); a
    perturbation replaces each token with probability ``drop``, so infidelity measures how well the
    scores of the replaced tokens add up to the change in log p. ``normalize=True``: the scores are
    scaled by the factor that fits best, so a method is not judged on its scale.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> infidelity(model, [5, 6, 7], 0, 9, torch.tensor([0.1, 0.2, 0.3]), 4, 0.25, 0) >= 0
    True

    """
    from captum.metrics import infidelity as captum_infidelity

    embed = model.model.get_input_embeddings()
    head = model.model.get_output_embeddings()
    with model.lock, torch.no_grad():
        x = embed(torch.tensor(ids, device=model.device))  # [pos, d_model]
        b = embed(torch.tensor([baseline_id], device=model.device))  # [1, d_model]

    def forward(mask: Tensor) -> Tensor:  # [batch, pos] -> [batch]
        keep = mask[..., None].to(x.dtype)
        embeds = keep * x[None] + (1 - keep) * b[None]
        ones = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        with model.lock:
            hidden = model.adapter.base()(inputs_embeds=embeds, attention_mask=ones).last_hidden_state
            return torch.log_softmax(head(hidden[:, -1]).double(), dim=-1)[:, target_id]

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        removed = (torch.rand(inputs.shape, device=inputs.device) < drop).to(inputs.dtype)
        return removed, inputs - removed

    inputs = torch.ones(1, len(ids), device=model.device, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        value = captum_infidelity(
            forward,
            perturb,
            inputs,
            scores[None].double(),
            n_perturb_samples=n_samples,
            normalize=True,
            max_examples_per_batch=n_samples,
        )
    return float(value[0])


def sensitivity(
    model: LanguageModel,
    trace: Trace,
    method: str,
    target_id: int,
    baseline: str | int,
    args: dict[str, Any],
    seed: int,
    given: str | None,
    n_samples: int,
    radius: float,
) -> float:
    """Captum's ``sensitivity_max`` of one method's token scores, the input being the prompt's embeddings.

    captum adds uniform noise of half-width ``radius`` × (the embedding matrix's standard deviation) to
    every coordinate of the prompt's token embeddings, ``n_samples`` times from ``seed``, and reports
    max ‖scores(x + δ) − scores(x)‖ / ‖scores(x)‖ (Frobenius). The method runs on the perturbed
    embeddings by a hook on the embedding layer that adds δ where the prompt's ids are embedded: the
    same :func:`method_scores` as the evaluation, attention read from a trace run on the perturbed input.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> sensitivity(model, model.trace("The cat sat"), "saliency", 5, "pad", {}, 0, None, 2, 0.1) > 0
    True
    >>> sensitivity(model, model.trace("The cat sat"), "random", 5, "pad", {}, 0, None, 2, 0.1)  # no input, no change
    0.0

    """
    from captum.metrics import sensitivity_max

    embed = model.model.get_input_embeddings()
    ids = torch.tensor(list(trace.token_ids), device=model.device)
    with model.lock, torch.no_grad():
        x = embed(ids[None]).detach()  # [1, pos, d_model]
        scale = float(embed.weight.detach().float().std())
    target = given if given is not None else model.decode_token(target_id)

    def explain(inputs: Tensor | tuple[Tensor]) -> tuple[Tensor]:  # [batch, pos, d_model] -> ([batch, pos],)
        rows = []
        for row in inputs[0] if isinstance(inputs, tuple) else inputs:  # captum's first call gives a tuple
            delta = (row - x[0]).detach()

            def add(module: Any, hook_args: tuple[Any, ...], output: Tensor, delta: Tensor = delta) -> Tensor | None:
                seen = hook_args[0]
                if seen.shape[-1] == len(ids) and torch.equal(seen.reshape(-1), ids):  # the prompt, not a baseline
                    return output + delta.to(output.dtype)
                return None

            with hooked(model, [post(embed, add)]):
                moved = Trace.run(model, trace.text, list(trace.token_ids), trace.offsets, list(trace.generated))
                rows.append(method_scores(model, moved, method, target_id, baseline, args, seed, given=target))
        return (torch.stack(rows).double(),)  # a tuple, as captum's attribute gives for its tuple of inputs

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        value = sensitivity_max(
            explain, x, perturb_radius=radius * scale, n_perturb_samples=n_samples, max_examples_per_batch=n_samples
        )
    return float(value[0])
