"""Phi-3: Llama's block with a fused QKV projection (``qkv_proj``) and a fused gate/up projection."""

from __future__ import annotations

from torch import Tensor

from .llama import LlamaAdapter


class Phi3Adapter(LlamaAdapter):
    """Phi-3: queries, keys and values come from one projection, [Q | K | V] (not interleaved per head)."""

    family = "phi3"
    model_types = ("phi3",)

    def project(self, layer: int, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        attn = self.blocks()[layer].self_attn
        q_width = self.n_heads * attn.head_dim
        kv_width = self.n_kv_heads * attn.head_dim
        q, k, v = attn.qkv_proj(x).split([q_width, kv_width, kv_width], dim=-1)
        return q, k, v
