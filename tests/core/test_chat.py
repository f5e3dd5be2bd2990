"""Chat transcripts (model.trace(messages)) and model objects (load_model(hf_model, tokenizer=tok)).

References: the tokenizer's own chat template rendering and tokenization, each message's content tokenized
alone, the model's own greedy forward, and captum called directly on the templated ids.
"""

import copy

import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.attribution import attribute
from llmasos_widgets.core.tiny import tiny_model
from tests._numbers import assert_greedy
from tests.analyses.test_attribution import captum_layer_ig, close

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TEXTS = {
    "english": "What is the capital of France?",
    "chinese": "法国的首都是哪里？请简短回答。",
    "emoji": "Is 🤖 a robot? 👩‍💻 codes 🇫🇷",
    "accented": "Où est la café naïve à Zürich, señor?",
}


@pytest.fixture(scope="module")
def chat_llama():
    """tiny-llama as a user would hold it: a model object, its tokenizer given ChatML tokens and template."""
    model, tok = tiny_model("tiny-llama")
    model, tok = copy.deepcopy(model), copy.deepcopy(tok)  # tiny_model's tokenizer is shared: never mutate it
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.eos_token = "<|im_end|>"
    tok.chat_template = CHATML
    model.resize_token_embeddings(len(tok))
    model.generation_config.eos_token_id = tok.eos_token_id
    return lw.load_model(model, tokenizer=tok)


def content_tokens(trace, m):
    """Ids and offsets of the tokens of message m that are its content (not the template's)."""
    c = trace.chat
    picked = [i for i in range(len(trace)) if c.token_messages[i] == m and not c.template[i]]
    return [trace.token_ids[i] for i in picked], [c.message_offsets[i] for i in picked], picked


def test_offsets_point_into_each_messages_own_content(smollm2):
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": TEXTS["chinese"]},
        {"role": "assistant", "content": "OK 好的 ✓"},
        {"role": "user", "content": TEXTS["emoji"]},
        {"role": "assistant", "content": TEXTS["accented"]},
        {"role": "user", "content": TEXTS["english"]},
    ]
    trace = smollm2.trace(messages)
    chat = trace.chat
    assert chat.messages == messages
    for m, message in enumerate(messages):
        ids, offsets, picked = content_tokens(trace, m)
        content = message["content"]
        # The content's tokens are the content tokenized alone (the tokenizer's own ids: an independent split),
        # and their bytes are the content's UTF-8 bytes: no character lost, none shared with the template.
        assert ids == smollm2.tokenizer(content, add_special_tokens=False)["input_ids"]
        assert b"".join(smollm2.token_bytes(i) for i in ids) == content.encode()
        # Each offset points into the message's own content: its characters are the token's text there, a
        # token carrying the rest of a split character has "" at the end of that character, and together they
        # tile the content with no gap.
        at = 0
        for i, (start, end) in zip(picked, offsets, strict=True):
            assert content[start:end] == trace.tokens[i]
            assert start == at
            at = end
        assert at == len(content)
        assert {chat.token_roles[i] for i in picked} == {message["role"]}


def test_template_flags_match_the_tokenizers_own_rendering(smollm2):
    messages = [{"role": "user", "content": "Bonjour, ça va ? 你好 🤖"}, {"role": "assistant", "content": "Oui."}]
    trace = smollm2.trace(messages, add_generation_prompt=True)
    rendered = smollm2.tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    assert trace.token_ids == rendered  # exactly the ids the tokenizer's own template gives
    # The template's tokens are what it renders with every content empty (SmolLM2's default system prompt,
    # <|im_start|>, role names, newlines, <|im_end|>, the assistant's opening), in order.
    empty = [{**m, "content": ""} for m in messages]
    skeleton = smollm2.tokenizer.apply_chat_template(empty, add_generation_prompt=True)["input_ids"]
    chat = trace.chat
    assert [t for t, is_template in zip(trace.token_ids, chat.template, strict=True) if is_template] == skeleton
    # Each template token belongs to the message whose turn it opens or closes; the opening of the answer to
    # come belongs to a third, empty assistant message.
    assert chat.messages[-1] == {"role": "assistant", "content": ""}
    im_start = smollm2.tokenizer.convert_tokens_to_ids("<|im_start|>")
    starts = [i for i, t in enumerate(trace.token_ids) if t == im_start]
    assert [chat.token_messages[i] for i in starts] == [0, 0, 1, 2]  # the default system prompt opens message 0
    assert all(
        chat.token_messages[i] == 2 and chat.token_roles[i] == "assistant" for i in range(starts[-1], len(trace))
    )


def test_a_content_that_repeats_the_template_is_tied_where_the_template_put_it(chat_llama):
    messages = [
        {"role": "user", "content": "user"},
        {"role": "assistant", "content": "<|im_start|>user"},
        {"role": "user", "content": "user"},
    ]
    trace = chat_llama.trace(messages)
    for m, message in enumerate(messages):
        ids, offsets, picked = content_tokens(trace, m)
        assert "".join(trace.tokens[i] for i in picked) == message["content"]
        assert ids == chat_llama.tokenizer(message["content"], add_special_tokens=False)["input_ids"]


def test_generate_trace_answers_as_the_assistant(smollm2):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    gen = smollm2.generate_trace(messages, max_new_tokens=12)
    prompt = smollm2.tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    n = len(prompt)
    assert gen.token_ids[:n] == prompt and gen.generated == [False] * n + [True] * (len(gen) - n)
    new = gen.token_ids[n:]
    assert_greedy(smollm2, prompt, new)  # the model's own greedy choice at every step
    im_end = smollm2.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert new[-1] == im_end and im_end not in new[:-1]  # stopped at the end of the turn, not at max_new_tokens
    chat = gen.chat
    answer = smollm2.tokenizer.decode(new[:-1])
    assert "Paris" in answer and chat.messages == [*messages, {"role": "assistant", "content": answer}]
    assert all(chat.token_messages[i] == 1 and chat.token_roles[i] == "assistant" for i in range(n, len(gen)))
    assert [chat.template[i] for i in range(n, len(gen))] == [False] * (len(new) - 1) + [True]
    ids, offsets, picked = content_tokens(gen, 1)
    assert "".join(answer[s:e] for s, e in offsets) == answer


def test_attributing_an_answer_token_equals_captum_on_the_templated_ids(chat_llama):
    messages = [{"role": "user", "content": "The capital of France is"}]
    gen = chat_llama.generate_trace(messages, max_new_tokens=3)
    prompt = chat_llama.tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    n = len(prompt)
    res = attribute(chat_llama, gen, n_steps=8, progress=False)
    assert res.is_matrix and res.input_tokens == gen.tokens[: len(gen) - 1]
    for j in range(len(gen) - n):
        prefix = gen.token_ids[: n + j]
        close(res.scores[j, : len(prefix)], captum_layer_ig(chat_llama, prefix, gen.token_ids[n + j], 8))
    # A chat trace without generation is attributed on its own (templated) ids too.
    trace = chat_llama.trace(messages, add_generation_prompt=True)
    paris = chat_llama.tokenizer.encode(" Paris")[0]
    res = attribute(chat_llama, trace, target=" Paris", n_steps=8, progress=False)
    close(res.scores[0], captum_layer_ig(chat_llama, prompt, paris, 8))
    view = lw.SaliencyView(res)
    assert view.template == trace.chat.template and view.token_messages == trace.chat.token_messages


def test_views_carry_the_chat_metadata_and_plain_texts_carry_none(chat_llama):
    trace = chat_llama.trace([{"role": "user", "content": "naïve 🤖"}])
    view = lw.TokensView(trace)
    chat = trace.chat
    assert view.template == chat.template and view.token_roles == chat.token_roles
    assert view.message_offsets == [list(o) for o in chat.message_offsets]
    plain = lw.TokensView(chat_llama.trace("naïve 🤖"))
    assert plain.template == [] and plain.token_roles == [] and plain.token_messages == []


def test_no_chat_template_is_a_clear_error():
    model = lw.load_model("tiny-llama")
    with pytest.raises(ValueError, match="tokenizer has no chat template.*pass a plain string.*chat_template"):
        model.trace([{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="no chat template"):
        model.generate_trace([{"role": "user", "content": "hi"}], max_new_tokens=2)


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "non-empty list"),
        ([{"role": "user"}], "message 0 has no 'content'"),
        ([{"content": "hi"}], "message 0 has no 'role'"),
        (["hi"], "message 0 is a str, not a dict"),
        ([{"role": "user", "content": 3}], "message 0's content must be a str, not int"),
        ([{"role": "", "content": "hi"}], "message 0's role must be a non-empty str"),
        ([{"role": "user", "content": "  "}], "every message is empty"),
    ],
)
def test_bad_messages_are_named(chat_llama, messages, message):
    with pytest.raises(ValueError, match=message):
        chat_llama.trace(messages)


def test_options_that_do_not_fit_are_refused(chat_llama):
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match="truncate is for a text"):
        chat_llama.trace(messages, truncate=True)
    with pytest.raises(ValueError, match="add_generation_prompt is for a chat"):
        chat_llama.trace("hi", add_generation_prompt=True)
    with pytest.raises(ValueError, match="past .* context of 256 tokens; leave out earlier messages"):
        chat_llama.trace([{"role": "user", "content": "the cat " * 200}])


def test_a_template_that_drops_or_changes_a_content_is_refused(chat_llama):
    tok = copy.deepcopy(chat_llama.tokenizer)
    model = lw.load_model(chat_llama.model, tokenizer=tok)
    tok.chat_template = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    with pytest.raises(ValueError, match="changes message 0's content"):
        model.trace([{"role": "user", "content": "hi"}])
    tok.chat_template = "{% for m in messages[1:] %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ValueError, match="leaves out message 0's content"):
        model.trace([{"role": "user", "content": "hi"}, {"role": "user", "content": "there"}])


# -- a model object ---------------------------------------------------------------------------------


def test_a_model_object_traces_like_the_same_model_by_name():
    hf_model, tok = tiny_model("tiny-llama")
    hf_model.train()
    model = lw.load_model(hf_model, tokenizer=tok)
    assert not hf_model.training  # put in eval mode, as a name is
    assert model.name == "LlamaForCausalLM" and model.n_layers == 2
    by_name = lw.load_model("tiny-llama").trace("The capital of France is")
    trace = model.trace("The capital of France is")
    assert trace.token_ids == by_name.token_ids
    assert torch.allclose(trace.logits_at(-1), by_name.logits_at(-1), atol=1e-5)
    bert, bert_tok = tiny_model("tiny-bert")
    assert not lw.load_model(bert, tokenizer=bert_tok).is_causal


def test_a_model_object_is_checked_like_a_name():
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel, T5Config, T5ForConditionalGeneration

    hf_model, tok = tiny_model("tiny-llama")
    with pytest.raises(ValueError, match=r"needs its tokenizer: lw.load_model\(model, tokenizer="):
        lw.load_model(hf_model)
    with pytest.raises(ValueError, match="tokenizer= goes with a model object"):
        lw.load_model("tiny-llama", tokenizer=tok)
    with pytest.raises(ValueError, match="used as it is"):
        lw.load_model(hf_model, tokenizer=tok, dtype=torch.float16)
    with pytest.raises(ValueError, match="no language-model head: pass the \\*ForCausalLM model"):
        lw.load_model(LlamaModel(hf_model.config), tokenizer=tok)
    with pytest.raises(ValueError, match="must be a transformers PreTrainedModel"):
        lw.load_model(torch.nn.Linear(2, 2), tokenizer=tok)
    t5 = T5ForConditionalGeneration(T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, vocab_size=32))
    with pytest.raises(ValueError, match="unsupported architecture 't5'"):
        lw.load_model(t5, tokenizer=tok)
    small = LlamaForCausalLM(
        LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    with pytest.raises(ValueError, match=f"the tokenizer has {len(tok)} tokens but the model's embedding has 32 rows"):
        lw.load_model(small, tokenizer=tok)
    with pytest.raises(ValueError, match="must be a transformers tokenizer"):
        lw.load_model(hf_model, tokenizer="gpt2")


def test_an_unmerged_lora_adapter_is_refused_and_a_merged_one_traces():
    peft = pytest.importorskip("peft")
    hf_model, tok = tiny_model("tiny-llama")
    config = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    wrapped = peft.get_peft_model(copy.deepcopy(hf_model), config)
    with pytest.raises(ValueError, match=r"unmerged PEFT.*merge_and_unload"):
        lw.load_model(wrapped, tokenizer=tok)
    merged = lw.load_model(wrapped.merge_and_unload(), tokenizer=tok)
    with torch.no_grad():
        ref = merged.model(torch.tensor([tok.encode("The cat")])).logits[0, -1]
    assert torch.allclose(merged.trace("The cat").logits_at(-1), ref, atol=1e-5)
