"""The shipped sample corpus: enough real, varied, short texts, packaged with the library."""

import collections
from importlib import resources

import pytest

import llmasos_widgets as lw
from llmasos_widgets.core.corpus import sample_topics


def test_at_least_a_thousand_distinct_short_texts():
    texts = lw.sample_texts()
    assert len(texts) >= 1000
    assert len(set(texts)) == len(texts)
    assert all(8 <= len(t.split()) and len(t) <= 240 for t in texts)
    assert all(t[0].isupper() and t[-1] in ".!?" for t in texts)
    assert all("\t" not in t and "\n" not in t for t in texts)


def test_texts_are_english_prose_on_many_topics():
    topics = sample_topics()
    assert len(topics) == 45
    sizes = [len(lw.sample_texts(t)) for t in topics]
    # No topic dominates (round-robin selection) and together they are the whole corpus.
    assert max(sizes) <= 51 and sum(sizes) == len(lw.sample_texts())
    words = collections.Counter(w.lower().strip(".,;!?") for t in lw.sample_texts() for w in t.split())
    # Real prose: the commonest English function words are the commonest here too.
    assert {"the", "a", "of", "to", "and"} <= {w for w, _ in words.most_common(12)}


def test_each_call_returns_a_fresh_list():
    a = lw.sample_texts()
    a.clear()
    assert len(lw.sample_texts()) == 2000


def test_unknown_topic_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown topic 'noun.dragons'.*noun.food"):
        lw.sample_texts("noun.dragons")


def test_data_file_is_small_and_provenance_is_stated():
    data = resources.files("llmasos_widgets").joinpath("data")
    raw = data.joinpath("sample_texts.tsv").read_bytes()
    assert len(raw) < 1_000_000
    readme = data.joinpath("README.md").read_text(encoding="utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton" in readme
