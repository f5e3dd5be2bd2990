"""GPT-2: pre-norm, learned positions, a fused QKV projection (Conv1D)."""

from __future__ import annotations

from torch import Tensor, nn

from .base import Adapter


class GPT2Adapter(Adapter):
    """GPT-2: pre-norm, learned positions, fused QKV projection (Conv1D)."""

    family = "gpt2"
    model_types = ("gpt2",)

    @property
    def n_heads(self) -> int:
        return int(self.config.n_head)

    @property
    def d_model(self) -> int:
        return int(self.config.n_embd)

    def blocks(self) -> nn.ModuleList:
        return self.base().h

    def mlp_out(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp.c_proj

    def final_norm(self) -> nn.Module | None:
        return self.base().ln_f

    def attn_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].ln_1

    def mlp_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].ln_2

    def mlp(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp

    def attn_out_proj(self, layer: int) -> nn.Module:
        return self.blocks()[layer].attn.c_proj

    def attn_scale(self, layer: int) -> float:
        return float(self.blocks()[layer].attn.scaling)

    def qkv(self, layer: int, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        attn = self.blocks()[layer].attn
        shape = (x.shape[0], x.shape[1], -1, attn.head_dim)
        q, k, v = (t.view(shape).transpose(1, 2) for t in attn.c_attn(x).split(attn.split_size, dim=-1))
        return q, k, v
