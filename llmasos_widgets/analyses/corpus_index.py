"""What NeuronIndex and FeatureIndex share: per unit (a neuron, a feature), its top contexts over a corpus.

:class:`TopContexts` keeps, per unit, a running top-k of contexts (one per piece of text: the piece's best
position and a window around it) in memory bounded by units × k × window, whatever the corpus size; ranked
by a random key per token instead of the activation, the same top-k keeps a random sample of the tokens
where the unit fires, at most one per piece (a piece with more of them is more likely to be drawn).
:class:`CorpusIndex` is the base of both indexes: their metadata, the examples of a unit, the tokens a
unit peaks on, and one safetensors file tied to the model by its fingerprint.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..core import files
from .neurons import d_mlp, unembedding

if TYPE_CHECKING:
    from ..core.models import LanguageModel

CONTEXT_TENSORS = ("values", "text_index", "position", "window_ids", "window_acts")


@dataclass
class Example:
    """One top-activating context of a unit (a neuron, a feature): a window of tokens around the peak."""

    text_index: int  # which text of the corpus (after splitting long texts, its first piece's index)
    position: int  # the peak's token position in the (piece of) text
    activation: float  # the unit's activation at the peak
    tokens: list[str]  # the window's tokens
    peak: int  # the peak's index in `tokens`
    activations: list[float]  # the unit's activation on each token of the window (float16-rounded)


class TopContexts:
    """Per unit (a neuron, a feature): a running top-k of contexts over a corpus, one per piece of text.

    Each kept context is the piece's best position for that unit (by ``scores``) and a window of
    ``window`` tokens on each side, with the unit's activation on every token of the window. A text longer
    than the index's ``max_tokens`` is split into pieces, and each piece counts as one. Memory is
    units × top_k × window, whatever the corpus size. Ranking by a random key per token instead of the
    activation keeps a random sample of the tokens where the unit fires, at most one per piece.

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
        by_score = rounded(values.gather(1, by_text), self.bits).argsort(dim=1, descending=True, stable=True)
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
        """The kept contexts as tensors named as an index file holds them (``prefix`` before each name)."""
        return {prefix + name: getattr(self, name) for name in CONTEXT_TENSORS}


def rounded(values: Tensor, bits: int | None) -> Tensor:
    """``values`` rounded to ``bits`` significant bits (unchanged with ``bits=None``; ±inf stay).

    Examples
    --------
    >>> rounded(torch.tensor([1.0, 1.0 + 2**-20, 3000.0 + 2**-10, -math.inf]), 11).tolist()
    [1.0, 1.0, 3000.0, -inf]

    """
    if bits is None:
        return values
    mantissa, exponent = torch.frexp(values)
    out = torch.ldexp(torch.round(torch.ldexp(mantissa, torch.tensor(bits))), exponent - bits)
    return torch.where(values.isfinite(), out, values)


def examples_of(t: dict[str, Tensor], window: int, token: Any) -> list[Example]:
    """The kept contexts of one unit (tensors of :class:`TopContexts` at that unit), best first."""
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


def vocab_of(model: LanguageModel, window_ids: Tensor) -> dict[str, str]:
    """The tokens of every kept window, decoded once, so a loaded index needs no tokenizer.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> vocab_of(load_model("tiny-gpt2"), torch.tensor([[-1, 0]]))
    {'0': '<|endoftext|>'}

    """
    return {str(i): model.decode_token(i) for i in sorted(window_ids[window_ids >= 0].unique().tolist())}


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


class CorpusIndex:
    """A corpus index: ``meta`` (JSON) and ``tensors`` (the kept contexts and statistics), one file.

    Subclasses name their file format and the tensors a file must hold, and add what is theirs
    (:class:`~.neuron_index.NeuronIndex`, :class:`~.features.FeatureIndex`).
    """

    format: ClassVar[str]  # the file's format name
    version: ClassVar[int]
    kind: ClassVar[str]  # how errors name it: "neuron index"
    required: ClassVar[tuple[str, ...]]  # the tensors a file must hold

    def __init__(self, meta: dict[str, Any], tensors: dict[str, Tensor]) -> None:
        self.meta = meta
        self.tensors = tensors

    @property
    def model_name(self) -> str:
        return str(self.meta["model"])

    @property
    def top_k(self) -> int:
        return int(self.meta["top_k"])

    @property
    def window(self) -> int:
        return int(self.meta["window"])

    @property
    def counts(self) -> dict[str, int]:
        """Texts read, skipped (empty) and split (longer than ``max_tokens``), pieces, and tokens seen."""
        return dict(self.meta["counts"])

    def _token(self, token_id: int) -> str:
        return str(self.meta["vocab"].get(str(token_id), f"<{token_id}>"))

    def _examples(self, at: dict[str, Tensor]) -> list[Example]:
        """The kept contexts of one unit (``at``: each context tensor indexed at the unit), best first."""
        return examples_of(at, self.window, self._token)

    def _token_ids(self, token: str) -> list[int]:
        """The ids that decode to ``token`` among the kept windows' tokens (a ValueError for a non-str)."""
        if not isinstance(token, str) or token == "":
            raise ValueError(f"token must be a non-empty str such as ' Paris', got {token!r}")
        return [int(i) for i, s in self.meta["vocab"].items() if s == token]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to one safetensors file (to a temporary name, then renamed: never half-written).

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> index = lw.NeuronIndex.build(lw.load_model("tiny-gpt2"), ["a b c"], [0], 1, progress=False)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     lw.NeuronIndex.load(index.save(d + "/n.idx")).layers
        [0]

        """
        return files.save(path, self.tensors, self.format, self.version, self.meta)

    @classmethod
    def _read(cls, path: str | os.PathLike[str], model: LanguageModel | None) -> Any:
        meta, tensors = files.load(path, cls.format, cls.version, cls.kind, cls.required)
        index = cls(meta, tensors)
        if model is not None:
            index.check_model(model)
        return index

    def check_model(self, model: LanguageModel) -> None:
        """Raise a ValueError if this index was not built on ``model`` (its name or shapes differ).

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> index = lw.NeuronIndex.build(lw.load_model("tiny-gpt2"), ["a b c"], [0], 1, progress=False)
        >>> index.check_model(lw.load_model("tiny-llama"))
        Traceback (most recent call last):
        ValueError: this neuron index was built on another model (model: index 'tiny-gpt2' vs model 'tiny-llama', ...)

        """
        mine, theirs = self.meta["fingerprint"], fingerprint(model)
        if mine != theirs:
            diff = ", ".join(
                f"{k}: index {mine.get(k)!r} vs model {theirs.get(k)!r}" for k in theirs if mine.get(k) != theirs[k]
            )
            raise ValueError(f"this {self.kind} was built on another model ({diff})")
