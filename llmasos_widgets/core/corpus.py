"""Corpora: the shipped sample texts, and any list of texts as pieces of token ids in padded batches.

The sample corpus: short general-purpose English texts on varied topics.

The texts are example sentences from WordNet 3.0's glosses (Princeton University, WordNet 3.0
licence), spread evenly over WordNet's 45 topics; ``llmasos_widgets/data/README.md`` states the
provenance and licence and ``tools/make_sample_texts.py`` rebuilds the file. Neuron indexes are
built over them and concept tools draw random counterexamples from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from . import checks

if TYPE_CHECKING:
    from .models import LanguageModel


@lru_cache(maxsize=1)
def _load() -> tuple[tuple[str, str], ...]:
    # One "topic<TAB>text" line per text; read once per process (140 kB).
    raw = resources.files("llmasos_widgets").joinpath("data/sample_texts.tsv").read_text(encoding="utf-8")
    rows = []
    for number, line in enumerate(raw.splitlines(), start=1):
        topic, sep, text = line.partition("\t")
        if not sep or not text:
            raise ValueError(f"data/sample_texts.tsv line {number} is not 'topic<TAB>text': {line!r}")
        rows.append((topic, text))
    return tuple(rows)


def sample_topics() -> list[str]:
    """The topics of :func:`sample_texts`, WordNet lexicographer file names such as ``"noun.food"``.

    Examples
    --------
    >>> "noun.food" in sample_topics()
    True

    """
    return sorted({topic for topic, _ in _load()})


def sample_texts(topic: str | None = None) -> list[str]:
    """General-purpose short English texts shipped with the package (2,000, one sentence each).

    Parameters
    ----------
    topic : str, optional
        Only the texts of one topic (see :func:`sample_topics`); all of them when None.

    Returns
    -------
    list of str
        A new list each call, in a fixed order (shuffled once, when the file was made).

    Examples
    --------
    >>> texts = sample_texts()
    >>> len(texts)
    2000
    >>> all(isinstance(t, str) and t for t in texts)
    True
    >>> len(sample_texts("verb.weather")) > 10
    True

    """
    rows = _load()
    if topic is None:
        return [text for _, text in rows]
    texts = [text for t, text in rows if t == topic]
    if not texts:
        raise ValueError(f"unknown topic {topic!r}: the topics are {', '.join(sample_topics())}")
    return texts


# -- a corpus as pieces of token ids, in padded batches (indexes, SAEs, concepts) ------------------------
def text_pieces(
    model: LanguageModel, texts: Sequence[str], max_tokens: int
) -> tuple[list[tuple[int, list[int]]], dict[str, int]]:
    """Token ids of every text, long ones split into pieces of at most ``max_tokens``, empty ones skipped.

    Returns the pieces, ``(text index, ids)``, and counts of texts, skipped, split, pieces and tokens.
    """
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


def padded(model: LanguageModel, batch: list[tuple[int, list[int]]]) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ids, attention mask [batch, pos] and lengths [batch] of a batch of pieces."""
    lengths = torch.tensor([len(ids) for _, ids in batch])
    n_pos = int(lengths.max())
    pad = model.pad_token_id
    ids = torch.full((len(batch), n_pos), pad, dtype=torch.long)
    for b, (_, piece) in enumerate(batch):
        ids[b, : len(piece)] = torch.tensor(piece)
    mask = (torch.arange(n_pos)[None] < lengths[:, None]).long()
    return ids, mask, lengths


def check_texts(texts: Any) -> None:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError("texts must be a list of str (e.g. lw.sample_texts()), not a single str")
    if len(texts) == 0:
        raise ValueError("the corpus is empty: give at least one text")


def text_corpus(
    model: LanguageModel, texts: Sequence[str], batch_size: int, max_tokens: int | None, verb: str
) -> tuple[list[tuple[int, list[int]]], dict[str, int], int]:
    """Checked corpus arguments and the corpus as pieces of token ids: ``(pieces, counts, max_tokens)``."""
    check_texts(texts)
    checks.int_in("batch_size", batch_size, 1, 100_000)
    limit = model.context_length
    max_tokens = checks.int_in(
        f"max_tokens (up to {model.name}'s context)", limit if max_tokens is None else max_tokens, 1, limit
    )
    pieces, counts = text_pieces(model, texts, max_tokens)
    if not pieces:
        raise ValueError(f"the corpus has no text to {verb}: all {len(texts)} texts are empty")
    return pieces, counts, max_tokens
