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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from captum.attr import FeatureAblation, ShapleyValueSampling
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import Tensor
from tqdm.auto import tqdm

from .trace import Trace

if TYPE_CHECKING:
    from .models import LanguageModel

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

        from .models import LanguageModel

        n_layers = self.model.n_layers
        layers = max(1, n_layers // 2) if layers is None else layers
        if not isinstance(layers, int) or not 1 <= layers <= n_layers:
            raise ValueError(f"layers must be an int from 1 to {n_layers} (blocks to re-initialise), got {layers!r}")
        hf = copy.deepcopy(self.model.model)
        chosen = list(range(n_layers - layers, n_layers))
        blocks = type(self.model.adapter)(hf).blocks()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for layer in chosen:
                for module in blocks[layer].modules():
                    _reinit(hf, module)
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


def _reinit(model: Any, module: torch.nn.Module) -> None:
    # Hugging Face's own initialiser when it has one (the distribution the model was trained from).
    init = getattr(model, "_init_weights", None)
    if init is not None:
        init(module)
        return
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()


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
    n_steps: int = 32,
    ig_rule: str = "gausslegendre",
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
    n_steps : int
        Integrated-gradients steps (at least 1).
    ig_rule : str
        Integration rule (captum's ``method``): ``"gausslegendre"`` or a Riemann rule.
    internal_batch_size : int, optional
        IG steps per forward pass (default: all at once).
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
    from .models import LanguageModel

    if not isinstance(model, LanguageModel):
        raise ValueError(f"model must be a LanguageModel (from load_model), not {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
    if ig_rule not in IG_RULES:
        raise ValueError(f"ig_rule {ig_rule!r} is not one of {', '.join(IG_RULES)}")
    if internal_batch_size is not None and (not isinstance(internal_batch_size, int) or internal_batch_size < 1):
        raise ValueError(f"internal_batch_size must be a positive int or None, got {internal_batch_size!r}")
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    if not isinstance(perturbations_per_eval, int) or perturbations_per_eval < 1:
        raise ValueError(f"perturbations_per_eval must be an int >= 1, got {perturbations_per_eval!r}")
    if method == "layer_integrated_gradients":
        layer = model.n_layers // 2 if layer is None else layer
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < model.n_layers:
            raise ValueError(f"layer {layer!r} is out of range: {model.name} has layers 0..{model.n_layers - 1}")
    settings = dict(
        target=target,
        method=method,
        contrast=contrast,
        reference=reference,
        baseline=baseline,
        n_steps=n_steps,
        ig_rule=ig_rule,
        internal_batch_size=internal_batch_size,
        layer=layer,
        n_samples=n_samples,
        perturbations_per_eval=perturbations_per_eval,
        seed=seed,
        progress=progress,
    )
    problem = _plan(model, source, target, contrast, reference)
    if problem.matrix and method in PERTURBATION_METHODS:
        raise ValueError(
            f"method {method!r} does not apply to a generation matrix (it would perturb every token for every "
            f"output); use one of {', '.join(GRADIENT_METHODS)}"
        )
    with torch.enable_grad():
        embed = model.model.get_input_embeddings()
        ids = torch.tensor(problem.ids, device=model.device)
        x = embed(ids).detach()  # [pos, d_model]
        b = _baseline(model, baseline, x, problem.n_interp)  # [n_interp, d_model]
        if method in GRADIENT_METHODS:
            res = _gradient(model, problem, method, x, b, n_steps, ig_rule, internal_batch_size, layer, progress)
        else:
            res = _perturbation(model, problem, method, x, b, n_samples, perturbations_per_eval, seed, progress)
    scores, objective, delta, f_base = res
    n_in = problem.n_interp
    mask = torch.zeros(len(problem.rows), n_in, dtype=torch.bool)
    for r, pos in enumerate(problem.positions):
        mask[r, : min(pos + 1, n_in)] = True
    scores = scores.masked_fill(~mask, 0.0)
    decode = model.decode_token
    result = Attribution(
        input_tokens=[decode(i) for i in problem.ids[:n_in]],
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
    if res.convergence_delta is not None and res.baseline_objective is not None:
        gap = (res.objective - res.baseline_objective).abs()
        bad = res.convergence_delta.abs() > COMPLETENESS_TOLERANCE * gap
        if bool(bad.any()):
            worst = float((res.convergence_delta.abs() / gap.clamp_min(1e-12)).max())
            warnings.warn(
                f"integrated gradients' completeness gap is {worst:.0%} of f(x) - f(baseline) (more than "
                f"{COMPLETENESS_TOLERANCE:.0%}) with n_steps={res.settings['n_steps']}: raise n_steps",
                RuntimeWarning,
                stacklevel=3,
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


def _single_token(model: LanguageModel, text: str, what: str, required: bool) -> list[int]:
    if not isinstance(text, str) or text == "":
        raise ValueError(f"{what} is empty: give the text of a token, e.g. ' Paris'")
    ids = list(model.tokenizer.encode(text, add_special_tokens=False))
    if not ids:
        raise ValueError(f"{what} {text!r} encodes to no token")
    if required and len(ids) != 1:
        pieces = [model.decode_token(i) for i in ids]
        raise ValueError(
            f"{what} {text!r} is {len(ids)} tokens ({pieces}); a contrast needs a single-token target and "
            "contrast: pick one token (mind the leading space, e.g. ' he')"
        )
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
            ids[:-1], n, list(range(first - 1, n)), ids[first:], [], None, list(source.generated[:-1]), True
        )
    if isinstance(source, Trace):
        source = source.text
    if not isinstance(source, str):
        raise ValueError(f"source must be a text (str) or a generation Trace, not {type(source).__name__}")
    ids, _ = model._encode(source, truncate=False)
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
        with torch.no_grad():
            ref = model.adapter.base()(input_ids=torch.tensor([ref_ids], device=model.device))
            pooled = ref.last_hidden_state[0].mean(0)
        return _Problem(ids, n, [n - 1], [ref_ids[0]], [], pooled, [False] * n, False)
    if reference is not None:
        raise ValueError(f"reference is for encoders; {model.name} is a causal LM: use target= (and contrast=)")
    if target is None:
        with torch.no_grad():
            out = model.adapter.base()(input_ids=torch.tensor([ids], device=model.device))
            logits = model.model.get_output_embeddings()(out.last_hidden_state[0, -1])
        targets = [int(logits.argmax())]
    else:
        targets = _single_token(model, target, "target", required=contrast is not None)
    contrasts: list[int] = []
    if contrast is not None:
        (c,) = _single_token(model, contrast, "contrast", required=True)
        if c == targets[0]:
            raise ValueError(f"contrast {contrast!r} is the target itself: choose a different token")
        contrasts = [c]
    if n + len(targets) - 1 > model.context_length:
        raise ValueError(f"prompt plus target is {n + len(targets)} tokens, past the context of {model.context_length}")
    full = ids + targets[:-1]  # teacher forcing: each target row sees the targets before it
    return _Problem(full, n, [n - 1 + r for r in range(len(targets))], targets, contrasts, None, [False] * n, False)


def _baseline(model: LanguageModel, baseline: str | int, x: Tensor, n: int) -> Tensor:
    embed = model.model.get_input_embeddings()
    if isinstance(baseline, bool) or not isinstance(baseline, (str, int)):
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)} or a token id, got {baseline!r}")
    if baseline == "zero":
        return torch.zeros_like(x[:n])
    if baseline == "mean":
        return embed.weight.detach().mean(0).expand(n, -1).clone()
    if baseline == "pad":
        tok = model.tokenizer
        token_id = next((i for i in (tok.pad_token_id, tok.eos_token_id) if i is not None), 0)
    elif isinstance(baseline, int):
        if not 0 <= baseline < embed.num_embeddings:
            raise ValueError(f"baseline token id {baseline} is out of range 0..{embed.num_embeddings - 1}")
        token_id = baseline
    else:
        raise ValueError(f"baseline {baseline!r} is not one of {', '.join(BASELINES)} or a token id")
    with torch.no_grad():
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
    logits = model.model.get_output_embeddings()(hidden[:, positions])  # [batch, row, vocab]; only rows read
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
    n_steps: int,
    ig_rule: str,
    internal_batch_size: int | None,
    layer: int | None,
    progress: bool | Progress,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    n = problem.n_interp
    n_rows = len(problem.rows)
    params = [p for p in model.model.parameters() if p.requires_grad]
    for p in params:  # gradients of the inputs only: the weights' are never needed
        p.requires_grad_(False)
    try:
        if method in ("saliency", "input_x_gradient"):
            alphas, weights = [1.0], [1.0]
            b = x[:n]  # the gradient at the input itself
        else:
            step_sizes, alpha_fn = approximation_parameters(ig_rule)
            weights, alphas = list(step_sizes(n_steps)), list(alpha_fn(n_steps))
        # The interpolated tensor: the embeddings (first n positions), or block `layer`'s output.
        if method == "layer_integrated_gradients":
            start, end = _layer_endpoints(model, problem, x, b, layer)
            n_var = start.shape[0]
        else:
            start, end = b, x[:n]
            n_var = n
        fixed = x[n:]
        batch = len(alphas) if internal_batch_size is None else internal_batch_size
        total_grad = torch.zeros(n_rows, n_var, x.shape[-1], dtype=torch.float32, device=x.device)
        step, close = _reporter(progress, math.ceil(len(alphas) / batch) * n_rows, f"{method} ({model.name})")
        try:
            for lo in range(0, len(alphas), batch):
                a = torch.tensor(alphas[lo : lo + batch], dtype=x.dtype, device=x.device)[:, None, None]
                w = torch.tensor(weights[lo : lo + batch], dtype=torch.float32, device=x.device)
                var = (start[None] + a * (end - start)[None]).requires_grad_(True)  # [batch, n_var, d]
                if method == "layer_integrated_gradients":
                    inputs = x[None].expand(len(a), -1, -1)
                    f = _with_layer(model, layer, var, lambda inputs=inputs: _objective(model, problem, inputs))
                else:
                    embeds = torch.cat([var, fixed[None].expand(len(a), -1, -1)], dim=1)
                    f = _objective(model, problem, embeds)  # [batch, row]
                for r in range(n_rows):
                    (g,) = torch.autograd.grad((f[:, r] * w).sum(), var, retain_graph=r < n_rows - 1)
                    total_grad[r] += g.float().sum(0)
                    step(1)
        finally:
            close()
        diff = (end - start).float()
        if method == "saliency":
            scores = total_grad.abs().sum(-1)
        elif method == "input_x_gradient":
            scores = (total_grad * end.float()).sum(-1)
        else:
            scores = (total_grad * diff).sum(-1)  # [row, n_var]
        with torch.no_grad():
            if method == "layer_integrated_gradients":
                f_x = _with_layer(model, layer, end[None], lambda: _objective(model, problem, x[None]))[0]
                f_b = _with_layer(model, layer, start[None], lambda: _objective(model, problem, x[None]))[0]
            else:
                both = torch.stack([torch.cat([end, fixed]), torch.cat([start, fixed])])
                f_x, f_b = _objective(model, problem, both)
        f_x, f_b = f_x.float().cpu(), f_b.float().cpu()
        delta = None
        if method in ("integrated_gradients", "layer_integrated_gradients"):
            # Completeness over every input a row depends on (for layer IG that includes positions
            # past the prompt, whose scores are not reported, as captum's LLM attribution drops them).
            causal = torch.arange(n_var)[None, :] <= torch.tensor(problem.positions)[:, None]
            delta = (scores.cpu() * causal).sum(-1) - (f_x - f_b)
        return scores[:, :n].cpu(), f_x, delta, (f_b if delta is not None else None)
    finally:
        for p in params:
            p.requires_grad_(True)


def _layer_endpoints(
    model: LanguageModel, problem: _Problem, x: Tensor, b: Tensor, layer: int | None
) -> tuple[Tensor, Tensor]:
    """Block ``layer``'s output on the baseline input and on the input: [pos, d_model] each."""
    kept: list[Tensor] = []
    block = model.adapter.blocks()[layer]
    handle = block.register_forward_hook(
        lambda _m, _a, out: kept.append((out[0] if isinstance(out, tuple) else out)[0])
    )
    try:
        with torch.no_grad():
            n = problem.n_interp
            both = torch.stack([torch.cat([b, x[n:]]), x])
            for e in both:
                model.adapter.base()(inputs_embeds=e[None], attention_mask=torch.ones(1, e.shape[0], dtype=torch.long))
    finally:
        handle.remove()
    return kept[0].detach(), kept[1].detach()


def _with_layer(model: LanguageModel, layer: int | None, value: Tensor, run: Callable[[], Tensor]) -> Tensor:
    """Run ``run()`` with block ``layer``'s output replaced by ``value`` [batch, pos, d_model]."""

    def hook(_m: Any, _a: Any, out: Any) -> Any:
        if isinstance(out, tuple):
            return (value.to(out[0].dtype), *out[1:])
        return value.to(out.dtype)

    handle = model.adapter.blocks()[layer].register_forward_hook(hook)
    try:
        return run()
    finally:
        handle.remove()


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
) -> tuple[Tensor, Tensor, None, None]:
    n = problem.n_interp
    fixed = x[n:]

    def forward(mask: Tensor) -> Tensor:  # mask [batch, n]: 1 keeps a token, 0 puts the baseline there
        keep = mask[..., None].to(x.dtype)
        embeds = keep * x[None, :n] + (1 - keep) * b[None]
        embeds = torch.cat([embeds, fixed[None].expand(len(mask), -1, -1)], dim=1)
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
    return torch.stack(rows), f_x, None, None
