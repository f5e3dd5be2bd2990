"""Corpus indexes rank equal activations by a stated rule, so an index does not depend on the last bits of a float.

The same activation computed in another batch, with another thread count or on another CPU differs in its
last bits; texts that share a prefix tie exactly in theory. NeuronIndex and FeatureIndex compare activations
at float16's precision and put the lower text index first among equal ones.
"""

import math

import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.corpus_index import TopContexts, rounded
from llmasos_widgets.analyses.neuron_index import NeuronIndex
from llmasos_widgets.analyses.neurons import d_mlp


def merge(batches, bits=11, top_k=2):
    """A TopContexts of one unit fed ``batches``: lists of (text index, score) with one position each."""
    top = TopContexts(1, top_k, window=0, bits=bits)
    for batch in batches:
        scores = torch.tensor([[[s]] for _, s in batch])  # [batch, pos=1, unit=1]
        ids = torch.zeros(len(batch), 1, dtype=torch.long)
        text = torch.tensor([t for t, _ in batch], dtype=torch.int32)
        top.update(scores, scores, ids, torch.ones(len(batch), dtype=torch.long), text)
    return top.text_index[0].tolist(), top.values[0].tolist()


ULP = 2.0**-20  # a few float32 ulps at 1.0, far below float16's 2**-10


@pytest.mark.parametrize(
    "batches",
    [
        [[(1, 1.0 + ULP), (0, 1.0)]],  # one batch, the higher text index first and larger by ulps
        [[(0, 1.0), (1, 1.0 + ULP)]],
        [[(1, 1.0 + ULP)], [(0, 1.0)]],  # the larger one already kept when the lower text index arrives
        [[(0, 1.0)], [(1, 1.0 + ULP)]],
    ],
)
def test_scores_equal_to_float16_precision_rank_the_lower_text_index_first(batches):
    texts, values = merge(batches)
    assert texts == [0, 1]
    assert sorted(values) == [1.0, 1.0 + ULP]  # the kept activations themselves are not rounded


def test_a_score_larger_at_float16_precision_ranks_first_whatever_its_text_index():
    assert merge([[(0, 1.0), (1, 1.01)]])[0] == [1, 0]
    assert merge([[(1, 1.01)], [(0, 1.0)], [(2, 0.5)]])[0] == [1, 0]
    assert merge([[(3, 2.0)], [(0, 1.0)], [(2, 0.5)], [(1, 4.0)]])[0] == [1, 3]


def test_exact_scores_with_bits_none_rank_by_the_full_float():
    assert merge([[(1, 1.0 + ULP), (0, 1.0)]], bits=None)[0] == [1, 0]
    assert merge([[(1, 1.0), (0, 1.0)]], bits=None)[0] == [0, 1]  # an exact tie: the lower text index


def test_rounding_keeps_infinities_and_magnitudes():
    x = torch.tensor([-math.inf, 0.0, 1e-30, 70000.0 + 1.0 / 64, -2.0 - ULP, 123456.0])
    got = rounded(x, 11)
    assert got[0] == -math.inf and got[1] == 0.0
    assert got[2] == pytest.approx(1e-30, rel=2**-11) and got[3] == 70016.0 and got[4] == -2.0
    assert got[5] == pytest.approx(123456.0, rel=2**-11)
    assert torch.equal(rounded(x, None), x)


def test_an_index_of_texts_that_share_a_prefix_is_the_same_whatever_the_batches():
    """Texts that share their first tokens tie exactly in theory on every neuron peaking there; batches of
    other widths pad them differently, which changes the last bits. The index must not change with them."""
    model = lw.load_model("tiny-llama")
    stems = ["The old man said that", "The old man saw the", "The old man walked to"]
    texts = [f"{stem} {tail}" for stem in stems for tail in ("river.", "big house on the hill.", "end")]
    builds = [NeuronIndex.build(model, texts, layers=[0, 1], top_k=4, batch_size=b, progress=False) for b in (1, 2, 9)]
    shared = 0
    for layer in (0, 1):
        for neuron in range(d_mlp(model)):
            first = [(e.text_index, e.position) for e in builds[0].top_examples(layer, neuron)]
            for other in builds[1:]:
                assert [(e.text_index, e.position) for e in other.top_examples(layer, neuron)] == first
            examples = builds[0].top_examples(layer, neuron)
            # Where neighbours peak on the same position of a shared stem, the lower text index comes first.
            for a, b in zip(examples, examples[1:], strict=False):
                if a.position == b.position and a.position < 3 and texts[a.text_index][:10] == texts[b.text_index][:10]:
                    shared += 1
                    assert a.text_index < b.text_index
    assert shared > 0  # the corpus does produce such ties
