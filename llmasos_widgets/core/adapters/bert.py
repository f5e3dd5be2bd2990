"""BERT and its kin: post-norm encoders with bidirectional attention (attention patterns, no causal engine)."""

from __future__ import annotations

from torch import Tensor, nn

from .base import Adapter


class BertAdapter(Adapter):
    """BERT, RoBERTa, MiniLM: post-norm encoders with bidirectional attention."""

    family = "bert"
    model_types = ("bert", "roberta", "xlm-roberta", "camembert")
    causal = False

    def blocks(self) -> nn.ModuleList:
        return self.base().encoder.layer

    def mlp_out(self, layer: int) -> nn.Module:
        return self.blocks()[layer].output.dense

    def unembed(self) -> nn.Module | None:
        # Masked-LM heads carry a transform (dense, activation, norm) before the decoder.
        for name in ("cls", "lm_head"):
            if hasattr(self.model, name):
                return getattr(self.model, name)
        return None

    def attention_qk(self, layer: int, resid_pre: Tensor) -> tuple[Tensor, Tensor, float]:
        attn = self.blocks()[layer].attention.self
        head_dim = attn.attention_head_size
        q = self._heads(attn.query(resid_pre), head_dim)
        k = self._heads(attn.key(resid_pre), head_dim)
        return q, k, float(attn.scaling)
