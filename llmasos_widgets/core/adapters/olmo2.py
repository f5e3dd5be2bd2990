"""OLMo-2: norms after attention and the MLP (none before), and q/k norms over the whole projection."""

from __future__ import annotations

from torch import nn

from .llama import LlamaAdapter


class Olmo2Adapter(LlamaAdapter):
    """OLMo-2: ``out = h + norm(mlp(h))``, ``h = x + norm(attn(x))``; q/k RMSNorm across all heads at once."""

    family = "olmo2"
    model_types = ("olmo2",)
    qk_norm = "whole"

    def attn_norm(self, layer: int) -> nn.Module | None:
        return None

    def attn_post_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].post_attention_layernorm  # in OLMo-2 this one follows attention

    def mlp_norm(self, layer: int) -> nn.Module | None:
        return None

    def mlp_post_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].post_feedforward_layernorm
