"""Tiny random models (one per supported family, four mixtures of experts) for tests and docs: instant, seeded.

Each is built from a config with a fixed seed, and its tokenizer is trained in memory on a short
fixed corpus, so nothing is read from disk or a hub and every run sees the same weights and ids.
The families added after Llama, GPT-2 and BERT also draw their norms' weights at random and use larger
weights (``initializer_range``), so that a norm read in the wrong place, or a soft-cap left out, changes
the numbers a test compares instead of hiding behind norms of 1 and scores near 0.
"""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GemmaConfig,
    GemmaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
    OlmoeConfig,
    OlmoeForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

# The families beyond Llama/GPT-2/BERT: (model class, its config's own settings). Shared settings are in
# `_family_model`. Each exercises what sets its family apart (see each comment).
_FAMILIES = {
    # GeGLU MLP, (1 + w) RMSNorm, embeddings scaled by sqrt(d_model); multi-query-ish: 2 kv heads for 4.
    "tiny-gemma": (GemmaForCausalLM, GemmaConfig, {"hidden_act": "gelu_pytorch_tanh"}),
    # Soft-capped attention (cap 2) and final logits (cap 5), sliding window 4 on layers 0 and 2 only,
    # query_pre_attn_scalar 24 != head_dim 16, norms before and after attention and the MLP.
    "tiny-gemma2": (
        Gemma2ForCausalLM,
        Gemma2Config,
        {
            "num_hidden_layers": 3,
            "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": 24,
            "sliding_window": 4,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
            "attn_logit_softcapping": 2.0,
            "final_logit_softcapping": 5.0,
        },
    ),
    # Per-head q/k norms; sliding (local) layers rotate with base 10, the global layer with base 10,000.
    "tiny-gemma3": (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        {
            "num_hidden_layers": 3,
            "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": 24,
            "sliding_window": 4,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                "full_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
        },
    ),
    # Fused head-interleaved QKV, rotary on half of each head (8 of 16 features), parallel residual.
    "tiny-neox": (
        GPTNeoXForCausalLM,
        GPTNeoXConfig,
        {
            "intermediate_size": 256,
            "num_key_value_heads": None,
            "use_parallel_residual": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        },
    ),
    # Fused qkv_proj and gate_up_proj; a sliding window of 6 in every layer (Phi-3 mini slides too).
    "tiny-phi3": (Phi3ForCausalLM, Phi3Config, {"sliding_window": 6}),
    # Norms after attention and the MLP (none before), q/k norms over the whole projection.
    "tiny-olmo2": (Olmo2ForCausalLM, Olmo2Config, {}),
}

# Mixtures of experts (core/adapters/moe.py): 4 experts of 32 hidden units, top-2 routing; Qwen2-MoE adds a
# shared expert.
MOE_NAMES = ("tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe", "tiny-olmoe")
TINY_NAMES = ("tiny-llama", "tiny-gpt2", "tiny-bert", *_FAMILIES, *MOE_NAMES)

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
        show_progress=False,  # its progress bars print blank lines into a notebook's output
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
    tok.train_from_iterator(
        _CORPUS, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    )
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
        ``"tiny-gpt2"``, ``"tiny-bert"`` (a masked LM), ``"tiny-gemma"``, ``"tiny-gemma2"``,
        ``"tiny-gemma3"``, ``"tiny-neox"``, ``"tiny-phi3"`` or ``"tiny-olmo2"`` (see ``_FAMILIES``), or a
        mixture of experts shaped like tiny-llama with 4 experts of 32 hidden units and top-2 routing:
        ``"tiny-mixtral"``, ``"tiny-qwen2-moe"`` (with a shared expert of 48 units), ``"tiny-qwen3-moe"``,
        ``"tiny-olmoe"``.
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
        if name in _FAMILIES:
            model: PreTrainedModel = _family_model(name, tokenizer)
        elif name == "tiny-llama":
            model = LlamaForCausalLM(
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
        elif name in MOE_NAMES:
            model = _tiny_moe(name, tokenizer)
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


def _tiny_moe(name: str, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        num_experts_per_tok=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    if name == "tiny-mixtral":  # Mixtral renormalises the top-k weights to sum to 1
        return MixtralForCausalLM(MixtralConfig(num_local_experts=4, intermediate_size=32, **shape))
    if name == "tiny-qwen2-moe":
        return Qwen2MoeForCausalLM(
            Qwen2MoeConfig(num_experts=4, moe_intermediate_size=32, shared_expert_intermediate_size=48, **shape)
        )
    if name == "tiny-qwen3-moe":  # norm_topk_prob as Qwen3-30B-A3B: the top-k weights sum to 1
        return Qwen3MoeForCausalLM(
            Qwen3MoeConfig(num_experts=4, moe_intermediate_size=32, head_dim=16, norm_topk_prob=True, **shape)
        )
    return OlmoeForCausalLM(OlmoeConfig(num_experts=4, intermediate_size=32, **shape))  # top-k weights not renormalised


def _family_model(name: str, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    # Called inside tiny_model's seeded RNG. 64 wide, 4 heads of 16, 2 key-value heads where the family
    # groups queries; weights 10x the usual scale and random norm weights (see the module's docstring).
    model_class, config_class, settings = _FAMILIES[name]
    shared = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 256,
        "initializer_range": 0.2,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.eos_token_id,
    }
    config = {**shared, **settings}
    config = {k: v for k, v in config.items() if v is not None}
    model = model_class(config_class(**config))
    with torch.no_grad():
        for module in model.modules():
            if "norm" in type(module).__name__.lower():
                for tensor in (getattr(module, "weight", None), getattr(module, "bias", None)):
                    if isinstance(tensor, torch.Tensor):
                        tensor.add_(0.3 * torch.randn_like(tensor))
    return model
