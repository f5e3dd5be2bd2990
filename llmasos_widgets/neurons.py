"""MLP neuron analyses: the neurons a token fires, what a neuron writes, a corpus index, the logit lens.

A neuron is one coordinate of ``blocks.{layer}.mlp.hook_post`` (the input of the MLP's output
projection). Everything here reads a :class:`~llmasos_widgets.trace.Trace` or the model's weights
and returns plain dataclasses; :class:`NeuronIndex` runs the model over a corpus in batches and
keeps, per neuron, a fixed-size top-k of contexts, so its memory does not grow with the corpus.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import _checks, _files
from .trace import Trace

if TYPE_CHECKING:
    from .models import LanguageModel

INDEX_FORMAT = "llmasos_widgets.NeuronIndex"
INDEX_VERSION = 1


# -- shapes and weights ------------------------------------------------------------------------
def d_mlp(model: LanguageModel) -> int:
    """Neurons per MLP layer (the width of ``mlp.hook_post``).

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> d_mlp(load_model("tiny-gpt2"))
    256

    """
    return int(neuron_output_weights(model, 0).shape[0])


def check_neuron(model: LanguageModel, neuron: int) -> int:
    """Return ``neuron`` if the model's MLPs have it, else raise a ValueError naming the range.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> check_neuron(load_model("tiny-gpt2"), 3)
    3

    """
    n = d_mlp(model)
    if not isinstance(neuron, int) or isinstance(neuron, bool) or not 0 <= neuron < n:
        raise ValueError(f"neuron {neuron!r} is out of range: {model.name} has neurons 0..{n - 1} per layer")
    return neuron


def neuron_output_weights(model: LanguageModel, layer: int) -> Tensor:  # [neuron, d_model]
    """Each neuron's output weights in ``layer``: what it adds to the residual stream per unit of activation.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> neuron_output_weights(load_model("tiny-llama"), 0).shape
    torch.Size([128, 64])

    """
    proj = model.adapter.mlp_out(_checks.layer(layer, model.n_layers, model.name))
    weight = proj.weight.detach()
    # nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out].
    return weight if type(proj).__name__ == "Conv1D" else weight.T


def unembedding(model: LanguageModel) -> tuple[Tensor, Tensor | None]:  # [vocab, d_model], [d_model]
    """The unembedding matrix and the final norm's gain (None if the model has none).

    For masked LMs the head's non-linear transform is left out: the matrix is its decoder.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> w_u, gain = unembedding(load_model("tiny-llama"))
    >>> w_u.shape, gain.shape
    (torch.Size([480, 64]), torch.Size([64]))

    """
    head = model.adapter.unembed()
    if head is None:
        raise ValueError(f"{model.name} has no language-model head, so its neurons write to no vocabulary")
    decoder = getattr(getattr(head, "predictions", head), "decoder", head)
    norm = model.adapter.final_norm()
    gain = getattr(norm, "weight", None) if norm is not None else None
    return decoder.weight.detach(), (gain.detach() if gain is not None else None)


# -- per token ---------------------------------------------------------------------------------
@dataclass
class TokenNeurons:
    """The neurons of one layer ranked for one token."""

    layer: int
    position: int
    neurons: Tensor  # [k] int64
    activations: Tensor  # [k] float32
    contributions: Tensor | None = None  # [k] activation × gradient of the target logit
    target: int | None = None  # the target token id of the contributions


def top_neurons(trace: Trace, layer: int, position: int, k: int = 20) -> TokenNeurons:
    """The ``k`` neurons of ``layer`` with the largest activations at ``position``.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace = load_model("tiny-llama").trace("The capital of France is")
    >>> top = top_neurons(trace, layer=1, position=-1, k=3)
    >>> bool(top.activations[0] == trace.mlp_post(1)[-1].max())
    True

    """
    layer, pos = trace.check_layer(layer), trace.check_position(position)
    acts = trace.mlp_post(layer)[pos].float().cpu()
    top = torch.topk(acts, _check_k(k, acts.shape[0]))
    return TokenNeurons(layer, pos, top.indices, top.values)


def neuron_contributions(
    trace: Trace, layer: int, position: int, target: int | None = None, k: int = 20
) -> TokenNeurons:
    """The ``k`` neurons of ``layer`` at ``position`` that add most to one logit there (activation × gradient).

    Parameters
    ----------
    trace : Trace
        A trace of a causal or masked LM.
    layer, position : int
        Where the neurons are.
    target : int, optional
        The token id whose logit at ``position`` is explained; the model's top prediction when None.
    k : int
        How many neurons, ranked by contribution (largest first).

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace = load_model("tiny-llama").trace("The capital of France is")
    >>> c = neuron_contributions(trace, layer=0, position=-1, k=5)
    >>> c.contributions.shape, c.target == trace.top_predictions(-1, k=1)[0].id
    (torch.Size([5]), True)

    """
    model = trace.model
    layer, pos = trace.check_layer(layer), trace.check_position(position)
    vocab = model.adapter.unembed()
    if vocab is None:
        raise ValueError(f"{model.name} has no language-model head: there is no logit to explain")
    if target is None:
        target = int(trace.logits_at(pos).argmax())
    n_vocab = int(trace.logits_at(pos).shape[0])
    if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < n_vocab:
        raise ValueError(f"target token id {target!r} is out of range: the vocabulary has ids 0..{n_vocab - 1}")
    grad = _grad_of_logit(trace, layer, pos, target)  # [d_mlp]
    acts = trace.mlp_post(layer)[pos].float().cpu()
    contrib = acts * grad
    top = torch.topk(contrib, _check_k(k, contrib.shape[0]))
    return TokenNeurons(layer, pos, top.indices, acts[top.indices], top.values, target)


def _grad_of_logit(trace: Trace, layer: int, pos: int, target: int) -> Tensor:  # [d_mlp]
    # One forward and backward pass with the MLP hidden layer as a leaf: the gradient of the target
    # logit at `pos` with respect to that position's neurons.
    model = trace.model
    adapter = model.adapter
    kept: dict[str, Tensor] = {}

    def make_leaf(module, args):  # type: ignore[no-untyped-def]
        leaf = args[0].detach().requires_grad_(True)
        kept["leaf"] = leaf
        return (leaf, *args[1:])

    handle = adapter.mlp_out(layer).register_forward_pre_hook(make_leaf)
    ids = torch.tensor([trace.token_ids[: pos + 1] if model.is_causal else trace.token_ids], device=model.device)
    try:
        with torch.enable_grad():
            hidden = adapter.base()(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            # The base model's output is already through the final norm; the head maps it to logits.
            logit = adapter.head()(hidden[0, pos : pos + 1])[0, target]
            (grad,) = torch.autograd.grad(logit, kept["leaf"])
    finally:
        handle.remove()
    return grad[0, pos].float().cpu()


def _check_k(k: int, n: int) -> int:
    return _checks.int_in("k", k, 1, n)


# -- per neuron --------------------------------------------------------------------------------
@dataclass
class VocabProjection:
    """The tokens a neuron's output weights promote and suppress most through the unembedding."""

    layer: int
    neuron: int
    promoted: Tensor  # [k] token ids, largest logit first
    promoted_logits: Tensor  # [k]
    suppressed: Tensor  # [k] token ids, most negative first
    suppressed_logits: Tensor  # [k]
    promoted_tokens: list[str]
    suppressed_tokens: list[str]


def vocab_logits(model: LanguageModel, layer: int, neuron: int) -> Tensor:  # [vocab]
    """What one unit of the neuron's activation adds to every logit: ``W_U (gain ⊙ w_out)``.

    The final norm's per-dimension gain is applied; its data-dependent scaling is not (it divides
    every logit by the same positive number, so it changes no ranking).

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> vocab_logits(load_model("tiny-llama"), 1, 7).shape
    torch.Size([480])

    """
    return direction_logits(model, neuron_output_weights(model, layer)[check_neuron(model, neuron)])


def direction_logits(model: LanguageModel, vector: Tensor) -> Tensor:  # [vocab]
    """What one unit of a residual-stream direction ``vector`` [d_model] adds to every logit: ``W_U (gain ⊙ v)``.

    As for a neuron (:func:`vocab_logits`): the final norm's gain is applied, its data-dependent
    scaling (the same positive divisor for every logit) is not.

    Examples
    --------
    >>> import torch
    >>> from llmasos_widgets import load_model
    >>> direction_logits(load_model("tiny-llama"), torch.ones(64)).shape
    torch.Size([480])

    """
    w_u, gain = unembedding(model)
    v = vector.detach().float().to(w_u.device)
    direction = v * gain.float() if gain is not None else v
    return (w_u.float() @ direction).cpu()


def vocab_projection(model: LanguageModel, layer: int, neuron: int, k: int = 10) -> VocabProjection:
    """The ``k`` tokens a neuron promotes most and the ``k`` it suppresses most.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> proj = vocab_projection(load_model("tiny-llama"), layer=1, neuron=7, k=3)
    >>> len(proj.promoted_tokens), bool(proj.promoted_logits[0] >= proj.promoted_logits[1])
    (3, True)

    """
    logits = vocab_logits(model, layer, neuron)
    k = _check_k(k, logits.shape[0])
    up, down = torch.topk(logits, k), torch.topk(-logits, k)
    return VocabProjection(
        layer,
        neuron,
        up.indices,
        up.values,
        down.indices,
        -down.values,
        [model.decode_token(i) for i in up.indices.tolist()],
        [model.decode_token(i) for i in down.indices.tolist()],
    )


def histogram(values: Tensor, bins: int = 30) -> tuple[Tensor, float, float]:
    """Counts of ``values`` in ``bins`` equal bins between their min and max: ``(counts, lo, hi)``.

    Examples
    --------
    >>> counts, lo, hi = histogram(torch.tensor([0.0, 0.1, 1.0]), bins=2)
    >>> counts.tolist(), lo, hi
    ([2, 1], 0.0, 1.0)

    """
    values = values.float().flatten().cpu()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1e-6
    return torch.histc(values, bins=bins, min=lo, max=hi).to(torch.int32), lo, hi


# -- logit lens --------------------------------------------------------------------------------
@dataclass
class LensLayer:
    """The logit lens after one layer: the top tokens at every position."""

    layer: int
    ids: Tensor  # [pos, k] int64
    probs: Tensor  # [pos, k] float32


def logit_lens(trace: Trace, layer: int, k: int = 1, positions: slice | None = None) -> LensLayer:
    """The top-``k`` tokens after block ``layer``: its residual output through the final norm and unembedding.

    ``layer == n_layers - 1`` gives the model's own predictions. Positions are done in chunks so a
    long text never holds a [pos, vocab] tensor at once.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace = load_model("tiny-llama").trace("The capital of France is")
    >>> lens = logit_lens(trace, layer=1, k=2)
    >>> lens.ids.shape, int(lens.ids[-1, 0]) == trace.top_predictions(-1, k=1)[0].id
    (torch.Size([5, 2]), True)

    """
    layer = trace.check_layer(layer)
    resid = trace.resid_pre(layer + 1)
    return LensLayer(layer, *_unembed_top(trace, resid if positions is None else resid[positions], k))


def logit_lens_block(trace: Trace, positions: slice, layers: range | None = None) -> tuple[Tensor, Tensor]:
    """The top token and its probability after each of ``layers`` (default all) at ``positions``: ``[layer, position]``.

    The same numbers as :func:`logit_lens` with ``k=1``, in one batched unembedding (twice as fast
    for a few positions as one layer at a time).

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace = load_model("tiny-llama").trace("The capital of France is")
    >>> ids, probs = logit_lens_block(trace, slice(1, 4))
    >>> ids.shape, bool((ids[1] == logit_lens(trace, 1).ids[1:4, 0]).all())
    (torch.Size([2, 3]), True)

    """
    layers = range(trace.n_layers) if layers is None else layers
    resid = torch.stack([trace.resid_pre(trace.check_layer(layer) + 1)[positions] for layer in layers])
    ids, probs = _unembed_top(trace, resid.reshape(-1, resid.shape[-1]), 1)
    return ids.reshape(resid.shape[:2]), probs.reshape(resid.shape[:2])


def _unembed_top(trace: Trace, resid: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` tokens and probabilities of residual rows through the final norm and unembedding.

    Rows go 512 at a time, so a long text never holds a [rows, vocab] tensor at once.
    """
    ids, probs = [], []
    with torch.no_grad():
        for start in range(0, resid.shape[0], 512):
            logits = trace.model.adapter.logits(resid[start : start + 512].to(trace.model.device)).float()
            top = torch.topk(torch.softmax(logits, dim=-1), _check_k(k, logits.shape[-1]), dim=-1)
            ids.append(top.indices.cpu())
            probs.append(top.values.cpu())
    return torch.cat(ids), torch.cat(probs)


# -- corpus index ------------------------------------------------------------------------------
@dataclass
class Example:
    """One top-activating context of a neuron: a window of tokens around the peak."""

    text_index: int  # which text of the corpus (after splitting long texts, its first piece's index)
    position: int  # the peak's token position in the (piece of) text
    activation: float  # the neuron's activation at the peak
    tokens: list[str]  # the window's tokens
    peak: int  # the peak's index in `tokens`
    activations: list[float]  # the neuron's activation on each token of the window (float16-rounded)


class _StopForward(Exception):
    """Raised by a hook once the last indexed layer has been seen: the rest of the forward is not needed."""


class NeuronIndex:
    """Per neuron of some layers: its top-k activating contexts over a corpus, and summary statistics.

    Build it with :meth:`NeuronIndex.build`; save and load it with :meth:`save` and :meth:`load`.
    Each text contributes at most one example per neuron (its peak), so the examples are k different
    texts.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> index = NeuronIndex.build(model, lw.sample_texts()[:40], layers=[1], top_k=5, progress=False)
    >>> ex = index.top_examples(layer=1, neuron=3)
    >>> len(ex), ex[0].activation >= ex[1].activation
    (5, True)

    """

    def __init__(self, meta: dict[str, Any], tensors: dict[str, Tensor]) -> None:
        self.meta = meta
        self.tensors = tensors

    # -- properties ----------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return str(self.meta["model"])

    @property
    def layers(self) -> list[int]:
        return list(self.meta["layers"])

    @property
    def top_k(self) -> int:
        return int(self.meta["top_k"])

    @property
    def window(self) -> int:
        return int(self.meta["window"])

    @property
    def counts(self) -> dict[str, int]:
        """How many texts were read, skipped (empty) and split (longer than ``max_tokens``), and tokens seen."""
        return dict(self.meta["counts"])

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"NeuronIndex({self.model_name!r}, layers={self.layers}, top_k={self.top_k}, "
            f"{c['texts']} texts, {c['tokens']} tokens)"
        )

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        model: LanguageModel,
        texts: Sequence[str],
        layers: Sequence[int],
        top_k: int = 20,
        *,
        window: int = 8,
        batch_size: int = 32,
        max_tokens: int | None = None,
        progress: bool = True,
    ) -> NeuronIndex:
        """Run the model over ``texts`` in batches and keep every neuron's top-``top_k`` contexts.

        Parameters
        ----------
        model : LanguageModel
            From :func:`~llmasos_widgets.load_model`.
        texts : sequence of str
            The corpus (e.g. :func:`~llmasos_widgets.sample_texts`). Empty texts are skipped; texts
            longer than ``max_tokens`` are split into pieces; both are counted in :attr:`counts`.
        layers : sequence of int
            The MLP layers to index.
        top_k : int
            Contexts kept per neuron (1 to 1000).
        window : int
            Tokens kept on each side of the peak.
        batch_size : int
            Texts per forward pass.
        max_tokens : int, optional
            Longest piece of text run at once (default: the model's context length).
        progress : bool
            Show a tqdm progress bar.

        """
        meta, tensors = _build(model, texts, layers, top_k, window, batch_size, max_tokens, progress)
        return cls(meta, tensors)

    # -- queries -------------------------------------------------------------------------------
    def _slot(self, layer: int) -> int:
        if layer not in self.layers:
            raise ValueError(f"layer {layer!r} is not in this index: it holds layers {self.layers}")
        return self.layers.index(layer)

    def _check_neuron(self, neuron: int) -> int:
        n = int(self.meta["d_mlp"])
        if not isinstance(neuron, int) or isinstance(neuron, bool) or not 0 <= neuron < n:
            raise ValueError(f"neuron {neuron!r} is out of range: {self.model_name} has neurons 0..{n - 1} per layer")
        return neuron

    def _token(self, token_id: int) -> str:
        return str(self.meta["vocab"].get(str(token_id), f"<{token_id}>"))

    def top_examples(self, layer: int, neuron: int) -> list[Example]:
        """The neuron's top contexts in the corpus, largest activation first.

        Activations equal at float16's precision rank the lower text index first.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = NeuronIndex.build(lw.load_model("tiny-gpt2"), ["a b c", "d e f"], [0], 2, progress=False)
        >>> sorted(e.text_index for e in index.top_examples(0, 5))  # one example per text
        [0, 1]

        """
        slot, neuron = self._slot(layer), self._check_neuron(neuron)
        t = {name: t[slot, neuron] for name, t in self.tensors.items() if name in _CONTEXT_TENSORS}
        return _examples(t, self.window, self._token)

    def stats(self, layer: int, neuron: int) -> dict[str, float]:
        """Summary statistics of the neuron over every token of the corpus: mean, std, max, share > 0.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = NeuronIndex.build(lw.load_model("tiny-gpt2"), ["a b c"], [0], 1, progress=False)
        >>> sorted(index.stats(0, 1))
        ['max', 'mean', 'positive', 'std', 'tokens']

        """
        slot, neuron = self._slot(layer), self._check_neuron(neuron)
        t = self.tensors
        n = float(self.counts["tokens"])
        mean = float(t["sum"][slot, neuron]) / n
        var = max(0.0, float(t["sumsq"][slot, neuron]) / n - mean * mean)
        return {
            "tokens": n,
            "mean": mean,
            "std": math.sqrt(var),
            "max": float(t["values"][slot, neuron].max()),
            "positive": float(t["positive"][slot, neuron]) / n,
        }

    def neurons_for_token(self, token: str, k: int = 10) -> list[tuple[int, int, int, float]]:
        """Neurons whose top examples peak on ``token``: ``(layer, neuron, count, best activation)``.

        Ranked by how many of a neuron's top-k contexts peak on that token, then by the largest
        activation among them. Tokens are compared as the tokenizer decodes them (``" Paris"`` with
        its leading space).

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = NeuronIndex.build(lw.load_model("tiny-gpt2"), ["a b c", "b c d"], [0], 2, progress=False)
        >>> all(index.top_examples(l, n)[0].tokens[index.top_examples(l, n)[0].peak] == " b"
        ...     for l, n, _, _ in index.neurons_for_token(" b", k=3))
        True

        """
        if not isinstance(token, str) or token == "":
            raise ValueError(f"token must be a non-empty str such as ' Paris', got {token!r}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        ids = [int(i) for i, s in self.meta["vocab"].items() if s == token]
        if not ids:
            return []
        t = self.tensors
        peak_ids = t["window_ids"][:, :, :, self.window]  # [slot, neuron, rank]
        hit = torch.isin(peak_ids, torch.tensor(ids))
        counts = hit.sum(-1)  # [slot, neuron]
        best = torch.where(hit, t["values"].float(), torch.tensor(-math.inf)).amax(-1)
        # Rank by count, then by activation: a lexicographic key in one float.
        order = sorted(
            ((int(c), float(b), s, n) for (s, n), c, b in _nonzero(counts, best)), key=lambda x: (-x[0], -x[1])
        )[:k]
        return [(self.layers[s], n, c, b) for c, b, s, n in order]

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to one file (written to a temporary name, then renamed: never half-written).

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> index = NeuronIndex.build(lw.load_model("tiny-gpt2"), ["a b c"], [0], 1, progress=False)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     NeuronIndex.load(index.save(d + "/n.idx")).layers
        [0]

        """
        return _files.save(path, self.tensors, INDEX_FORMAT, INDEX_VERSION, self.meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: LanguageModel | None = None) -> NeuronIndex:
        """Read an index written by :meth:`save`; with ``model``, check that the index was built on it.

        Raises a ValueError naming the problem for a missing, corrupt, foreign or newer-version file,
        or an index of another model.

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = open(d + "/bad.idx", "w").write("not an index")
        ...     NeuronIndex.load(d + "/bad.idx")
        Traceback (most recent call last):
        ValueError: ...bad.idx is not a readable neuron index (corrupt or another kind of file): ...

        """
        required = ("values", "text_index", "position", "window_ids", "window_acts", "sum", "sumsq")
        meta, tensors = _files.load(path, INDEX_FORMAT, INDEX_VERSION, "neuron index", required)
        index = cls(meta, tensors)
        if model is not None:
            index.check_model(model)
        return index

    def check_model(self, model: LanguageModel) -> None:
        """Raise a ValueError if this index was not built on ``model`` (name or shape differ).

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = NeuronIndex.build(lw.load_model("tiny-gpt2"), ["a b c"], [0], 1, progress=False)
        >>> index.check_model(lw.load_model("tiny-llama"))
        Traceback (most recent call last):
        ValueError: this neuron index was built on another model (model: index 'tiny-gpt2' vs model 'tiny-llama', ...)

        """
        mine, theirs = self.meta["fingerprint"], fingerprint(model)
        if mine != theirs:
            diff = ", ".join(
                f"{k}: index {mine.get(k)!r} vs model {theirs.get(k)!r}" for k in theirs if mine.get(k) != theirs[k]
            )
            raise ValueError(f"this neuron index was built on another model ({diff})")


def fingerprint(model: LanguageModel) -> dict[str, Any]:
    """What an index must match: the model's name and the shapes it was built with.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> fingerprint(load_model("tiny-gpt2"))["d_mlp"]
    256

    """
    w_u, _ = unembedding(model)
    return {
        "model": model.name,
        "n_layers": model.n_layers,
        "d_model": model.d_model,
        "d_mlp": d_mlp(model),
        "vocab_size": int(w_u.shape[0]),
    }


def _nonzero(counts: Tensor, best: Tensor):  # type: ignore[no-untyped-def]
    for s, n in (counts > 0).nonzero().tolist():
        yield (s, n), counts[s, n], best[s, n]


def _pieces(
    model: LanguageModel, texts: Sequence[str], max_tokens: int
) -> tuple[list[tuple[int, list[int]]], dict[str, int]]:
    # Token ids of every text, long ones split into pieces of at most max_tokens, empty ones skipped.
    pieces: list[tuple[int, list[int]]] = []
    counts = {"texts": len(texts), "skipped": 0, "split": 0, "pieces": 0, "tokens": 0}
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] is a {type(text).__name__}, not a str")
        if not text.strip():
            counts["skipped"] += 1
            continue
        ids = list(model.tokenizer(text, add_special_tokens=True)["input_ids"])
        if len(ids) > max_tokens:
            counts["split"] += 1
        for start in range(0, len(ids), max_tokens):
            pieces.append((i, ids[start : start + max_tokens]))
    counts["pieces"] = len(pieces)
    counts["tokens"] = sum(len(p) for _, p in pieces)
    return pieces, counts


_CONTEXT_TENSORS = ("values", "text_index", "position", "window_ids", "window_acts")


def _examples(t: dict[str, Tensor], window: int, token: Any) -> list[Example]:
    """The kept contexts of one unit (tensors of :class:`_TopContexts` at that unit), best first."""
    out = []
    for r in range(t["values"].shape[0]):
        value = float(t["values"][r])
        if value == -math.inf:
            break  # fewer texts than top_k
        ids = t["window_ids"][r].tolist()
        acts = t["window_acts"][r].float().tolist()
        keep = [i for i, tid in enumerate(ids) if tid >= 0]  # -1 pads windows at a text's edges
        out.append(
            Example(
                int(t["text_index"][r]),
                int(t["position"][r]),
                value,
                [token(ids[i]) for i in keep],
                window - keep[0],
                [acts[i] for i in keep],
            )
        )
    return out


class _TopContexts:
    """Per unit (a neuron, a feature): a running top-k of contexts over a corpus, one per text.

    Each kept context is the text's best position for that unit (by ``scores``) and a window of
    ``window`` tokens on each side, with the unit's activation on every token of the window. Memory is
    units × top_k × window, whatever the corpus size. Ranking by a random score instead of the
    activation keeps a uniform sample of the texts where the unit fires.

    Scores are compared at ``bits`` significant bits (11: float16's precision, at any magnitude), and
    equal ones rank the lower text index first. The same activation computed in another batch, with
    another thread count or on another CPU differs in its last bits (texts that share a prefix tie
    exactly in theory), so comparing full floats would rank such contexts differently from run to run.
    ``bits=None`` compares exact values (a seeded random score needs no rounding).
    """

    def __init__(self, n_units: int, top_k: int, window: int, bits: int | None = 11) -> None:
        width = 2 * window + 1
        self.top_k, self.window, self.bits = top_k, window, bits
        self.values = torch.full((n_units, top_k), -math.inf)  # the score of each kept context
        self.text_index = torch.full((n_units, top_k), -1, dtype=torch.int32)
        self.position = torch.full((n_units, top_k), -1, dtype=torch.int32)
        self.window_ids = torch.full((n_units, top_k, width), -1, dtype=torch.int32)
        self.window_acts = torch.zeros((n_units, top_k, width), dtype=torch.float16)

    def update(self, scores: Tensor, acts: Tensor, ids: Tensor, lengths: Tensor, batch_text: Tensor) -> None:
        """Merge a batch: ``scores``, ``acts`` [batch, pos, unit] (score −inf: no candidate), ``ids`` [batch, pos]."""
        top_k, window = self.top_k, self.window
        n_units, n_pos = scores.shape[2], scores.shape[1]
        # Each text's peak per unit, then the batch's candidates merged into the running top-k: by score
        # at `bits` precision, equal scores by the lower text index.
        peak_val, peak_pos = scores.max(1)  # [batch, unit]
        values = torch.cat([self.values, peak_val.T], dim=1)  # [unit, top_k + batch]
        texts = torch.cat([self.text_index, batch_text[None].expand(n_units, -1)], dim=1)
        by_text = texts.argsort(dim=1, stable=True)
        by_score = _rounded(values.gather(1, by_text), self.bits).argsort(dim=1, descending=True, stable=True)
        best = by_text.gather(1, by_score[:, :top_k])  # [unit, top_k]: a column of `values`
        from_batch = best >= top_k
        b_idx = (best - top_k).clamp(min=0)  # the batch row of a new entry
        n_idx = torch.arange(n_units)[:, None]
        new_pos = peak_pos.T[n_idx, b_idx]  # [unit, top_k]
        offs = new_pos[..., None] + torch.arange(-window, window + 1)  # [unit, top_k, width]
        inside = (offs >= 0) & (offs < lengths[b_idx][..., None])
        offs_c = offs.clamp(0, n_pos - 1)
        new_ids = torch.where(inside, ids[b_idx[..., None], offs_c].int(), -1)
        new_acts = torch.where(inside, acts[b_idx[..., None], offs_c, n_idx[..., None]], 0).half()
        keep = best.clamp(max=top_k - 1)
        self.values = values.gather(1, best)
        self.text_index = torch.where(from_batch, batch_text[b_idx], self.text_index.gather(1, keep))
        self.position = torch.where(from_batch, new_pos.int(), self.position.gather(1, keep))
        old_ids, old_acts = self.window_ids[n_idx, keep], self.window_acts[n_idx, keep]
        self.window_ids = torch.where(from_batch[..., None], new_ids, old_ids)
        self.window_acts = torch.where(from_batch[..., None], new_acts, old_acts)

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        return {prefix + name: getattr(self, name) for name in _CONTEXT_TENSORS}


def _rounded(values: Tensor, bits: int | None) -> Tensor:
    """``values`` rounded to ``bits`` significant bits (unchanged with ``bits=None``; ±inf stay).

    Examples
    --------
    >>> _rounded(torch.tensor([1.0, 1.0 + 2**-20, 3000.0 + 2**-10, -math.inf]), 11).tolist()
    [1.0, 1.0, 3000.0, -inf]

    """
    if bits is None:
        return values
    mantissa, exponent = torch.frexp(values)
    rounded = torch.ldexp(torch.round(torch.ldexp(mantissa, torch.tensor(bits))), exponent - bits)
    return torch.where(values.isfinite(), rounded, values)


def vocab_of(model: LanguageModel, window_ids: Tensor) -> dict[str, str]:
    """The tokens of every kept window, decoded once, so a loaded index needs no tokenizer.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> vocab_of(load_model("tiny-gpt2"), torch.tensor([[-1, 0]]))
    {'0': '<|endoftext|>'}

    """
    return {str(i): model.decode_token(i) for i in sorted(window_ids[window_ids >= 0].unique().tolist())}


def _padded(model: LanguageModel, batch: list[tuple[int, list[int]]]) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ids, attention mask [batch, pos] and lengths [batch] of a batch of pieces."""
    lengths = torch.tensor([len(ids) for _, ids in batch])
    n_pos = int(lengths.max())
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(batch), n_pos), pad, dtype=torch.long)
    for b, (_, piece) in enumerate(batch):
        ids[b, : len(piece)] = torch.tensor(piece)
    mask = (torch.arange(n_pos)[None] < lengths[:, None]).long()
    return ids, mask, lengths


def _check_texts(texts: Any) -> None:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError("texts must be a list of str (e.g. lw.sample_texts()), not a single str")
    if len(texts) == 0:
        raise ValueError("the corpus is empty: give at least one text")


def _corpus(
    model: LanguageModel, texts: Sequence[str], batch_size: int, max_tokens: int | None, verb: str
) -> tuple[list[tuple[int, list[int]]], dict[str, int], int]:
    """Checked corpus arguments and the corpus as pieces of token ids: ``(pieces, counts, max_tokens)``."""
    _check_texts(texts)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    limit = model.context_length
    max_tokens = limit if max_tokens is None else max_tokens
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= limit:
        raise ValueError(f"max_tokens must be an int from 1 to {model.name}'s context of {limit}, got {max_tokens!r}")
    pieces, counts = _pieces(model, texts, max_tokens)
    if not pieces:
        raise ValueError(f"the corpus has no text to {verb}: all {len(texts)} texts are empty")
    return pieces, counts, max_tokens


def _build(
    model: LanguageModel,
    texts: Sequence[str],
    layers: Sequence[int],
    top_k: int,
    window: int,
    batch_size: int,
    max_tokens: int | None,
    progress: bool,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    _check_texts(texts)
    layers = sorted({_checks.layer(layer, model.n_layers, model.name) for layer in layers}) if layers else []
    if not layers:
        raise ValueError(f"give at least one layer to index: {model.name} has layers 0..{model.n_layers - 1}")
    _checks.int_in("top_k", top_k, 1, 1000)
    _checks.int_in("window", window, 0, 64)
    pieces, counts, max_tokens = _corpus(model, texts, batch_size, max_tokens, "index")
    n_slots, n_mlp = len(layers), d_mlp(model)
    # The running top-k per neuron, all of it bounded by layers × neurons × top_k.
    tops = [_TopContexts(n_mlp, top_k, window) for _ in layers]
    sums = torch.zeros((n_slots, n_mlp), dtype=torch.float64)
    sumsq = torch.zeros((n_slots, n_mlp), dtype=torch.float64)
    positive = torch.zeros((n_slots, n_mlp), dtype=torch.int64)

    # Sort by length so a batch pads little; the order of texts does not change any top-k.
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][1]))
    adapter = model.adapter
    captured: dict[int, Tensor] = {}
    last = layers[-1]

    def capture(layer: int):  # type: ignore[no-untyped-def]
        def hook(module, args):  # type: ignore[no-untyped-def]
            captured[layer] = args[0].detach()
            if layer == last:
                raise _StopForward  # later layers cannot change what was captured

        return hook

    handles = [adapter.mlp_out(layer).register_forward_pre_hook(capture(layer)) for layer in layers]
    bar = tqdm(total=counts["tokens"], unit="tok", desc="indexing neurons", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            batch = [pieces[i] for i in order[start : start + batch_size]]
            ids, mask, lengths = _padded(model, batch)
            try:
                with torch.no_grad():
                    adapter.base()(input_ids=ids.to(model.device), attention_mask=mask.to(model.device))
            except _StopForward:
                pass
            batch_text = torch.tensor([i for i, _ in batch], dtype=torch.int32)
            for slot, layer in enumerate(layers):
                acts = captured.pop(layer).float().cpu()  # [batch, pos, neuron]
                valid = mask.bool()[:, :, None]
                zeroed = acts * valid  # padding counts as 0: it adds nothing to sums or to "> 0"
                sums[slot] += zeroed.sum((0, 1)).double()
                sumsq[slot] += (zeroed * zeroed).sum((0, 1)).double()
                positive[slot] += (zeroed > 0).sum((0, 1))
                tops[slot].update(acts.masked_fill(~valid, -math.inf), acts, ids, lengths, batch_text)
            bar.update(int(lengths.sum()))
    finally:
        for handle in handles:
            handle.remove()
        bar.close()

    window_ids = torch.stack([top.window_ids for top in tops])
    meta = {
        "model": model.name,
        "fingerprint": fingerprint(model),
        "layers": layers,
        "top_k": top_k,
        "window": window,
        "d_mlp": n_mlp,
        "counts": counts,
        "max_tokens": max_tokens,
        # The tokens of every kept window, decoded once, so a loaded index needs no tokenizer.
        "vocab": vocab_of(model, window_ids),
    }
    tensors = {
        "values": torch.stack([top.values for top in tops]),
        "text_index": torch.stack([top.text_index for top in tops]),
        "position": torch.stack([top.position for top in tops]),
        "window_ids": window_ids,
        "window_acts": torch.stack([top.window_acts for top in tops]),
        "sum": sums,
        "sumsq": sumsq,
        "positive": positive,
    }
    return meta, tensors
