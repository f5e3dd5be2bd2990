"""Concepts the model may rely on: concept activation vectors (CAVs) and TCAV with significance tests.

A :class:`Concept` is a set of example texts. :func:`train_cav` finds the direction in the residual
stream of one layer that separates the concept's pooled activations from counterexamples (random
texts from :func:`~llmasos_widgets.core.corpus.sample_texts`, the user's own, or another concept).
:func:`tcav` asks how often nudging an input along that direction raises the log-probability of a
target token (Kim et al. 2018, https://arxiv.org/abs/1711.11279), repeats it against random
counterexample sets and random-vs-random CAVs, and tests the difference with a two-sided t-test.

Definitions used throughout (and by the captum comparison in the tests and the bench):

- *layer l* is the residual stream after block l (``blocks.{l}.hook_resid_post``), [pos, d_model].
- *pooling* ``"mean"`` averages it over the text's tokens (special tokens left out when there are
  others); ``"last"`` takes the last token.
- *directional derivative* of the target f along a unit CAV v at layer l: ``d/dε f(h + ε v w)`` at
  ε = 0, where w is the pooling's set of positions (all tokens for ``"mean"``, the last for
  ``"last"``). It equals ``(Σ_{t ∈ w} ∂f/∂h_t) · v``, the gradient with respect to the pooled
  activation when that activation is fed back at the pooled positions (what captum's TCAV computes
  on :class:`CaptumWrapper`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from weakref import WeakKeyDictionary

import numpy as np
import torch
from torch import Tensor

from ..core import checks
from ..core.hooks import block_output, hooked, post, replace_output, run
from ..core.progress import tqdm

if TYPE_CHECKING:
    from ..core.models import LanguageModel

Pooling = Literal["mean", "last"]
Method = Literal["logistic", "mean"]

MIN_EXAMPLES = 10  # fewer cannot give both a training set and a held-out set worth a number
POOLINGS = ("mean", "last")
METHODS = ("logistic", "mean")


# -- concepts --------------------------------------------------------------------------------------
class Concept:
    """A named set of example texts that share an idea (and, optionally, its own counterexamples).

    Parameters
    ----------
    name : str
        Shown in tables and views; unique within one :func:`tcav` run.
    examples : sequence of str
        At least ``MIN_EXAMPLES`` (10) distinct, non-empty texts.
    counterexamples : sequence of str, optional
        Texts without the idea. When not given, random counterexamples are drawn from the shipped
        :func:`~llmasos_widgets.core.corpus.sample_texts`.

    Examples
    --------
    >>> c = Concept("numbers", [f"There are {n} apples." for n in range(12)])
    >>> c
    Concept('numbers', 12 examples)

    """

    def __init__(self, name: str, examples: Sequence[str], counterexamples: Sequence[str] | None = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a concept needs a non-empty name, got {name!r}")
        self.name = name
        self.examples = _check_texts(examples, f"concept {name!r}")
        if len(set(self.examples)) < MIN_EXAMPLES:
            raise ValueError(
                f"concept {name!r} has {len(set(self.examples))} distinct examples; at least {MIN_EXAMPLES} are "
                "needed to train a CAV and measure its accuracy on held-out examples"
            )
        self.counterexamples = (
            None if counterexamples is None else _check_texts(counterexamples, f"counterexamples of {name!r}")
        )
        if self.counterexamples is not None and len(self.counterexamples) < MIN_EXAMPLES:
            raise ValueError(
                f"concept {name!r} has {len(self.counterexamples)} counterexamples; at least {MIN_EXAMPLES} are needed"
            )

    def __repr__(self) -> str:
        return f"Concept({self.name!r}, {len(self.examples)} examples)"


def _check_texts(texts: Any, what: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise ValueError(f"the examples of {what} must be a list of texts, not {type(texts).__name__}")
    out = list(texts)
    bad = [t for t in out if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"the examples of {what} must be non-empty strings; got {bad[0]!r}")
    return out


def _random_pool(exclude: Iterable[str]) -> list[str]:
    from ..core.corpus import sample_texts

    excluded = set(exclude)
    return [t for t in sample_texts() if t not in excluded]


# -- activations -----------------------------------------------------------------------------------
# Pooled activations per model, keyed by (pooling, layer, text): computed once, reused by every CAV,
# every random set and every later call. Keyed by the text itself, so changed examples never hit a
# stale entry (captum's cache is keyed by concept names).
_CACHE: WeakKeyDictionary[Any, dict[tuple[str, int, str], Tensor]] = WeakKeyDictionary()


def check_layers(model: LanguageModel, layers: Any) -> list[int]:
    single = isinstance(layers, int) and not isinstance(layers, bool)
    items = [layers] if single else list(layers) if isinstance(layers, Iterable) else [layers]
    out = [checks.layer(layer, model.n_layers, model.name) for layer in items]
    if not out:
        raise ValueError("give at least one layer")
    if len(set(out)) != len(out):
        raise ValueError(f"layers are repeated: {items}")
    return out


def _check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}: use 'mean' (over the tokens) or 'last' (the last token)")
    return pooling


def encode_for_pooling(model: LanguageModel, text: str) -> tuple[list[int], list[int]]:
    """Token ids of a text and the positions its pooling may use (non-special tokens, if any)."""
    enc = model.tokenizer(text, add_special_tokens=True, return_special_tokens_mask=True)
    ids = list(enc["input_ids"])[: model.context_length]
    special = list(enc.get("special_tokens_mask", [0] * len(ids)))[: len(ids)]
    keep = [i for i, s in enumerate(special) if not s] or list(range(len(ids)))
    return ids, keep


def _pool_weights(keep: list[int], length: int, pooling: str) -> Tensor:  # [pos]
    w = torch.zeros(length)
    if pooling == "mean":
        w[keep] = 1.0 / len(keep)
    else:
        w[keep[-1]] = 1.0
    return w


def pad_pooled(
    model: LanguageModel, encoded: list[tuple[list[int], list[int]]], pooling: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and pooling weights [batch, pos] of encoded texts."""
    width = max(len(tok) for tok, _ in encoded)
    ids = torch.full((len(encoded), width), model.pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(encoded), width, dtype=torch.long)
    weights = torch.zeros(len(encoded), width)
    for row, (tok, keep) in enumerate(encoded):
        ids[row, : len(tok)] = torch.tensor(tok)
        mask[row, : len(tok)] = 1
        weights[row, : len(tok)] = _pool_weights(keep, len(tok), pooling)
    return ids, mask, weights


def _keeper(store: dict[int, Tensor], layer: int, weights: Tensor):  # type: ignore[no-untyped-def]
    """A forward hook that stores a block's output pooled with ``weights`` [batch, pos]."""

    def hook(module, args, output):  # type: ignore[no-untyped-def]
        h = block_output(output)
        store[layer] = torch.einsum("bp,bpd->bd", weights.to(h), h).float().cpu()

    return hook


def _nudger(delta: Tensor, where: Tensor):  # type: ignore[no-untyped-def]
    """A forward hook that adds ``delta`` [batch, d_model] at the pooled positions (``where`` [batch, pos])."""

    def hook(module, args, output):  # type: ignore[no-untyped-def]
        h = block_output(output)
        return replace_output(output, h + where[:, :, None].to(h) * delta[:, None, :].to(h))

    return hook


def activations(
    model: LanguageModel,
    texts: Sequence[str],
    layers: int | Sequence[int],
    *,
    pooling: Pooling = "mean",
    batch_size: int = 16,
    progress: bool = False,
) -> Tensor:  # [text, layer, d_model]
    """Pooled residual-stream activations after each of ``layers``, one row per text (cached).

    Texts already seen with this model, layer and pooling are not run again; the rest run in
    batches sorted by length, padded on the right, so one forward pass serves every layer.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> acts = activations(load_model("tiny-llama"), ["One text.", "Another, longer text."], [0, 1])
    >>> tuple(acts.shape)
    (2, 2, 64)

    """
    layers = check_layers(model, layers)
    pooling = _check_pooling(pooling)  # type: ignore[assignment]
    texts = _check_texts(texts, "the activation request")
    cache = _CACHE.setdefault(model, {})
    missing = sorted({t for t in texts for layer in layers if (pooling, layer, t) not in cache})
    if missing:
        encoded = {t: encode_for_pooling(model, t) for t in missing}
        order = sorted(missing, key=lambda t: len(encoded[t][0]))
        blocks = model.adapter.blocks()
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc="Concept activations", unit="batch", disable=not progress):
            ids, mask, weights = pad_pooled(model, [encoded[t] for t in batch], pooling)
            pooled: dict[int, Tensor] = {}
            hooks = [post(blocks[layer], _keeper(pooled, layer, weights)) for layer in layers]
            with torch.no_grad():  # nothing after the deepest layer asked for is needed: the pass stops there
                run(
                    model,
                    hooks,
                    stop_after=blocks[max(layers)],
                    input_ids=ids.to(model.device),
                    attention_mask=mask.to(model.device),
                )
            for layer in layers:
                for row, t in enumerate(batch):
                    cache[(pooling, layer, t)] = pooled[layer][row]
    return torch.stack([torch.stack([cache[(pooling, layer, t)] for layer in layers]) for t in texts])


# -- CAVs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CAV:
    """A concept activation vector: the unit direction, at one layer, from counterexamples to a concept.

    Attributes
    ----------
    concept, against : str
        The concept and what it was separated from (``"random"`` or another concept's name).
    layer : int
        Residual stream after this block.
    direction : Tensor
        [d_model], unit norm, pointing towards the concept.
    accuracy : float
        Accuracy of the classifier on held-out examples (0.5 is chance for balanced sets).
    stability : float
        Mean cosine between this direction and those trained on other random train/test splits
        (1.0: the same direction whatever the split).

    """

    concept: str
    against: str
    layer: int
    pooling: str
    method: str
    direction: Tensor  # [d_model]
    accuracy: float
    stability: float
    n_train: int
    n_test: int
    model: Any = field(default=None, repr=False, compare=False)  # what a result file's fingerprint is of

    @property
    def reliable(self) -> bool:
        """Whether the held-out accuracy is clearly above chance (at least ``MIN_ACCURACY``)."""
        return self.accuracy >= MIN_ACCURACY

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this CAV to one file; ``lw.load(path, model)`` reads it back (``analyses/results.py``).

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> model = lw.load_model("tiny-llama")
        >>> cav = train_cav(model, Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"]), 1)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     bool(lw.load(cav.save(d + "/cav.st"), model).direction.equal(cav.direction))
        True

        """
        from .results import save

        return save(self, path)

    def __repr__(self) -> str:
        return (
            f"CAV({self.concept!r} vs {self.against!r}, layer {self.layer}, {self.method}, "
            f"held-out accuracy {self.accuracy:.2f}, stability {self.stability:.2f})"
        )


MIN_ACCURACY = 0.65  # held-out accuracy below this is too close to chance to trust the direction


def _split(n_pos: int, n_neg: int, test_size: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split: indices of the training and held-out rows of [positives; negatives]."""
    train: list[int] = []
    test: list[int] = []
    for start, n in ((0, n_pos), (n_pos, n_neg)):
        idx = start + rng.permutation(n)
        k = max(1, round(n * test_size))
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.array(train)), np.sort(np.array(test))


def _fit(x: np.ndarray, y: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, float]:
    """A direction (unit, towards y == 1) and the decision threshold on ``x @ direction``."""
    if method == "mean":
        d = x[y == 1].mean(0) - x[y == 0].mean(0)
        d = d / (np.linalg.norm(d) or 1.0)
        return d, float(((x[y == 1] @ d).mean() + (x[y == 0] @ d).mean()) / 2)
    from sklearn.linear_model import LogisticRegression

    # One scalar scale keeps the residual stream's large norms from stalling the solver without
    # changing which direction is the boundary's normal (a per-feature scaling would).
    scale = float(x.std()) or 1.0
    clf = LogisticRegression(C=1.0, solver="newton-cg", max_iter=1000, random_state=seed).fit(x / scale, y)
    w = clf.coef_[0]
    norm = float(np.linalg.norm(w)) or 1.0
    return w / norm, float(-clf.intercept_[0] * scale / norm)


def train_direction(
    pos: np.ndarray, neg: np.ndarray, method: str, seed: int, test_size: float, n_splits: int
) -> tuple[np.ndarray, float, float, int, int]:
    """Train on one seeded split; accuracy held out; stability over ``n_splits`` further splits."""
    if method not in METHODS:
        raise ValueError(f"unknown CAV method {method!r}: use 'logistic' (a linear classifier) or 'mean'")
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.r_[np.ones(len(pos), int), np.zeros(len(neg), int)]
    rng = np.random.default_rng(seed)
    train, test = _split(len(pos), len(neg), test_size, rng)
    direction, threshold = _fit(x[train], y[train], method, seed)
    accuracy = float(((x[test] @ direction > threshold).astype(int) == y[test]).mean())
    cosines = []
    for _ in range(n_splits):
        other, _test = _split(len(pos), len(neg), test_size, rng)
        cosines.append(float(direction @ _fit(x[other], y[other], method, seed)[0]))
    stability = float(np.mean(cosines)) if cosines else float("nan")
    return direction, accuracy, stability, len(train), len(test)


def train_cav(
    model: LanguageModel,
    concept: Concept,
    layer: int,
    *,
    against: Concept | Sequence[str] | None = None,
    method: Method = "logistic",
    pooling: Pooling = "mean",
    test_size: float = 0.3,
    n_splits: int = 5,
    seed: int = 0,
) -> CAV:
    """Train the CAV of ``concept`` at ``layer``: the normal of a linear boundary, with held-out accuracy.

    Parameters
    ----------
    model : LanguageModel
        The model whose residual stream is read.
    concept : Concept
        The examples (and maybe counterexamples).
    layer : int
        The residual stream after this block (negative counts from the end).
    against : Concept or list of str, optional
        What to separate the concept from: another concept (a *relative* CAV), a list of texts, or
        (default) the concept's own counterexamples, else as many random texts from ``sample_texts()``.
    method : {"logistic", "mean"}
        A logistic-regression boundary's normal, or the cheaper difference of the two means.
    pooling : {"mean", "last"}
        How a text's token activations become one vector.
    test_size : float
        Share of each class held out to measure accuracy.
    n_splits : int
        Extra random splits trained to measure ``stability``.
    seed : int
        Seeds the random counterexamples, the splits and the classifier: reruns give the same CAV.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> model = load_model("tiny-llama")
    >>> shouting = Concept("shouting", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
    >>> calm = Concept("calm", [f"please, {w} is fine." for w in "abcdefghijkl"])
    >>> cav = train_cav(model, shouting, layer=1, against=calm)
    >>> cav.accuracy, tuple(cav.direction.shape)
    (1.0, (64,))

    """
    if not isinstance(concept, Concept):
        raise ValueError(f"concept must be a Concept, not {type(concept).__name__}")
    (layer,) = check_layers(model, layer)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1 (exclusive), got {test_size!r}")
    if isinstance(against, Concept):
        negatives, against_name = against.examples, against.name
        if against.name == concept.name:
            raise ValueError(f"a relative CAV needs two different concepts, got {concept.name!r} twice")
    elif against is not None:
        negatives, against_name = _check_texts(against, f"counterexamples of {concept.name!r}"), "counterexamples"
    elif concept.counterexamples is not None:
        negatives, against_name = concept.counterexamples, "counterexamples"
    else:
        pool = _random_pool(concept.examples)
        pick = np.random.default_rng(seed).choice(len(pool), size=min(len(concept.examples), len(pool)), replace=False)
        negatives, against_name = [pool[i] for i in pick], "random"
    if len(negatives) < MIN_EXAMPLES:
        raise ValueError(f"{len(negatives)} counterexamples are too few: at least {MIN_EXAMPLES} are needed")
    acts = activations(model, [*concept.examples, *negatives], [layer], pooling=pooling)[:, 0].numpy()
    direction, accuracy, stability, n_train, n_test = train_direction(
        acts[: len(concept.examples)], acts[len(concept.examples) :], method, seed, test_size, n_splits
    )
    cav = CAV(
        concept.name,
        against_name,
        layer,
        pooling,
        method,
        torch.from_numpy(direction).float(),
        accuracy,
        stability,
        n_train,
        n_test,
        model,
    )
    if not cav.reliable:
        warnings.warn(
            f"the CAV of {concept.name!r} at layer {layer} does not separate it from {against_name!r}: held-out "
            f"accuracy {accuracy:.2f} is near chance (below {MIN_ACCURACY}); its TCAV scores are unreliable",
            stacklevel=2,
        )
    return cav


# -- directional derivatives -----------------------------------------------------------------------
def gradients(
    model: LanguageModel,
    inputs: Sequence[str],
    layers: Sequence[int],
    target: str | int,
    *,
    contrast: str | int | None = None,
    pooling: Pooling = "mean",
    batch_size: int = 16,
    progress: bool = False,
) -> Tensor:  # [input, layer, d_model]
    """Gradient of the target's log-probability with respect to each layer's pooled activation.

    The target is ``log p(target | input)`` at the input's last position (minus ``log p(contrast)``
    when a contrast token is given). One forward and one backward pass per batch of inputs serve
    every layer: each hooked block adds a zero vector ``δ_l`` at the pooled positions, and ``∂f/∂δ_l`` is the
    gradient whose dot product with a CAV is the directional derivative (module docstring).

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> g = gradients(load_model("tiny-llama"), ["The capital of France is"], [0, 1], target=5)
    >>> tuple(g.shape)
    (1, 2, 64)

    """
    layers = check_layers(model, layers)
    pooling = _check_pooling(pooling)  # type: ignore[assignment]
    tid = checks.one_token(model, target, "target")
    cid = None if contrast is None else checks.one_token(model, contrast, "contrast")
    inputs = _check_texts(inputs, "the inputs")
    if not model.is_causal:
        raise ValueError(f"{model.name} is an encoder: TCAV here needs a causal LM to score a next token")
    blocks = model.adapter.blocks()
    out = torch.zeros(len(inputs), len(layers), model.d_model)
    encoded = [encode_for_pooling(model, t) for t in inputs]
    order = sorted(range(len(inputs)), key=lambda i: len(encoded[i][0]))  # similar lengths pad less
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    bar = tqdm(total=len(inputs), desc="TCAV gradients", unit="input", disable=not progress)
    for batch in batches:
        ids, mask, weights = pad_pooled(model, [encoded[i] for i in batch], pooling)
        # The nudge goes in at full strength at every pooled position: the derivative of f when the
        # pooled activation (and so each pooled token) moves by ε·v. Rows are independent, so the
        # gradient of the batch's summed objective with respect to row b's nudge is row b's own.
        where = (weights > 0).float().to(model.device)
        deltas = {
            layer: torch.zeros(len(batch), model.d_model, device=model.device, requires_grad=True) for layer in layers
        }
        with hooked(model, [post(blocks[layer], _nudger(deltas[layer], where)) for layer in layers]):
            with torch.enable_grad():
                logits = model.model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
                last = mask.sum(1) - 1
                logp = torch.log_softmax(logits[torch.arange(len(batch)), last.to(logits.device)].float(), -1)
                f = logp[:, tid] - (logp[:, cid] if cid is not None else 0.0)
                grads = torch.autograd.grad(f.sum(), [deltas[layer] for layer in layers])
        out[batch] = torch.stack([g.float().cpu() for g in grads], dim=1)
        bar.update(len(batch))
    bar.close()
    return out


# -- TCAV ------------------------------------------------------------------------------------------
@dataclass
class TCAVResult:
    """TCAV scores per concept and layer, against random sets, with the significance test.

    Arrays are indexed ``[concept, layer, run]`` where a run is one random counterexample set.

    Attributes
    ----------
    scores : Tensor
        [concept, layer, run]: the share of inputs whose directional derivative along the
        concept's CAV (trained against random set ``run``) is positive (captum's ``sign_count``).
    random_scores : Tensor
        [layer, run]: the same for random-vs-random CAVs (the null distribution).
    accuracy : Tensor
        [concept, layer, run]: held-out accuracy of each CAV. ``random_accuracy`` [layer, run].
    consistency : Tensor
        [concept, layer]: mean pairwise cosine between the concept's CAVs of different runs.
    p_values, p_adjusted : Tensor
        [concept, layer]: two-sided Welch t-test of ``scores`` against ``random_scores``, and the
        same multiplied by the number of tests (Bonferroni over layers and concepts, capped at 1).
    significant : Tensor
        [concept, layer] bool: ``p_adjusted < alpha`` and the CAVs are reliable.
    reliable : Tensor
        [concept, layer] bool: the mean held-out CAV accuracy is at least ``MIN_ACCURACY``.
    directions : Tensor
        [concept, layer, run, d_model]: every CAV (unit vectors).
    random_sets : list of list of str
        The random counterexample sets (set 0 is the random concept, run r used set r + 1).
    random_directions : Tensor
        [layer, run, d_model]: the random-vs-random CAVs.

    """

    model_name: str
    concepts: list[str]
    layers: list[int]
    target: str
    contrast: str | None
    pooling: str
    method: str
    inputs: list[str]
    alpha: float
    seed: int
    scores: Tensor
    random_scores: Tensor
    accuracy: Tensor
    random_accuracy: Tensor
    consistency: Tensor
    p_values: Tensor
    p_adjusted: Tensor
    significant: Tensor
    reliable: Tensor
    directions: Tensor
    random_sets: list[list[str]] = field(default_factory=list, repr=False)
    random_directions: Tensor | None = field(default=None, repr=False)
    test_size: float = 0.3
    model: Any = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"TCAVResult({self.model_name!r}, concepts {self.concepts}, layers {self.layers}, target "
            f"{self.target!r}, {len(self.inputs)} inputs, {self.scores.shape[-1]} random sets)"
        )

    def concept_index(self, concept: str | int) -> int:
        """Index of a concept by name or index, or a ValueError listing the concepts."""
        if isinstance(concept, int) and not isinstance(concept, bool):
            return checks.index(concept, len(self.concepts), "concept", f"this result's concepts {self.concepts} are")
        if concept in self.concepts:
            return self.concepts.index(concept)  # type: ignore[arg-type]
        raise ValueError(f"unknown concept {concept!r}: this result has {self.concepts}")

    def layer_index(self, layer: int) -> int:
        """Index of a layer of this result, or a ValueError listing the layers."""
        if layer not in self.layers:
            raise ValueError(f"layer {layer!r} is not in this result: its layers are {self.layers}")
        return self.layers.index(layer)

    def direction(self, concept: str | int, layer: int) -> Tensor:  # [d_model]
        """The concept's CAV at a layer: the normalized mean of its runs' directions."""
        d = self.directions[self.concept_index(concept), self.layer_index(layer)].mean(0)
        return d / d.norm().clamp_min(1e-12)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per concept and layer: score mean and std, random mean, p-values, flags, accuracy."""
        rows = []
        for c, name in enumerate(self.concepts):
            for j, layer in enumerate(self.layers):
                rows.append(
                    {
                        "concept": name,
                        "layer": layer,
                        "score": float(self.scores[c, j].mean()),
                        "score_std": float(self.scores[c, j].std()) if self.scores.shape[-1] > 1 else 0.0,
                        "random_score": float(self.random_scores[j].mean()),
                        "random_std": float(self.random_scores[j].std()) if self.scores.shape[-1] > 1 else 0.0,
                        "p_value": float(self.p_values[c, j]),
                        "p_adjusted": float(self.p_adjusted[c, j]),
                        "significant": bool(self.significant[c, j]),
                        "cav_accuracy": float(self.accuracy[c, j].mean()),
                        "cav_consistency": float(self.consistency[c, j]),
                        "reliable": bool(self.reliable[c, j]),
                    }
                )
        return rows

    def table(self) -> Any:
        """The rows as a pandas DataFrame when pandas is installed, else as a list of dicts.

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> model = load_model("tiny-llama")
        >>> shout = Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
        >>> res = tcav(model, ["The capital of France is"], " Paris", [shout], layers=[1], n_random=3, progress=False)
        >>> rows = res.rows()
        >>> rows[0]["concept"], rows[0]["layer"], 0.0 <= rows[0]["score"] <= 1.0
        ('shout', 1, True)

        """
        try:
            import pandas as pd
        except ImportError:
            return self.rows()
        return pd.DataFrame(self.rows())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this TCAV result to one file; ``lw.load(path, model)`` reads it back (``analyses/results.py``).

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> model = lw.load_model("tiny-llama")
        >>> shout = Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
        >>> res = tcav(model, ["The capital of France is"], " Paris", [shout], layers=[1], n_random=2, progress=False)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     lw.load(res.save(d + "/tcav.st"), model).rows() == res.rows()
        True

        """
        from .results import save

        return save(self, path)


def _t_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Welch t-test p-value of two samples of scores.

    When neither sample varies, the t statistic is undefined: equal values give 1.0, and different
    ones the exact two-sided permutation p-value of a perfect separation, ``2 / C(n + m, n)`` (so
    three runs against three can never reach 0.05, and ten against ten can).
    """
    from scipy import stats

    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else min(1.0, 2.0 / math.comb(len(a) + len(b), len(a)))
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return 1.0 if math.isnan(p) else p


def draw_random_sets(
    concepts: Sequence[Concept],
    n_random: int,
    *,
    set_size: int | None = None,
    seed: int = 0,
    random_texts: Sequence[str] | None = None,
) -> list[list[str]]:
    """The ``n_random + 1`` random counterexample sets :func:`tcav` uses (set 0 plays the random concept).

    Sets are disjoint when the pool allows it, each as large as the largest concept, and never hold a
    concept's own example.

    Examples
    --------
    >>> c = Concept("numbers", [f"There are {n} apples." for n in range(12)])
    >>> sets = draw_random_sets([c], 3)
    >>> len(sets), [len(s) for s in sets], len({t for s in sets for t in s})
    (4, [12, 12, 12, 12], 48)

    """
    all_examples = {t for c in concepts for t in c.examples}
    pool = (
        [t for t in _check_texts(random_texts, "random_texts") if t not in all_examples]
        if random_texts is not None
        else _random_pool(all_examples)
    )
    size = set_size or max(len(c.examples) for c in concepts)
    if size < MIN_EXAMPLES or len(pool) < size:
        raise ValueError(
            f"random sets of {size} texts need set_size >= {MIN_EXAMPLES} and a pool of at least that many texts "
            f"(the pool has {len(pool)})"
        )
    rng = np.random.default_rng(seed)
    if len(pool) >= size * (n_random + 1):
        order = rng.permutation(len(pool))
        return [[pool[i] for i in order[k * size : (k + 1) * size]] for k in range(n_random + 1)]
    return [[pool[i] for i in rng.choice(len(pool), size, replace=False)] for _ in range(n_random + 1)]


def tcav(
    model: LanguageModel,
    inputs: Sequence[str],
    target: str | int,
    concepts: Sequence[Concept],
    layers: Sequence[int],
    *,
    contrast: str | int | None = None,
    n_random: int = 10,
    set_size: int | None = None,
    method: Method = "logistic",
    pooling: Pooling = "mean",
    test_size: float = 0.3,
    alpha: float = 0.05,
    seed: int = 0,
    random_texts: Sequence[str] | None = None,
    progress: bool = True,
) -> TCAVResult:
    """TCAV scores of ``concepts`` for predicting ``target`` after each input, with significance tests.

    For each concept and layer, a CAV is trained against each of ``n_random`` random counterexample
    sets and scored on the inputs; random-vs-random CAVs (a random set against each of the others)
    give the null distribution; a two-sided t-test compares the two, Bonferroni-corrected over
    layers × concepts. Activations are computed once over the unique texts and one backward pass per
    input serves every layer.

    Parameters
    ----------
    model : LanguageModel
        A causal LM.
    inputs : list of str
        Prompts; the target is the next token after each.
    target : str or int
        One token (e.g. ``" Paris"``) or its id.
    concepts : list of Concept
        Distinct names.
    layers : list of int
        Residual streams after these blocks.
    contrast : str or int, optional
        Score ``log p(target) - log p(contrast)`` instead.
    n_random : int
        Random counterexample sets (at least 10 for a meaningful test; 2 allowed for quick looks).
    set_size : int, optional
        Texts per random set; the largest concept's size when not given.
    method : {"logistic", "mean"}
        See :func:`train_cav`.
    pooling : {"mean", "last"}
        See :func:`train_cav`; also where the inputs are nudged for the directional derivative.
    test_size : float
        Share held out to measure each CAV's accuracy.
    alpha : float
        Significance level after the Bonferroni correction.
    seed : int
        Seeds the random sets, splits and classifiers.
    random_texts : list of str, optional
        The pool random sets are drawn from (default: ``sample_texts()``). A concept's own
        ``counterexamples`` are not used here: the test needs many random sets.
    progress : bool
        Show tqdm progress bars.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> model = load_model("tiny-llama")
    >>> shout = Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
    >>> res = tcav(model, ["The capital of France is", "Hello"], 5, [shout], [0, 1], n_random=3, progress=False)
    >>> tuple(res.scores.shape), tuple(res.p_values.shape)
    ((1, 2, 3), (1, 2))

    """
    concepts = list(concepts) if isinstance(concepts, Iterable) else [concepts]
    if not concepts or not all(isinstance(c, Concept) for c in concepts):
        raise ValueError("concepts must be a non-empty list of Concept objects")
    names = [c.name for c in concepts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"concept names must be unique; repeated: {dupes}")
    layers = check_layers(model, layers)
    checks.int_in("n_random (10 or more for a meaningful test)", n_random, 2, 10_000)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1 (exclusive), got {test_size!r}")
    tid = checks.one_token(model, target, "target")
    if contrast is not None and checks.one_token(model, contrast, "contrast") == tid:
        raise ValueError("contrast must be a different token from target")
    inputs = _check_texts(inputs, "the inputs")
    if not inputs:
        raise ValueError("give at least one input text")

    random_sets = draw_random_sets(concepts, n_random, set_size=set_size, seed=seed, random_texts=random_texts)
    examples = [t for c in concepts for t in c.examples]
    unique = list(dict.fromkeys([*examples, *(t for s in random_sets for t in s)]))
    acts = activations(model, unique, layers, pooling=pooling, progress=progress).numpy()  # [text, layer, d]
    row = {t: i for i, t in enumerate(unique)}
    grads = gradients(model, inputs, layers, tid, contrast=contrast, pooling=pooling, progress=progress)

    n_c, n_l = len(concepts), len(layers)
    scores = torch.zeros(n_c, n_l, n_random)
    accuracy = torch.zeros(n_c, n_l, n_random)
    directions = torch.zeros(n_c, n_l, n_random, model.d_model)
    random_scores = torch.zeros(n_l, n_random)
    random_accuracy = torch.zeros(n_l, n_random)
    random_directions = torch.zeros(n_l, n_random, model.d_model)
    # Random-vs-random CAVs: set 0 plays a concept made of random texts.
    positives = [*[c.examples for c in concepts], random_sets[0]]
    jobs = [(k, j, r) for k in range(n_c + 1) for j in range(n_l) for r in range(n_random)]
    for k, j, r in tqdm(jobs, desc="Training CAVs", unit="CAV", disable=not progress):
        pos = acts[[row[t] for t in positives[k]], j]
        neg = acts[[row[t] for t in random_sets[r + 1]], j]
        direction, acc, _, _, _ = train_direction(pos, neg, method, seed + r, test_size, n_splits=0)
        d = torch.from_numpy(direction).float()
        score = float((grads[:, j] @ d > 0).float().mean())
        if k < n_c:
            scores[k, j, r], accuracy[k, j, r], directions[k, j, r] = score, acc, d
        else:
            random_scores[j, r], random_accuracy[j, r], random_directions[j, r] = score, acc, d

    n_tests = n_c * n_l
    p_values = torch.tensor(
        [[_t_test(scores[c, j].numpy(), random_scores[j].numpy()) for j in range(n_l)] for c in range(n_c)]
    ).reshape(n_c, n_l)
    p_adjusted = (p_values * n_tests).clamp(max=1.0)
    reliable = accuracy.mean(-1) >= MIN_ACCURACY
    consistency = torch.zeros(n_c, n_l)
    for c in range(n_c):
        for j in range(n_l):
            d = directions[c, j]
            sims = d @ d.T
            consistency[c, j] = (sims.sum() - sims.diagonal().sum()) / (n_random * (n_random - 1))
    for c, j in torch.nonzero(~reliable).tolist():
        warnings.warn(
            f"the CAVs of {names[c]!r} at layer {layers[j]} barely separate it from random texts (mean held-out "
            f"accuracy {accuracy[c, j].mean():.2f} < {MIN_ACCURACY}): its TCAV scores there are marked unreliable",
            stacklevel=2,
        )
    return TCAVResult(
        model_name=model.name,
        concepts=names,
        layers=layers,
        target=model.decode_token(tid),
        contrast=None if contrast is None else model.decode_token(checks.one_token(model, contrast, "contrast")),
        pooling=pooling,
        method=method,
        inputs=inputs,
        alpha=alpha,
        seed=seed,
        scores=scores,
        random_scores=random_scores,
        accuracy=accuracy,
        random_accuracy=random_accuracy,
        consistency=consistency,
        p_values=p_values,
        p_adjusted=p_adjusted,
        significant=(p_adjusted < alpha) & reliable,
        reliable=reliable,
        directions=directions,
        random_sets=random_sets,
        random_directions=random_directions,
        test_size=test_size,
        model=model,
    )


def projection(
    result_or_direction: TCAVResult | CAV | Tensor, trace: Any, concept: str | int = 0, layer: int | None = None
) -> Tensor:
    """Cosine between each token's residual stream (after ``layer``) in a trace and a CAV: [pos].

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> model = load_model("tiny-llama")
    >>> shout = Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
    >>> cav = train_cav(model, shout, layer=1)
    >>> trace = model.trace("STOP THAT now")
    >>> cos = projection(cav, trace)
    >>> len(cos) == len(trace), bool(cos.abs().max() <= 1)
    (True, True)

    """
    if isinstance(result_or_direction, TCAVResult):
        if layer is None:
            raise ValueError(f"give the layer to project onto: this result has layers {result_or_direction.layers}")
        direction = result_or_direction.direction(concept, layer)
    elif isinstance(result_or_direction, CAV):
        layer = result_or_direction.layer if layer is None else layer
        if layer != result_or_direction.layer:
            raise ValueError(f"this CAV is of layer {result_or_direction.layer}, not {layer}")
        direction = result_or_direction.direction
    else:
        if layer is None:
            raise ValueError("give the layer the direction belongs to")
        direction = torch.as_tensor(result_or_direction).float()
    layer = trace.check_layer(layer)
    resid = trace.resid_pre(layer + 1).float().cpu()  # after block `layer`: [pos, d_model]
    return torch.nn.functional.cosine_similarity(resid, direction[None, :], dim=-1)
