"""GPT-NeoX and Pythia: a fused, head-interleaved QKV projection, partial rotary, and a parallel residual.

With ``use_parallel_residual`` (Pythia's default) a block is ``out = x + attn(ln1(x)) + mlp(ln2(x))``: the MLP
reads the block's input, not the stream after attention. So patching "the MLP" (``hook_mlp_out``) replaces
what the MLP adds, and attention's output at the same layer never reaches that MLP.
"""

from __future__ import annotations

from torch import Tensor, nn

from .base import Adapter, apply_rope


class NeoXAdapter(Adapter):
    """GPT-NeoX, Pythia: LayerNorm pre-norms, fused QKV laid out per head, partial RoPE, parallel residual."""

    family = "gpt_neox"
    model_types = ("gpt_neox",)

    @property
    def parallel_residual(self) -> bool:  # type: ignore[override]
        return bool(self.config.use_parallel_residual)

    def blocks(self) -> nn.ModuleList:
        return self.base().layers

    def mlp_out(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp.dense_4h_to_h

    def final_norm(self) -> nn.Module | None:
        return self.base().final_layer_norm

    def attn_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].input_layernorm

    def mlp_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].post_attention_layernorm

    def mlp(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp

    def attn_out_proj(self, layer: int) -> nn.Module:
        return self.blocks()[layer].attention.dense

    def attn_scale(self, layer: int) -> float:
        return float(self.blocks()[layer].attention.scaling)

    def qkv(self, layer: int, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        attn = self.blocks()[layer].attention
        # The fused projection is laid out head by head, [q_h, k_h, v_h] for each head h, not [Q, K, V].
        fused = attn.query_key_value(x).view(x.shape[0], x.shape[1], -1, 3 * attn.head_size).transpose(1, 2)
        q, k, v = fused.chunk(3, dim=-1)
        cos, sin = self.base().rotary_emb(x, positions[None])  # rotary_dim = rotary_pct * head_size
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v
