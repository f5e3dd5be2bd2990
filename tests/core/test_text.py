"""Text in any script: every token shows what it stands for in the text, read from the offsets.

The reference is independent of the offsets: a byte-level token's own bytes. Concatenated they are the
text's UTF-8, so each character starts in exactly one token (the one holding its lead byte), and that
token, and only it, must show the character.
"""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import llmasos_widgets as lw
from llmasos_widgets.core.models import LanguageModel
from llmasos_widgets.core.tiny import _CORPUS, tiny_model

# Chinese (with full-width punctuation), emoji (4-byte, and a ZWJ sequence), accents (precomposed and
# combining), Japanese, Arabic, a zero-width space and a right-to-left override.
MIXED = (
    "大型语言模型的可解释性：理解其工作原理。注意力机制是核心 🤖🧠 naïve café 👩‍💻 e\u0301 "
    "日本語のテキスト مرحبا zero\u200bwidth \u202eevil"
)


def shown_by_bytes(model, trace):
    """What each token must show: the characters whose first UTF-8 byte it holds (its own bytes say)."""
    starts, at = {}, 0
    for i, tid in enumerate(trace.token_ids):
        for _ in model.token_bytes(tid):
            starts[at] = i
            at += 1
    assert at == len(trace.text.encode()), "the tokens' bytes are not the text's"
    shown, pos = [""] * len(trace), 0
    for ch in trace.text:
        shown[starts[pos]] += ch
        pos += len(ch.encode())
    return shown


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_byte_level_tokens_show_each_character_once_on_the_token_holding_its_first_byte(name):
    model = lw.load_model(name)
    trace = model.trace(MIXED)
    assert "".join(trace.tokens) == MIXED
    assert not any("\ufffd" in t for t in trace.tokens)
    assert trace.tokens == shown_by_bytes(model, trace)
    # Tokens that carry only the rest of a character are "" and say so with their bytes.
    rest = [i for i, t in enumerate(trace.tokens) if t == ""]
    assert rest and all(all(0x80 <= b < 0xC0 for b in model.token_bytes(trace.token_ids[i])) for i in rest)


def test_a_token_alone_never_decodes_to_a_replacement_character():
    model = lw.load_model("tiny-gpt2")
    ids = model.trace("大").token_ids  # three single-byte tokens in this tiny vocabulary
    assert len(ids) == 3
    assert [model.decode_token(i) for i in ids] == ["\\xe5", "\\xa4", "\\xa7"]
    assert model.token_bytes(ids[0]) == b"\xe5"


def test_wordpiece_tokens_show_the_original_text_with_what_the_tokenizer_drops():
    trace = lw.load_model("tiny-bert").trace("Naïve CAFÉ 🤖 x\u200by")
    assert trace.tokens[0] == "[CLS]" and trace.tokens[-1] == "[SEP]"
    # Lower-cased and accent-stripped pieces ("naive", "##f") show the text as written; the emoji is
    # the [UNK] it became; the zero-width space the normalizer removed travels with the next token.
    assert "".join(trace.tokens[1:-1]) == "Naïve CAFÉ 🤖 x\u200by"
    unk = trace.token_ids.index(lw.load_model("tiny-bert").tokenizer.unk_token_id)
    assert trace.tokens[unk] == " 🤖"


def sentencepiece_model():
    """A Llama-2-style vocabulary: Metaspace "▁" words, BPE, and byte fallback tokens <0xE5>."""
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", *byte_tokens])
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    hf, _ = tiny_model("tiny-llama")
    return LanguageModel("tiny-llama-sentencepiece", hf, fast)


def test_sentencepiece_byte_fallback_tokens_read_as_the_text():
    model = sentencepiece_model()
    trace = model.trace(MIXED)
    assert trace.tokens[0] == "▁"  # the word-start mark the tokenizer added: no character of the text
    assert "".join(trace.tokens[1:]) == MIXED
    assert not any("\ufffd" in t for t in trace.tokens)
    # 大 is three byte-fallback tokens: the first shows it, the other two carry its rest.
    assert trace.tokens[1:4] == ["大", "", ""]
    assert [model.token_bytes(i) for i in trace.token_ids[1:4]] == [b"\xe5", b"\xa4", b"\xa7"]


def test_generated_tokens_split_inside_a_character_read_as_the_generation():
    model = lw.load_model("tiny-gpt2")
    prompt_ids = model.trace("The capital").token_ids
    forced = model.tokenizer.encode(" 大🤖")  # 3 + 4 single-byte tokens after the space

    def generate(input_ids, **_):  # the tiny model's greedy output is noise: force a CJK/emoji one
        return torch.tensor([[*input_ids[0].tolist(), *forced]])

    model.model.generate = generate
    try:
        trace = model.generate_trace("The capital", max_new_tokens=len(forced))
    finally:
        del model.model.generate
    assert trace.text == "The capital 大🤖"
    assert "".join(trace.tokens) == trace.text
    new = trace.tokens[len(prompt_ids) :]
    assert [t for t in new if t] == [" ", "大", "🤖"] or [t for t in new if t] == [" 大", "🤖"]
    assert new.count("") == len(forced) - len([t for t in new if t])


def test_views_send_the_token_bytes_for_the_hover():
    model = lw.load_model("tiny-gpt2")
    view = lw.TokensView(model.trace("é!"))
    assert view.tokens == ["é", "", "!"]
    assert view.token_bytes == ["c3", "a9", "21"]


@pytest.mark.slow
def test_smollm2_reads_chinese_emoji_and_accents_back_character_for_character(smollm2):
    text = "大型语言模型的可解释性：理解其工作原理。注意力机制是核心 🤖🧠 naïve café"
    trace = smollm2.trace(text)
    assert "".join(trace.tokens) == text
    assert not any("\ufffd" in t for t in trace.tokens)
    assert trace.tokens == shown_by_bytes(smollm2, trace)


@pytest.mark.slow
def test_minilm_wordpiece_reads_back_the_text():
    text = "大型语言模型 🤖🧠 naïve café"
    trace = lw.load_model("minilm-l6").trace(text)
    assert "".join(trace.tokens[1:-1]) == text
    assert not any("\ufffd" in t for t in trace.tokens)
