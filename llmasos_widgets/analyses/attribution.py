"""Token attributions (captum methods) for a next token, a continuation, a contrast or a whole generation.

``attribute(model, text_or_trace, ...)`` returns an :class:`Attribution`: scores ``[target, input]``,
one row per target token. Gradient methods run in embedding space with every target row sharing
one batched forward pass per group of IG steps (a causal model's output at position ``t`` depends
only on positions ``<= t``, so the full-length pass holds every row's prefix pass); their numbers
equal captum's (``LLMGradientAttribution`` with ``LayerIntegratedGradients`` on the embedding layer,
``Saliency``, ``InputXGradient``) for the same settings. Perturbation methods call captum's
``FeatureAblation`` and ``ShapleyValueSampling`` on a forward function over token masks.

Per-token scores of embedding-level methods are summed over the embedding dimension (as captum's
LLM attribution does); ``saliency`` sums the absolute gradient (captum's ``Saliency``, ``abs=True``),
so it is the L1 norm of the gradient and carries no sign.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from captum.attr import FeatureAblation, ShapleyValueSampling
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import Tensor

from ..core import checks
from ..core.hooks import hooked, inputs_only, post
from ..core.memory import require
from ..core.progress import tqdm
from ..core.trace import Trace
from .memory import estimate_tokens, fitting_batch

if TYPE_CHECKING:
    from ..core.models import LanguageModel

GRADIENT_METHODS = ("integrated_gradients", "saliency", "input_x_gradient", "layer_integrated_gradients")
PERTURBATION_METHODS = ("feature_ablation", "shapley")
METHODS = GRADIENT_METHODS + PERTURBATION_METHODS
SIGNED = {m: m != "saliency" for m in METHODS}  # saliency is a norm: never negative
BASELINES = ("pad", "mean", "zero")
IG_RULES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
COMPLETENESS_TOLERANCE = 0.05  # warn when |delta| > 5 % of |f(x) - f(baseline)|

Progress = Callable[[int, int], None]


@dataclass
class SanityCheck:
    """Model-randomisation test (Adebayo et al. 2018): do the scores change when the model does.

    ``rank_correlation`` is Spearman's rho between the scores of the trained model and those of
    the same model with ``layers`` re-initialised. Near 1: the method explains the input more than
    the model; near 0: it depends on what the model learned.
    """

    rank_correlation: float
    layers: list[int]
    scores: Tensor  # [target, input] of the randomised model
    row_correlations: list[float]

    def __repr__(self) -> str:
        return (
            f"SanityCheck(rank_correlation={self.rank_correlation:.3f}, layers re-initialised: "
            f"{self.layers[0]}..{self.layers[-1]})"
        )


@dataclass
class Attribution:
    """Attribution scores of input tokens for one or more target tokens.

    ``scores[r, i]`` is input token ``i``'s contribution to row ``r``'s objective: the log-probability
    of ``target_tokens[r]`` (minus that of ``contrast_tokens[r]`` for a contrast), or for encoders
    the cosine similarity of the mean-pooled embedding with a reference text. Cells an output cannot
    depend on (inputs at or after the position it is predicted from, in a generation matrix) are 0
    and False in ``mask``.
    """

    input_tokens: list[str]
    input_ids: list[int]
    target_tokens: list[str]
    target_ids: list[int]
    scores: Tensor  # [target, input]
    method: str
    settings: dict[str, Any]
    objective: Tensor  # [target] f(x)
    positions: list[int]  # [target] index of the input token each row's output is read at
    mask: Tensor  # [target, input] bool: the inputs each row can depend on
    convergence_delta: Tensor | None = None  # [target] sum(scores) - (f(x) - f(baseline)), IG only
    baseline_objective: Tensor | None = None  # [target] f(baseline), IG only
    ig_steps: list[int] | None = None  # [target] path points each row used, IG only
    contrast_tokens: list[str] | None = None
    contrast_ids: list[int] | None = None
    reference: str | None = None
    generated: list[bool] = field(default_factory=list)  # [input] generated tokens of a generation
    model: Any = field(default=None, repr=False)
    source: Any = field(default=None, repr=False)  # the text or Trace attributed (to recompute)

    @property
    def tokens(self) -> list[str]:
        """The input tokens (the columns of ``scores``)."""
        return self.input_tokens

    @property
    def is_matrix(self) -> bool:
        """Whether this is a generation's output × input matrix."""
        return isinstance(self.source, Trace) and any(self.source.generated)

    @property
    def completeness_gap(self) -> Tensor | None:  # [target]
        """IG's |sum(scores) - (f(x) - f(baseline))| / |f(x) - f(baseline)| per row (None for other methods).

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> res = attribute(load_model("tiny-llama"), "The cat sat", target=" on", progress=False)
        >>> bool(res.completeness_gap.max() < 0.05), res.ig_steps[0] >= 33
        (True, True)

        """
        if self.convergence_delta is None or self.baseline_objective is None:
            return None
        return self.convergence_delta.abs() / (self.objective - self.baseline_objective).abs().clamp_min(1e-12)

    @property
    def n_nonfinite(self) -> int:
        """How many scores are NaN or infinite (never shown silently)."""
        return int((~torch.isfinite(self.scores)).sum())

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.scores.shape)
        extra = f", {self.n_nonfinite} scores not finite" if self.n_nonfinite else ""
        if self.convergence_delta is not None:
            extra += f", max |delta|={float(self.convergence_delta.abs().max()):.2g}"
        targets = ", ".join(repr(t) for t in self.target_tokens[:4]) + (", ..." if len(self.target_tokens) > 4 else "")
        return f"Attribution({self.method}, scores {shape}, targets [{targets}]{extra})"

    def normalized(self, how: str = "max_abs") -> Tensor:
        """Scores of each row scaled for display: ``"max_abs"`` (to [-1, 1]), ``"sum_abs"``, ``"none"``.

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> res = attribute(load_model("tiny-llama"), "The cat sat", method="saliency")
        >>> float(res.normalized("max_abs").abs().max())
        1.0

        """
        s = self.scores
        if how == "none":
            return s.clone()
        finite = torch.where(torch.isfinite(s), s, torch.zeros_like(s))
        if how == "max_abs":
            denom = finite.abs().amax(dim=-1, keepdim=True)
        elif how == "sum_abs":
            denom = finite.abs().sum(dim=-1, keepdim=True)
        else:
            raise ValueError(f"normalization {how!r} is not one of 'max_abs', 'sum_abs', 'none'")
        return s / denom.clamp_min(1e-30)

    def top(self, k: int = 5, row: int = 0) -> list[tuple[str, float]]:
        """The ``k`` input tokens with the largest scores for one row.

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> res = attribute(load_model("tiny-llama"), "The cat sat", method="saliency")
        >>> len(res.top(2))
        2

        """
        scores = self.scores[row].masked_fill(~self.mask[row], -math.inf)
        idx = torch.topk(scores, min(k, int(self.mask[row].sum()))).indices.tolist()
        return [(self.input_tokens[i], float(self.scores[row, i])) for i in idx]

    def recompute(self, **changes: Any) -> Attribution:
        """The same attribution with some arguments changed (``method=``, ``target=``, ``contrast=``...).

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> res = attribute(load_model("tiny-llama"), "The cat sat", method="saliency")
        >>> res.recompute(method="input_x_gradient").method
        'input_x_gradient'

        """
        args = {**self.settings, **changes}
        return attribute(self.model, self.source, **args)

    def save(self, path: str | os.PathLike[str]) -> Any:
        """Write this attribution to one file; ``lw.load(path, model)`` reads it back (``analyses/results.py``).

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> res = attribute(lw.load_model("tiny-llama"), "The cat sat", method="saliency", progress=False)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     lw.load(res.save(d + "/a.st"), res.model).top(1) == res.top(1)
        True

        """
        from .results import save

        return save(self, path)

    def sanity_check(self, layers: int | None = None, seed: int = 0) -> SanityCheck:
        """Re-run this attribution with the top ``layers`` blocks re-initialised; report rank correlation.

        Parameters
        ----------
        layers : int, optional
            How many blocks, counted from the top, to re-initialise (default: the top half).
        seed : int
            Seed of the re-initialisation.

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> res = attribute(load_model("tiny-llama"), "The cat sat", method="input_x_gradient")
        >>> check = res.sanity_check(layers=2)
        >>> check.layers, -1.0 <= check.rank_correlation <= 1.0
        ([0, 1], True)

        """
        from scipy.stats import spearmanr

        from ..core.models import LanguageModel

        n_layers = self.model.n_layers
        layers = max(1, n_layers // 2) if layers is None else layers
        layers = checks.int_in("layers (blocks to re-initialise)", layers, 1, n_layers)
        with self.model.lock:  # a copy made while another run's hooks are on would keep them
            hf = copy.deepcopy(self.model.model)
        chosen = list(range(n_layers - layers, n_layers))
        blocks = type(self.model.adapter)(hf).blocks()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for module in (m for layer in chosen for m in blocks[layer].modules()):
                # Hugging Face's own initialiser where there is one (the distribution the model was trained from).
                init = getattr(hf, "_init_weights", None) or (lambda m: getattr(m, "reset_parameters", lambda: None)())
                init(module)
        randomised = LanguageModel(self.model.name + " (randomised)", hf, self.model.tokenizer)
        other = attribute(randomised, self.source, **{**self.settings, "progress": False})
        rows = []
        for r in range(self.scores.shape[0]):
            keep = self.mask[r]
            a, b = self.scores[r][keep].double().numpy(), other.scores[r][keep].double().numpy()
            rows.append(float(spearmanr(a, b).statistic) if len(a) > 1 else float("nan"))
        keep = self.mask
        overall = spearmanr(self.scores[keep].double().numpy(), other.scores[keep].double().numpy()).statistic
        return SanityCheck(float(overall), chosen, other.scores, rows)


# -- public entry point ------------------------------------------------------------------------


def attribute(
    model: LanguageModel,
    source: str | Trace,
    target: str | None = None,
    *,
    method: str = "integrated_gradients",
    contrast: str | None = None,
    reference: str | None = None,
    baseline: str | int = "pad",
    n_steps: int | None = None,
    ig_rule: str | None = None,
    max_steps: int = 1025,
    internal_batch_size: int | None = None,
    layer: int | None = None,
    n_samples: int = 25,
    perturbations_per_eval: int = 8,
    seed: int = 0,
    progress: bool | Progress = True,
) -> Attribution:
    """Attribute a model's output to its input tokens.

    Parameters
    ----------
    model : LanguageModel
        From :func:`llmasos_widgets.load_model`.
    source : str or Trace
        A text (the prompt), or a generation trace (``model.generate_trace``): then every generated
        token is attributed to the prompt and to the tokens generated before it (a matrix).
    target : str, optional
        The continuation to explain (one row per token); default: the model's own next token.
    method : str
        ``"integrated_gradients"`` (on the embeddings), ``"saliency"`` (L1 norm of the gradient),
        ``"input_x_gradient"``, ``"layer_integrated_gradients"`` (at the output of block ``layer``),
        ``"feature_ablation"`` or ``"shapley"`` (perturbation; tokens replaced by the baseline).
    contrast : str, optional
        A single token: the objective becomes log p(target) − log p(contrast).
    reference : str, optional
        Encoders only (and required there): the objective is the cosine similarity of the text's
        mean-pooled embedding with this text's.
    baseline : str or int
        What an "absent" token is: ``"pad"`` (the pad token, else EOS, else id 0, as captum's
        ``TextTokenInput``), ``"mean"`` (the mean embedding), ``"zero"`` (all-zero embedding: its
        gradient is NaN on RMSNorm models such as SmolLM2) or a token id.
    n_steps : int, optional
        Integrated-gradients steps. Default (None): adaptive, until the completeness gap is under
        5 % (the trapezoid rule on a grid of 33 points refined where its error is, at most
        ``max_steps`` points per row; ``ig_steps`` on the result says how many each row used). An
        int runs exactly that many steps with ``ig_rule``, as captum does.
    max_steps : int
        The adaptive rule's cap on points per row (at least 33). Past it the result warns that its
        scores do not add up. Time grows with the points: long prompts may need a few thousand.
    ig_rule : str, optional
        Integration rule (captum's ``method``) for a fixed ``n_steps``: ``"gausslegendre"`` (default)
        or a Riemann rule.
    internal_batch_size : int, optional
        IG steps per forward pass (default: as many as keep a batch near 2,048 positions).
    layer : int, optional
        Block for ``layer_integrated_gradients`` (default: the middle one).
    n_samples : int
        Permutations for ``shapley``.
    perturbations_per_eval : int
        Perturbed inputs per forward pass for perturbation methods.
    seed : int
        Seed for ``shapley``'s permutations.
    progress : bool or callable
        Show a tqdm bar (True), nothing (False), or call ``progress(done, total)``.

    Returns
    -------
    Attribution
        Scores ``[target, input]``, the objective, IG's completeness gap and what to recompute it.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> model = load_model("tiny-llama")
    >>> res = attribute(model, "The capital of France is", target=" Paris", baseline="mean", n_steps=16, progress=False)
    >>> res.tokens
    ['The', ' capital', ' of', ' France', ' is']
    >>> res.scores.shape, res.target_tokens
    (torch.Size([1, 5]), [' Paris'])
    >>> bool(res.convergence_delta.abs().max() < 0.05 * (res.objective - res.baseline_objective).abs().max())
    True

    """
    from ..core.models import LanguageModel

    if not isinstance(model, LanguageModel):
        raise ValueError(f"model must be a LanguageModel (from load_model), not {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if n_steps is not None:
        checks.int_in("n_steps (or None for adaptive steps)", n_steps, 1, 10**6)
    if n_steps is None and ig_rule is not None:
        raise ValueError(
            f"ig_rule={ig_rule!r} needs a fixed n_steps: the adaptive default (n_steps=None) refines its own "
            "trapezoid grid"
        )
    checks.int_in("max_steps", max_steps, IG_START_STEPS, 10**6)  # at least the adaptive rule's first grid
    if n_steps is not None:
        ig_rule = "gausslegendre" if ig_rule is None else ig_rule
        if ig_rule not in IG_RULES:
            raise ValueError(f"ig_rule {ig_rule!r} is not one of {', '.join(IG_RULES)}")
    if internal_batch_size is not None:
        checks.int_in("internal_batch_size (or None)", internal_batch_size, 1, 10**6)
    checks.int_in("n_samples", n_samples, 1, 10**6)
    checks.int_in("perturbations_per_eval", perturbations_per_eval, 1, 10**6)
    if method == "layer_integrated_gradients":
        layer = model.n_layers // 2 if layer is None else layer
        layer = checks.layer(layer, model.n_layers, model.name)
    settings = dict(
        target=target,
        method=method,
        contrast=contrast,
        reference=reference,
        baseline=baseline,
        n_steps=n_steps,
        ig_rule=ig_rule,
        max_steps=max_steps,
        internal_batch_size=internal_batch_size,
        layer=layer,
        n_samples=n_samples,
        perturbations_per_eval=perturbations_per_eval,
        seed=seed,
        progress=progress,
    )
    problem = _plan(model, source, target, contrast, reference)
    require(  # before the run: refused with smaller settings named, rather than the kernel dying
        estimate_tokens(
            model,
            len(problem.ids),
            "attribution",
            method=method,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
            n_rows=len(problem.rows),
        )
    )
    if problem.matrix and method in PERTURBATION_METHODS:
        raise ValueError(
            f"method {method!r} does not apply to a generation matrix (it would perturb every token for every "
            f"output); use one of {', '.join(GRADIENT_METHODS)}"
        )
    with model.lock:
        ids = torch.tensor(problem.ids, device=model.device)
        x = model.model.get_input_embeddings()(ids).detach()  # [pos, d_model]
    b = _baseline(model, baseline, x, problem.n_interp)  # [n_interp, d_model]
    with torch.enable_grad():  # each forward pass below holds the model's lock itself
        if method in GRADIENT_METHODS:
            res = _gradient(
                model, problem, method, x, b, n_steps, ig_rule, max_steps, internal_batch_size, layer, progress
            )
        else:
            res = _perturbation(model, problem, method, x, b, n_samples, perturbations_per_eval, seed, progress)
    scores, objective, delta, f_base, ig_steps = res
    n_in = problem.n_interp
    mask = torch.zeros(len(problem.rows), n_in, dtype=torch.bool)
    for r, pos in enumerate(problem.positions):
        mask[r, : min(pos + 1, n_in)] = True
    scores = scores.masked_fill(~mask, 0.0)
    decode = model.decode_token
    result = Attribution(
        input_tokens=problem.tokens,
        input_ids=list(problem.ids[:n_in]),
        target_tokens=[decode(t) for t in problem.rows] if reference is None else [f"cosine with {reference!r}"],
        target_ids=list(problem.rows),
        scores=scores,
        method=method,
        settings={k: v for k, v in settings.items() if k != "progress"},
        objective=objective,
        positions=list(problem.positions),
        mask=mask,
        convergence_delta=delta,
        baseline_objective=f_base,
        ig_steps=ig_steps,
        contrast_tokens=[decode(c) for c in problem.contrasts] if problem.contrasts else None,
        contrast_ids=list(problem.contrasts) if problem.contrasts else None,
        reference=reference,
        generated=list(problem.generated[:n_in]),
        model=model,
        source=source,
    )
    _warn(result)
    return result


def _warn(res: Attribution) -> None:
    if res.n_nonfinite:
        warnings.warn(
            f"{res.n_nonfinite} of {res.scores.numel()} {res.method} scores are NaN or infinite "
            f"(baseline={res.settings['baseline']!r}); on RMSNorm models an all-zero baseline has a NaN "
            "gradient: use baseline='pad' or 'mean'",
            RuntimeWarning,
            stacklevel=3,
        )
    shortfall = ig_shortfall(res)
    if shortfall:
        warnings.warn(shortfall, RuntimeWarning, stacklevel=3)


def ig_shortfall(res: Attribution) -> str:
    """What to tell a user whose IG result misses the completeness tolerance ("" when it meets it).

    Warned when the attribution is computed, and shown in SaliencyView.
    """
    gap = res.completeness_gap
    if gap is None or res.ig_steps is None or not bool((gap > COMPLETENESS_TOLERANCE).any()):
        return ""
    worst = int(gap.argmax())
    steps = res.ig_steps[worst]
    if res.settings["n_steps"] is None:
        advice = (
            f"the adaptive rule stopped at its cap of max_steps={res.settings['max_steps']} points: the scores do "
            "not add up to the change in the objective; raise max_steps (long prompts may need a few thousand)"
        )
    else:
        advice = f"with n_steps={steps}: raise n_steps, or leave it unset to refine the path until it converges"
    return (
        f"integrated gradients' completeness gap is {float(gap[worst]):.0%} of f(x) - f(baseline) (more than "
        f"{COMPLETENESS_TOLERANCE:.0%}) {advice}"
    )


# -- what to attribute ---------------------------------------------------------------------------


@dataclass
class _Problem:
    ids: list[int]  # the full sequence fed to the model
    n_interp: int  # the first n_interp positions are the attributed inputs
    positions: list[int]  # [row] where each row's output is read
    rows: list[int]  # [row] target ids (the reference's first id for encoders)
    contrasts: list[int]  # [row] contrast ids, or empty
    reference_pooled: Tensor | None  # [d_model] encoders
    generated: list[bool]
    matrix: bool
    tokens: list[str]  # [n_interp] what each attributed input token stands for in the text


def _target_ids(model: LanguageModel, text: str, what: str, one: bool) -> list[int]:
    """The token ids of a target (several, teacher-forced, unless ``one``: a contrast needs one token each)."""
    if one:
        return [checks.one_token(model, text, what)]
    if not isinstance(text, str) or text == "":
        raise ValueError(f"{what} is empty: give the text of a token, e.g. ' Paris'")
    ids = list(model.tokenizer.encode(text, add_special_tokens=False))
    if not ids:
        raise ValueError(f"{what} {text!r} encodes to no token")
    return ids


def _plan(
    model: LanguageModel, source: str | Trace, target: str | None, contrast: str | None, reference: str | None
) -> _Problem:
    if isinstance(source, Trace) and any(source.generated):
        if not model.is_causal:
            raise ValueError("a generation matrix needs a causal LM")
        if target is not None or contrast is not None or reference is not None:
            raise ValueError(
                "a generation trace is attributed to its own generated tokens: target, contrast and "
                "reference must be None (attribute the prompt text to choose a target)"
            )
        ids = list(source.token_ids)
        first = source.generated.index(True)
        if first == 0:
            raise ValueError("the trace has no prompt token before its generation")
        n = len(ids) - 1  # the last token is only ever a target
        return _Problem(
            ids[:-1],
            n,
            list(range(first - 1, n)),
            ids[first:],
            [],
            None,
            list(source.generated[:-1]),
            True,
            source.tokens[:n],
        )
    trace = source if isinstance(source, Trace) else None
    if trace is not None:
        # The trace's own ids: a chat's come from its template, which re-encoding its text would not redo.
        ids, tokens = list(trace.token_ids), list(trace.tokens)
    elif isinstance(source, str):
        ids, offsets = model._encode(source, truncate=False)
        tokens = model.token_texts(source, ids, offsets)
    else:
        raise ValueError(f"source must be a text (str) or a generation Trace, not {type(source).__name__}")
    n = len(ids)
    if not model.is_causal:
        if target is not None or contrast is not None:
            raise ValueError(
                f"{model.name} is an encoder: it has no next token to target; pass reference='some text' "
                "to attribute the cosine similarity of the pooled embeddings"
            )
        if not isinstance(reference, str) or not reference.strip():
            raise ValueError(f"{model.name} is an encoder: pass reference='some text' (a non-empty text)")
        ref_ids, _ = model._encode(reference, truncate=False)
        with model.lock, torch.no_grad():
            ref = model.adapter.base()(input_ids=torch.tensor([ref_ids], device=model.device))
            pooled = ref.last_hidden_state[0].mean(0)
        return _Problem(ids, n, [n - 1], [ref_ids[0]], [], pooled, [False] * n, False, tokens)
    if reference is not None:
        raise ValueError(f"reference is for encoders; {model.name} is a causal LM: use target= (and contrast=)")
    if target is None and trace is not None and list(trace.token_ids) == list(ids):
        targets = [trace.top_predictions(-1, k=1)[0].id]  # the trace holds the pass already
    elif target is None:
        with model.lock, torch.no_grad():
            out = model.adapter.base()(input_ids=torch.tensor([ids], device=model.device))
            logits = model.adapter.head_logits(out.last_hidden_state[0, -1])
        targets = [int(logits.argmax())]
    else:
        targets = _target_ids(model, target, "target", one=contrast is not None)
    contrasts: list[int] = []
    if contrast is not None:
        c = checks.one_token(model, contrast, "contrast")
        if c == targets[0]:
            raise ValueError(f"contrast {contrast!r} is the target itself: choose a different token")
        contrasts = [c]
    if n + len(targets) - 1 > model.context_length:
        raise ValueError(f"prompt plus target is {n + len(targets)} tokens, past the context of {model.context_length}")
    full = ids + targets[:-1]  # teacher forcing: each target row sees the targets before it
    return _Problem(
        full, n, [n - 1 + r for r in range(len(targets))], targets, contrasts, None, [False] * n, False, tokens
    )


def _baseline(model: LanguageModel, baseline: str | int, x: Tensor, n: int) -> Tensor:
    embed = model.model.get_input_embeddings()
    if isinstance(baseline, bool) or not isinstance(baseline, (str, int)):
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)} or a token id, got {baseline!r}")
    if baseline == "zero":
        return torch.zeros_like(x[:n])
    if baseline == "mean":
        return embed.weight.detach().mean(0).expand(n, -1).clone()
    if baseline == "pad":
        token_id = model.pad_token_id
    elif isinstance(baseline, int):
        token_id = checks.one_token(model, baseline, "baseline token")
    else:
        raise ValueError(f"baseline {baseline!r} is not one of {', '.join(BASELINES)} or a token id")
    with model.lock, torch.no_grad():
        return embed(torch.full((n,), token_id, device=x.device)).detach()


# -- the objective -------------------------------------------------------------------------------


def _objective(model: LanguageModel, problem: _Problem, embeds: Tensor, hook_layer: Any = None) -> Tensor:
    """Row objectives [batch, row] of a batch of input embeddings [batch, pos, d_model]."""
    out = model.adapter.base()(
        inputs_embeds=embeds,
        attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device),
    )
    hidden = out.last_hidden_state  # [batch, pos, d_model]
    if problem.reference_pooled is not None:
        pooled = hidden.mean(1)
        return torch.nn.functional.cosine_similarity(pooled, problem.reference_pooled[None], dim=-1)[:, None]
    positions = torch.tensor(problem.positions, device=hidden.device)
    logits = model.adapter.head_logits(hidden[:, positions])  # [batch, row, vocab]; only rows read
    logp = torch.log_softmax(logits.float(), dim=-1)
    rows = torch.tensor(problem.rows, device=hidden.device)
    value = logp.gather(-1, rows[None, :, None].expand(logp.shape[0], -1, 1))[..., 0]
    if problem.contrasts:
        contrasts = torch.tensor(problem.contrasts, device=hidden.device)
        value = value - logp.gather(-1, contrasts[None, :, None].expand(logp.shape[0], -1, 1))[..., 0]
    return value


def _reporter(progress: bool | Progress, total: int, desc: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    if callable(progress):
        done = [0]

        def step(n: int) -> None:
            done[0] += n
            progress(done[0], total)

        return step, lambda: None
    bar = tqdm(total=total, desc=desc, disable=not progress or total <= 1, leave=False)
    return bar.update, bar.close


# -- gradient methods ----------------------------------------------------------------------------


def _gradient(
    model: LanguageModel,
    problem: _Problem,
    method: str,
    x: Tensor,
    b: Tensor,
    n_steps: int | None,
    ig_rule: str,
    max_steps: int,
    internal_batch_size: int | None,
    layer: int | None,
    progress: bool | Progress,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, list[int] | None]:
    n = problem.n_interp
    # The interpolated tensor: the embeddings (first n positions), or block `layer`'s output. Each batch of
    # points freezes the weights only while it runs (_Path.run): the inputs' gradients are all we need.
    if method == "layer_integrated_gradients":
        start, end = _layer_endpoints(model, problem, x, b, layer)
    elif method in ("saliency", "input_x_gradient"):
        start = end = x[:n]  # the gradient at the input itself (one point: no path, no f(baseline))
    else:
        start, end = b, x[:n]
    path = _Path(model, problem, method, x, start, end, layer, internal_batch_size)
    if method == "saliency":
        values, f = path.run([1.0], lambda g: g.abs().sum(-1), progress)
        return values[0], f[0], None, None, None
    if method == "input_x_gradient":
        values, f = path.run([1.0], lambda g: (g * end.float()).sum(-1), progress)
        return values[0], f[0], None, None, None
    if n_steps is None:
        scores, steps = _adaptive_ig(path, max_steps, progress)
    else:
        step_sizes, alpha_fn = approximation_parameters(ig_rule)
        weights, alphas = list(step_sizes(n_steps)), list(alpha_fn(n_steps))
        values, _ = path.run(alphas, path.project, progress)  # [point, row, n_var]
        scores = torch.einsum("k,krv->rv", torch.tensor(weights), values)
        steps = [n_steps] * len(problem.rows)
    f_x, f_b = path.objective[1], path.objective[0]
    # Completeness over every input a row depends on (for layer IG that includes positions past
    # the prompt, whose scores are not reported, as captum's LLM attribution drops them).
    delta = (scores * path.causal).sum(-1) - (f_x - f_b)
    return scores[:, :n], f_x, delta, f_b, steps


class _Path:
    """Gradients of every row's objective at points ``start + alpha (end - start)`` of the IG path."""

    def __init__(
        self,
        model: LanguageModel,
        problem: _Problem,
        method: str,
        x: Tensor,
        start: Tensor,
        end: Tensor,
        layer: int | None,
        internal_batch_size: int | None,
    ) -> None:
        self.model, self.problem, self.method, self.x, self.layer = model, problem, method, x, layer
        self.start, self.end = start, end
        self.diff = (end - start).float()
        n_var = start.shape[0]
        self.causal = (torch.arange(n_var)[None, :] <= torch.tensor(problem.positions)[:, None]).float()
        # Points per forward pass: all of them for short inputs, fewer for long ones, so that one
        # batch holds at most about 2,048 positions (a backward keeps every layer's activations),
        # and fewer again where that would not fit in half the free memory (an 8B model).
        self.batch = internal_batch_size or fitting_batch(model, x.shape[0], max(1, 2048 // x.shape[0]))
        # [2, row]: f(baseline), f(x) for a path; a gradient at x alone reads f(x) from its own pass.
        self.objective = None
        if start is not end:
            with model.lock, torch.no_grad():
                self.objective = self._objectives(torch.stack([start, end])).float().cpu()

    def _objectives(self, var: Tensor) -> Tensor:  # var [batch, n_var, d] -> f [batch, row]
        if self.method == "layer_integrated_gradients":
            inputs = self.x[None].expand(len(var), -1, -1)
            return _with_layer(self.model, self.layer, var, lambda: _objective(self.model, self.problem, inputs))
        fixed = self.x[self.problem.n_interp :]
        embeds = torch.cat([var, fixed[None].expand(len(var), -1, -1)], dim=1)
        return _objective(self.model, self.problem, embeds)

    def project(self, grad: Tensor) -> Tensor:  # [batch, n_var, d] -> [batch, n_var]
        """IG's integrand per input: the gradient times the path's direction, summed over dimensions."""
        return (grad.float() * self.diff).sum(-1)

    def run(
        self,
        alphas: list[float],
        reduce: Callable[[Tensor], Tensor],
        progress: bool | Progress,
        rows: list[int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``reduce(gradient)`` [point, row, n_var] and the objective [point, row] at each alpha.

        Only ``rows`` (default: all) get backward passes, one per batch of points; the others stay 0.
        One forward pass serves them all.
        """
        n_rows = len(self.problem.rows)
        rows = list(range(n_rows)) if rows is None else rows
        values = torch.zeros(len(alphas), n_rows, self.start.shape[0])
        objective = torch.zeros(len(alphas), n_rows)
        batches = range(0, len(alphas), self.batch)
        step, close = _reporter(progress, len(batches) * len(rows), f"{self.method} ({self.model.name})")
        try:
            for lo in batches:
                hi = min(lo + self.batch, len(alphas))
                a = torch.tensor(alphas[lo:hi], dtype=self.x.dtype, device=self.x.device)[:, None, None]
                var = (self.start[None] + a * (self.end - self.start)[None]).requires_grad_(True)
                # One batch at a time holds the model (weights frozen: gradients of the path's points only),
                # so other views' requests run between batches.
                with inputs_only(self.model, self.model.model):
                    f = self._objectives(var)  # [batch, row]
                    objective[lo:hi] = f.detach().float().cpu()
                    grads = []
                    for i, r in enumerate(rows):
                        (g,) = torch.autograd.grad(f[:, r].sum(), var, retain_graph=i < len(rows) - 1)
                        grads.append(g)
                for r, g in zip(rows, grads, strict=True):
                    values[lo:hi, r] = reduce(g).cpu()
                    step(1)
        finally:
            close()
        return values, objective


# Adaptive integrated gradients: the trapezoid rule on a grid refined where it is needed.
IG_START_STEPS = 33  # the first, uniform grid


def _adaptive_ig(path: _Path, max_steps: int, progress: bool | Progress) -> tuple[Tensor, list[int]]:
    """IG scores [row, n_var] that meet COMPLETENESS_TOLERANCE, and the points each row used.

    Adaptive trapezoid quadrature, with two error estimates per interval of the grid:
    - completeness: the forward pass at each point gives the objective f(alpha) exactly, so the rule's
      estimate of the integral of df/dalpha over [a, c] (the trapezoid of the summed scores at its
      ends) can be checked against the true f(c) - f(a). This finds spikes that no point has hit.
    - per token: when [a, c] was halved, how much the scores over it changed (the L1 norm over
      tokens), scaled to the error left (Richardson, as in adaptive Simpson). This finds tokens whose
      scores move in opposite directions and cancel in the sum.
    Intervals with more than their share of either tolerance (5 % of |f(x) - f(baseline)|, 5 % of the
    scores' L1 norm) are halved, until the errors' absolute sums are within it (bounds that cancelling
    errors cannot fake) or the row has max_steps points. On SmolLM2 the integrand has narrow spikes
    that uniform grids of 1,024 steps still miss; refining where the error is converges sooner.
    """
    n_rows = len(path.problem.rows)
    alphas = torch.linspace(0, 1, IG_START_STEPS).tolist()
    values, objective = path.run(alphas, path.project, progress)
    rows = [_Grid(path.causal[r], max_steps) for r in range(n_rows)]
    for r, grid in enumerate(rows):
        for k, a in enumerate(alphas):
            grid.points[a] = (values[k, r], float(objective[k, r]))
        for a, m, c in zip(alphas[0::2], alphas[1::2], alphas[2::2], strict=False):
            grid.split(a, m, c)
    budget = [COMPLETENESS_TOLERANCE * abs(float(path.objective[1, r] - path.objective[0, r])) for r in range(n_rows)]
    while True:
        wanted: dict[float, list[int]] = {}
        for r, grid in enumerate(rows):
            for a, c in grid.to_refine(budget[r]):
                wanted.setdefault((a + c) / 2, []).append(r)
        if not wanted:
            break
        # Points wanted by the same rows go in one batch: a row's backward pass then runs only over
        # the points it needs (a batch mixing rows would cost every row a backward over all of it).
        groups: dict[tuple[int, ...], list[float]] = {}
        for m in sorted(wanted):
            groups.setdefault(tuple(wanted[m]), []).append(m)
        for who, points in groups.items():
            values, objective = path.run(points, path.project, progress, rows=list(who))
            for k, m in enumerate(points):
                for r in who:
                    grid = rows[r]
                    grid.points[m] = (values[k, r], float(objective[k, r]))
                    a, c = next((a, c) for a, c in grid.leaves if a < m < c)
                    del grid.leaves[(a, c)]
                    grid.split(a, m, c)
    return torch.stack([grid.integral() for grid in rows]), [len(grid.points) for grid in rows]


class _Grid:
    """One row's adaptive trapezoid grid: points alpha -> (scores' integrand [n_var], f), and its leaves."""

    def __init__(self, causal: Tensor, max_points: int) -> None:
        self.causal = causal  # [n_var] the inputs this row depends on
        self.max_points = max_points
        self.points: dict[float, tuple[Tensor, float]] = {}
        self.leaves: dict[tuple[float, float], float] = {}  # interval -> per-token error estimate

    def _trapezoid(self, a: float, c: float) -> Tensor:
        return (c - a) / 2 * (self.points[a][0] + self.points[c][0]) * self.causal

    def split(self, a: float, m: float, c: float) -> None:
        """Replace [a, c] by its halves, each with its share of the error that halving left.

        The trapezoid's error shrinks 4-fold when h halves, so the change halving made is 3 times the
        halves' remaining error (Richardson): each half gets change / 6.
        """
        change = float((self._trapezoid(a, c) - self._trapezoid(a, m) - self._trapezoid(m, c)).abs().sum())
        self.leaves[(a, m)] = self.leaves[(m, c)] = change / 6

    def integral(self) -> Tensor:
        return sum((self._trapezoid(a, c) for a, c in self.leaves), torch.zeros_like(self.causal))

    def to_refine(self, completeness_budget: float) -> list[tuple[float, float]]:
        """The leaves to halve, worst first, none when both error sums are within their budgets."""
        if len(self.points) >= self.max_points:
            return []
        completeness = {
            (a, c): abs(float(self._trapezoid(a, c).sum()) - (self.points[c][1] - self.points[a][1]))
            for a, c in self.leaves
        }
        token_budget = max(COMPLETENESS_TOLERANCE * float(self.integral().abs().sum()), 1e-12)
        completeness_budget = max(completeness_budget, 1e-12)
        if sum(completeness.values()) <= completeness_budget and sum(self.leaves.values()) <= token_budget:
            return []
        # Each leaf's error as a share of its budget; a leaf over its even share (1 / n) is halved.
        share = {
            leaf: max(completeness[leaf] / completeness_budget, error / token_budget)
            for leaf, error in self.leaves.items()
        }
        chosen = sorted((leaf for leaf in share if share[leaf] > 1 / len(share)), key=lambda leaf: -share[leaf])
        return chosen[: self.max_points - len(self.points)]


def _layer_endpoints(
    model: LanguageModel, problem: _Problem, x: Tensor, b: Tensor, layer: int | None
) -> tuple[Tensor, Tensor]:
    """Block ``layer``'s output on the baseline input and on the input: [pos, d_model] each."""
    kept: list[Tensor] = []
    keep = post(
        model.adapter.blocks()[layer], lambda _m, _a, out: kept.append((out[0] if isinstance(out, tuple) else out)[0])
    )
    with hooked(model, [keep]), torch.no_grad():
        n = problem.n_interp
        both = torch.stack([torch.cat([b, x[n:]]), x])
        for e in both:
            model.adapter.base()(inputs_embeds=e[None], attention_mask=torch.ones(1, e.shape[0], dtype=torch.long))
    return kept[0].detach(), kept[1].detach()


def _with_layer(model: LanguageModel, layer: int | None, value: Tensor, run: Callable[[], Tensor]) -> Tensor:
    """Run ``run()`` with block ``layer``'s output replaced by ``value`` [batch, pos, d_model]."""

    def hook(_m: Any, _a: Any, out: Any) -> Any:
        if isinstance(out, tuple):
            return (value.to(out[0].dtype), *out[1:])
        return value.to(out.dtype)

    with hooked(model, [post(model.adapter.blocks()[layer], hook)]):
        return run()


# -- perturbation methods ------------------------------------------------------------------------


def _perturbation(
    model: LanguageModel,
    problem: _Problem,
    method: str,
    x: Tensor,
    b: Tensor,
    n_samples: int,
    per_eval: int,
    seed: int,
    progress: bool | Progress,
) -> tuple[Tensor, Tensor, None, None, None]:
    n = problem.n_interp
    fixed = x[n:]

    def forward(mask: Tensor) -> Tensor:  # mask [batch, n]: 1 keeps a token, 0 puts the baseline there
        keep = mask[..., None].to(x.dtype)
        embeds = keep * x[None, :n] + (1 - keep) * b[None]
        embeds = torch.cat([embeds, fixed[None].expand(len(mask), -1, -1)], dim=1)
        with model.lock:  # one perturbed batch at a time: other views' requests run between them
            return _objective(model, problem, embeds)

    n_rows = len(problem.rows)
    ones = torch.ones(1, n, device=x.device)
    step, close = _reporter(progress, n_rows, f"{method} ({model.name})")
    rows = []
    try:
        with torch.no_grad():
            for r in range(n_rows):
                if method == "feature_ablation":
                    attr = FeatureAblation(forward).attribute(
                        ones, baselines=0.0, target=r, perturbations_per_eval=per_eval
                    )
                else:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed)
                        attr = ShapleyValueSampling(forward).attribute(
                            ones, baselines=0.0, target=r, n_samples=n_samples, perturbations_per_eval=per_eval
                        )
                rows.append(attr[0].float().cpu())
                step(1)
            f_x = forward(ones)[0].float().cpu()
    finally:
        close()
    return torch.stack(rows), f_x, None, None, None
