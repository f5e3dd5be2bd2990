"""Architecture adapters: where each Hugging Face family keeps the parts a Trace reads.

An adapter answers three questions for one family: which module's input is the residual stream
before each block (``blocks.{l}.hook_resid_pre``), which module's input is the MLP's hidden
activation (``blocks.{l}.mlp.hook_post``), and how to recompute one layer's attention pattern
exactly from the residual stream it kept. Everything else (tracing, views) is family-agnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .hooks import Hook, pre


class Adapter:
    """Base class; one subclass per architecture family."""

    family: str = ""
    model_types: tuple[str, ...] = ()
    causal: bool = True
    n_experts: int = 0  # routed experts per MLP; 0: a dense MLP (core/moe.py holds the mixtures of experts)

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.config = model.config

    # -- shape ---------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.blocks())

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def n_kv_heads(self) -> int:
        return int(getattr(self.config, "num_key_value_heads", None) or self.n_heads)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def context_length(self) -> int:
        for name in ("max_position_embeddings", "n_positions"):
            value = getattr(self.config, name, None)
            if value:
                return int(value)
        raise ValueError("the model config names no context length")

    # -- modules -------------------------------------------------------------------------------
    def base(self) -> nn.Module:
        """The transformer without its output head (runs the trace's forward pass)."""
        return self.model.base_model

    def blocks(self) -> nn.ModuleList:
        raise NotImplementedError

    def mlp_out(self, layer: int) -> nn.Module:
        """The MLP's output projection: its input is ``blocks.{layer}.mlp.hook_post``."""
        raise NotImplementedError

    def mlp_hook(self, layer: int, what: str, fn: Callable[[Tensor], Tensor | None]) -> Hook:
        """A hook that hands ``fn`` the activation ``blocks.{layer}.mlp.{what}`` [batch, pos, width] of each run.

        ``what`` is ``"hook_post"`` (the MLP's hidden units: its output projection's input); a tensor that
        ``fn`` returns replaces them, and the MLP's output is computed from it. A mixture of experts has more
        (core/moe.py).
        """
        if what != "hook_post":
            raise ValueError(f"{self.family} models have a dense MLP: mlp.{what} exists in mixtures of experts only")

        def hand_over(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            new = fn(args[0])
            return None if new is None else (new, *args[1:])

        return pre(self.mlp_out(layer), hand_over)

    def neuron_output_weights(self, layer: int) -> Tensor:  # [neuron, d_model]
        """What each unit of ``mlp.hook_post`` adds to the residual stream per unit of activation."""
        proj = self.mlp_out(layer)
        weight = proj.weight.detach()
        # nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out].
        return weight if type(proj).__name__ == "Conv1D" else weight.T

    def final_norm(self) -> nn.Module | None:
        """The norm applied to the last residual stream before unembedding (None: already applied)."""
        return None

    def unembed(self) -> nn.Module | None:
        """The module mapping the final (normed) residual stream to logits, or None if headless."""
        head = self.model.get_output_embeddings() if hasattr(self.model, "get_output_embeddings") else None
        return head

    def head(self) -> nn.Module:
        """The unembedding (LM head), or a ValueError saying that this model predicts no tokens."""
        head = self.unembed()
        if head is None:
            raise ValueError(
                f"this {self.family} model has no language-model head, so it predicts no tokens; "
                "load a *ForCausalLM or *ForMaskedLM checkpoint to get predictions"
            )
        return head

    def logits(self, resid_final: Tensor) -> Tensor:  # [pos, d_model] -> [pos, vocab]
        norm = self.final_norm()
        return self.head()(norm(resid_final) if norm is not None else resid_final)

    # -- attention -----------------------------------------------------------------------------
    def attention_qk(self, layer: int, resid_pre: Tensor) -> tuple[Tensor, Tensor, float]:
        """Queries and keys of ``layer`` as its attention scores see them: ``q, k, scale``.

        ``q`` and ``k`` are [head, pos, head_dim], keys already repeated over grouped query heads
        and rotated where the family uses RoPE, so that ``scores = q @ k.T * scale``.
        """
        x = self.attn_norm(layer)(resid_pre)[None]  # [1, pos, d_model]
        q, k, _ = self.qkv(layer, x, torch.arange(x.shape[1], device=x.device))
        k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)  # GQA: kv head j serves queries j*g..
        return q[0], k[0], self.attn_scale(layer)

    # -- the parts of a block (causal.py runs blocks itself, to patch inside them) ----------------
    # A causal block here is pre-norm: h = x + out_proj(attention(attn_norm(x))); out = h + mlp(mlp_norm(h)).
    def attn_norm(self, layer: int) -> nn.Module:
        raise NotImplementedError

    def mlp_norm(self, layer: int) -> nn.Module:
        raise NotImplementedError

    def mlp(self, layer: int) -> nn.Module:
        """The MLP; its output is ``blocks.{layer}.hook_mlp_out``."""
        raise NotImplementedError

    def attn_out_proj(self, layer: int) -> nn.Module:
        """The attention's output projection: input ``blocks.{layer}.attn.hook_z``, output ``hook_attn_out``."""
        raise NotImplementedError

    def attn_scale(self, layer: int) -> float:
        raise NotImplementedError

    def qkv(self, layer: int, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries [batch, head, pos, head_dim], keys and values [batch, kv_head, pos, head_dim] of ``layer``.

        ``x`` is the normed block input [batch, pos, d_model] at absolute ``positions`` [pos]; queries
        and keys are rotated where the family uses RoPE.
        """
        raise NotImplementedError

    @property
    def window(self) -> int | None:
        """Sliding-window size of causal attention (keys older than this are masked), if any."""
        return None

    def attention_pattern(self, layer: int, resid_pre: Tensor) -> Tensor:
        """Recompute ``blocks.{layer}.attn.hook_pattern`` [head, query_pos, key_pos] from its input.

        One head at a time into the output, so the peak is the pattern plus one head's scores.
        """
        q, k, scale = self.attention_qk(layer, resid_pre)
        out = torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=torch.float32, device=q.device)
        for head in range(q.shape[0]):
            scores = torch.matmul(q[head].float(), k[head].float().T, out=out[head]).mul_(scale)
            self.softmax_(scores, 0)
        return out

    def mask_(self, scores: Tensor, first_query: int) -> Tensor:
        """Mask scores [..., query, key] of queries ``first_query``.. in place, as HF's eager attention does.

        Masked positions get the dtype's minimum (as HF adds it), so they come out of the softmax as 0.
        """
        if not self.causal:
            return scores
        n_q, n_k = scores.shape[-2], scores.shape[-1]
        # Without a window, keys before the first query are seen by every query: mask only the rest.
        k0 = min(first_query, n_k) if self.window is None else 0
        q = torch.arange(first_query, first_query + n_q, device=scores.device)[:, None]
        k = torch.arange(k0, n_k, device=scores.device)[None, :]
        allowed = k <= q
        if self.window is not None:
            allowed &= k > q - self.window
        scores[..., k0:].masked_fill_(~allowed, torch.finfo(scores.dtype).min)
        return scores

    def softmax_(self, scores: Tensor, first_query: int) -> Tensor:
        """Masked softmax over keys, in place on float32 scores of queries ``first_query``...

        Returns the log-sum-exp of each query's masked scores [..., query], so that any single
        weight can later be recomputed as ``exp(score - lse)``.
        """
        self.mask_(scores, first_query)
        top = scores.amax(dim=-1, keepdim=True)
        total = scores.sub_(top).exp_().sum(dim=-1, keepdim=True)
        scores.div_(total)
        return (top + total.log()).squeeze(-1)

    @staticmethod
    def _heads(x: Tensor, head_dim: int) -> Tensor:  # [pos, heads*head_dim] -> [heads, pos, head_dim]
        return x.view(x.shape[0], -1, head_dim).transpose(0, 1)


class LlamaAdapter(Adapter):
    """Llama, Mistral, Qwen2/3, SmolLM2: pre-norm, RoPE, grouped-query attention, gated MLP."""

    family = "llama"
    model_types = ("llama", "mistral", "qwen2", "qwen3", "smollm3")

    def blocks(self) -> nn.ModuleList:
        return self.base().layers

    def mlp_out(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp.down_proj

    def final_norm(self) -> nn.Module | None:
        return self.base().norm

    @property
    def window(self) -> int | None:
        window = getattr(self.config, "sliding_window", None)
        return window if window and getattr(self.config, "use_sliding_window", True) else None

    def attn_norm(self, layer: int) -> nn.Module:
        return self.blocks()[layer].input_layernorm

    def mlp_norm(self, layer: int) -> nn.Module:
        return self.blocks()[layer].post_attention_layernorm

    def mlp(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp

    def attn_out_proj(self, layer: int) -> nn.Module:
        return self.blocks()[layer].self_attn.o_proj

    def attn_scale(self, layer: int) -> float:
        return float(self.blocks()[layer].self_attn.scaling)

    def project(self, layer: int, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values of ``layer`` before RoPE, [batch, pos, head, head_dim] each."""
        attn = self.blocks()[layer].self_attn
        shape = (x.shape[0], x.shape[1], -1, attn.head_dim)
        q, k, v = attn.q_proj(x).view(shape), attn.k_proj(x).view(shape), attn.v_proj(x).view(shape)
        if hasattr(attn, "q_norm"):  # Qwen3 normalises each head's queries and keys
            q, k = attn.q_norm(q), attn.k_norm(k)
        return q, k, v

    def qkv(self, layer: int, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = (t.transpose(1, 2) for t in self.project(layer, x))  # [batch, heads, pos, head_dim]
        cos, sin = self.base().rotary_emb(x, positions[None])
        return _apply_rope(q, cos, sin), _apply_rope(k, cos, sin), v


def _apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


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

    def attn_norm(self, layer: int) -> nn.Module:
        return self.blocks()[layer].ln_1

    def mlp_norm(self, layer: int) -> nn.Module:
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


ADAPTERS: tuple[type[Adapter], ...] = (LlamaAdapter, GPT2Adapter, BertAdapter)


def adapter_class(model_type: str) -> type[Adapter]:
    """The adapter class for a config's ``model_type``, or a ValueError listing the supported ones.

    Examples
    --------
    >>> adapter_class("qwen2").family
    'llama'

    """
    from .moe import MOE_ADAPTERS  # moe.py subclasses LlamaAdapter: imported here, where no cycle can form

    every = (*ADAPTERS, *MOE_ADAPTERS)
    for adapter in every:
        if model_type in adapter.model_types:
            return adapter
    supported = ", ".join(t for a in every for t in a.model_types)
    raise ValueError(f"unsupported architecture {model_type!r}: supported model types are {supported}")


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter bound to a loaded Hugging Face model.

    Examples
    --------
    >>> from llmasos_widgets.core.tiny import tiny_model
    >>> adapter_for(tiny_model("tiny-gpt2")[0]).family
    'gpt2'

    """
    return adapter_class(getattr(model.config, "model_type", "?"))(model)
