"""Llama and the families built like it (Mistral, Qwen2/3, SmolLM2/3): pre-norm, RoPE, grouped-query attention."""

from __future__ import annotations

from torch import Tensor, nn

from .base import Adapter, apply_rope


class LlamaAdapter(Adapter):
    """Llama, Mistral, Qwen2/3, SmolLM2: pre-norm, RoPE, grouped-query attention, gated MLP."""

    family = "llama"
    model_types = ("llama", "mistral", "qwen2", "qwen3", "smollm3")
    # Where q/k norms act, if the attention has them: "head" (Qwen3, Gemma 3: each head's vector) or
    # "whole" (OLMo-2: the whole projection, all heads at once, before heads are split).
    qk_norm = "head"

    def blocks(self) -> nn.ModuleList:
        return self.base().layers

    def mlp_out(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp.down_proj

    def final_norm(self) -> nn.Module | None:
        return self.base().norm

    def attn_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].input_layernorm

    def mlp_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].post_attention_layernorm

    def mlp(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp

    def attn_out_proj(self, layer: int) -> nn.Module:
        return self.blocks()[layer].self_attn.o_proj

    def attn_scale(self, layer: int) -> float:
        return float(self.blocks()[layer].self_attn.scaling)

    def rotary(self, layer: int, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``cos, sin`` [1, pos, rotary_dim] of ``layer`` at ``positions`` (one rotary embedding for every layer)."""
        return self.base().rotary_emb(x, positions[None])

    def qkv(self, layer: int, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        attn = self.blocks()[layer].self_attn
        shape = (x.shape[0], x.shape[1], -1, attn.head_dim)
        q, k, v = self.project(layer, x)
        if hasattr(attn, "q_norm") and self.qk_norm == "whole":
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k, v = q.view(shape), k.view(shape), v.view(shape)
        if hasattr(attn, "q_norm") and self.qk_norm == "head":
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [batch, heads, pos, head_dim]
        cos, sin = self.rotary(layer, x, positions)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def project(self, layer: int, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values of ``x`` [batch, pos, d_model] before heads are split: [batch, pos, width]."""
        attn = self.blocks()[layer].self_attn
        return attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
