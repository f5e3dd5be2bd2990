"""Models made without storage (the meta device), then given storage in their dtype one module at a time.

Used to build random models from a config (core/build.py) and to load GGUF files (core/gguf.py) with a peak
of about the weights' own size: no float32 copy of the whole model is ever held.
"""

from __future__ import annotations

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel


def empty_model(config: PretrainedConfig, dtype: torch.dtype) -> PreTrainedModel:
    """The model of ``config`` with its parameters on the meta device (no storage), its buffers real.

    Examples
    --------
    >>> from transformers import LlamaConfig
    >>> empty_model(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=64, vocab_size=100), torch.float16).lm_head.weight.device.type
    'meta'

    """
    # Buffers (the rotary frequencies) are computed at construction and stay real: they are small.
    # transformers' default attention: SDPA where the family supports it, eager where not (Gemma 2 refuses SDPA).
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.tie_weights()  # tied on meta: the unembedding then shares the embedding's one storage
    return model.eval()


def materialise(model: PreTrainedModel, dtype: torch.dtype, *, init: bool) -> None:
    """Give every meta parameter storage in ``dtype`` on the CPU, module by module; ``init``: draw it.

    A tied parameter (the embedding read as the unembedding) gets one storage, shared as before.

    Examples
    --------
    >>> from transformers import LlamaConfig
    >>> m = empty_model(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=64, vocab_size=100, tie_word_embeddings=True), torch.float16)
    >>> materialise(m, torch.float16, init=False)
    >>> m.lm_head.weight is m.model.embed_tokens.weight, m.lm_head.weight.device.type
    (True, 'cpu')

    """
    made: dict[int, nn.Parameter] = {}
    for module in model.modules():
        fresh = False
        for pname, p in list(module.named_parameters(recurse=False)):
            if id(p) not in made:
                if p.device.type != "meta":
                    made[id(p)] = p
                    continue
                made[id(p)] = nn.Parameter(torch.empty(p.shape, dtype=dtype), requires_grad=p.requires_grad)
                fresh = True
            setattr(module, pname, made[id(p)])
        if init and fresh:
            # The family's own initialisation of this module (Gemma's norms are 0-centred, Llama's 1).
            model._init_weights(module)
