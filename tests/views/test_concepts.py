import warnings

import numpy as np
import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.concepts import projection
from llmasos_widgets.views import wire
from tests._views import ask, capture

SHOUT = [
    f"STOP {w.upper()} NOW!!! GET OUT!!!"
    for w in "apple bread chair door eagle fox goat hill iron jar kite lamp".split()
]
CALM = [
    f"please, the {w} is quite fine today."
    for w in "apple bread chair door eagle fox goat hill iron jar kite lamp".split()
]
INPUTS = ["The capital of France is", "I went to the", "She said that"]


@pytest.fixture(scope="module")
def model():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def result(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        concepts = [lw.Concept("shout", SHOUT), lw.Concept("calm", CALM)]
        return lw.tcav(model, INPUTS, 5, concepts, [0, 1], n_random=3, progress=False)


@pytest.fixture()
def view(result):
    view = lw.ConceptView(result)
    capture(view)
    return view


def test_state_mirrors_the_result(view, result):
    assert view.concepts == ["shout", "calm"] and view.layers == [0, 1]
    assert view.rows == result.rows()
    assert view.n_random == 3 and view.target == result.target and view.model_name == "tiny-llama"
    assert view.selected_layer in (0, 1) and view.has_trace is False and view.tokens == []


def test_bad_input_is_refused_with_a_clear_message(view, result, model):
    with pytest.raises(ValueError, match="needs a TCAVResult"):
        lw.ConceptView(model.trace("hi"))
    with pytest.raises(ValueError, match=r"layer 5 is not in this result: its layers are \[0, 1\]"):
        view.selected_layer = 5
    message = r"concept 3 is out of range: this result.s concepts \[.shout., .calm.\] are 0\.\.1"
    with pytest.raises(ValueError, match=message):
        view.selected_concept = 3
    with pytest.raises(ValueError, match="show_projection"):
        view.selected_token = 0
    with pytest.raises(ValueError, match="needs a Trace"):
        view.show_projection("some text")
    with pytest.raises(ValueError, match="measured on 'tiny-llama'"):
        view.show_projection(lw.load_model("tiny-gpt2").trace("hi"))


def test_projection_request_without_a_trace_is_an_error_message(view):
    content, _ = ask(view, what="projection", concept=0, layer=1)
    assert content["type"] == "error" and "show_projection" in content["message"]


def test_projection_request_sends_the_cosines(view, result, model):
    trace = model.trace("STOP THAT NOW!!! please, it is fine.")
    assert view.show_projection(trace) is view
    assert view.tokens == trace.tokens and view.has_trace
    content, buffers = ask(view, what="projection", concept=1, layer=1)
    assert content["type"] == "response" and content["concept"] == 1 and content["layer"] == 1
    (desc,) = content["arrays"]
    got = wire.decode(desc, buffers[desc["buffer"]])
    expected = projection(result, trace, "calm", 1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert content["min"] == pytest.approx(expected.min()) and content["max"] == pytest.approx(expected.max())
    content, _ = ask(view, what="projection", concept=0, layer=9)
    assert content["type"] == "error" and "layer 9 is not in this result" in content["message"]
    view.selected_token = 2
    assert view.selected_token == 2


def test_chart_request_is_a_bokeh_item_marking_the_selected_layer(view, result):
    content, _ = ask(view, what="chart", layer=1, width=view.chart_widths[1])
    assert content["type"] == "response" and content["layer"] == 1
    item = content["item"]
    assert {"doc", "root_id"} <= set(item)
    roots = item["doc"]["roots"]
    figure = roots[0] if isinstance(roots, list) else roots["references"][0]
    assert figure["attributes"]["name"] == "lw-tcav-chart"
    assert figure["attributes"]["tags"] == [1]
    fig = lw.views.concepts.tcav_figure(result, selected_layer=1)
    data = fig.select(name="scores")[0].data_source.data
    # One bar per layer and concept plus the random baseline, at the mean over runs.
    assert list(data["x"]) == [(f"layer {la}", c) for la in (0, 1) for c in ("shout", "calm", "random")]
    assert data["score"][3] == pytest.approx(float(result.scores[0, 1].mean()))
    assert data["score"][5] == pytest.approx(float(result.random_scores[1].mean()))
    assert data["line"] == [0.0, 0.0, 0.0, 2.5, 2.5, 2.5]
    marks = [
        "*" if s else "?" if not r else "" for s, r in zip(result.significant[:, 1], result.reliable[:, 1], strict=True)
    ]
    assert data["mark"][3:5] == marks
    content, _ = ask(view, what="chart", layer=4)
    assert content["type"] == "error" and "layer 4 is not in this result" in content["message"]
    # The view asks only for the widths it is told; any other is refused, so an export can hold them all.
    content, _ = ask(view, what="chart", layer=1, width=500)
    assert content["type"] == "error" and "chart width 500 is not one of 360, 520, 680, 840 px" in content["message"]


def test_bokehjs_request_ships_the_installed_bokeh(view):
    import bokeh

    content, _ = ask(view, what="bokehjs")
    assert content["version"] == bokeh.__version__
    assert "bokeh.min.js" in content["source"][:100] and len(content["source"]) > 500_000
    assert "cdn.bokeh.org" not in content["source"][:5000]


def test_projection_uses_the_mean_of_the_runs_cavs(result, model):
    trace = model.trace("STOP!!!")
    d = result.directions[0, 1].mean(0)
    expected = torch.nn.functional.cosine_similarity(trace.resid_pre(2), d[None], dim=-1)
    torch.testing.assert_close(projection(result, trace, 0, 1), expected, atol=1e-5, rtol=1e-4)
