"""What every view shares (ViewBase): its argument checks."""

import pytest

import llmasos_widgets as lw

VIEWS = [lw.TokensView, lw.AttentionView, lw.NeuronView, lw.LensView]


@pytest.fixture(scope="module")
def trace():
    return lw.load_model("tiny-llama").trace("The capital of France is")


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.__name__)
def test_an_unknown_keyword_is_a_type_error_naming_it(trace, view):
    with pytest.raises(TypeError, match=rf"{view.__name__}\(\) got unexpected keyword argument\(s\): layr"):
        view(trace, layr=3)


def test_result_views_refuse_unknown_keywords_too(trace):
    res = lw.attribute(trace.model, "The cat sat", method="saliency", progress=False)
    with pytest.raises(TypeError, match="normalise"):
        lw.SaliencyView(res, normalise="sum_abs")


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.__name__)
@pytest.mark.parametrize("source", ["The capital of France is", None, 3])
def test_something_other_than_a_trace_is_a_value_error(view, source):
    with pytest.raises(ValueError, match=rf"{view.__name__} needs a Trace \(from model.trace\(text\)\), not"):
        view(source)
