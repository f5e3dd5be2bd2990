"""The shipped sample corpus: short general-purpose English texts on varied topics.

The texts are example sentences from WordNet 3.0's glosses (Princeton University, WordNet 3.0
licence), spread evenly over WordNet's 45 topics; ``llmasos_widgets/data/README.md`` states the
provenance and licence and ``tools/make_sample_texts.py`` rebuilds the file. Neuron indexes are
built over them and concept tools draw random counterexamples from them.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


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
