import numpy as np
import pytest
import traitlets

import llmasos_widgets as lw
from tests._views import arrays, capture, wait_for

TEXT = "The capital of France is"


@pytest.fixture()
def view():
    model = lw.load_model("tiny-llama")
    view = lw.SaliencyView(lw.attribute(model, TEXT, target=" Paris", baseline="mean", n_steps=8, progress=False))
    return capture(view)


def test_scores_request_sends_the_results_numbers(view):
    view._on_custom_msg(view, {"type": "request", "id": 1, "what": "scores"}, [])
    content, buffers = wait_for(view, "response")[0]
    got = arrays(content, buffers)
    assert np.array_equal(got["scores"], view.result.scores.numpy())
    assert got["mask"].tolist() == [[1.0] * 5]
    assert content["target_tokens"] == [" Paris"] and content["signed"] is True
    assert view.tokens == view.result.tokens and view.target == " Paris"


def test_a_view_of_a_trace_computes_its_first_result_when_the_page_asks():
    model = lw.load_model("tiny-llama")
    view = capture(lw.SaliencyView(model.trace(TEXT), method="saliency"))
    assert (view.result, view.version, view.method, view.can_retarget) == (None, 0, "saliency", True)
    view._on_custom_msg(view, {"type": "request", "id": 1, "what": "scores", "version": 0}, [])
    content, buffers = wait_for(view, "response")[0]
    assert wait_for(view, "progress") and view.version == 1 == content["version"]
    # lw.attribute of the same trace (the same call, the same ids: the same numbers), whose default target is the
    # trace's top prediction. (attribute of the text would run its own forward pass to choose the target: a
    # near-tie between two next tokens could then go the other way.)
    expected = lw.attribute(model, view.trace, method="saliency", progress=False)
    assert expected.target_ids == [view.trace.top_predictions(-1, k=1)[0].id] == view.result.target_ids
    assert np.array_equal(arrays(content, buffers)["scores"], expected.scores.numpy())
    assert view.target == expected.target_tokens[0]


def test_a_view_of_a_trace_needs_a_causal_model_and_no_method_with_an_attribution():
    with pytest.raises(ValueError, match="tiny-bert is an encoder: give SaliencyView an Attribution"):
        lw.SaliencyView(lw.load_model("tiny-bert").trace("a cat"))
    result = lw.attribute(lw.load_model("tiny-llama"), TEXT, method="saliency", progress=False)
    with pytest.raises(ValueError, match="method= goes with a Trace"):
        lw.SaliencyView(result, method="saliency")
    with pytest.raises(ValueError, match="needs an Attribution .* or a Trace, not str"):
        lw.SaliencyView(TEXT)


def test_recompute_streams_progress_and_changes_the_kernel_state(view):
    before = view.version
    request = {"type": "request", "id": 2, "what": "recompute", "method": "integrated_gradients", "target": " Rome"}
    view._on_custom_msg(view, request, [])
    content, buffers = wait_for(view, "response")[0]
    assert wait_for(view, "progress")
    assert view.result.target_tokens == [" Rome"] and view.target == " Rome" and view.version == before + 1
    expected = lw.attribute(view.result.model, TEXT, target=" Rome", baseline="mean", n_steps=8, progress=False)
    assert np.allclose(arrays(content, buffers)["scores"], expected.scores.numpy(), atol=1e-6)


def test_recompute_errors_reach_the_view_and_keep_the_result(view):
    old = view.result
    request = {
        "type": "request",
        "id": 3,
        "what": "recompute",
        "method": "saliency",
        "target": " Paris",
        "contrast": " Paris",
    }
    view._on_custom_msg(view, request, [])
    content, _ = wait_for(view, "error")[0]
    assert "is the target itself" in content["message"] and view.result is old


def test_generation_matrix_view_rows_and_selection():
    model = lw.load_model("tiny-llama")
    gen = model.generate_trace("The capital of", max_new_tokens=3)
    view = lw.SaliencyView(lw.attribute(model, gen, method="saliency"))
    assert view.is_matrix and not view.can_retarget and len(view.target_tokens) == 3
    view.selected_row = 2
    with pytest.raises(ValueError, match="row 3 is out of range"):
        view.selected_row = 3


def test_nonfinite_scores_are_announced(view):
    res = view.result
    res.scores[0, 1] = float("nan")
    view._show(res)
    assert "1 score(s) are NaN or infinite" in view.notice


def test_bad_arguments():
    with pytest.raises(ValueError, match="needs an Attribution"):
        lw.SaliencyView("text")
    model = lw.load_model("tiny-gpt2")
    view = lw.SaliencyView(lw.attribute(model, TEXT, method="saliency"))
    with pytest.raises(ValueError, match="normalize 'max' is not one of"):
        view.normalize = "max"


def test_the_views_choices_are_the_ones_python_accepts(view):
    # The front-end builds its pickers from these traits: every choice offered is accepted, and
    # the view cannot change them.
    assert [value for value, _ in view.normalizations] == ["max_abs", "sum_abs", "none"]
    assert all(meaning for _, meaning in view.normalizations)
    for value, _ in view.normalizations:
        view.normalize = value
    for method in view.methods:
        assert view.recompute(method=method, progress=False).method == method
    with pytest.raises(traitlets.TraitError, match="read-only"):
        view.methods = ["saliency"]
