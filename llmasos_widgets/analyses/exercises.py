"""Exercises with checkers: a student's function compared with the package's own result.

``check(name, fn)`` runs ``fn`` on tiny-llama first (instant) and then on SmolLM2, compares it with what the
package computes, and says *what* is wrong (a shape, a head, an axis, a missing scale...) without showing the
expected numbers. Each checker knows a few common mistakes: it computes them too, and names the one the
answer matches.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..core.models import LanguageModel, load_model
from .causal.metrics import logit_diff
from .causal.patching import patch
from .circuits import direct_logit_attribution, induction
from .sae import SAE, load_sae

MODELS = ("tiny-llama", "smollm2-135m")


class Wrong(Exception):
    """Raised by a checker with a message that says what is wrong."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`check`: ``passed`` and a message; truthy when passed."""

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.exercise}: {self.message}"


@dataclass(frozen=True)
class Exercise:
    """One exercise: what to write (``task``), and the checker run on each model."""

    name: str
    task: str
    reference: str
    run: Callable[[LanguageModel, Callable[..., Any]], None]


class _StudentError(Exception):
    """The student's function raised: reported as such (a checker's own error is not)."""


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as error:
        raise _StudentError(f"{type(error).__name__}: {error}") from error


def _tensor(x: Any, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception:
            raise Wrong(f"{what} should be a tensor, got {type(x).__name__}") from None
    return x.detach().float().cpu()


def _shape(got: Tensor, want: tuple[int, ...], what: str, dims: str) -> None:
    if tuple(got.shape) != want:
        raise Wrong(f"{what} has shape {tuple(got.shape)}, expected {want} ({dims})")


def _close(a: Tensor, b: Tensor, rtol: float = 1e-3, atol: float = 1e-4) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def _diagnose(
    got: Tensor, want: Tensor, mistakes: Sequence[tuple[Tensor, str]], what: str, rtol: float, atol: float
) -> None:
    """Pass when ``got`` equals ``want``; else raise the first mistake it equals, or say where it differs."""
    if torch.isnan(got).any():
        raise Wrong(f"{what} contains NaN")
    if _close(got, want, rtol, atol):
        return
    for value, message in mistakes:
        if _close(got, value, rtol, atol):
            raise Wrong(message)
    diff = (got - want).abs()
    worst = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    raise Wrong(f"{what} differs: the largest error is {float(diff.max()):.3g} at index {worst}")


# -- 00: the top predictions ------------------------------------------------------------------------------
def _top_k(model: LanguageModel, fn: Callable[..., Any]) -> None:
    trace = model.trace("The capital of France is")
    logits, k = trace.logits_at(-1), 5
    got = _call(fn, logits.clone(), k)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise Wrong(f"return a pair (token_ids [k], probs [k]), got {type(got).__name__}")
    ids, probs = _tensor(got[0], "token_ids").long(), _tensor(got[1], "probs")
    _shape(ids, (k,), "token_ids", "k token ids")
    _shape(probs, (k,), "probs", "k probabilities")
    want = trace.top_predictions(-1, k)
    want_ids, want_probs = torch.tensor([p.id for p in want]), torch.tensor([p.prob for p in want])
    if torch.equal(ids, want_ids.flip(0)):
        raise Wrong("your ids are in increasing order of probability: the most likely token comes first")
    if set(ids.tolist()) != set(want_ids.tolist()):
        raise Wrong("your token ids are not the k most likely tokens (did you take the top k of the right tensor?)")
    if not torch.equal(ids, want_ids):
        raise Wrong("the right tokens in the wrong order: sort them by probability, largest first")
    top = logits[want_ids]
    mistakes = [
        (top, "your probs are logits: turn logits into probabilities with a softmax over the vocabulary"),
        (logits.log_softmax(-1)[want_ids], "your probs are log-probabilities: exponentiate them"),
        (top.softmax(-1), "you took the softmax over the k best logits only: take it over the whole vocabulary"),
    ]
    _diagnose(probs, want_probs, mistakes, "probs", 1e-4, 1e-6)


# -- 01: attention by hand ---------------------------------------------------------------------------------
def _attention(model: LanguageModel, fn: Callable[..., Any]) -> None:
    adapter = model.adapter
    trace = model.trace("The cat sat on the mat because it was warm.")
    for layer in sorted({0, model.n_layers // 2}):
        with model.lock, torch.no_grad():
            x = adapter.attn_input(layer, trace.resid_pre(layer))[None]
            q, k, _ = adapter.qkv(layer, x, torch.arange(x.shape[1]))
        q, k = q[0].float(), k[0].float()  # [head, pos, d], [kv_head, pos, d]
        want = trace.attention(layer)
        got = _tensor(_call(fn, q.clone(), k.clone()), "the pattern")
        heads, pos = q.shape[0], q.shape[1]
        if got.shape == (k.shape[0], pos, pos) and k.shape[0] != heads:
            raise Wrong(
                f"one pattern per key/value head ({k.shape[0]}): each of the {heads} query heads has its own "
                f"pattern; query heads share key/value heads in groups of {heads // k.shape[0]}"
            )
        _shape(got, (heads, pos, pos), "the pattern", "[head, query_pos, key_pos]")
        group, d = heads // k.shape[0], q.shape[-1]
        mask = torch.ones(pos, pos, dtype=torch.bool).tril()

        def pattern(
            keys: Tensor, scale: float, causal: bool = True, axis: int = -1, q: Tensor = q, mask: Tensor = mask
        ) -> Tensor:
            s = q @ keys.transpose(-1, -2) * scale
            return (s.masked_fill(~mask, float("-inf")) if causal else s).softmax(axis)

        right = k.repeat_interleave(group, 0)
        scale = adapter.attn_scale(layer)
        mistakes = [
            (pattern(right, 1.0), "the scores are not scaled: divide q·k by the square root of the head size"),
            (pattern(right, 1.0 / d), "you divided q·k by the head size; divide by its square root"),
            (pattern(right, scale, causal=False), "no causal mask: a token may not attend to tokens after it"),
            (pattern(right, scale, axis=-2), "softmax over the wrong axis: each query's row (over keys) sums to 1"),
        ]
        if group > 1:
            tiled = "query head h uses key/value head h // group (heads 0..g-1 share kv head 0), not h % n_kv_heads"
            mistakes.append((pattern(k.repeat(group, 1, 1), scale), tiled))
        if not _close(got, want):
            bad = [h for h in range(heads) if not _close(got[h], want[h])]
            for value, message in mistakes:
                if _close(got, value):
                    raise Wrong(f"layer {layer}: {message}")
            raise Wrong(f"layer {layer}: heads {bad} differ from trace.attention({layer}); the others match")


# -- 00/03: the logit lens -----------------------------------------------------------------------------------
def _lens(model: LanguageModel, fn: Callable[..., Any]) -> None:
    trace = model.trace("The capital of France is")
    layer = model.n_layers // 2
    resid = trace.resid_pre(layer)
    with model.lock, torch.no_grad():
        got = _tensor(_call(fn, model, resid.clone()), "the logits")
        want = model.adapter.logits(resid).float().cpu()
        raw = model.adapter.head_logits(resid).float().cpu()
    _shape(got, tuple(want.shape), "the logits", "[pos, vocab]")
    mistakes = [(raw, "you unembedded the raw stream: apply the final norm (model.adapter.final_norm()) first")]
    _diagnose(got, want, mistakes, "the logits", 1e-3, 1e-3)


# -- 02: token ablation --------------------------------------------------------------------------------------
def _ablation(model: LanguageModel, fn: Callable[..., Any]) -> None:
    from .attribution import attribute

    text, target = "The capital of France is", " Paris"
    want = attribute(model, text, target, method="feature_ablation", progress=False).scores[0].float()
    with model.lock:
        got = _tensor(_call(fn, model, text, target), "the scores")
    _shape(got, tuple(want.shape), "the scores", "one score per input token")
    ids = torch.tensor(model.tokenizer(text)["input_ids"])
    t = model.tokenizer(target, add_special_tokens=False)["input_ids"][0]
    runs = ids.repeat(len(ids) + 1, 1)
    for i in range(len(ids)):
        runs[i + 1, i] = model.pad_token_id
    with model.lock, torch.no_grad():
        logits = model.model(runs.to(model.device)).logits[:, -1].float().cpu()
    logp, p, raw = logits.log_softmax(-1)[:, t], logits.softmax(-1)[:, t], logits[:, t]
    mistakes = [
        (logp[1:] - logp[0], "the sign is flipped: a token whose removal lowers log p(target) gets a positive score"),
        (p[0] - p[1:], "you measured the drop in probability; the objective is the log-probability"),
        (raw[0] - raw[1:], "you measured the drop in the target's logit; the objective is its log-probability"),
    ]
    _diagnose(got, want, mistakes, "the scores", 1e-3, 1e-4)


# -- 04: the significance test of TCAV ------------------------------------------------------------------------
_PLACES = [
    "The capital of Italy is Rome.",
    "The capital of Spain is Madrid.",
    "Paris is in France.",
    "Rome is in Italy.",
    "Madrid is in Spain.",
    "The capital of France is Paris.",
    "She went to Rome and then to Madrid.",
    "Italy and Spain and France.",
    "The capital of Spain is not Rome.",
    "Is Paris the capital of Italy?",
    "From Madrid to Paris.",
    "Rome, Paris, Madrid.",
]


def _welch(model: LanguageModel, fn: Callable[..., Any]) -> None:
    import numpy as np
    from scipy import stats

    from .concepts import Concept, tcav

    if model.name == "smollm2-135m":
        inputs, target = ["The capital of France is", "The Eiffel Tower is in", "The Louvre museum is in"], " Paris"
        layers = [6, 12]
    else:  # words tiny-llama's tokenizer knows
        inputs, target, layers = (
            ["The capital of France is", "The cat is in the", "The capital of Italy is"],
            " the",
            [0, 1],
        )
    with warnings.catch_warnings():  # scipy warns of precision loss on near-identical runs (tiny-llama's)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = tcav(model, inputs, target, [Concept("places", _PLACES)], layers, n_random=6, progress=False)
        _welch_layers(res, layers, fn, stats, np)


def _welch_layers(res: Any, layers: list[int], fn: Callable[..., Any], stats: Any, np: Any) -> None:
    n_tests = int(res.p_values.numel())
    checked = 0
    for layer in range(len(layers)):
        a, b = res.scores[0, layer].double().numpy(), res.random_scores[layer].double().numpy()
        if np.ptp(a) == 0 and np.ptp(b) == 0:
            continue  # no variance: the t statistic is undefined (TCAVResult uses an exact test there)
        checked += 1
        got = _call(fn, a.copy(), b.copy(), n_tests)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise Wrong(f"return one number, the adjusted p-value; got {type(got).__name__}") from None
        want = float(res.p_adjusted[0, layer])
        p = float(res.p_values[0, layer])
        mistakes = [
            (p, "that is the p-value before the Bonferroni correction: multiply it by the number of tests"),
            (p * n_tests, "cap the corrected p-value at 1"),
            (
                min(1.0, float(stats.ttest_ind(a, b).pvalue) * n_tests),
                "that is Student's t-test (equal variances); use Welch's (equal_var=False)",
            ),
            (
                min(1.0, float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue) * n_tests),
                "that is a one-sided test; TCAV's is two-sided (the concept may lower the target too)",
            ),
        ]
        if abs(got - want) <= 1e-6 + 1e-4 * want:
            continue
        for value, message in mistakes:
            if abs(got - value) <= 1e-6 + 1e-4 * abs(value):
                raise Wrong(f"layer {layers[layer]}: {message}")
        raise Wrong(f"layer {layers[layer]}: your adjusted p-value differs from TCAVResult.p_adjusted")
    if not checked:
        raise RuntimeError("no layer had varying scores to test; please report this")


# -- 05: one residual patch --------------------------------------------------------------------------------------
def _resid_patch(model: LanguageModel, fn: Callable[..., Any]) -> None:
    if model.name == "smollm2-135m":
        clean, corrupt = "When Mary and John went to the store, John gave a drink to", None
        corrupt, metric = clean.replace(", John", ", Mary"), logit_diff(" Mary", " John")
    else:  # words tiny-llama's tokenizer knows
        clean, corrupt, metric = "The cat is in the", "The dog is in the", logit_diff(" cat", " the")
    result = patch(model, clean, corrupt, metric, progress=False)
    noised = patch(model, clean, corrupt, metric, direction="noise", progress=False)
    bound = metric.bind(model)
    clean_logits = torch.zeros(1)
    n_pos = result.values.shape[1]
    ids = [model.tokenizer(t)["input_ids"] for t in (clean, corrupt)]
    differ = next(i for i, (a, b) in enumerate(zip(*ids, strict=True)) if a != b)
    n = model.n_layers  # cells where patching a block's input and its output give different answers
    cells = dict.fromkeys([(0, n_pos - 1), (n // 2, differ), (3 * n // 4, n_pos - 1), (n - 1, n_pos - 1)])
    for layer, pos in cells:
        with model.lock:
            got = _tensor(_call(fn, model, clean, corrupt, layer, pos), "the logits")
        if got.dim() != 1:
            raise Wrong(f"return the last position's logits [vocab], got shape {tuple(got.shape)}")
        value = float(bound(got[None], clean_logits)[0])
        want = float(result.values[layer, pos])
        if abs(value - want) <= 1e-3 * max(1.0, abs(want)):
            continue
        if abs(value - float(noised.values[layer, pos])) < 1e-3 * max(1.0, abs(want)):
            raise Wrong("you patched the corrupt value into the clean run: run the corrupt prompt, patch in clean")
        if layer + 1 < model.n_layers and abs(value - float(result.values[layer + 1, pos])) < 1e-3 * max(
            1.0, abs(want)
        ):
            raise Wrong("you patched the stream leaving block l (hook_resid_post); the cell is the stream entering it")
        raise Wrong(f"layer {layer}, position {pos}: your patched run's logit difference differs from patch(...)")


# -- 06: the TopK encoder ----------------------------------------------------------------------------------------
def _topk_encoder(model: LanguageModel, fn: Callable[..., Any]) -> None:
    if model.name == "smollm2-135m":
        sae = load_sae("smollm2-135m", layer=12, model=model)
    else:  # an untrained SAE: its latents are random directions, which is all the encoder's arithmetic needs
        sae = SAE.random(model.d_model, 4 * model.d_model, 8, 0)
    trace = model.trace("The capital of France is Paris, and the capital of Italy is Rome.")
    x = trace[f"blocks.{sae.layer}.hook_resid_post"].float()
    if model.name != "smollm2-135m":  # a negative encoder bias, so that some of the k largest are below 0
        with torch.no_grad():
            sae.b_enc -= sae.pre_acts(x).topk(int(sae.k), dim=-1).values[:, -2].mean()
    with torch.no_grad():
        want = sae.encode(x).float()
        pre_acts = sae.pre_acts(x).float()
        got = _tensor(_call(fn, sae, x.clone()), "the codes")
    _shape(got, tuple(want.shape), "the codes", "[pos, n_latents]: dense, zeros where a latent is off")
    k = int(sae.k)
    top = torch.topk(pre_acts, k, dim=-1)
    no_relu = torch.zeros_like(pre_acts).scatter(-1, top.indices, top.values)
    by_abs = pre_acts.abs().topk(k, dim=-1).indices
    abs_codes = torch.zeros_like(pre_acts).scatter(-1, by_abs, pre_acts.gather(-1, by_abs).clamp_min(0))
    no_bdec = x @ sae.W_enc.float() + sae.b_enc.float()
    top_nb = torch.topk(no_bdec, k, dim=-1)
    mistakes = [
        (pre_acts.clamp_min(0), f"all positive latents are on: keep only the k = {k} largest per token"),
        (no_relu, "negative values kept: clamp the k values at 0"),
        (abs_codes, "you chose the k largest by absolute value: choose the k largest values"),
        (torch.zeros_like(pre_acts).scatter(-1, top_nb.indices, top_nb.values.clamp_min(0)), "subtract b_dec first"),
    ]
    active = (got != 0).sum(-1)
    if int(active.max()) > k:
        raise Wrong(f"a token has {int(active.max())} active latents; a TopK SAE keeps at most k = {k}")
    _diagnose(got, want, mistakes, "the codes", 1e-3, 1e-4)


# -- circuits: direct logit attribution and induction scores ---------------------------------------------------
def _dla(model: LanguageModel, fn: Callable[..., Any]) -> None:
    from .circuits import decompose

    text, target, other = "The capital of France is", " Paris", " Rome"
    parts = decompose(model, text)
    dla = direct_logit_attribution(model, text, target, other)
    a, b = (model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (target, other))
    w_u = model.adapter.head().weight.detach().float().cpu()
    direction = w_u[a] - w_u[b]
    with model.lock:
        got = _tensor(
            _call(fn, model, parts.stack[:, -1].clone(), parts.final[-1].clone(), direction.clone()), "the attributions"
        )
    _shape(got, tuple(dla.values.shape), "the attributions", "one number per component")
    stack = parts.stack[:, -1]
    mistakes = [
        (
            stack @ direction,
            "the final norm is missing: divide each component by the final stream's scale, times its weight",
        ),
    ]
    _diagnose(got, dla.values, mistakes, "the attributions", 1e-3, 1e-3)


def _induction_score(model: LanguageModel, fn: Callable[..., Any]) -> None:
    result = induction(model, seq_len=12, batch=1, seed=1)
    n, first = result.seq_len, result.first
    with model.lock, torch.no_grad():
        from ..core.hooks import read

        names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.n_layers)]
        acts = read(model, names, input_ids=result.tokens.to(model.device))
        patterns = [
            model.adapter.attention_pattern(layer, acts[names[layer]][0]).float().cpu()
            for layer in range(model.n_layers)
        ]
    for layer in sorted({0, model.n_layers - 1, int(result.scores.max(-1).values.argmax())}):
        pattern = patterns[layer]
        got = _tensor(_call(fn, pattern.clone(), n, first), "the scores")
        _shape(got, (model.n_heads,), "the scores", "one score per head")
        q = torch.arange(first + n, first + 2 * n)
        mistakes = [
            (
                pattern[:, q, q - n].mean(-1),
                "you measured attention to the earlier copy of the same token (a "
                "duplicate-token head); an induction head attends to the token after it",
            ),
            (
                pattern.diagonal(-(n - 1), -2, -1).mean(-1),
                "you averaged the whole diagonal; use the queries of the second copy only",
            ),
        ]
        _diagnose(got, result.scores[layer], mistakes, f"layer {layer}'s scores", 1e-4, 1e-5)


# -- 07: a deletion curve by hand -----------------------------------------------------------------------------
def _deletion(model: LanguageModel, fn: Callable[..., Any]) -> None:
    from .evaluation import evaluate, ranking_order, target_probs

    ev = evaluate(model, "The capital of France is the city of", methods=["input_x_gradient"], infidelity_samples=0,
                  progress=False)  # fmt: skip
    res = ev.prompts[0]
    ids, n, pad = list(res.token_ids), len(res.token_ids), model.pad_token_id
    order = ranking_order(res.scores["input_x_gradient"])
    want = res.curves["deletion"]["input_x_gradient"].float()
    with model.lock:
        got = _tensor(_call(fn, model, list(ids), list(order), res.target_id), "the curve")
    if tuple(got.shape) == (n,):
        raise Wrong(f"the curve has {n} points: it starts at k = 0 (nothing replaced), so it has n + 1 = {n + 1}")
    _shape(got, (n + 1,), "the curve", "p(target) with 0, 1, ..., n tokens replaced")

    def replaced(positions: Sequence[Sequence[int]]) -> list[list[int]]:
        return [[pad if i in set(gone) else t for i, t in enumerate(ids)] for gone in positions]

    cumulative = replaced([order[:k] for k in range(n + 1)])
    mistakes = [
        (target_probs(model, cumulative, res.target_id, log=True).float(), "your curve holds log-probabilities: "
         "deletion follows p(target), the probability"),
        (target_probs(model, replaced([order[::-1][:k] for k in range(n + 1)]), res.target_id).float(),
         "you replaced the lowest-ranked tokens first: deletion takes away the highest-ranked (order[0]) first"),
        (target_probs(model, replaced([order[k - 1 : k] for k in range(n + 1)]), res.target_id).float(),
         "you replaced only the k-th token at step k: the tokens replaced before it stay replaced"),
    ]  # fmt: skip
    _diagnose(got, want, mistakes, "the curve", 1e-3, 1e-5)


EXERCISES: dict[str, Exercise] = {
    e.name: e
    for e in (
        Exercise(
            "top_k",
            "fn(logits [vocab], k) -> (token_ids [k], probs [k]), most likely first",
            "trace.top_predictions",
            _top_k,
        ),
        Exercise(
            "attention_by_hand",
            "fn(q [head, pos, d_head], k [kv_head, pos, d_head]) -> pattern [head, query_pos, key_pos]; q and k "
            "are rotated (RoPE applied)",
            "trace.attention(layer)",
            _attention,
        ),
        Exercise("logit_lens", "fn(model, resid [pos, d_model]) -> logits [pos, vocab]", "lw.logit_lens", _lens),
        Exercise(
            "token_ablation",
            "fn(model, text, target) -> [pos]: log p(target) minus log p(target) with token i replaced by "
            "model.pad_token_id",
            "attribute(method='feature_ablation')",
            _ablation,
        ),
        Exercise(
            "welch_bonferroni",
            "fn(scores [run], random_scores [run], n_tests) -> the two-sided Welch t-test's p-value times n_tests, "
            "capped at 1",
            "TCAVResult.p_adjusted",
            _welch,
        ),
        Exercise(
            "resid_patch",
            "fn(model, clean, corrupt, layer, pos) -> last-position logits [vocab] of the corrupt run with "
            "blocks.{layer}.hook_resid_pre at pos taken from the clean run",
            "lw.patch(...).values[layer, pos]",
            _resid_patch,
        ),
        Exercise("topk_encoder", "fn(sae, x [pos, d_model]) -> codes [pos, n_latents]", "sae.encode", _topk_encoder),
        Exercise(
            "direct_logit_attribution",
            "fn(model, components [component, d_model], final [d_model], direction [d_model]) -> [component]",
            "lw.direct_logit_attribution",
            _dla,
        ),
        Exercise(
            "induction_score",
            "fn(pattern [head, pos, pos], seq_len, first) -> [head]: mean attention from each token of the second "
            "copy to the token after its first occurrence",
            "lw.induction(...).scores",
            _induction_score,
        ),
        Exercise(
            "deletion_curve",
            "fn(model, token_ids [pos], order [pos], target_id) -> [pos + 1]: p(target) with the first k tokens "
            "of order replaced by model.pad_token_id, k = 0, 1, ..., pos",
            "lw.evaluate(...).prompts[i].curves['deletion']",
            _deletion,
        ),
    )
}


def check(exercise: str, fn: Callable[..., Any], models: Sequence[str | LanguageModel] = MODELS) -> Verdict:
    """Check a student's ``fn`` for ``exercise`` against the package's result on each of ``models`` in turn.

    The verdict says what is wrong, never the expected values. ``lw.exercises()`` lists the exercises.

    Examples
    --------
    >>> import torch, llmasos_widgets as lw
    >>> def top_k(logits, k):
    ...     top = torch.topk(logits, k)
    ...     return top.indices, top.values  # logits, not probabilities
    >>> lw.check("top_k", top_k, models=["tiny-llama"])
    FAIL top_k: on tiny-llama: your probs are logits: turn logits into probabilities with a softmax over the vocabulary

    """
    if exercise not in EXERCISES:
        raise KeyError(f"no exercise {exercise!r}; the exercises are {', '.join(EXERCISES)}")
    if not callable(fn):
        raise TypeError(f"pass your function itself, not {type(fn).__name__}")
    ex = EXERCISES[exercise]
    names = []
    for m in models:
        model = load_model(m) if isinstance(m, str) else m
        names.append(model.name)
        try:
            ex.run(model, fn)
        except Wrong as wrong:
            return Verdict(exercise, False, f"on {model.name}: {wrong}")
        except _StudentError as error:  # the student's function failed: say where, as the student would see it
            return Verdict(exercise, False, f"on {model.name}, your function raised {error}")
    return Verdict(exercise, True, f"equals {ex.reference} on {' and '.join(names)}")


def exercises() -> dict[str, str]:
    """Each exercise's name and what the function to write takes and returns.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> lw.exercises()["top_k"]
    'fn(logits [vocab], k) -> (token_ids [k], probs [k]), most likely first'

    """
    return {name: e.task for name, e in EXERCISES.items()}
