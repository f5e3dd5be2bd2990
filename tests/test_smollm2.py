"""Integration tests on the bundled models (slow: they load real weights)."""

import pytest

import llmasos_widgets as lw
from tests.conftest import eager_outputs

pytestmark = pytest.mark.slow

LONG = (
    "In the beginning of the twentieth century, the city of Paris grew quickly. New lines of the metro "
    "opened every year, and artists from every country came to live in Montmartre. "
) * 8


def test_paris_is_the_top_prediction(smollm2):
    trace = smollm2.trace("The capital of France is")
    assert trace.tokens == ["The", " capital", " of", " France", " is"]
    assert trace.top_predictions(-1, k=5)[0].token == " Paris"


def test_attention_equals_eager_on_200_tokens(smollm2):
    trace = smollm2.trace(LONG, truncate=False)
    trace = smollm2.trace(smollm2.tokenizer.decode(trace.token_ids[:200]))
    assert len(trace) >= 195
    ref = eager_outputs(smollm2, trace.token_ids)
    diffs = [(trace.attention(layer) - ref.attentions[layer][0]).abs().max().item() for layer in range(trace.n_layers)]
    worst = max(diffs)
    assert worst <= 1e-5
    assert trace.attention(0).shape == (9, len(trace), len(trace))


def test_generation_trace_continues_with_paris(smollm2):
    trace = smollm2.generate_trace("The capital of France is", max_new_tokens=3)
    assert trace.tokens[5] == " Paris" and trace.generated[5] and not trace.generated[4]
    assert trace.text.startswith("The capital of France is Paris")


def test_minilm_loads_offline_and_its_attention_is_exact():
    model = lw.load_model("minilm-l6")
    assert (model.n_layers, model.n_heads, model.is_causal) == (6, 12, False)
    trace = model.trace("Paris is the capital of France.")
    ref = eager_outputs(model, trace.token_ids)
    assert max((trace.attention(layer) - ref.attentions[layer][0]).abs().max().item() for layer in range(6)) <= 1e-5
    with pytest.raises(ValueError, match="no language-model head"):
        trace.top_predictions(-1)


def test_a_gguf_file_loads_directly():
    from llmasos_widgets.models import bundled_path

    model = lw.load_model(str(bundled_path("smollm2-135m")))  # the .gguf path: dequantized in memory
    assert model.adapter.family == "llama" and model.n_layers == 30
    assert model.trace("The capital of France is").top_predictions(-1, k=1)[0].token == " Paris"
