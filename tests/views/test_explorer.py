"""Explorer without a browser: panels built, selection linked both ways, messages routed, bad input refused."""

from __future__ import annotations

import json

import pytest

import llmasos_widgets as lw
from llmasos_widgets.views.export import record

TEXT = "The capital of France is 大型 🤖"


@pytest.fixture(scope="module")
def model():
    return lw.load_model("tiny-llama")


def test_panels_share_one_selection_both_ways(model):
    ex = lw.Explorer(model, TEXT)
    assert ex.panels == ["tokens", "attention", "saliency", "neurons", "lens"]
    assert ex.tokens == model.trace(TEXT).tokens
    ex.selected_token = -2
    assert {name: ex.panel(name).selected_token for name in ex.panels} == dict.fromkeys(ex.panels, len(ex.tokens) - 2)
    ex.panel("lens").selected_layer = 0  # a panel moved from Python: the Explorer and its followers move
    assert (ex.selected_layer, ex.panel("neurons").selected_layer, ex.panel("attention").selected_layer) == (0, 0, 0)
    ex.selected_head = 1
    assert ex.panel("attention").selected_head == 1
    assert ex.panel("neurons").selected_head == -1  # it does not follow heads


def test_a_panel_has_no_comm_of_its_own_and_answers_through_the_explorer(model, sent):
    ex = lw.Explorer(model, TEXT, panels=["tokens", "lens"])
    assert all(ex.panel(name).comm is None for name in ex.panels)
    ex._on_custom_msg(
        ex, {"type": "request", "id": 4, "what": "predictions", "position": 2, "k": 3, "panel": "tokens"}, []
    )
    (content, buffers), *_ = sent
    assert (content["type"], content["id"], content["panel"], len(buffers)) == ("response", 4, "tokens", 2)
    expected = [p.id for p in ex.trace.top_predictions(2, k=3)]
    assert content["position"] == 2 and len(expected) == 3

    ex._on_custom_msg(
        ex, {"type": "request", "id": 5, "what": "cell", "layer": 9, "position": 0, "k": 3, "panel": "lens"}, []
    )
    assert sent[-1][0]["type"] == "error" and "layer 9 is out of range" in sent[-1][0]["message"]
    ex._on_custom_msg(ex, {"type": "request", "id": 6, "what": "cell", "panel": "attention"}, [])
    assert sent[-1][0] == {"type": "error", "id": 6, "panel": "attention", "message": "no panel 'attention'"}


def test_settings_from_the_page_are_validated_and_a_refusal_resets_the_panel(model, sent):
    ex = lw.Explorer(model, TEXT, panels=["lens"])
    ex._on_custom_msg(ex, {"type": "set", "panel": "lens", "changes": {"k": 7}}, [])
    assert ex.panel("lens").k == 7 and ex.panel_states["lens"]["k"] == 7
    ex._on_custom_msg(ex, {"type": "set", "panel": "lens", "changes": {"k": 500}}, [])
    content = sent[-1][0]
    assert content["type"] == "panel_state" and content["state"]["k"] == 7 and "from 1 to 50" in content["message"]
    ex._on_custom_msg(ex, {"type": "set", "panel": "lens", "changes": {"tokens": []}}, [])
    assert "'tokens' is not a setting of the lens panel" in sent[-1][0]["message"]
    assert ex.tokens  # untouched


@pytest.mark.slow
def test_panels_that_do_not_apply_say_why_and_the_rest_work():
    encoder = lw.load_model("minilm-l6")  # a sentence encoder: no language-model head
    ex = lw.Explorer(encoder, "The cat sat on the mat")
    assert ex.panels == ["attention", "neurons"]
    assert "no language-model head: the logit lens" in ex.panel_notes["lens"]
    assert "no language-model head: next-token predictions" in ex.panel_notes["tokens"]
    assert "reference=" in ex.panel_notes["saliency"] and "attribution=lw.attribute" in ex.panel_notes["saliency"]
    assert "tcav" in ex.panel_notes["concepts"]
    with pytest.raises(ValueError, match="no 'lens' panel: .*language-model head"):
        ex.panel("lens")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"panels": ["attention", "heatmap"]}, "panels must be distinct names from tokens, attention"),
        ({"panels": []}, "panels must be distinct"),
        ({"panels": ["lens", "lens"]}, "panels must be distinct"),
        ({"collapsed": ["nope"]}, "panels must be distinct"),
        ({"layer": 7}, "layer 7 is out of range"),
    ],
)
def test_bad_arguments_name_what_is_allowed(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lw.Explorer(model, TEXT, **kwargs)


def test_bad_sources(model):
    with pytest.raises(ValueError, match="needs the text as a str"):
        lw.Explorer(model)
    with pytest.raises(ValueError, match="give a Trace alone"):
        lw.Explorer(model.trace(TEXT), TEXT)
    with pytest.raises(ValueError, match="needs a model and a text, or a Trace; not str"):
        lw.Explorer(TEXT)
    with pytest.raises(TypeError, match="unexpected keyword argument.*panel_typo"):
        lw.Explorer(model, TEXT, panel_typo=1)


def test_export_records_each_open_panel_under_its_name(model):
    ex = lw.Explorer(model, TEXT, panels=["tokens", "lens", "attention"], collapsed=["attention"])
    recorded, note = record(ex)
    keys = [json.loads(k) for k in recorded]
    assert {k["panel"] for k in keys} == {"tokens", "lens"}
    assert "attention: folded, not recorded" in note
    predictions = recorded[
        json.dumps({"k": 5, "panel": "tokens", "position": 1, "what": "predictions"}, separators=(",", ":"))
    ]
    (message,) = predictions["messages"]
    assert message["content"]["type"] == "response" and message["content"]["panel"] == "tokens"


def test_a_concept_panel_follows_the_token_and_keeps_its_own_layer(model):
    import warnings

    shout = lw.Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CAVs of a tiny random model are unreliable
        result = lw.tcav(model, ["The capital"], 5, [shout], [0], n_random=2, progress=False)
    ex = lw.Explorer(model, TEXT, panels=["lens", "concepts"], concepts=result)
    assert ex.panels == ["lens", "concepts"] and ex.panel("concepts").has_trace
    ex.selected_token, ex.selected_layer = 2, 1
    concepts = ex.panel("concepts")
    assert concepts.selected_token == 2 and concepts.selected_layer == 0  # its CAVs are at layer 0 only
    assert "selected_layer" in ex.panel_states["concepts"] and ex.panel_links["concepts"] == ["selected_token"]


def test_the_text_traits_an_explorer_shares_are_the_ones_every_view_has(model):
    from llmasos_widgets.views.base import TEXT_TRAITS, text_traits

    assert tuple(text_traits(model.trace(TEXT))) == TEXT_TRAITS


# -- the SAE feature panel -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sae():
    return lw.SAE.random(64, 128, 8, layer=1, seed=3)  # tiny-llama's residual stream is 64 wide


def test_a_feature_panel_answers_through_the_explorer_as_the_feature_view_alone_does(model, sae, sent):
    from tests._views import arrays

    ex = lw.Explorer(model, TEXT, panels=["lens", "features"], sae=sae)
    alone = lw.FeatureView(ex.trace, sae)
    assert ex.panels == ["lens", "features"] and ex.panel("features").comm is None
    ex._on_custom_msg(
        ex, {"type": "request", "id": 4, "what": "token", "position": -1, "k": 20, "panel": "features"}, []
    )
    content, buffers = sent[-1]
    assert (content["type"], content["id"], content["panel"]) == ("response", 4, "features")
    got = arrays(content, buffers)
    expected = alone.token_features(len(ex.tokens) - 1)  # the 🤖 at the end
    assert expected and got["features"].tolist() == [f for f, _ in expected]
    assert got["activations"].tolist() == pytest.approx([a for _, a in expected])

    f = expected[0][0]
    ex._on_custom_msg(ex, {"type": "request", "id": 5, "what": "feature", "feature": f, "panel": "features"}, [])
    content, buffers = sent[-1]
    assert content["type"] == "response" and content["panel"] == "features" and content["feature"] == f
    assert arrays(content, buffers)["activations"].tolist() == pytest.approx(alone.feature_activations(f).tolist())
    ex._on_custom_msg(ex, {"type": "request", "id": 6, "what": "feature", "feature": 128, "panel": "features"}, [])
    assert sent[-1][0]["type"] == "error" and "feature 128 is out of range" in sent[-1][0]["message"]


def test_a_feature_panel_steers_through_the_explorer(model, sae, sent):
    import time

    ex = lw.Explorer(model, TEXT, panels=["features"], sae=sae)
    view = ex.panel("features")
    view.steer_tokens = 4
    f, step = view.token_features(3)[0][0], len(view.steer_scales) - 1
    ex._on_custom_msg(
        ex, {"type": "request", "id": 9, "what": "steer", "feature": f, "step": step, "panel": "features"}, []
    )
    end = time.time() + 60
    while not any(c["type"] in ("response", "error") and c["id"] == 9 for c, _ in sent) and time.time() < end:
        time.sleep(0.01)  # a stream: answered from a worker thread
    (content,) = [c for c, _ in sent if c["id"] == 9 and c["type"] in ("response", "error")]
    assert content["type"] == "response" and content["panel"] == "features", content
    direction = sae.direction(f)
    assert content["alpha"] == pytest.approx(view.steer_scales[step] * view.stream_norm / direction.norm)
    # lw.steer at the coefficient the panel used (the same call: the same tokens, however near two logits are).
    ref = lw.steer(model, TEXT, direction, content["alpha"], max_new_tokens=4)
    assert content["steered_ids"] == ref.steered_ids and content["baseline_ids"] == ref.baseline_ids


def test_a_feature_panel_follows_the_token_keeps_its_layer_and_mirrors_its_own_state(model, sae, sent):
    ex = lw.Explorer(model, TEXT, panels=["neurons", "features"], sae=lw.SAE.random(64, 128, 8, layer=0))
    features = ex.panel("features")
    assert ex.panel_links["features"] == ["selected_token"]
    ex.selected_token, ex.selected_layer = 5, 1
    assert (features.selected_token, features.selected_layer, features.layer) == (5, 0, 0)  # the SAE's layer
    assert ex.panel("neurons").selected_layer == 1
    features.selected_token = 2  # moved from Python: the Explorer and the other panels follow
    assert (ex.selected_token, ex.panel("neurons").selected_token) == (2, 2)

    state = ex.panel_states["features"]
    assert {"selected_feature", "k", "layer", "steer_scales", "can_steer"} <= set(state)
    assert "selected_token" not in state and "tokens" not in state and state["layer"] == 0
    ex._on_custom_msg(ex, {"type": "set", "panel": "features", "changes": {"selected_feature": 7}}, [])
    assert features.selected_feature == 7 and ex.panel_states["features"]["selected_feature"] == 7
    features.selected_feature = 11  # from Python: mirrored for the page
    assert ex.panel_states["features"]["selected_feature"] == 11
    ex._on_custom_msg(ex, {"type": "set", "panel": "features", "changes": {"selected_feature": 500}}, [])
    content = sent[-1][0]
    assert content["type"] == "panel_state" and content["panel"] == "features"
    assert content["state"]["selected_feature"] == 11 and "feature 500 is out of range" in content["message"]


def test_without_an_sae_or_with_one_that_does_not_fit_the_feature_panel_says_why(model):
    ex = lw.Explorer(model, TEXT)
    assert "features" not in ex.panels
    note = ex.panel_notes["features"]
    assert note.startswith("no SAE") and "train_sae" in note and "smollm2" not in note  # none ships for tiny-llama
    with pytest.raises(ValueError, match="no 'features' panel: no SAE"):
        ex.panel("features")

    for sae, message in [
        (
            lw.SAE.random(32, 64, 4, layer=1),
            "this SAE reads 32-wide activations but tiny-llama's residual stream is 64",
        ),
        (lw.SAE.random(64, 64, 4, layer=5), "layer 5 is out of range: tiny-llama has layers 0..1"),
    ]:
        with pytest.raises(ValueError, match=message):  # FeatureView's own error ...
            lw.FeatureView(model.trace(TEXT), sae)
        ex = lw.Explorer(model, TEXT, panels=["tokens", "lens", "features"], sae=sae)
        assert ex.panels == ["tokens", "lens"] and message in ex.panel_notes["features"]  # ... is the note
        ex.selected_token = 3  # and the other panels work
        assert ex.panel("lens").selected_token == 3 and ex.panel("tokens").selected_token == 3


def test_export_records_the_feature_panel(model, sae):
    from tests._views import arrays

    ex = lw.Explorer(model, TEXT, panels=["lens", "features"], sae=sae)
    ex.selected_token = 2
    recorded, note = record(ex)
    keys = [json.loads(k) for k in recorded]
    assert {k["panel"] for k in keys} == {"lens", "features"}
    alone = lw.FeatureView(ex.trace, sae)
    assert sorted(k["position"] for k in keys if k["panel"] == "features" and k["what"] == "token") == list(
        range(len(ex.tokens))
    )
    (message,) = recorded[
        json.dumps({"k": 20, "panel": "features", "position": 2, "what": "token"}, separators=(",", ":"))
    ]["messages"]
    assert message["content"]["panel"] == "features"
    got = arrays(message["content"], message["buffers"])
    assert got["features"].tolist() == [f for f, _ in alone.token_features(2)]
    assert "features: every token's features" in note


def test_the_no_sae_note_offers_a_shipped_sae_only_to_the_model_it_fits(model):
    ex = lw.Explorer(model, TEXT, panels=["lens", "features"])
    note = ex.panel_notes["features"]
    assert "train_sae" in note and "smollm2" not in note  # no SAE ships for tiny-llama


@pytest.mark.slow
def test_the_no_sae_note_offers_smollm2_its_shipped_sae(smollm2):
    note = lw.Explorer(smollm2, "The cat", panels=["lens", "features"]).panel_notes["features"]
    assert "lw.load_sae('smollm2-135m', layer=12)" in note
    assert lw.load_sae("smollm2-135m", layer=12).check_model(smollm2) is None  # and it does fit
