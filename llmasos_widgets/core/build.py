"""Models of any size built from a config with random weights, never holding a float32 copy.

What a model costs (memory, time per token) does not depend on what its weights learned, so scale is
measured on models built from the published configs of the models people use. The model is made on
the meta device (no storage), then each module's parameters are given storage in the target dtype and
initialised in place, module by module: the peak is the weights' own size.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel

from .adapters import adapter_class
from .meta import empty_model, materialise
from .models import BUNDLED, LanguageModel, bundled_path, cache_dir

# Published configs (the fields that set the shapes and the computation), as their model cards give them.
PUBLISHED: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": {
        "model_type": "llama",
        "hidden_size": 2048,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "intermediate_size": 8192,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "tie_word_embeddings": True,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
    },
    "llama-3.1-8b": {
        "model_type": "llama",
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "tie_word_embeddings": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
    },
    "gemma-2-2b": {
        "model_type": "gemma2",
        "hidden_size": 2304,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "intermediate_size": 9216,
        "vocab_size": 256000,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "sliding_window": 4096,
        "query_pre_attn_scalar": 256,
        "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": True,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "pad_token_id": 0,
    },
}


def random_model(
    config: str | dict[str, Any] | PretrainedConfig,
    *,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
    tokenizer: Any = None,
    name: str | None = None,
) -> LanguageModel:
    """A causal LM of ``config``'s shapes with random weights, built in ``dtype`` without a float32 copy.

    Parameters
    ----------
    config : str, dict or transformers config
        A published config's name (``"llama-3.2-1b"``, ``"llama-3.1-8b"``, ``"gemma-2-2b"``: ``PUBLISHED``), a
        config dict with ``model_type``, or a ``PretrainedConfig``.
    dtype : torch.dtype
        The weights' dtype (bfloat16 by default: an 8B model is 16 GB).
    seed : int
        Weights are drawn with the family's own initialisation (``initializer_range``, norms as the family
        sets them), from ``torch.manual_seed(seed)``, module by module: a seed gives the same weights.
    tokenizer : optional
        A tokenizer whose ids are below the config's vocabulary size. By default the bundled SmolLM2
        tokenizer (49,152 ids): a random model gives every id a row, so the rows past the tokenizer's ids are
        never read as inputs, and their predictions decode as ``""``.
    name : str, optional
        The model's name (default ``"random-<config name or model type>"``).

    Examples
    --------
    >>> model = random_model({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
    ...     "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 49152})
    >>> model.name, model.n_layers, next(model.model.parameters()).dtype
    ('random-llama', 2, torch.bfloat16)

    """
    label = config if isinstance(config, str) else None
    config = _as_config(config)
    adapter_class(config.model_type)  # an unsupported family is refused before gigabytes are drawn
    if tokenizer is None:
        tokenizer = bundled_tokenizer()
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} ids but the config's vocabulary is {config.vocab_size}: "
            "pass a tokenizer with at most vocab_size ids"
        )
    model = build(config, dtype=dtype, seed=seed)
    return LanguageModel(name or f"random-{label or config.model_type}", model, tokenizer)


def build(config: PretrainedConfig, *, dtype: torch.dtype, seed: int = 0) -> PreTrainedModel:
    """The causal LM of ``config`` with random weights in ``dtype``: peak memory about the weights' size.

    Examples
    --------
    >>> from transformers import LlamaConfig
    >>> m = build(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=64, vocab_size=100), dtype=torch.float16)
    >>> m.model.layers[0].mlp.up_proj.weight.dtype, m.model.layers[0].mlp.up_proj.weight.device.type
    (torch.float16, 'cpu')

    """
    model = empty_model(config, dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        materialise(model, dtype, init=True)
    return model


def bundled_tokenizer() -> Any:
    """The bundled SmolLM2 tokenizer (49,152 ids, byte-level BPE), read from the cache or the GGUF file.

    Examples
    --------
    >>> len(bundled_tokenizer())
    49152

    """
    cached = cache_dir() / f"smollm2-135m-{BUNDLED['smollm2-135m'][1]}"
    if (cached / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(str(cached))
    gguf = bundled_path("smollm2-135m")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _as_config(config: str | dict[str, Any] | PretrainedConfig) -> PretrainedConfig:
    if isinstance(config, PretrainedConfig):
        return config
    if isinstance(config, str):
        if config not in PUBLISHED:
            raise ValueError(f"unknown config {config!r}: published configs are {', '.join(PUBLISHED)}, or pass a dict")
        config = PUBLISHED[config]
    if not isinstance(config, dict) or "model_type" not in config:
        raise ValueError(
            "config must be a published config's name, a dict with 'model_type', or a transformers config; "
            f"got {config!r:.80}"
        )
    fields = dict(config)
    return AutoConfig.for_model(fields.pop("model_type"), **fields)
