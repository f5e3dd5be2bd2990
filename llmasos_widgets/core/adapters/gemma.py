"""Gemma 1, 2 and 3 (text): Llama's layout with GeGLU, ``(1 + w)`` RMSNorm and embeddings scaled by sqrt(d_model).

The modules carry those three (the adapter calls them whole). Gemma 2 adds norms after attention and the MLP
(``hook_attn_out`` and ``hook_mlp_out`` are their outputs, what the block adds), attention logit soft-capping,
``query_pre_attn_scalar`` (in the attention's ``scaling``), sliding-window layers and soft-capped final logits;
Gemma 3 adds per-head q/k norms and a rotary embedding of its own for sliding (local) layers.
"""

from __future__ import annotations

from torch import Tensor, nn

from .llama import LlamaAdapter


class GemmaAdapter(LlamaAdapter):
    """Gemma 1: a Llama block (its MLP is GeGLU, its norms scale by ``1 + w``)."""

    family = "gemma"
    model_types = ("gemma",)


class Gemma2Adapter(GemmaAdapter):
    """Gemma 2: norms before and after attention and the MLP, soft-capped attention logits, sliding layers."""

    family = "gemma2"
    model_types = ("gemma2",)

    def attn_post_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].post_attention_layernorm  # in Gemma 2 this one follows attention

    def mlp_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].pre_feedforward_layernorm

    def mlp_post_norm(self, layer: int) -> nn.Module | None:
        return self.blocks()[layer].post_feedforward_layernorm

    def attn_softcap(self, layer: int) -> float | None:
        cap = self.blocks()[layer].self_attn.attn_logit_softcapping
        return None if cap is None else float(cap)


class Gemma3Adapter(Gemma2Adapter):
    """Gemma 3 (text): Gemma 2's block with per-head q/k norms and local/global RoPE."""

    family = "gemma3"
    model_types = ("gemma3_text",)

    def rotary(self, layer: int, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        # Sliding (local) layers rotate with their own base frequency: the embedding is chosen by layer type.
        return self.base().rotary_emb(x, positions[None], self.config.layer_types[layer])
