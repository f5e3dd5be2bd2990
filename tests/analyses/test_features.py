import math

import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.corpus_index import rounded
from llmasos_widgets.analyses.features import FeatureIndex
from llmasos_widgets.analyses.sae import SAE
from tests._numbers import assert_ranked, undecided_topk

TEXTS = lw.sample_texts()[:40]


@pytest.fixture(scope="module")
def llama():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def sae():
    g = torch.Generator().manual_seed(0)
    return SAE(
        torch.randn(64, 96, generator=g) / 8,
        torch.randn(96, generator=g) * 0.1,
        torch.nn.functional.normalize(torch.randn(96, 64, generator=g), dim=1),
        torch.randn(64, generator=g) * 0.1,
        layer=1,
        k=6,
    )


@pytest.fixture(scope="module")
def index(llama, sae):
    return FeatureIndex.build(llama, sae, TEXTS, top_k=4, samples=3, window=2, batch_size=5, progress=False)


def by_hand(model, sae, texts, skip_first=0, tol=None):
    """Each text's dense feature activations [pos, feature], from a trace, one text at a time.

    With ``tol``, also a mask of the codes the maths leaves open [pos, feature] (tests/_numbers.py,
    undecided_topk): a near-tie at a position's k-th largest, or a kept one within ``tol`` of 0. The index runs
    the texts padded in batches, so its numbers differ from a trace's within rounding: there it may go either way.
    """
    out, open_ = [], []
    for text in texts:
        x = model.trace(text).resid_pre(sae.layer + 1)
        raw = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        pre = raw.clamp_min(0)
        top = torch.topk(pre, sae.k, dim=-1)
        acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
        acts[:skip_first] = 0
        out.append(acts)
        if tol is not None:
            open_.append(undecided_topk(raw, sae.k, tol=tol))
    return out if tol is None else (out, open_)


def test_top_examples_and_stats_match_a_brute_force_pass(llama, sae, index):
    acts, open_ = by_hand(llama, sae, TEXTS, tol=1e-4)
    everything, undecided = torch.cat(acts), torch.cat(open_)
    fires = (everything > 0).sum(0)
    # Each feature fires where the maths says, give or take the positions it leaves open (none, as a rule).
    slack = (undecided & (everything > 0)).sum(0), (undecided & (everything == 0)).sum(0)
    assert ((fires - slack[0] <= index.tensors["fires"]) & (index.tensors["fires"] <= fires + slack[1])).all()
    assert index.counts["tokens"] == everything.shape[0]
    for f in [int(fires.argmax()), int(fires.argmin()), 7, 50]:
        # The index's rule: the largest at float16 precision first, equal ones by the lower text index (texts
        # that start alike tie exactly at their first tokens).
        peaks = sorted(
            ((float(a[:, f].max()), t) for t, a in enumerate(acts) if a[:, f].max() > 0),
            key=lambda p: (-float(rounded(torch.tensor(p[0]), 11)), p[1]),
        )
        got = index.top_examples(f)
        # The texts where it peaks highest, best first (peaks within rounding of each other either way).
        assert_ranked([e.text_index for e in got], torch.tensor([float(a[:, f].max()) for a in acts]), tol=1e-4)
        assert len(got) == min(4, len(peaks))
        assert [e.activation for e in got] == pytest.approx([v for v, _ in peaks[:4]], rel=1e-5)
        for e in got:
            assert e.activations[e.peak] == pytest.approx(e.activation, rel=1e-3)  # float16 window
        s = index.stats(f)
        assert s["fires"] == int(index.tensors["fires"][f])
        assert s["density"] == pytest.approx(s["fires"] / everything.shape[0])
        if fires[f] and not undecided[:, f].any():  # where every code of f is decided, its numbers are the scan's
            live = everything[:, f][everything[:, f] > 0].double()
            assert s["fires"] == int(fires[f])
            assert s["mean"] == pytest.approx(float(live.mean()), rel=1e-6)
            assert s["max"] == pytest.approx(float(live.max()), rel=1e-6)
            assert s["log10_density"] == pytest.approx(math.log10(s["density"]))
        counts, edges = index.histogram(f)
        assert int(counts.sum()) == s["fires"] and edges.shape == (41,)


def test_samples_are_seeded_distinct_texts_where_the_feature_fires(llama, sae, index):
    acts = by_hand(llama, sae, TEXTS)
    again = FeatureIndex.build(llama, sae, TEXTS, top_k=4, samples=3, window=2, batch_size=5, progress=False)
    other = FeatureIndex.build(llama, sae, TEXTS, top_k=4, samples=3, window=2, batch_size=5, seed=1, progress=False)
    f = int(index.tensors["fires"].argmax())
    got = index.sample_examples(f)
    assert len(got) == 3 and len({e.text_index for e in got}) == 3
    for e in got:
        assert e.activation == pytest.approx(float(acts[e.text_index][e.position, f]), rel=1e-3)
    assert [e.activation for e in got] == sorted((e.activation for e in got), reverse=True)
    firing_texts = sum(1 for a in acts if a[:, f].max() > 0)
    assert firing_texts > 10  # so two seeds drawing the same 3 texts would be a 1-in-100+ coincidence
    assert [e.text_index for e in got] == [e.text_index for e in again.sample_examples(f)]
    assert {e.text_index for e in other.sample_examples(f)} != {e.text_index for e in got}


def test_memory_does_not_grow_with_the_corpus(llama, sae, index):
    bigger = FeatureIndex.build(llama, sae, TEXTS * 3, top_k=4, samples=3, window=2, batch_size=5, progress=False)
    assert {k: v.shape for k, v in bigger.tensors.items()} == {k: v.shape for k, v in index.tensors.items()}


def test_skipped_positions_are_not_indexed(llama, sae):
    skipping = SAE(sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, 1, 6, skip_first=1)
    index = FeatureIndex.build(llama, skipping, TEXTS[:10], top_k=3, window=1, progress=False)
    assert int(index.tensors["position"][index.tensors["values"] > -math.inf].min()) >= 1
    assert index.counts["tokens"] == sum(len(llama.trace(t)) - 1 for t in TEXTS[:10])


def test_tokens_above_max_norm_are_not_indexed(llama, sae):
    loud = SAE(sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, 1, 6)
    norms = torch.cat([llama.trace(t).resid_pre(2).norm(dim=-1) for t in TEXTS[:10]])
    # The threshold in the widest gap between two norms of the middle third, not on a norm: the index computes
    # the norms in padded batches, within rounding of these, and a norm equal to the threshold could go either way.
    ordered = norms.sort().values
    n = len(ordered)
    i = max(range(n // 3, 2 * n // 3), key=lambda j: float(ordered[j] - ordered[j - 1]))
    loud.max_norm = float(ordered[i - 1] + ordered[i]) / 2
    index = FeatureIndex.build(llama, loud, TEXTS[:10], top_k=3, window=1, progress=False)
    assert index.counts["tokens"] == int((norms <= loud.max_norm).sum())
    kept = index.tensors["values"] > -math.inf
    texts, positions = index.tensors["text_index"][kept].tolist(), index.tensors["position"][kept].tolist()
    assert len(texts) > 0
    for t, p in zip(texts, positions, strict=True):  # every indexed peak is a token the SAE reads
        assert float(llama.trace(TEXTS[t]).resid_pre(2)[p].norm()) <= loud.max_norm


def test_save_load_and_clear_errors(llama, sae, index, tmp_path):
    path = index.save(tmp_path / "f.idx")
    back = FeatureIndex.load(path, model=llama, sae=sae)
    assert back.top_examples(3) == index.top_examples(3) and back.stats(3) == index.stats(3)
    assert "FeatureIndex('tiny-llama', layer 1, 96 features" in repr(back)
    with pytest.raises(ValueError, match="built with another SAE"):
        FeatureIndex.load(path, sae=SAE.random(64, 96, 6, layer=1))
    with pytest.raises(ValueError, match="built on another model"):
        FeatureIndex.load(path, model=lw.load_model("tiny-gpt2"))
    with pytest.raises(ValueError, match=r"feature 96 is out of range: this SAE has features 0..95"):
        index.top_examples(96)
    data = path.read_bytes()
    (tmp_path / "cut.idx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable feature index"):
        FeatureIndex.load(tmp_path / "cut.idx")
    with pytest.raises(ValueError, match="not a feature index: its header names format 'llmasos_widgets.SAE'"):
        FeatureIndex.load(sae.save(tmp_path / "s.sae"))
    with pytest.raises(ValueError, match="reads 32-wide activations"):
        FeatureIndex.build(llama, SAE.random(32, 16, 2, layer=0), TEXTS, progress=False)
    with pytest.raises(ValueError, match="the corpus is empty"):
        FeatureIndex.build(llama, sae, [], progress=False)
    assert index.features_for_token("no such token") == []
