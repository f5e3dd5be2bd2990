"""One forward pass over a text, kept in a form every view and analysis can read.

A Trace holds the residual stream before each block and the MLP hidden activations, both
[pos, width] per layer, and for a mixture of experts each layer's routing (core/adapters/moe.py). Attention
patterns are not kept: ``attention(layer)`` recomputes one layer's pattern exactly from that layer's
residual input, so memory grows as layers × tokens × width rather than layers × heads × tokens², and a
few recent layers are cached.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import checks
from .chat import ChatTokens, Transcript, tie
from .memory import require, trace_estimate
from .offload import execution_device

if TYPE_CHECKING:
    from .models import LanguageModel

_HOOK = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|mlp\.hook_post|attn\.hook_pattern)$")


@dataclass(frozen=True)
class Routing:
    """Where a mixture of experts' router sent each token in one layer (``trace.router(layer)``)."""

    layer: int
    n_experts: int
    experts: Tensor  # [pos, k] int64: each token's experts, largest weight first
    weights: Tensor  # [pos, k] float32: their routing weights (what multiplies each expert's output)
    shared_gate: Tensor | None = None  # [pos] float32: the shared expert's sigmoid gate (Qwen2-MoE), else None

    @property
    def dense(self) -> Tensor:  # [pos, n_experts]
        """The weights as [pos, n_experts], 0 for the experts a token was not sent to."""
        out = torch.zeros(self.experts.shape[0], self.n_experts)
        return out.scatter_(1, self.experts, self.weights)


@dataclass(frozen=True)
class Prediction:
    """One candidate next token: its text, id and probability."""

    token: str
    id: int
    prob: float


class Fetched(Sequence[Tensor]):
    """Activations of a run on a remote model, each site read on first use (one request) and kept.

    A Trace of a model on NDIF holds these instead of the activations, so that a view brings back only what it
    shows: the attention overview is computed where the model runs and needs none of them; iterating over all
    (``trace.residual``) reads the missing sites in one request.
    """

    def __init__(self, model: LanguageModel, names: list[str], input_ids: Tensor) -> None:
        self.model, self.names, self.input_ids = model, names, input_ids
        self._kept: list[Tensor | None] = [None] * len(names)

    def __len__(self) -> int:
        return len(self.names)

    def _fetch(self, indexes: list[int]) -> None:
        missing = [i for i in indexes if self._kept[i] is None]
        if missing:
            with torch.no_grad():
                acts = self.model.backend.read(self.model, [self.names[i] for i in missing], self.input_ids)
            for i in missing:
                self._kept[i] = acts[self.names[i]][0].detach()

    def __getitem__(self, index: int) -> Tensor:  # type: ignore[override]
        index = range(len(self))[index]  # negative from the end; an IndexError past it
        self._fetch([index])
        return self._kept[index]  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Tensor]:
        self._fetch(list(range(len(self))))
        return iter(self._kept)  # type: ignore[arg-type]

    @property
    def fetched(self) -> int:
        """How many of the sites have been read."""
        return sum(v is not None for v in self._kept)


class Trace:
    """The result of one forward pass over a text (or a prompt plus its generation).

    Build it with ``model.trace(text)`` or ``model.generate_trace(prompt)``; either takes a chat too (a
    list of ``{"role", "content"}`` messages), and then ``trace.chat`` ties each token to its message.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace = load_model("tiny-gpt2").trace("The capital of France is")
    >>> trace.attention(1).shape  # [head, query_pos, key_pos]
    torch.Size([4, 5, 5])
    >>> trace["blocks.0.mlp.hook_post"].shape  # [pos, d_mlp]
    torch.Size([5, 256])

    """

    # Computed attention layers are kept up to this many bytes (always at least one): views revisit
    # recent layers, but a long text's patterns must not pile up (one layer of SmolLM2 at 2048 tokens
    # is 151 MB).
    attention_cache_bytes = 256 * 2**20

    def __init__(
        self,
        model: LanguageModel,
        text: str,
        token_ids: list[int],
        offsets: list[tuple[int, int]],
        generated: list[bool],
        resid: Sequence[Tensor],
        mlp_post: Sequence[Tensor],
        routing: list[Routing] | None = None,
        transcript: Transcript | None = None,
    ) -> None:
        self.model = model
        self.text = text
        self.token_ids = token_ids
        # What each token stands for in the text ("" for one carrying the rest of a split character).
        self.tokens = model.token_texts(text, token_ids, offsets)
        self.offsets = offsets
        self.generated = generated
        # For a chat: each token's message, role, template flag and characters in its message's content.
        self.chat: ChatTokens | None = (
            None
            if transcript is None
            else tie(transcript, text, self.tokens, token_ids, generated, set(model.special_ids))
        )
        self._resid = resid  # n_layers + 1 entries of [pos, d_model]: each block's input, then the final
        self._mlp_post = mlp_post  # n_layers entries of [pos, d_mlp]
        self._routing = routing  # n_layers entries for a mixture of experts, else None
        self._attention: OrderedDict[int, Tensor] = OrderedDict()
        self._logits: Tensor | None = None

    @classmethod
    def run(
        cls,
        model: LanguageModel,
        text: str,
        token_ids: list[int],
        offsets: list[tuple[int, int]],
        generated: list[bool],
        transcript: Transcript | None = None,
    ) -> Trace:
        """Run the forward pass with hooks that keep the residual stream and MLP activations."""
        require(trace_estimate(model, len(token_ids)))  # refuse before the run, naming a smaller setting
        n_layers, device = model.n_layers, model.device
        resid_pre = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)]
        mlp_post = [f"blocks.{layer}.mlp.hook_post" for layer in range(n_layers)]
        final = f"blocks.{n_layers - 1}.hook_resid_post"  # what the final norm reads (before the LM head)
        adapter = model.adapter  # a mixture of experts (core/adapters/moe.py) also keeps each layer's routing
        routes = ["hook_expert_indices", "hook_expert_weights"] if adapter.n_experts else []
        if adapter.n_experts and adapter.d_shared:
            routes.append("hook_shared_gate")
        routers = [f"blocks.{layer}.mlp.{what}" for layer in range(n_layers) for what in routes]
        input_ids = torch.tensor([token_ids], device=device)
        if model.backend.remote:  # NDIF: each site travels back when a view first needs it, never all at once
            resid: Sequence[Tensor] = Fetched(model, [*resid_pre, final], input_ids)
            mlp: Sequence[Tensor] = Fetched(model, mlp_post, input_ids)
            acts = model.backend.read(model, routers, input_ids) if routers else {}
        else:
            with torch.no_grad():
                # The base model only, to the last block: logits are derived on demand from the final residual
                # stream, which saves a [pos, vocab] tensor on long texts.
                acts = model.backend.read(  # torch hooks, or nnsight's graph (core/backends.py)
                    model, [*resid_pre, *mlp_post, final, *routers], input_ids
                )
            resid = [acts[name][0].detach() for name in (*resid_pre, final)]
            mlp = [acts[name][0].detach() for name in mlp_post]
        routing = None
        if routes:

            def at(layer: int, what: str) -> Tensor:  # [pos, k] (or [pos, 1])
                return acts[f"blocks.{layer}.mlp.{what}"][0].detach().cpu()

            routing = [
                Routing(
                    layer,
                    adapter.n_experts,
                    at(layer, "hook_expert_indices").long(),
                    at(layer, "hook_expert_weights").float(),
                    at(layer, "hook_shared_gate")[:, 0].float() if "hook_shared_gate" in routes else None,
                )
                for layer in range(n_layers)
            ]
        return cls(model, text, token_ids, offsets, generated, resid, mlp, routing, transcript)

    # -- shape and validation ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.token_ids)

    def __repr__(self) -> str:
        n_gen = sum(self.generated)
        gen = f", {n_gen} generated" if n_gen else ""
        if self.chat is not None:
            gen += f", chat of {len(self.chat.messages)} messages"
        return f"Trace({self.model.name!r}, {len(self)} tokens{gen}, {self.n_layers} layers)"

    @property
    def n_layers(self) -> int:
        return len(self._mlp_post)

    @property
    def n_heads(self) -> int:
        return self.model.n_heads

    def check_layer(self, layer: int) -> int:
        """Return ``layer`` if it exists (negative counts from the end), else raise a ValueError."""
        return checks.layer(layer, self.n_layers, self.model.name)

    def check_position(self, pos: int) -> int:
        """Return ``pos`` if it is a token position (negative counts from the end), else raise."""
        return checks.index(pos, len(self), "position", "this trace has tokens")

    # -- activations ---------------------------------------------------------------------------
    def resid_pre(self, layer: int) -> Tensor:  # [pos, d_model]
        """The residual stream entering block ``layer`` (``layer == n_layers``: after the last block)."""
        if layer == self.n_layers:
            return self._resid[layer]
        return self._resid[self.check_layer(layer)]

    @property
    def residual(self) -> Tensor:  # [layer + 1, pos, d_model]
        """The residual stream before every block and after the last, on the CPU, float32."""
        return torch.stack([r.float().cpu() for r in self._resid])

    def mlp_post(self, layer: int) -> Tensor:  # [pos, d_mlp]
        """MLP hidden activations of ``layer`` (the input of its output projection)."""
        return self._mlp_post[self.check_layer(layer)]

    def router(self, layer: int) -> Routing:
        """Where a mixture of experts' router sent each token in ``layer``: experts and weights [pos, k].

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> routing = load_model("tiny-mixtral").trace("The capital of France is").router(1)
        >>> routing.experts.shape, routing.dense.shape  # top-2 of 4 experts
        (torch.Size([5, 2]), torch.Size([5, 4]))

        """
        layer = self.check_layer(layer)
        if self._routing is None:
            family = self.model.adapter.family
            raise ValueError(f"{self.model.name} is not a mixture of experts ({family}): it has no router")
        return self._routing[layer]

    def attention(self, layer: int) -> Tensor:  # [head, query_pos, key_pos]
        """The attention pattern of ``layer``, float32 on the CPU, equal to the model's eager attention.

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> pattern = load_model("tiny-llama").trace("Hello there").attention(0)
        >>> bool(torch.allclose(pattern.sum(-1), torch.ones(pattern.shape[:2])))
        True

        """
        layer = self.check_layer(layer)
        with self.model.lock, torch.no_grad():  # the lock also guards the cache: views read it from threads
            if layer in self._attention:
                self._attention.move_to_end(layer)
                return self._attention[layer]
            block_device = execution_device(self.model.adapter.blocks()[layer])
            pattern = self.model.adapter.attention_pattern(layer, self._resid[layer].to(block_device)).float().cpu()
            self._attention[layer] = pattern
            while (
                len(self._attention) > 1
                and sum(p.nbytes for p in self._attention.values()) > self.attention_cache_bytes
            ):
                self._attention.popitem(last=False)
            return pattern

    def __getitem__(self, name: str) -> Tensor:
        """Activations by TransformerLens name, e.g. ``trace["blocks.3.attn.hook_pattern"]``."""
        match = _HOOK.match(name)
        if not match:
            raise KeyError(
                f"unknown activation {name!r}: use blocks.{{layer}}.hook_resid_pre, blocks.{{layer}}.hook_resid_post, "
                "blocks.{layer}.mlp.hook_post or blocks.{layer}.attn.hook_pattern"
            )
        layer, what = self.check_layer(int(match.group(1))), match.group(2)
        if what == "hook_resid_pre":
            return self.resid_pre(layer)
        if what == "hook_resid_post":
            return self.resid_pre(layer + 1)
        if what == "mlp.hook_post":
            return self.mlp_post(layer)
        return self.attention(layer)

    # -- predictions ---------------------------------------------------------------------------
    def logits_at(self, pos: int) -> Tensor:  # [vocab]
        """Output logits at one position (the next-token distribution for causal models)."""
        pos = self.check_position(pos)
        if self._logits is not None:
            return self._logits[pos]
        with self.model.lock, torch.no_grad():
            final = self._resid[-1][pos : pos + 1]
            return self.model.adapter.logits(final.to(self.model.device))[0].float().cpu()

    @property
    def logits(self) -> Tensor:  # [pos, vocab]
        """Output logits at every position, computed on first use from the final residual stream."""
        if self._logits is None:
            with self.model.lock, torch.no_grad():
                self._logits = self.model.adapter.logits(self._resid[-1].to(self.model.device)).float().cpu()
        return self._logits

    def top_predictions(self, pos: int = -1, k: int = 5) -> list[Prediction]:
        """The ``k`` most likely tokens the model predicts at position ``pos`` (next token if causal).

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> preds = load_model("tiny-llama").trace("The capital of France is").top_predictions(-1, k=3)
        >>> len(preds), preds[0].prob >= preds[1].prob
        (3, True)

        """
        checks.int_in("k", k, 1, 1000)
        probs = torch.softmax(self.logits_at(pos), dim=-1)
        top = torch.topk(probs, min(k, probs.shape[0]))
        return [
            Prediction(self.model.decode_token(i), int(i), float(p))
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=False)
        ]
