"""A corpus index of an SAE's features: top contexts, a sample of contexts, and activation statistics.

:class:`FeatureIndex` runs the model over a corpus once and keeps, per feature, what a feature
dashboard shows (sae_vis, Neuronpedia): its top-k activating contexts (one per piece of text, like
:class:`~llmasos_widgets.NeuronIndex`, with the same running top-k), a random sample of the tokens where it
fires, at most one per piece (for examples across activation quantiles), how often it fires (density)
and a histogram of its non-zero activations. Memory is features × (top_k + samples) × window plus
features × bins, whatever the corpus size.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..core import checks
from ..core.corpus import text_corpus
from ..core.progress import tqdm
from .corpus_index import CONTEXT_TENSORS, CorpusIndex, Example, TopContexts, fingerprint, vocab_of
from .sae import SAE
from .sae.quality import layer_activations

if TYPE_CHECKING:
    from ..core.models import LanguageModel


def sae_id(sae: SAE) -> str:
    """A short hash of an SAE's weights: an index built with one SAE refuses another.

    Examples
    --------
    >>> len(sae_id(SAE.random(4, 8, 2, 0)))
    16

    """
    h = hashlib.sha256()
    for t in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec):
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class FeatureIndex(CorpusIndex):
    """Per feature of one SAE: top contexts, a sample of contexts, density and an activation histogram.

    Build it with :meth:`build`; save and load it with :meth:`save` and :meth:`load`. Positions the
    tokens the SAE does not read (:meth:`SAE.reads`) are not indexed.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> sae = lw.SAE.random(64, 128, 8, layer=1)
    >>> index = FeatureIndex.build(model, sae, lw.sample_texts()[:40], top_k=5, progress=False)
    >>> f = int(index.tensors["fires"].argmax())
    >>> ex = index.top_examples(f)
    >>> len(ex), ex[0].activation >= ex[-1].activation > 0
    (5, True)

    """

    format = "llmasos_widgets.FeatureIndex"
    version = 1
    kind = "feature index"
    required = (*CONTEXT_TENSORS, "fires", "sum", "sumsq", "histogram", "edges")

    @property
    def layer(self) -> int:
        return int(self.meta["layer"])

    @property
    def n_features(self) -> int:
        return int(self.meta["n_features"])

    @property
    def edges(self) -> Tensor:  # [bins + 1]
        """The histogram's bin edges (log-spaced; see :meth:`histogram`)."""
        return self.tensors["edges"]

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"FeatureIndex({self.model_name!r}, layer {self.layer}, {self.n_features} features, top_k={self.top_k}, "
            f"{c['texts']} texts, {c['tokens']} tokens)"
        )

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        model: LanguageModel,
        sae: SAE,
        texts: Sequence[str],
        top_k: int = 20,
        *,
        samples: int = 20,
        window: int = 8,
        bins: int = 40,
        batch_size: int = 8,
        max_tokens: int | None = 256,
        seed: int = 0,
        progress: bool = True,
    ) -> FeatureIndex:
        """Run the model over ``texts`` and index every feature of ``sae``.

        Parameters
        ----------
        model : LanguageModel
            The model the SAE reads.
        sae : SAE
            From :func:`~llmasos_widgets.train_sae` or :func:`~llmasos_widgets.load_sae`.
        texts : sequence of str
            The corpus; empty texts are skipped and long ones split into pieces of ``max_tokens``.
        top_k : int
            Top contexts kept per feature (1 to 1000), each from a different piece of text.
        samples : int
            Contexts kept per feature at random among the tokens where it fires, one per piece (0 to 1000), seeded:
            sorted by activation they give examples across its quantiles.
        window : int
            Tokens kept on each side of a context's peak.
        bins : int
            Histogram bins (log-spaced, fixed from the first batch; see :meth:`histogram`).
        batch_size, max_tokens : int
            Pieces per forward pass, and the longest piece (memory grows as batch × tokens × features).
        seed : int
            Seed of the sample.
        progress : bool
            Show a tqdm bar.

        """
        sae.require_residual("FeatureIndex")
        sae.check_model(model)
        checks.int_in("top_k", top_k, 1, 1000)
        checks.int_in("samples", samples, 0, 1000)
        checks.int_in("window", window, 0, 64)
        checks.int_in("bins", bins, 2, 1000)
        pieces, counts, max_tokens = text_corpus(model, texts, batch_size, max_tokens, "index")
        n = sae.n_latents
        top = TopContexts(n, top_k, window)
        sample = TopContexts(n, max(samples, 1), window, bits=None)  # seeded keys: exact
        fires = torch.zeros(n, dtype=torch.int64)
        sums = torch.zeros(n, dtype=torch.float64)
        sumsq = torch.zeros(n, dtype=torch.float64)
        hist = torch.zeros(n * bins, dtype=torch.int64)
        edges: Tensor | None = None
        gen = torch.Generator().manual_seed(seed)
        tokens = 0
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][1]))
        bar = tqdm(total=counts["tokens"], unit="tok", desc=f"indexing features L{sae.layer}", disable=not progress)
        for start in range(0, len(order), batch_size):
            batch = [pieces[i] for i in order[start : start + batch_size]]
            x, ids, mask, _ = layer_activations(model, sae.layer, batch, sae.skip_first)
            inc = mask.bool() & sae.reads(x)
            codes = sae.encode(x, sparse=True)
            values, indices = codes.values.float().cpu(), codes.indices.cpu()  # [batch, pos, k]
            inc, ids, lengths = inc.cpu(), ids.cpu(), mask.sum(1).cpu()
            on = (values > 0) & inc[..., None]  # a feature fires at an indexed position
            acts = torch.zeros(*values.shape[:2], n).scatter_(-1, indices, values * on)  # [batch, pos, feature]
            firing = acts > 0
            batch_text = torch.tensor([i for i, _ in batch], dtype=torch.int32)
            top.update(acts.masked_fill(~firing, -math.inf), acts, ids, lengths, batch_text)
            if samples:
                keys = torch.rand(acts.shape, generator=gen).masked_fill_(~firing, -math.inf)
                sample.update(keys, acts, ids, lengths, batch_text)
            live_i, live_v = indices[on], values[on]
            tokens += int(inc.sum())
            fires.index_add_(0, live_i, torch.ones_like(live_i))
            sums.index_add_(0, live_i, live_v.double())
            sumsq.index_add_(0, live_i, live_v.double() ** 2)
            if live_v.numel():
                if edges is None:
                    # Fixed once: 3 decades below the first batch's median activation to 2 above.
                    mid = float(live_v.median())
                    edges = mid * torch.logspace(-3, 2, bins + 1, dtype=torch.float64)
                b = (torch.searchsorted(edges, live_v.double(), right=True) - 1).clamp(0, bins - 1)
                hist.index_add_(0, live_i * bins + b, torch.ones_like(b))
            bar.update(int(lengths.sum()))
        bar.close()
        if tokens == 0:
            raise ValueError(
                f"no tokens to index at positions ≥ skip_first={sae.skip_first} with norm ≤ max_norm={sae.max_norm}: "
                "give longer texts"
            )
        edges = edges if edges is not None else torch.logspace(-3, 2, bins + 1, dtype=torch.float64)
        counts["tokens"] = tokens
        tensors = {
            **top.tensors(),
            **(sample.tensors("sample_") if samples else {}),
            "fires": fires,
            "sum": sums,
            "sumsq": sumsq,
            "histogram": hist.view(n, bins).to(torch.int32),
            "edges": edges,
        }
        window_ids = torch.cat([top.window_ids.flatten(), sample.window_ids.flatten()])
        meta = {
            "model": model.name,
            "fingerprint": fingerprint(model),
            "sae": sae_id(sae),
            "sae_meta": {
                "layer": sae.layer,
                "k": sae.k,
                "activation": sae.activation,
                "source": sae.meta.get("source"),
            },
            "layer": sae.layer,
            "n_features": n,
            "top_k": top_k,
            "samples": samples,
            "window": window,
            "counts": counts,
            "max_tokens": max_tokens,
            "seed": seed,
            "vocab": vocab_of(model, window_ids),
        }
        return cls(meta, tensors)

    # -- queries -------------------------------------------------------------------------------
    def _feature(self, feature: int) -> int:
        return checks.index(feature, self.n_features, "feature", "this SAE has features")

    def top_examples(self, feature: int) -> list[Example]:
        """The feature's top contexts in the corpus, largest activation first (only where it fires).

        Activations equal at float16's precision rank the lower text index first.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = FeatureIndex.build(lw.load_model("tiny-gpt2"), lw.SAE.random(64, 32, 4, 0), ["a b c", "b c d"],
        ...                            top_k=3, progress=False)
        >>> all(len(index.top_examples(f)) <= 2 for f in range(32))  # one context per text
        True

        """
        f = self._feature(feature)
        return self._examples({name: self.tensors[name][f] for name in CONTEXT_TENSORS})

    def sample_examples(self, feature: int) -> list[Example]:
        """A random sample of the tokens where the feature fires, at most one per piece of text, largest first.

        Every firing token draws a random key; each piece keeps its token with the largest key and the
        pieces with the largest keys are kept, so a piece with more firing tokens is more likely to be
        drawn (the sample follows the tokens, not the texts) and each example is shown at its drawn token,
        not at the piece's peak. Their activations spread over the feature's range: split the list in
        quantiles to show examples of weak, middling and strong activation. An ``Example.activation`` here
        is the activation at the drawn token (float16-rounded), not the random key it was drawn by.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = FeatureIndex.build(lw.load_model("tiny-gpt2"), lw.SAE.random(64, 32, 4, 0), lw.sample_texts()[:30],
        ...                            samples=4, progress=False)
        >>> f = int(index.tensors["fires"].argmax())
        >>> s = index.sample_examples(f)
        >>> len(s), s[0].activation >= s[-1].activation
        (4, True)

        """
        f = self._feature(feature)
        if not self.meta.get("samples"):
            return []
        t = {name: self.tensors["sample_" + name][f] for name in CONTEXT_TENSORS}
        out = self._examples(t)
        for ex, r in zip(out, range(len(out)), strict=False):
            ex.activation = float(t["window_acts"][r, self.window])
        return sorted(out, key=lambda e: -e.activation)

    def stats(self, feature: int) -> dict[str, float]:
        """Density and activation statistics of one feature over every indexed token.

        ``density`` is the share of tokens where it fires (``log10_density`` for the dashboard's
        usual axis, −inf when it never does); ``mean`` and ``std`` are over the tokens where it fires.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = FeatureIndex.build(lw.load_model("tiny-gpt2"), lw.SAE.random(64, 32, 4, 0), ["a b c"],
        ...                            progress=False)
        >>> sorted(index.stats(0))
        ['density', 'fires', 'log10_density', 'max', 'mean', 'std', 'tokens']

        """
        f = self._feature(feature)
        t = self.tensors
        n, fires = float(self.counts["tokens"]), int(t["fires"][f])
        mean = float(t["sum"][f]) / fires if fires else 0.0
        var = max(0.0, float(t["sumsq"][f]) / fires - mean * mean) if fires else 0.0
        top = float(t["values"][f].max())  # the first kept is the largest to float16 precision
        return {
            "tokens": n,
            "fires": fires,
            "density": fires / n,
            "log10_density": math.log10(fires / n) if fires else -math.inf,
            "mean": mean,
            "std": math.sqrt(var),
            "max": top if top > -math.inf else 0.0,
        }

    def histogram(self, feature: int) -> tuple[Tensor, Tensor]:
        """Counts of the feature's non-zero activations per bin, and the ``bins + 1`` edges.

        Bins are log-spaced over five decades, fixed when the index was built (from three decades
        below the first batch's median activation to two above); values outside fall in the end bins.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = FeatureIndex.build(lw.load_model("tiny-gpt2"), lw.SAE.random(64, 32, 4, 0), ["a b c d"],
        ...                            progress=False)
        >>> counts, edges = index.histogram(0)
        >>> int(counts.sum()) == index.stats(0)["fires"], edges.shape[0] == counts.shape[0] + 1
        (True, True)

        """
        f = self._feature(feature)
        return self.tensors["histogram"][f], self.edges

    def features_for_token(self, token: str, k: int = 10) -> list[tuple[int, int, float]]:
        """Features whose top contexts peak on ``token``: ``(feature, count, best activation)``.

        Ranked by how many of a feature's top contexts peak on that token, then by activation.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = FeatureIndex.build(lw.load_model("tiny-gpt2"), lw.SAE.random(64, 32, 4, 0), ["a b c", "b c d"],
        ...                            progress=False)
        >>> found = index.features_for_token(" b", k=3)
        >>> len(found) > 0 and all(any(e.tokens[e.peak] == " b" for e in index.top_examples(f)) for f, _, _ in found)
        True

        """
        ids = self._token_ids(token)
        k = checks.int_in("k", k, 1, self.n_features)
        if not ids:
            return []
        t = self.tensors
        hit = torch.isin(t["window_ids"][:, :, self.window], torch.tensor(ids)) & (t["values"] > -math.inf)
        count = hit.sum(-1)
        best = torch.where(hit, t["values"], torch.tensor(-math.inf)).amax(-1)
        found = [(int(f), int(count[f]), float(best[f])) for f in count.nonzero().flatten()]
        return sorted(found, key=lambda x: (-x[1], -x[2]))[:k]

    # -- files ---------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, path: str | os.PathLike[str], model: LanguageModel | None = None, sae: SAE | None = None
    ) -> FeatureIndex:
        """Read an index written by :meth:`save`; with ``model`` or ``sae``, check it was built with them.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = open(d + "/bad.idx", "w").write("not an index")
        ...     FeatureIndex.load(d + "/bad.idx")
        Traceback (most recent call last):
        ValueError: ...bad.idx is not a readable feature index (corrupt or another kind of file): ...

        """
        index = cls._read(path, model)
        if sae is not None:
            index.check_sae(sae)
        return index

    def check_sae(self, sae: SAE) -> None:
        """Raise a ValueError if this index was built with another SAE (its weights differ).

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = FeatureIndex.build(lw.load_model("tiny-gpt2"), lw.SAE.random(64, 32, 4, 0), ["a b"],
        ...                            progress=False)
        >>> index.check_sae(lw.SAE.random(64, 32, 4, 0, seed=1))
        Traceback (most recent call last):
        ValueError: this feature index was built with another SAE (weights ... vs ...)

        """
        theirs = sae_id(sae)
        if theirs != self.meta["sae"]:
            raise ValueError(f"this feature index was built with another SAE (weights {self.meta['sae']} vs {theirs})")
