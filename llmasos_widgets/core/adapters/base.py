"""The adapter base class: what every architecture family provides, and how a block is composed from it.

An adapter answers, for one family: which modules hold the residual stream, the MLP's hidden activation and
what attention and the MLP add (the TransformerLens sites, ``core/hooks.site``); how to recompute one layer's
attention pattern exactly from the residual stream entering it; and how one block is composed from its
parts (``block``), so that the causal engine can re-run blocks with edits inside them. A family is a subclass
that names its modules and sets the few switches below; everything else is family-agnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..hooks import Hook, pre
from ..offload import materialized

Edit = Callable[[str, Tensor], Tensor]  # (site, activation) -> activation; sites "resid", "heads", "attn", "mlp"


def unchanged(site: str, value: Tensor) -> Tensor:
    """The edit that changes nothing (a block run as the model runs it)."""
    return value


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` [batch, head, pos, head_dim] as Hugging Face's ``apply_rotary_pos_emb`` does.

    ``cos`` and ``sin`` are [batch, pos, rotary_dim]; with partial rotary (GPT-NeoX's ``rotary_pct``,
    Phi's ``partial_rotary_factor``) only the first ``rotary_dim`` features rotate, the rest pass through.

    Examples
    --------
    >>> x = torch.arange(4.0).view(1, 1, 1, 4)
    >>> apply_rope(x, torch.ones(1, 1, 4), torch.zeros(1, 1, 4)).tolist()  # angle 0: unchanged
    [[[[0.0, 1.0, 2.0, 3.0]]]]

    """
    rotary = cos.shape[-1]
    x_rot, x_pass = x[..., :rotary], x[..., rotary:]
    half = rotary // 2
    rotated = torch.cat((-x_rot[..., half:], x_rot[..., :half]), dim=-1)
    out = x_rot * cos[:, None] + rotated * sin[:, None]
    return torch.cat((out, x_pass), dim=-1) if x_pass.shape[-1] else out


class Adapter:
    """Base class; one subclass per architecture family (see "Adding a family" in DESIGN.md).

    A causal block is composed as ``h = x + attn_out; out = h + mlp_out`` with
    ``attn_out = attn_post_norm(out_proj(attention(attn_norm(x))))`` and
    ``mlp_out = mlp_post_norm(mlp(mlp_norm(h)))`` (``mlp_norm(x)`` with ``parallel_residual``); a norm a family
    does not have is None. ``attn_out`` and ``mlp_out`` are TransformerLens's ``hook_attn_out`` and
    ``hook_mlp_out``: what the block adds to the residual stream.
    """

    family: str = ""
    model_types: tuple[str, ...] = ()
    causal: bool = True
    parallel_residual: bool = False  # GPT-NeoX/Pythia: attention and the MLP both read the block's input
    n_experts: int = 0  # routed experts per MLP; 0: a dense MLP (moe.py holds the mixtures of experts)

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
        (moe.py).
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
        with materialized(self.blocks()[layer]):  # offloaded weights (core/offload.py): the tensor outlives the load
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

    def head_logits(self, normed: Tensor) -> Tensor:  # [..., d_model] -> [..., vocab]
        """Logits from the final *normed* stream (the base model's output), soft-capped where the family caps them."""
        with materialized(self.head()):  # weights offloaded by accelerate are loaded for the call
            logits = self.head()(normed)
        cap = getattr(self.config, "final_logit_softcapping", None)  # Gemma 2 and 3: tanh(logits / cap) * cap
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def logits(self, resid_final: Tensor) -> Tensor:  # [pos, d_model] -> [pos, vocab]
        """Logits from the final residual stream before the final norm (``blocks.{L-1}.hook_resid_post``)."""
        norm = self.final_norm()
        with materialized(norm):
            return self.head_logits(norm(resid_final) if norm is not None else resid_final)

    # -- the parts of a block ------------------------------------------------------------------
    def attn_norm(self, layer: int) -> nn.Module | None:
        """The norm before attention (None: attention reads the stream itself, as in OLMo-2)."""
        raise NotImplementedError

    def attn_post_norm(self, layer: int) -> nn.Module | None:
        """The norm of attention's output before it is added (Gemma 2/3, OLMo-2), else None."""
        return None

    def mlp_norm(self, layer: int) -> nn.Module | None:
        """The norm before the MLP (None: the MLP reads the stream itself)."""
        raise NotImplementedError

    def mlp_post_norm(self, layer: int) -> nn.Module | None:
        """The norm of the MLP's output before it is added (Gemma 2/3, OLMo-2), else None."""
        return None

    def mlp(self, layer: int) -> nn.Module:
        """The MLP (its output is ``hook_mlp_out`` unless an ``mlp_post_norm`` follows)."""
        raise NotImplementedError

    def attn_out_proj(self, layer: int) -> nn.Module:
        """The attention's output projection: its input is ``blocks.{layer}.attn.hook_z``."""
        raise NotImplementedError

    def attn_scale(self, layer: int) -> float:
        raise NotImplementedError

    def attn_softcap(self, layer: int) -> float | None:
        """Gemma 2's attention logit soft-capping: scores become ``tanh(s / cap) * cap`` before the mask."""
        return None

    def qkv(self, layer: int, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries [batch, head, pos, head_dim], keys and values [batch, kv_head, pos, head_dim] of ``layer``.

        ``x`` is the attention's input [batch, pos, d_model] (``attn_input``) at absolute ``positions`` [pos];
        queries and keys are normed and rotated where the family does so.
        """
        raise NotImplementedError

    def window(self, layer: int) -> int | None:
        """Sliding-window size of ``layer``'s causal attention (keys this far back or more are masked), if any.

        Per layer: Gemma 2/3 and Qwen2 name each layer's type (``config.layer_types``); Mistral and Phi-3 slide
        in every layer when ``sliding_window`` is set.
        """
        size = getattr(self.config, "sliding_window", None)
        if not size:
            return None
        types = getattr(self.config, "layer_types", None)
        if types is not None:
            return int(size) if types[layer] == "sliding_attention" else None
        return int(size)

    # -- sites: what the block adds to the residual stream (TransformerLens's hook_attn_out, hook_mlp_out) --
    def attn_added(self, layer: int) -> nn.Module:
        """The module whose output is ``blocks.{layer}.hook_attn_out``: the post-attention norm, else the projection."""
        return self.attn_post_norm(layer) or self.attn_out_proj(layer)

    def mlp_added(self, layer: int) -> nn.Module:
        """The module whose output is ``blocks.{layer}.hook_mlp_out``: the post-MLP norm, else the MLP."""
        return self.mlp_post_norm(layer) or self.mlp(layer)

    # -- composing a block (the causal engine re-runs blocks with edits inside them) -------------
    def attn_input(self, layer: int, x: Tensor) -> Tensor:
        """What attention reads: the normed stream (or the stream itself where the family has no pre-norm)."""
        norm = self.attn_norm(layer)
        return norm(x) if norm is not None else x

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, first_query: int) -> Tensor:
        """The heads' outputs ``z`` [batch, pos, head * head_dim] (``attn.hook_z``).

        ``q`` holds queries at positions ``first_query``.., ``k`` and ``v`` every key from position 0.
        """
        group = self.n_heads // self.n_kv_heads
        if group > 1:  # grouped-query attention: kv head j serves query heads j*g .. j*g + g - 1
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if self.attn_softcap(layer) is None:
            queries = torch.arange(first_query, first_query + q.shape[2], device=q.device)
            allowed = self.allowed(layer, queries, torch.arange(k.shape[2], device=q.device))
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=self.attn_scale(layer))
        else:  # SDPA cannot soft-cap: the scores as Hugging Face's eager attention computes them
            scores = torch.matmul(q, k.transpose(2, 3)) * self.attn_scale(layer)
            weights = self.cap_and_mask_(scores, layer, first_query).softmax(-1, dtype=torch.float32)
            z = torch.matmul(weights.to(v.dtype), v)
        return z.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)

    def block(
        self,
        layer: int,
        x: Tensor,
        positions: Tensor,
        *,
        extend_kv: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
        edit: Edit = unchanged,
    ) -> Tensor:
        """Block ``layer`` on the stream ``x`` [batch, pos, d_model] at absolute ``positions``, with edits.

        ``edit(site, value)`` may replace the block's input (``"resid"``), the heads' outputs (``"heads"``),
        what attention adds (``"attn"``) and what the MLP adds (``"mlp"``). ``extend_kv(k, v)`` puts the keys
        and values of the positions before ``positions[0]`` in front of these (a run that joins another's).

        Examples
        --------
        >>> from llmasos_widgets.core.tiny import tiny_model
        >>> from llmasos_widgets.core.adapters import adapter_for
        >>> model, _ = tiny_model("tiny-llama")
        >>> adapter, x = adapter_for(model), torch.randn(1, 5, 64)
        >>> with torch.no_grad():  # block 0 on the embeddings is the model's first hidden state
        ...     ours = adapter.block(0, x, torch.arange(5))
        ...     theirs = model.model(inputs_embeds=x, output_hidden_states=True).hidden_states[1]
        >>> bool(torch.allclose(ours, theirs, atol=1e-5))
        True

        """
        with materialized(self.blocks()[layer]):  # parts called directly: offloaded weights loaded for the block
            return self._block(layer, x, positions, extend_kv, edit)

    def _block(self, layer: int, x: Tensor, positions: Tensor, extend_kv: Any, edit: Edit) -> Tensor:
        x = edit("resid", x)
        q, k, v = self.qkv(layer, self.attn_input(layer, x), positions)
        if extend_kv is not None:
            k, v = extend_kv(k, v)
        z = edit("heads", self.attend(layer, q, k, v, int(positions[0])))
        attn_out = edit("attn", _then(self.attn_post_norm(layer), self.attn_out_proj(layer)(z)))
        h = x + attn_out
        mlp_in = x if self.parallel_residual else h
        mlp_out = edit("mlp", _then(self.mlp_post_norm(layer), self.mlp(layer)(_then(self.mlp_norm(layer), mlp_in))))
        return h + mlp_out

    # -- attention patterns --------------------------------------------------------------------
    def attention_qk(self, layer: int, resid_pre: Tensor) -> tuple[Tensor, Tensor, float]:
        """Queries and keys of ``layer`` as its attention scores see them: ``q, k, scale``.

        ``q`` and ``k`` are [head, pos, head_dim], keys already repeated over grouped query heads
        and rotated where the family uses RoPE, so that ``scores = q @ k.T * scale`` (then ``cap_and_mask_``).
        """
        with materialized(self.blocks()[layer]):
            x = self.attn_input(layer, resid_pre)[None]  # [1, pos, d_model]
            q, k, _ = self.qkv(layer, x, torch.arange(x.shape[1], device=x.device))
        k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)  # GQA: kv head j serves queries j*g..
        return q[0], k[0], self.attn_scale(layer)

    def attention_pattern(self, layer: int, resid_pre: Tensor) -> Tensor:
        """Recompute ``blocks.{layer}.attn.hook_pattern`` [head, query_pos, key_pos] from its input.

        One head at a time into the output, so the peak is the pattern plus one head's scores.
        """
        q, k, scale = self.attention_qk(layer, resid_pre)
        out = torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=torch.float32, device=q.device)
        for head in range(q.shape[0]):
            scores = torch.matmul(q[head].float(), k[head].float().T, out=out[head]).mul_(scale)
            self.softmax_(scores, layer, 0)
        return out

    def allowed(self, layer: int, queries: Tensor, keys: Tensor) -> Tensor | None:
        """Which keys each query of ``layer`` sees: bool [query, key] (True: attend), None when all do.

        ``queries`` and ``keys`` are absolute positions. Causal, and within the layer's sliding window if any
        (HF's mask: ``key > query - window``).
        """
        if not self.causal:
            return None
        allowed = keys[None, :] <= queries[:, None]
        window = self.window(layer)
        if window is not None:
            allowed &= keys[None, :] > queries[:, None] - window
        return allowed

    def cap_(self, scores: Tensor, layer: int) -> Tensor:
        """Soft-cap scaled scores in place where ``layer`` caps them (``tanh(s / cap) * cap``); else unchanged."""
        cap = self.attn_softcap(layer)
        return scores if cap is None else scores.div_(cap).tanh_().mul_(cap)

    def cap_and_mask_(self, scores: Tensor, layer: int, first_query: int) -> Tensor:
        """Turn scaled scores [..., query, key] of queries ``first_query``.. into the softmax's input, in place.

        As HF's eager attention does: soft-capped where the family caps (``attn_softcap``), then masked
        positions set to the dtype's minimum (HF adds it), so they come out of the softmax as 0.
        """
        self.cap_(scores, layer)
        if not self.causal:
            return scores
        n_q, n_k = scores.shape[-2], scores.shape[-1]
        # Without a window, keys before the first query are seen by every query: mask only the rest.
        k0 = min(first_query, n_k) if self.window(layer) is None else 0
        queries = torch.arange(first_query, first_query + n_q, device=scores.device)
        allowed = self.allowed(layer, queries, torch.arange(k0, n_k, device=scores.device))
        scores[..., k0:].masked_fill_(~allowed, torch.finfo(scores.dtype).min)  # type: ignore[operator]
        return scores

    def softmax_(self, scores: Tensor, layer: int, first_query: int) -> Tensor:
        """Softmax over keys, in place on scaled float32 scores of ``layer``'s queries ``first_query``...

        Capped and masked first (``cap_and_mask_``). Returns the log-sum-exp of each query's capped, masked
        scores [..., query], so that any single weight can later be recomputed as ``exp(score - lse)``.
        """
        self.cap_and_mask_(scores, layer, first_query)
        top = scores.amax(dim=-1, keepdim=True)
        total = scores.sub_(top).exp_().sum(dim=-1, keepdim=True)
        scores.div_(total)
        return (top + total.log()).squeeze(-1)

    @staticmethod
    def _heads(x: Tensor, head_dim: int) -> Tensor:  # [pos, heads*head_dim] -> [heads, pos, head_dim]
        return x.view(x.shape[0], -1, head_dim).transpose(0, 1)


def _then(norm: nn.Module | None, x: Tensor) -> Tensor:
    return norm(x) if norm is not None else x
