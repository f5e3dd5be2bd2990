import numpy as np
import pytest

import llmasos_widgets as lw
from llmasos_widgets.views import wire
from tests._views import ask, capture


@pytest.fixture()
def view():
    trace = lw.load_model("tiny-llama").trace("The capital of France is <b>bold</b>")
    view = lw.TokensView(trace)
    capture(view)
    return view


def test_state_carries_tokens_and_offsets(view):
    assert view.tokens == view.trace.tokens
    assert view.offsets[1] == list(view.trace.offsets[1])
    assert view.selected_token == -1 and view.model_name == "tiny-llama"


def test_predictions_request_answers_in_binary(view):
    content, buffers = ask(view, what="predictions", position=2, k=4)
    assert content["type"] == "response" and content["id"] == 7 and content["position"] == 2
    arrays = {d["name"]: wire.decode(d, buffers[d["buffer"]]) for d in content["arrays"]}
    expected = view.trace.top_predictions(2, k=4)
    assert arrays["ids"].tolist() == [p.id for p in expected]
    assert np.allclose(arrays["probs"], [p.prob for p in expected])
    assert content["tokens"] == [p.token for p in expected]


@pytest.mark.parametrize(
    "request_, message",
    [
        ({"what": "predictions", "position": 500}, "position 500 is out of range"),
        ({"what": "predictions", "position": 0, "k": 0}, "k must be"),
        ({"what": "predictions", "position": 0, "bogus": 1}, "bogus"),
        ({"what": "nonsense"}, "cannot answer 'nonsense'"),
    ],
)
def test_bad_requests_come_back_as_errors_not_exceptions(view, request_, message):
    content, _ = ask(view, **request_)
    assert content["type"] == "error" and message in content["message"]


def test_selection_is_validated_in_python(view):
    view.selected_token = -1
    view.selected_token = 3
    assert view.selected_token == 3
    with pytest.raises(ValueError, match="position 99 is out of range"):
        view.selected_token = 99
    with pytest.raises(ValueError, match="layer 7 is out of range"):
        view.selected_layer = 7
    with pytest.raises(ValueError, match="head 4 is out of range"):
        view.selected_head = 4


def test_views_need_a_trace():
    with pytest.raises(ValueError, match="needs a Trace"):
        lw.TokensView("some text")
