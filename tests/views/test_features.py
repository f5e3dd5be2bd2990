"""FeatureView controller: every request answered against an independent reference (the SAE's maths by hand,
the unembedding product by hand, lw.steer, the FeatureIndex's own queries)."""

import json

import numpy as np
import pytest
import torch
import traitlets

import llmasos_widgets as lw
from llmasos_widgets.views.export import record, request_key
from llmasos_widgets.views.features import EXPORT_DASHBOARDS, STEER_SCALES, TEXT_BINS, VOCAB_K, quantile_bands
from tests._numbers import assert_ranked, topk_relu
from tests._views import arrays, ask, capture, wait_for

TEXT = "The capital of France is Paris, and the capital of Italy is Rome. 大型语言模型 🤖🧠 naïve café."


@pytest.fixture(scope="module")
def model():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def sae(model):
    # A small SAE trained in seconds: training is not the point, but its features are real ones.
    return lw.train_sae(
        model, lw.sample_texts()[:200], layer=1, n_latents=128, k=8, batch_tokens=256, max_steps=30, progress=False
    )


@pytest.fixture(scope="module")
def index(model, sae):
    return lw.FeatureIndex.build(model, sae, lw.sample_texts()[:40], top_k=5, samples=8, progress=False)


@pytest.fixture()
def view(model, sae, index):
    return capture(lw.FeatureView(model.trace(TEXT), sae, index))


def by_hand(sae, x, view):
    """TopK encode written out in float64: (x − b_dec) W_enc + b_enc, keep the k largest, ReLU; [pos, n_latents].

    Where a pre-activation is within rounding of its position's k-th largest (or of 0) the maths does not decide
    whether it is kept: the view's own code decides there (tests/_numbers.py, topk_relu).
    """
    pre = (x.double() - sae.b_dec.double()) @ sae.W_enc.double() + sae.b_enc.double()
    got = torch.stack([view.feature_activations(f) for f in range(sae.n_latents)], dim=-1)
    return topk_relu(pre, sae.k, got, tol=1e-4 * max(1.0, float(pre.abs().max())), atol=1e-4)


def test_a_tokens_features_are_the_saes_encode_by_hand(view, sae):
    dense = by_hand(sae, view.trace.resid_pre(sae.layer + 1), view)  # blocks.1.hook_resid_post
    for position in (1, 5, len(view.trace) - 1):
        content, buffers = ask(view, what="token", position=position, k=20)
        assert content["type"] == "response" and content["position"] == position and not content["skipped"]
        got = arrays(content, buffers)
        row = dense[position]
        # Its active features, largest first (near-equal activations in either order).
        assert sorted(got["features"].tolist()) == row.nonzero().flatten().tolist()
        assert_ranked(got["features"], row, tol=1e-5)
        np.testing.assert_allclose(got["activations"], row[got["features"].tolist()].numpy(), rtol=1e-4, atol=1e-6)
    content, buffers = ask(view, what="token", position=3, k=2)
    assert len(arrays(content, buffers)["features"]) <= 2


def test_a_features_dashboard(view, sae, model, index):
    f = int(view.token_features(4)[0][0])
    content, buffers = ask(view, what="feature", feature=f, k=5, bins=12)
    assert content["type"] == "response", content
    got = arrays(content, buffers)
    column = by_hand(sae, view.trace.resid_pre(sae.layer + 1), view)[:, f]
    np.testing.assert_allclose(got["activations"], column.numpy(), rtol=1e-4, atol=1e-6)
    assert got["hist"].sum() == content["text_fires"] == int((column > 0).sum())
    assert content["text_tokens"] == len(view.trace) and content["text_max"] == pytest.approx(float(column.max()))
    # The decoder row through the unembedding, with the final RMSNorm's gain: W_U (g ⊙ W_dec[f]).
    direct = model.model.lm_head.weight.detach() @ (model.model.model.norm.weight.detach() * sae.W_dec[f])
    tol = 1e-5 * float(direct.abs().max())  # float32 products of another order: near-equal logits either way
    assert_ranked(got["promoted"], direct, k=5, tol=tol)
    assert_ranked(got["suppressed"], -direct, k=5, tol=tol)
    np.testing.assert_allclose(got["promoted_logits"], torch.topk(direct, 5).values.numpy(), rtol=1e-5)
    assert content["promoted_tokens"] == [model.decode_token(i) for i in got["promoted"].tolist()]
    # From the index: its own answers, the sample split in quantile bands, the examples' activations.
    assert content["stats"]["fires"] == index.stats(f)["fires"]
    assert [e["activation"] for e in content["top_examples"]] == [e.activation for e in index.top_examples(f)]
    sample = index.sample_examples(f)
    assert [e["tokens"] for e in content["sample_examples"]] == [e.tokens for e in sample]
    assert content["bands"] == quantile_bands([e.activation for e in sample])
    assert got["index_hist"].tolist() == index.histogram(f)[0].tolist()
    flat = [a for e in [*index.top_examples(f), *sample] for a in e.activations]
    np.testing.assert_allclose(got["example_activations"], flat, rtol=1e-3, atol=1e-3)
    assert "index_note" not in content


def test_without_an_index_the_dashboard_says_what_is_missing_and_search_reads_the_text(model, sae):
    view = capture(lw.FeatureView(model.trace(TEXT), sae))
    assert "no FeatureIndex" in view.index_note
    content, _ = ask(view, what="feature", feature=0)
    assert content["type"] == "response" and "lw.FeatureIndex.build" in content["index_note"]
    assert "top_examples" not in content
    token = view.trace.tokens[4]
    content, _ = ask(view, what="search", token=token, k=5)
    assert content["source"] == "text"
    where = [i for i, t in enumerate(view.trace.tokens) if t == token]
    assert content["positions"] == len(where)
    expected = {f for i in where for f, _ in view.token_features(i, 100)}
    assert {r["feature"] for r in content["results"]} <= expected and content["results"]
    top = content["results"][0]
    assert top["activation"] == pytest.approx(
        max(a for i in where for g, a in view.token_features(i, 100) if g == top["feature"])
    )


def test_search_with_an_index_is_features_for_token(view, index):
    ex = index.top_examples(int(index.tensors["fires"].argmax()))[0]
    token = ex.tokens[ex.peak]
    content, _ = ask(view, what="search", token=token, k=4)
    assert content["source"] == "index"
    assert [(r["feature"], r["count"]) for r in content["results"]] == [
        (f, c) for f, c, _ in index.features_for_token(token, k=4)
    ]
    content, _ = ask(view, what="search", token="", k=4)
    assert content["type"] == "error" and "non-empty" in content["message"]


def test_skipped_first_position_is_flagged_and_left_out_of_the_texts_numbers(model):
    sae = lw.SAE.random(64, 64, 4, layer=0)
    sae.skip_first = 1
    view = capture(lw.FeatureView(model.trace(TEXT), sae))
    assert view.unread == [0]
    content, _ = ask(view, what="token", position=0)
    assert content["skipped"] is True
    assert ask(view, what="token", position=1)[0]["skipped"] is False
    f = int(view._indices[0, 0])
    content, buffers = ask(view, what="feature", feature=f)
    column = view.feature_activations(f)
    assert content["text_tokens"] == len(view.trace) - 1
    assert content["text_fires"] == int((column[1:] > 0).sum())  # position 0 is not counted
    assert arrays(content, buffers)["activations"][0] == pytest.approx(float(column[0]))  # but shown (greyed)


def test_bad_input_is_a_clear_error_and_the_view_stays_usable(model, sae, index):
    trace = model.trace(TEXT)
    with pytest.raises(ValueError, match="this SAE reads 32-wide activations but tiny-llama's residual stream is 64"):
        lw.FeatureView(trace, lw.SAE.random(32, 64, 4, layer=1))
    with pytest.raises(ValueError, match="layer 5 is out of range: tiny-llama has layers 0..1"):
        lw.FeatureView(trace, lw.SAE.random(64, 64, 4, layer=5))
    with pytest.raises(ValueError, match="this SAE was made for another model"):
        lw.FeatureView(lw.load_model("tiny-gpt2").trace(TEXT), sae)  # trained on tiny-llama
    with pytest.raises(ValueError, match="needs an SAE"):
        lw.FeatureView(trace, "sae")
    with pytest.raises(ValueError, match="built with another SAE"):
        lw.FeatureView(trace, lw.SAE.random(64, 128, 8, layer=1), index)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        lw.FeatureView(trace, sae, layr=1)
    view = capture(lw.FeatureView(trace, sae, index))
    cases = [
        ({"what": "feature", "feature": 128}, "feature 128 is out of range: this SAE has features 0..127"),
        ({"what": "feature", "feature": -129}, "feature -129 is out of range: this SAE has features 0..127 (or -128"),
        ({"what": "token", "position": 999}, "position 999 is out of range"),
        ({"what": "token", "position": 1, "k": 0}, "k must be an int from 1 to 100"),
        ({"what": "feature", "feature": 1, "bins": 0}, "bins must be an int from 1 to 200"),
    ]
    for request, message in cases:
        content, _ = ask(view, **request)
        assert content["type"] == "error" and message in content["message"], content
    with pytest.raises(ValueError, match="feature 500 is out of range"):
        view.selected_feature = 500
    view.selected_feature = 3
    assert ask(view, what="feature", feature=3)[0]["type"] == "response"  # still answers


def test_steering_with_a_feature_is_lw_steer_with_its_decoder_row(view, sae, model):
    f = int(view.token_features(4)[0][0])
    direction = sae.direction(f)
    # An SAE of layer l reads blocks.l.hook_resid_post: the stream entering block l + 1.
    assert direction.layer == sae.layer + 1 and torch.equal(direction.vector, sae.W_dec[f].float())
    view.steer_tokens = 5
    step = len(STEER_SCALES) - 1  # +2 × the stream's norm
    view._on_custom_msg(view, {"type": "request", "id": 8, "what": "steer", "feature": f, "step": step}, [])
    content, _ = wait_for(view, "response")[-1]
    assert content["what"] == "steer" and content["feature"] == f and content["scale"] == STEER_SCALES[step]
    alpha = STEER_SCALES[step] * view.stream_norm / direction.norm
    assert content["alpha"] == pytest.approx(alpha)
    # lw.steer at the coefficient the view used (the same call: the same tokens, however near two logits are).
    ref = lw.steer(model, view.trace.text, direction, content["alpha"], max_new_tokens=5)
    assert content["steered_ids"] == ref.steered_ids and content["baseline_ids"] == ref.baseline_ids
    assert content["changed"] == ref.changed and content["layer"] == sae.layer + 1
    assert view.stream_norm == pytest.approx(float(view.trace.resid_pre(2).norm(dim=-1).median()))
    sv = view.steering_view(f, alphas=(-1, 1))
    assert isinstance(sv, lw.SteeringView) and sv.layer == sae.layer + 1
    assert sv.direction_name == f"SAE L{sae.layer} feature {f}" and sv.max_new_tokens == 5
    with pytest.raises(ValueError, match="no feature is selected"):
        view.steering_view()


def test_an_encoder_views_features_but_cannot_steer():
    bert = lw.load_model("tiny-bert")
    view = capture(lw.FeatureView(bert.trace("a b c d"), lw.SAE.random(64, 32, 4, layer=0)))
    assert view.can_steer is False
    assert ask(view, what="feature", feature=1)[0]["type"] == "response"


def test_selection_links_like_every_view(model, sae):
    trace = model.trace(TEXT)
    fv, tv, nv = lw.FeatureView(trace, sae), lw.TokensView(trace), lw.NeuronView(trace)
    assert len(lw.link(fv, tv, nv, names=("selected_token",))) == 2  # page links (ipywidgets.jslink)
    link = traitlets.link((fv, "selected_token"), (nv, "selected_token"))  # marimo's way, in Python
    fv.selected_token = 6
    assert nv.selected_token == 6
    link.unlink()
    assert fv.selected_layer == sae.layer  # the layer the SAE reads
    assert lw.FeatureView(trace, sae, token=-2, feature=7).selected_token == len(trace) - 2  # -1 is "none"


def test_unicode_text_keeps_its_characters(model, sae):
    trace = model.trace(TEXT)
    view = lw.FeatureView(trace, sae)
    assert "".join(view.tokens) == TEXT
    assert "🤖" in "".join(view.tokens) and "大" in "".join(view.tokens)


def test_export_records_every_tokens_features_and_a_bounded_number_of_dashboards(model, sae, index):
    view = lw.FeatureView(model.trace(TEXT), sae, index, token=4, feature=2)
    recorded, note = record(view)
    n = len(view.trace)
    tokens = [json.loads(key) for key in recorded if json.loads(key)["what"] == "token"]
    assert sorted(r["position"] for r in tokens) == list(range(n))
    dashboards = [json.loads(key)["feature"] for key in recorded if json.loads(key)["what"] == "feature"]
    assert dashboards[0] == 2 and len(dashboards) == EXPORT_DASHBOARDS
    assert set(f for f, _ in view.token_features(4)) <= set(dashboards)
    # The page's params: it reads them from the read-only traits vocab_k and text_bins.
    assert request_key({"what": "feature", "feature": 2, "k": view.vocab_k, "bins": view.text_bins}) in recorded
    assert "search and steering need the kernel" in note
    assert all(m["content"]["type"] == "response" for a in recorded.values() for m in a["messages"])


def test_the_dashboards_params_travel_as_read_only_state(view):
    """The page asks for a dashboard with the params it reads from the state, never typed again in TS."""
    state = view.get_state()
    assert (state["vocab_k"], state["text_bins"]) == (VOCAB_K, TEXT_BINS)
    content, buffers = ask(view, what="feature", feature=3, k=state["vocab_k"], bins=state["text_bins"])
    got = arrays(content, buffers)
    assert len(got["promoted"]) == len(content["suppressed_tokens"]) == VOCAB_K and len(got["hist"]) == TEXT_BINS
    for name in ("vocab_k", "text_bins"):
        with pytest.raises(traitlets.TraitError, match="read-only"):
            setattr(view, name, 5)


def test_clicks_read_the_cached_codes_and_a_dashboard_is_small(model, sae, index, monkeypatch):
    """The trace is encoded once, when the view is made; a click reads the cached codes, never the encoder.

    (How long a click takes is bench/features.py's business, at T = 1,024; here what makes it short.)
    """
    text = " ".join(lw.sample_texts()[:40])
    ids = model.tokenizer(text)["input_ids"][:1024]
    view = capture(lw.FeatureView(model.trace(model.tokenizer.decode(ids), truncate=True), sae, index))

    def encoder_ran(*args, **kwargs):
        raise AssertionError("a click ran the SAE's encoder")

    monkeypatch.setattr(sae, "encode", encoder_ran)
    for position in range(0, len(view.trace), 64):
        assert ask(view, what="token", position=position)[0]["type"] == "response"
    content, buffers = ask(view, what="feature", feature=int(view.token_features(5)[0][0]))
    assert content["type"] == "response", content
    size = len(json.dumps(content)) + sum(len(b) for b in buffers)
    assert size < 200_000


def test_a_massive_token_mid_text_is_unread_like_the_first_position(model):
    trace = model.trace(TEXT)
    norms = trace.resid_pre(1).norm(dim=-1)
    loud = int(norms[1:].argmax()) + 1  # pretend the loudest token past position 0 is a massive activation
    sae = lw.SAE.random(64, 64, 4, layer=0)
    below = float(norms[norms < norms[loud]].max())  # the loudest norm under it: the threshold goes halfway,
    assert norms[loud] - below > 1e-3  # so that no norm is within rounding of it
    sae.max_norm = (float(norms[loud]) + below) / 2
    unread = sorted(set((norms > sae.max_norm).nonzero().flatten().tolist()))
    assert loud in unread and len(unread) <= 2  # and position 0, louder in this tiny model
    view = capture(lw.FeatureView(trace, sae))
    assert view.unread == unread
    assert ask(view, what="token", position=loud)[0]["skipped"] is True
    assert ask(view, what="token", position=loud + 1)[0]["skipped"] is (loud + 1 in unread)
    f = int(view._indices[loud, 0])
    content, _ = ask(view, what="feature", feature=f)
    assert content["text_tokens"] == len(trace) - len(unread)
