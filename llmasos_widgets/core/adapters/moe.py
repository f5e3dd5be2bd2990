"""Mixture-of-experts families (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE): their neurons and their router.

Their blocks are pre-norm like Llama's, so the adapters are LlamaAdapter's; what differs is the MLP. In
transformers 5 a block's experts are fused 3-D parameters (``experts.gate_up_proj`` [expert, 2 d_expert,
d_model], ``experts.down_proj`` [expert, d_model, d_expert]) run by a kernel chosen at load time, so no
module's input is an expert's hidden layer. A *neuron* here is one expert's hidden unit: unit ``i`` of expert
``e`` is ``act(gate_e · x)_i (up_e · x)_i``, the ``i``-th input of that expert's down projection, computed from
the model's own weights for the tokens the router sent to ``e`` and 0 for the others. It is taken *before*
the routing weight: the expert's output ``down_e(h_e)`` is multiplied by the token's weight for ``e``, so a
unit adds ``weight × activation × down_e[:, i]`` to the stream. ``blocks.{l}.mlp.hook_post`` is
[pos, n_experts × d_expert] with expert ``e``'s units at ``e × d_expert ..``; Qwen2-MoE's shared expert (always
on, scaled by its own sigmoid gate instead of a routing weight) follows as the last ``d_shared`` units.

The router is read from the model's own gate module (``mlp.gate``: logits, top-k weights and ids, with the
family's ``norm_topk_prob``), on the same input, so the routing shown is the routing the forward pass used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..hooks import Hook, post
from .llama import LlamaAdapter


class MoEAdapter(LlamaAdapter):
    """Mixtral: Llama's blocks with a sparse mixture of experts in place of the MLP."""

    family = "mixtral"
    model_types = ("mixtral",)

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        dense = [layer for layer, block in enumerate(self.blocks()) if not hasattr(block.mlp, "experts")]
        if dense:
            # Neurons have one width per layer (NeuronIndex, NeuronView); a dense layer would have another.
            raise ValueError(
                f"this {self.config.model_type} model has dense MLP layers ({', '.join(map(str, dense))}) among "
                "its mixture-of-experts layers, which is not supported: every layer must be a mixture of experts"
            )

    # -- shape ---------------------------------------------------------------------------------
    @property
    def n_experts(self) -> int:  # type: ignore[override]
        return int(self.blocks()[0].mlp.experts.num_experts)

    @property
    def top_k(self) -> int:
        """Experts each token is sent to."""
        return int(self.config.num_experts_per_tok)

    @property
    def d_expert(self) -> int:
        """Hidden units per routed expert."""
        return int(self.blocks()[0].mlp.experts.down_proj.shape[-1])

    @property
    def d_shared(self) -> int:
        """Hidden units of the shared expert (0: none)."""
        shared = getattr(self.blocks()[0].mlp, "shared_expert", None)
        return 0 if shared is None else int(shared.down_proj.in_features)

    def describe_neuron(self, neuron: int) -> tuple[int, int]:
        """``(expert, unit)`` of a column of ``mlp.hook_post``; expert −1 is the shared expert.

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> load_model("tiny-mixtral").adapter.describe_neuron(37)  # d_expert = 32
        (1, 5)

        """
        routed = self.n_experts * self.d_expert
        return (-1, neuron - routed) if neuron >= routed else divmod(neuron, self.d_expert)

    # -- the MLP ---------------------------------------------------------------------------------
    def route(self, layer: int, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # [N, E], [N, k], [N, k]
        """The router's logits, top-k weights and expert ids for inputs ``x`` [N, d_model]: the model's own gate."""
        logits, weights, experts = self.mlp(layer).gate(x)
        return logits, weights, experts

    def units(self, layer: int, x: Tensor, experts: Tensor) -> Tensor:  # [N, n_experts * d_expert + d_shared]
        """Every expert's hidden units for inputs ``x`` [N, d_model] sent to ``experts`` [N, k]; 0 where not sent."""
        mlp = self.mlp(layer)
        fused = mlp.experts
        out = x.new_zeros(x.shape[0], self.n_experts, self.d_expert)
        for e in experts.unique().tolist():
            rows = (experts == e).any(-1).nonzero()[:, 0]
            gate, up = F.linear(x[rows], fused.gate_up_proj[e]).chunk(2, dim=-1)
            out[rows, e] = fused.act_fn(gate) * up
        units = out.flatten(1)
        if self.d_shared:
            shared = mlp.shared_expert
            units = torch.cat([units, shared.act_fn(shared.gate_proj(x)) * shared.up_proj(x)], dim=-1)
        return units

    def shared_gate(self, layer: int, x: Tensor) -> Tensor:  # [N, 1]
        """The shared expert's gate for inputs ``x`` [N, d_model] (Qwen2-MoE): ``sigmoid(w · x)``."""
        return torch.sigmoid(self.mlp(layer).shared_expert_gate(x))

    def output(self, layer: int, units: Tensor, weights: Tensor, experts: Tensor, x: Tensor) -> Tensor:  # [N, d_model]
        """The MLP's output from its ``units`` [N, width] and routing: Σ_e weight_e · down_e(units_e) (+ shared)."""
        fused = self.mlp(layer).experts
        n, routed = units.shape[0], self.n_experts * self.d_expert
        dense = torch.zeros(n, self.n_experts, dtype=units.dtype, device=units.device)
        dense.scatter_(1, experts, weights.to(units.dtype))
        out = torch.einsum("ned,eod,ne->no", units[:, :routed].view(n, self.n_experts, -1), fused.down_proj, dense)
        if self.d_shared:
            out = out + self.shared_gate(layer, x) * self.mlp(layer).shared_expert.down_proj(units[:, routed:])
        return out

    def mlp_hook(self, layer: int, what: str, fn: Callable[[Tensor], Tensor | None]) -> Hook:
        """A hook on the MoE block handing ``fn`` ``mlp.{what}`` [batch, pos, width] (see core/hooks.site).

        It reads the block's input and routes it again with the model's own gate. For ``"hook_post"``, a
        tensor ``fn`` returns replaces the units and the block's output is computed from them.
        """
        allowed = ("hook_post", "hook_expert_indices", "hook_expert_weights") + (
            ("hook_shared_gate",) if self.d_shared else ()
        )
        if what not in allowed:
            raise ValueError(f"{self.family} models have no mlp.{what}: use mlp.{', mlp.'.join(allowed)}")

        def hand_over(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor | None:
            x = args[0].reshape(-1, args[0].shape[-1])
            shape = args[0].shape[:-1]
            _, weights, experts = self.route(layer, x)
            if what == "hook_expert_indices":
                return fn(experts.view(*shape, -1))
            if what == "hook_expert_weights":
                return fn(weights.view(*shape, -1))
            if what == "hook_shared_gate":
                return fn(self.shared_gate(layer, x).view(*shape, 1))
            units = self.units(layer, x, experts)
            new = fn(units.view(*shape, -1))
            if new is None:
                return None
            return self.output(layer, new.reshape(units.shape), weights, experts, x).view(output.shape).to(output.dtype)

        return post(self.mlp(layer), hand_over)

    def neuron_output_weights(self, layer: int) -> Tensor:  # [neuron, d_model]
        """Each unit's row of its expert's down projection (the shared expert's last).

        What one unit of activation adds to the stream before the routing weight (or the shared gate) scales it.
        """
        mlp = self.mlp(layer)
        rows = mlp.experts.down_proj.detach().transpose(1, 2).reshape(-1, self.d_model)  # [E * d_expert, d_model]
        if self.d_shared:
            rows = torch.cat([rows, mlp.shared_expert.down_proj.weight.detach().T])
        return rows


class Qwen2MoEAdapter(MoEAdapter):
    """Qwen2-MoE: routed experts plus a shared expert with its own sigmoid gate."""

    family = "qwen2_moe"
    model_types = ("qwen2_moe",)


class Qwen3MoEAdapter(MoEAdapter):
    """Qwen3-MoE: routed experts; queries and keys normalised per head (as Qwen3)."""

    family = "qwen3_moe"
    model_types = ("qwen3_moe",)


class OlmoeAdapter(MoEAdapter):
    """OLMoE: routed experts; queries and keys normalised over the whole projection, then clipped."""

    family = "olmoe"
    model_types = ("olmoe",)

    qk_norm = "clipped"  # normed over the whole projection, then clipped: in project, not in LlamaAdapter.qkv

    def project(self, layer: int, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        attn = self.blocks()[layer].self_attn
        q, k, v = attn.q_norm(attn.q_proj(x)), attn.k_norm(attn.k_proj(x)), attn.v_proj(x)
        clip = self.config.clip_qkv
        if clip is not None:
            q, k, v = (t.clamp(min=-clip, max=clip) for t in (q, k, v))
        return q, k, v
