"""The block engine: captured runs of the model, and patched runs recomputed from a layer and position on.

A patch at layer l and position p leaves every layer below l and every position before p as in the base run
(the model is causal), so a patched run starts at block l from the base run's residual stream, computes
positions p.. only, attends to the base run's keys and values before p, and unembeds only the last position.
Runs that start at the same position go through the blocks as one batch, each joining at its own layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ...core.hooks import post, read
from ...core.offload import materialized

if TYPE_CHECKING:
    from ...core.models import LanguageModel

SITES = ("resid", "attn", "mlp", "heads")


# -- runs and the block engine ---------------------------------------------------------------
@dataclass
class Run:
    """One forward pass (or a batch of them, N) with every activation patching reads: [N, pos, width]."""

    ids: Tensor  # [pos]
    resid: list[Tensor]  # n_layers + 1 entries: each block's input, then the final residual stream
    attn_out: list[Tensor]
    mlp_out: list[Tensor]
    z: list[Tensor]  # [N, pos, head * head_dim]
    logits: Tensor  # [N, vocab] at the last position
    kv: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)  # layer -> keys, values [N, kv_head, pos, hd]

    def site(self, site: str, layer: int) -> Tensor:
        return {"resid": self.resid, "attn": self.attn_out, "mlp": self.mlp_out, "heads": self.z}[site][layer]


@dataclass
class Edit:
    """Replace ``site`` at ``layer`` and ``positions`` with ``value`` [len(positions), width] (or one head's slice)."""

    layer: int
    site: str
    positions: list[int]
    value: Tensor
    head: int | None = None


@dataclass
class Cell:
    """One patched run: a base run (sample ``base`` of it) with edits."""

    edits: list[Edit]
    base: int = 0

    @property
    def entry(self) -> int:
        return min(e.layer for e in self.edits)

    @property
    def start(self) -> int:
        return min(min(e.positions) for e in self.edits)


class Engine:
    """Captures runs and re-runs the blocks from a layer and position on, with edits inside them."""

    max_rows = 8192  # batch x positions per block call: bounds memory for long prompts

    def __init__(self, model: LanguageModel) -> None:
        if not model.is_causal:
            raise ValueError(
                f"{model.name} is an encoder ({model.adapter.family}); patching, tracing and steering need a causal LM"
            )
        self.model = model
        self.adapter = model.adapter
        self.adapter.head()  # a ValueError now if the model predicts no tokens
        self.n_layers = model.n_layers

    # -- capture ---------------------------------------------------------------------------------
    def capture(
        self,
        ids: Sequence[int],
        *,
        noise: Tensor | None = None,
        grad_of: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Run, dict[str, list[Tensor]] | None]:
        """Run the model on ``ids`` and keep every site; ``noise`` [N, pos, d] is added to the embeddings.

        With ``grad_of`` (a function of the last logits [N, vocab] returning [N]), also return the
        gradient of its sum with respect to every site (for attribution patching).
        """
        adapter, n_layers = self.adapter, self.n_layers
        N = 1 if noise is None else noise.shape[0]
        names = {  # TransformerLens names of every site, per layer
            "resid": [f"blocks.{i}.hook_resid_pre" for i in range(n_layers)]
            + [f"blocks.{n_layers - 1}.hook_resid_post"],
            "attn": [f"blocks.{i}.hook_attn_out" for i in range(n_layers)],
            "mlp": [f"blocks.{i}.hook_mlp_out" for i in range(n_layers)],
            "heads": [f"blocks.{i}.attn.hook_z" for i in range(n_layers)],
        }

        def add_noise(module, args, output):  # type: ignore[no-untyped-def]
            return output + noise.to(output)

        extra = [] if noise is None else [post(self.model.model.get_input_embeddings(), add_noise)]
        input_ids = torch.tensor([list(ids)] * N, device=self.model.device)
        with self.model.lock, torch.set_grad_enabled(grad_of is not None):
            every = [n for group in names.values() for n in group]
            acts = read(self.model, every, hooks=extra, input_ids=input_ids, use_cache=False)
            keep = {s: [acts[n] for n in group] for s, group in names.items()}
            logits = adapter.logits(keep["resid"][n_layers][:, -1])
            grads = None
            if grad_of is not None:
                sites = [(s, i) for s in ("resid", "attn", "mlp", "heads") for i in range(n_layers)]
                found = torch.autograd.grad(grad_of(logits).sum(), [keep[s][i] for s, i in sites])
                grads = {s: [g.detach() for (s2, _), g in zip(sites, found, strict=True) if s2 == s] for s in SITES}
        run = Run(
            ids=torch.tensor(list(ids)),
            resid=[t.detach() for t in keep["resid"]],
            attn_out=[t.detach() for t in keep["attn"]],
            mlp_out=[t.detach() for t in keep["mlp"]],
            z=[t.detach() for t in keep["heads"]],
            logits=logits.detach(),
        )
        return run, grads

    def _kv(self, run: Run, layer: int) -> tuple[Tensor, Tensor]:  # called under the model's lock
        if layer not in run.kv:
            with materialized(self.adapter.blocks()[layer]):  # offloaded weights (core/offload.py)
                x = self.adapter.attn_input(layer, run.resid[layer])
                _, k, v = self.adapter.qkv(layer, x, torch.arange(x.shape[1], device=x.device))
            run.kv[layer] = (k, v)
        return run.kv[layer]

    # -- patched runs ----------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, base: Run, cells: Sequence[Cell]) -> Tensor:
        """The last position's logits [len(cells), vocab] of each patched run of ``base``."""
        with self.model.lock:
            return self._run(base, cells)

    def _run(self, base: Run, cells: Sequence[Cell]) -> Tensor:
        out: list[Tensor | None] = [None] * len(cells)
        by_start: dict[int, list[int]] = {}
        for i, cell in enumerate(cells):
            by_start.setdefault(cell.start, []).append(i)
        T = base.resid[0].shape[1]
        for start, members in by_start.items():
            per_batch = max(1, self.max_rows // (T - start))
            members.sort(key=lambda i: cells[i].entry)
            for b in range(0, len(members), per_batch):
                chunk = members[b : b + per_batch]
                logits = self._run_group(base, [cells[i] for i in chunk], start)
                for i, row in zip(chunk, logits, strict=True):
                    out[i] = row
        return torch.stack(out)  # type: ignore[arg-type]

    def _run_group(self, base: Run, cells: list[Cell], start: int) -> Tensor:
        # Cells enter at their first edited layer, in order; below it they are the base run.
        T = base.resid[0].shape[1]
        x = base.resid[0][:0, start:]
        entered = 0
        for layer in range(cells[0].entry, self.n_layers):
            # The base run's stream entering this layer sits where the layer runs (also on a sharded model).
            device = base.resid[layer].device
            x = x.to(device)
            while entered < len(cells) and cells[entered].entry == layer:
                entered += 1
                x = torch.cat([x, base.resid[layer][cells[entered - 1].base, start:][None]])
            edits = {
                s: [(i, e) for i, c in enumerate(cells[:entered]) for e in c.edits if e.layer == layer and e.site == s]
                for s in SITES
            }
            bases = torch.tensor([c.base for c in cells[:entered]], device=device)
            positions = torch.arange(start, T, device=device)
            x = self._block(layer, x, base, bases, start, positions, edits)
        return self.adapter.logits(x[:, -1].to(base.resid[self.n_layers].device))

    def _block(
        self,
        layer: int,
        x: Tensor,  # [batch, pos - start, d_model]
        base: Run,
        bases: Tensor,
        start: int,
        positions: Tensor,
        edits: dict[str, list[tuple[int, Edit]]],
    ) -> Tensor:
        """The adapter's block, joined to the base run's keys and values before ``start``, with the cells' edits."""

        def extend_kv(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
            base_k, base_v = self._kv(base, layer)
            return torch.cat([base_k[bases, :, :start], k], dim=2), torch.cat([base_v[bases, :, :start], v], dim=2)

        def edit(site: str, value: Tensor) -> Tensor:
            if site != "heads":
                return _apply(value, edits[site], start)
            if not edits["heads"]:
                return value
            head_dim = value.shape[-1] // self.adapter.n_heads
            value = value.clone()
            for i, e in edits["heads"]:
                rows = torch.tensor(e.positions) - start
                value[i, rows, e.head * head_dim : (e.head + 1) * head_dim] = e.value.to(value)
            return value

        return self.adapter.block(layer, x, positions, extend_kv=extend_kv if start else None, edit=edit)


def _apply(t: Tensor, edits: list[tuple[int, Edit]], start: int) -> Tensor:
    if not edits:
        return t
    t = t.clone()
    for i, e in edits:
        t[i, torch.tensor(e.positions) - start] = e.value.to(t)
    return t
