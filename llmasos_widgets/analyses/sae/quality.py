"""How well an SAE stands in for its layer: variance explained, L0, dead latents, next-token loss with it spliced in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.corpus import padded
from ...core.hooks import block_output, hooked, post, read, replace_output, site
from ...core.progress import tqdm

if TYPE_CHECKING:
    from ...core.models import LanguageModel
    from .model import SAE


@dataclass
class SAEQuality:
    """How well an SAE stands in for its layer, measured on held-out text.

    Attributes
    ----------
    variance_explained : float
        ``1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖²`` over every measured token (1 is perfect).
    fvu : float
        The fraction of variance unexplained, ``1 − variance_explained``.
    mean_l0 : float
        Active latents per token, on average.
    dead_share : float
        Share of latents that never fired on the measured tokens (``n_dead / n_latents``).
    ce_clean, ce_sae, ce_increase : float or None
        Next-token cross-entropy (nats per token) of the model, of the model with the SAE's
        reconstruction in place of the layer's output, and their difference. None for a model
        without a causal LM head.
    ce_zero, loss_recovered : float or None
        Cross-entropy with the layer's output zeroed, and ``(ce_zero − ce_sae) / (ce_zero − ce_clean)``
        (SAELens's "CE loss score": 1 when the SAE loses nothing).
    tokens, texts : int
        What was measured (skipped leading positions are not counted).
    massive : int
        Tokens left out because their norm is above the SAE's ``max_norm`` (massive activations).

    """

    variance_explained: float
    fvu: float
    mean_l0: float
    dead_share: float
    n_dead: int
    ce_clean: float | None
    ce_sae: float | None
    ce_increase: float | None
    ce_zero: float | None
    loss_recovered: float | None
    tokens: int
    texts: int
    massive: int = 0

    def __str__(self) -> str:
        ce = (
            f", CE {self.ce_clean:.3f} → {self.ce_sae:.3f} nats ({self.ce_increase:+.3f}), "
            f"loss recovered {self.loss_recovered:.1%}"
            if self.ce_sae is not None
            else ""
        )
        return (
            f"variance explained {self.variance_explained:.3f}, L0 {self.mean_l0:.1f}, "
            f"dead {self.dead_share:.1%}{ce} ({self.tokens} tokens"
            + (f"; {self.massive} massive ones left out)" if self.massive else ")")
        )


# -- activations of a corpus -------------------------------------------------------------------
def included(mask: Tensor, skip_first: int) -> Tensor:  # [batch, pos] bool
    pos = torch.arange(mask.shape[1], device=mask.device)[None]
    return mask.bool() & (pos >= skip_first)


def forward_to(
    model: LanguageModel, layers: Sequence[int], batch: list[tuple[int, list[int]]]
) -> tuple[dict[int, Tensor], Tensor, Tensor]:
    """One forward pass stopped after the deepest of ``layers``: ``({layer: [batch, pos, d_model]}, ids, mask)``."""
    ids, mask, _ = padded(model, batch)
    ids, mask = ids.to(model.device), mask.to(model.device)
    names = {layer: f"blocks.{layer}.hook_resid_post" for layer in sorted(set(layers))}
    with torch.no_grad():
        acts = read(model, names.values(), input_ids=ids, attention_mask=mask)
    return {layer: acts[name].detach() for layer, name in names.items()}, ids, mask


def layer_activations(
    model: LanguageModel, layer: int, batch: list[tuple[int, list[int]]], skip_first: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One forward to ``layer``: ``(acts [batch, pos, d_model], ids, mask, included)`` on the model's device."""
    kept, ids, mask = forward_to(model, [layer], batch)
    return kept[layer], ids, mask, included(mask, skip_first)


def next_token_loss(
    model: LanguageModel, hidden: Tensor, ids: Tensor, mask: Tensor, where: Tensor
) -> tuple[float, int]:
    """Summed next-token cross-entropy of predictions at positions ``where`` [batch, pos], and their count."""
    model.adapter.head()  # a ValueError now if the model predicts no tokens
    where = where[:, :-1] & mask[:, 1:].bool()  # the next token must be real, not padding
    rows, targets = hidden[:, :-1][where], ids[:, 1:][where]
    total = 0.0
    for start in range(0, rows.shape[0], 512):  # never a [tokens, vocab] tensor for the whole batch
        logits = model.adapter.head_logits(rows[start : start + 512]).float()
        total += float(F.cross_entropy(logits, targets[start : start + 512], reduction="sum"))
    return total, int(rows.shape[0])


def measure(
    sae: SAE, model: LanguageModel, pieces: list[tuple[int, list[int]]], batch_size: int, progress: bool
) -> SAEQuality:
    causal = model.is_causal and model.adapter.unembed() is not None
    # The SAE's site: a block's output (the residual stream), or its MLP's (what the MLP adds to it).
    block = site(model, sae.hook_name).module
    n = 0
    sum_x = torch.zeros(sae.d_model, dtype=torch.float64)
    sum_sq = sum_err = l0 = 0.0
    fired = torch.zeros(sae.n_latents, dtype=torch.bool)
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    n_pred = massive = 0
    # One hook for the whole run: it keeps the layer's output, or replaces it at the included positions.
    state: dict[str, Tensor | None] = {"with": None, "inc": None, "acts": None}

    def hook(module, args, output):  # type: ignore[no-untyped-def]
        h = block_output(output)
        if state["with"] is None:
            state["acts"] = h.detach()
            return None
        new = torch.where(state["inc"][..., None], state["with"].to(h.dtype), h)  # type: ignore[index]
        return replace_output(output, new)

    def forward(ids: Tensor, mask: Tensor) -> Tensor:
        return model.adapter.base()(input_ids=ids, attention_mask=mask).last_hidden_state

    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][1]))
    bar = tqdm(total=sum(len(p) for _, p in pieces), unit="tok", desc="measuring SAE", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            batch = [pieces[i] for i in order[start : start + batch_size]]
            ids, mask, _ = padded(model, batch)
            ids, mask = ids.to(model.device), mask.to(model.device)
            state.update({"with": None, "inc": None})
            # One batch at a time holds the model: other views' requests run between batches.
            with hooked(model, [post(block, hook)]), torch.no_grad():
                hidden = forward(ids, mask)
                x = state["acts"]
                assert x is not None
                read = sae.reads(x)
                massive += int((included(mask, sae.skip_first) & ~read).sum())
                inc = state["inc"] = mask.bool() & read
                rows = x[inc].float()
                r = sae.reconstruct(rows)
                n += rows.shape[0]
                sum_x += rows.double().sum(0).cpu()
                sum_sq += float(rows.double().pow(2).sum())
                sum_err += float(r.error.double().pow(2).sum())
                l0 += float((r.codes.values > 0).sum())
                fired[r.codes.indices[r.codes.values > 0].cpu()] = True
                if causal:
                    loss, count = next_token_loss(model, hidden, ids, mask, inc)
                    ce["clean"] += loss
                    n_pred += count
                    recon = torch.zeros_like(x)
                    recon[inc] = r.reconstruction.to(x)
                    for name, value in (("sae", recon), ("zero", torch.zeros_like(x))):
                        state["with"] = value
                        ce[name] += next_token_loss(model, forward(ids, mask), ids, mask, inc)[0]
            bar.update(int(mask.sum()))
    finally:
        bar.close()
    if n == 0:
        raise ValueError(
            f"no tokens to measure at positions ≥ skip_first={sae.skip_first} with norm ≤ max_norm={sae.max_norm}: "
            "give longer texts"
        )
    total_var = sum_sq - float(sum_x.pow(2).sum()) / n
    fvu = sum_err / total_var if total_var > 0 else float("nan")
    n_dead = int((~fired).sum())
    if causal and n_pred:
        clean, with_sae, zero = (ce[k] / n_pred for k in ("clean", "sae", "zero"))
        recovered = (zero - with_sae) / (zero - clean) if zero != clean else float("nan")
        ce_values: tuple[float | None, ...] = (clean, with_sae, with_sae - clean, zero, recovered)
    else:
        ce_values = (None,) * 5
    return SAEQuality(
        1 - fvu, fvu, l0 / n, n_dead / sae.n_latents, n_dead, *ce_values,  # type: ignore[arg-type]
        tokens=n, texts=len(pieces), massive=massive,
    )  # fmt: skip
