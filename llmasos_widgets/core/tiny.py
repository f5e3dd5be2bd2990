"""Tiny random models (Llama, GPT-2, BERT shapes) for tests and docs: instant, seeded, offline.

Each is built from a config with a fixed seed, and its tokenizer is trained in memory on a short
fixed corpus, so nothing is read from disk or a hub and every run sees the same weights and ids.
"""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

TINY_NAMES = ("tiny-llama", "tiny-gpt2", "tiny-bert")

_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is Madrid.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.",
    "Attention lets each token look at the tokens before it; a head that copies the previous token",
    "is a previous-token head. Neurons in the MLP fire on numbers like 1, 2, 3 and on dates in 2024.",
    "She said that the doctor and the nurse went to the hospital in the morning, and he followed.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n<html><body>Hello, world!</body></html>",
]


@functools.cache
def _byte_bpe(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


@functools.cache
def _wordpiece(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(_CORPUS, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_model(name: str, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Build a tiny random model and its tokenizer.

    Parameters
    ----------
    name : str
        One of ``"tiny-llama"`` (grouped-query attention: 4 query heads, 2 key-value heads),
        ``"tiny-gpt2"`` or ``"tiny-bert"`` (a masked LM).
    seed : int
        Seed for the weights; the same seed gives the same model.

    Examples
    --------
    >>> model, tokenizer = tiny_model("tiny-llama")
    >>> model.config.num_hidden_layers, model.config.num_attention_heads
    (2, 4)

    """
    if name not in TINY_NAMES:
        raise ValueError(f"unknown tiny model {name!r}: choose one of {', '.join(TINY_NAMES)}")
    tokenizer = _wordpiece() if name == "tiny-bert" else _byte_bpe()
    vocab = len(tokenizer)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if name == "tiny-llama":
            model: PreTrainedModel = LlamaForCausalLM(
                LlamaConfig(
                    vocab_size=vocab,
                    hidden_size=64,
                    intermediate_size=128,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    num_key_value_heads=2,
                    max_position_embeddings=256,
                    bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.eos_token_id,
                )
            )
        elif name == "tiny-gpt2":
            model = GPT2LMHeadModel(
                GPT2Config(
                    vocab_size=vocab,
                    n_embd=64,
                    n_layer=2,
                    n_head=4,
                    n_positions=256,
                    bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.eos_token_id,
                )
            )
        else:
            model = BertForMaskedLM(
                BertConfig(
                    vocab_size=vocab,
                    hidden_size=64,
                    intermediate_size=128,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    max_position_embeddings=128,
                    pad_token_id=tokenizer.pad_token_id,
                )
            )
    return model.eval(), tokenizer
