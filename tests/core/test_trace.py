import pytest
import torch

import llmasos_widgets as lw
from tests._numbers import assert_greedy, assert_ranked
from tests.conftest import eager_outputs

TEXT = "The capital of France is Paris. The quick brown fox <img src=x onerror=alert(1)> jumps.\nEnd"


def test_attention_equals_eager_attention(tiny):
    trace = tiny.trace(TEXT)
    ref = eager_outputs(tiny, trace.token_ids)
    assert len(ref.attentions) == trace.n_layers
    for layer in range(trace.n_layers):
        ours = trace.attention(layer)
        assert ours.shape == (tiny.n_heads, len(trace), len(trace))
        assert (ours - ref.attentions[layer][0]).abs().max().item() <= 1e-5


def test_grouped_query_attention_expands_kv_heads():
    model = lw.load_model("tiny-llama")
    assert model.adapter.n_kv_heads == 2 and model.n_heads == 4
    pattern = model.trace(TEXT).attention(1)
    assert pattern.shape[0] == 4
    assert torch.allclose(pattern.sum(-1), torch.ones(pattern.shape[:2]), atol=1e-5)


def test_causal_models_never_attend_forward(tiny):
    pattern = tiny.trace(TEXT).attention(0)
    upper = torch.triu(torch.ones(pattern.shape[1:]), diagonal=1).bool()
    if tiny.is_causal:
        assert pattern[:, upper].abs().max().item() == 0.0
    else:
        assert pattern[:, upper].min().item() > 0.0


def test_logits_and_residual_stream_match_the_model(tiny):
    trace = tiny.trace(TEXT)
    ref = eager_outputs(tiny, trace.token_ids)
    assert (trace.logits - ref.logits[0]).abs().max().item() <= 1e-4
    assert (trace.logits_at(3) - ref.logits[0, 3]).abs().max().item() <= 1e-4
    # HF's hidden_states[l] is the input of block l for l < n_layers.
    for layer in range(trace.n_layers):
        assert torch.allclose(trace[f"blocks.{layer}.hook_resid_pre"], ref.hidden_states[layer][0], atol=1e-6)
    assert trace.residual.shape == (trace.n_layers + 1, len(trace), tiny.d_model)


def test_mlp_post_equals_a_plain_forward_hook_on_the_output_projection(tiny):
    trace = tiny.trace(TEXT)
    seen = {}
    module = tiny.adapter.mlp_out(1)
    handle = module.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0][0].clone()))
    try:
        with torch.no_grad():
            tiny.model(torch.tensor([trace.token_ids]))  # the model as loaded, hooked directly
    finally:
        handle.remove()
    # The trace's pass runs the base model (no LM head, its own arguments): the same maths, not the same call.
    torch.testing.assert_close(trace["blocks.1.mlp.hook_post"], seen["x"], rtol=1e-5, atol=1e-6)


def test_tokens_and_offsets_point_into_the_text():
    model = lw.load_model("tiny-llama")
    trace = model.trace(TEXT)
    assert trace.tokens[:3] == ["The", " capital", " of"]
    assert "".join(trace.tokens) == TEXT
    for token, (start, end) in zip(trace.tokens, trace.offsets, strict=False):
        assert TEXT[start:end] == token


def test_bert_offsets_skip_special_tokens():
    trace = lw.load_model("tiny-bert").trace("Hello Paris")
    assert trace.tokens[0] == "[CLS]" and trace.tokens[-1] == "[SEP]"
    assert trace.offsets[0] == (0, 0)
    assert "Hello Paris"[slice(*trace.offsets[1])] == trace.tokens[1] == "Hello"  # as written, not lower-cased


def test_top_predictions_are_the_softmax_top_k(tiny):
    trace = tiny.trace(TEXT)
    preds = trace.top_predictions(-1, k=5)
    probs = torch.softmax(trace.logits[-1], -1)  # every position's logits at once: another matrix shape
    assert_ranked([p.id for p in preds], probs, k=5, tol=1e-6)
    assert [p.prob for p in preds] == pytest.approx(probs[[p.id for p in preds]].tolist(), rel=1e-5)
    assert preds[0].prob == pytest.approx(probs.max().item(), rel=1e-5)
    assert preds[0].token == tiny.decode_token(preds[0].id)


def test_generate_trace_marks_generated_tokens_and_matches_generate():
    model = lw.load_model("tiny-llama")
    trace = model.generate_trace("The capital of France", max_new_tokens=5)
    n_prompt = len(model.trace("The capital of France"))
    assert trace.generated == [False] * n_prompt + [True] * 5
    assert trace.token_ids[:n_prompt] == model.trace("The capital of France").token_ids
    # Greedy: each generated token is the model's own top next token after the ones before it.
    assert_greedy(model, trace.token_ids[:n_prompt], trace.token_ids[n_prompt:])
    start, end = trace.offsets[n_prompt]
    assert trace.text[start:end] == trace.tokens[n_prompt]


def test_attention_cache_is_bounded_and_nothing_quadratic_is_kept():
    trace = lw.load_model("tiny-gpt2").trace(TEXT * 3)
    trace.attention_cache_bytes = 1
    first = trace.attention(0)
    trace.attention(1)
    assert list(trace._attention) == [1]  # layer 0 was evicted ...
    assert torch.equal(trace.attention(0), first)  # ... and recomputes to the same pattern
    # What a trace keeps grows as tokens x width per layer, never tokens x tokens.
    kept = [*trace._resid, *trace._mlp_post]
    assert all(t.dim() == 2 and t.shape[0] == len(trace) for t in kept)


@pytest.mark.parametrize("bad", ["", "   \n\t "])
def test_empty_text_is_refused(bad):
    with pytest.raises(ValueError, match="empty"):
        lw.load_model("tiny-llama").trace(bad)


def test_text_past_the_context_is_refused_unless_truncated():
    model = lw.load_model("tiny-gpt2")  # context 256
    long = "the quick brown fox " * 200
    with pytest.raises(ValueError, match=r"past tiny-gpt2's context of 256 tokens.*truncate=True"):
        model.trace(long)
    assert len(model.trace(long, truncate=True)) == 256


def test_layer_position_and_activation_names_are_checked():
    trace = lw.load_model("tiny-llama").trace("Hello world")
    with pytest.raises(ValueError, match=r"layer 2 is out of range: tiny-llama has layers 0..1"):
        trace.attention(2)
    with pytest.raises(ValueError, match=r"position 99 is out of range"):
        trace.top_predictions(99)
    with pytest.raises(ValueError, match="k must be"):
        trace.top_predictions(0, k=0)
    with pytest.raises(KeyError, match="unknown activation"):
        trace["blocks.0.nonsense"]
    assert trace.attention(-1).shape == trace.attention(1).shape


def test_generation_needs_a_causal_model_and_positive_length():
    with pytest.raises(ValueError, match="generation needs a causal LM"):
        lw.load_model("tiny-bert").generate_trace("hello")
    with pytest.raises(ValueError, match="max_new_tokens"):
        lw.load_model("tiny-llama").generate_trace("hello", max_new_tokens=0)


@pytest.mark.parametrize("window", [None, 3])
def test_mask_of_a_query_block_equals_the_full_mask(window):
    adapter = lw.load_model("tiny-llama").adapter
    before = getattr(adapter.config, "sliding_window", None)
    adapter.config.sliding_window = window
    try:
        full = adapter.cap_and_mask_(torch.zeros(2, 12, 12), 0, 0)
        for first in (0, 4, 9):  # a block of queries first..first+3 against every key
            block = adapter.cap_and_mask_(torch.zeros(2, 3, 12), 0, first)
            assert torch.equal(block, full[:, first : first + 3])
    finally:
        adapter.config.sliding_window = before
    allowed = full[0] == 0
    assert allowed.tril().equal(allowed)  # causal
    if window:
        assert not allowed[5, 5 - window] and allowed[5, 5 - window + 1]
