"""Explorer without a browser: panels built, selection linked both ways, messages routed, bad input refused."""

from __future__ import annotations

import json

import pytest

import llmasos_widgets as lw
from llmasos_widgets._export import record

TEXT = "The capital of France is 大型 🤖"


@pytest.fixture(scope="module")
def model():
    return lw.load_model("tiny-llama")


@pytest.fixture
def sent(monkeypatch):
    """Messages the Explorer sends to its page."""
    out: list[tuple[dict, list]] = []
    monkeypatch.setattr(lw.Explorer, "send", lambda self, content, buffers=None: out.append((content, buffers)))
    return out


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
    from llmasos_widgets._base import TEXT_TRAITS, text_traits

    assert tuple(text_traits(model.trace(TEXT))) == TEXT_TRAITS
