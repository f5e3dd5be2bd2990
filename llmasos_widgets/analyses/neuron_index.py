"""NeuronIndex: per neuron of some MLP layers, its top-k activating contexts over a corpus and its statistics.

It runs the model over a corpus in batches and keeps, per neuron, a fixed-size top-k of contexts
(:class:`~.corpus_index.TopContexts`), so its memory does not grow with the corpus.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..core import checks
from ..core.corpus import check_texts, padded, text_corpus
from ..core.hooks import read
from ..core.progress import tqdm
from .corpus_index import CONTEXT_TENSORS, CorpusIndex, Example, TopContexts, fingerprint, vocab_of
from .neurons import d_mlp

if TYPE_CHECKING:
    from ..core.models import LanguageModel


class NeuronIndex(CorpusIndex):
    """Per neuron of some layers: its top-k activating contexts over a corpus, and summary statistics.

    Build it with :meth:`NeuronIndex.build`; save and load it with :meth:`save` and :meth:`load`.
    Each piece of text contributes at most one example per neuron (its peak), so the examples are k
    different pieces (a text longer than ``max_tokens`` is split into pieces, each counted).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> index = NeuronIndex.build(model, lw.sample_texts()[:40], layers=[1], top_k=5, progress=False)
    >>> ex = index.top_examples(layer=1, neuron=3)
    >>> len(ex), ex[0].activation >= ex[1].activation
    (5, True)

    """

    format = "llmasos_widgets.NeuronIndex"
    version = 1
    kind = "neuron index"
    required = (*CONTEXT_TENSORS, "sum", "sumsq")

    @property
    def layers(self) -> list[int]:
        return list(self.meta["layers"])

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
        layer = checks.layer(layer, int(self.meta["fingerprint"]["n_layers"]), self.model_name)
        if layer not in self.layers:
            raise ValueError(f"layer {layer!r} is not in this index: it holds layers {self.layers}")
        return self.layers.index(layer)

    def _check_neuron(self, neuron: int) -> int:
        return checks.index(neuron, int(self.meta["d_mlp"]), "neuron", f"{self.model_name} has neurons")

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
        t = {name: t[slot, neuron] for name, t in self.tensors.items() if name in CONTEXT_TENSORS}
        return self._examples(t)

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
        ids = self._token_ids(token)
        checks.int_in("k", k, 1, 10**9)
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
        return cls._read(path, model)


def _nonzero(counts: Tensor, best: Tensor):  # type: ignore[no-untyped-def]
    for s, n in (counts > 0).nonzero().tolist():
        yield (s, n), counts[s, n], best[s, n]


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
    check_texts(texts)
    layers = sorted({checks.layer(layer, model.n_layers, model.name) for layer in layers}) if layers else []
    if not layers:
        raise ValueError(f"give at least one layer to index: {model.name} has layers 0..{model.n_layers - 1}")
    checks.int_in("top_k", top_k, 1, 1000)
    checks.int_in("window", window, 0, 64)
    pieces, counts, max_tokens = text_corpus(model, texts, batch_size, max_tokens, "index")
    n_slots, n_mlp = len(layers), d_mlp(model)
    # The running top-k per neuron, all of it bounded by layers × neurons × top_k.
    tops = [TopContexts(n_mlp, top_k, window) for _ in layers]
    sums = torch.zeros((n_slots, n_mlp), dtype=torch.float64)
    sumsq = torch.zeros((n_slots, n_mlp), dtype=torch.float64)
    positive = torch.zeros((n_slots, n_mlp), dtype=torch.int64)

    # Sort by length so a batch pads little; the order of texts does not change any top-k.
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][1]))
    names = {layer: f"blocks.{layer}.mlp.hook_post" for layer in layers}
    bar = tqdm(total=counts["tokens"], unit="tok", desc="indexing neurons", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            batch = [pieces[i] for i in order[start : start + batch_size]]
            ids, mask, lengths = padded(model, batch)
            with torch.no_grad():  # one batch at a time holds the model: other views' requests run between
                captured = read(
                    model, names.values(), input_ids=ids.to(model.device), attention_mask=mask.to(model.device)
                )
            batch_text = torch.tensor([i for i, _ in batch], dtype=torch.int32)
            for slot, layer in enumerate(layers):
                acts = captured[names[layer]].float().cpu()  # [batch, pos, neuron]
                valid = mask.bool()[:, :, None]
                zeroed = acts * valid  # padding counts as 0: it adds nothing to sums or to "> 0"
                sums[slot] += zeroed.sum((0, 1)).double()
                sumsq[slot] += (zeroed * zeroed).sum((0, 1)).double()
                positive[slot] += (zeroed > 0).sum((0, 1))
                tops[slot].update(acts.masked_fill(~valid, -math.inf), acts, ids, lengths, batch_text)
            bar.update(int(lengths.sum()))
    finally:
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
