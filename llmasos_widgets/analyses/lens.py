"""The logit lens (nostalgebraist 2020): the residual stream after a block, through the final norm and unembedding.

What the model would predict if it stopped after block ``l``: :func:`logit_lens` for one layer's top-k at
every position, :func:`logit_lens_block` for the top token of every layer at some positions (LensView's
grid). Rows are unembedded 512 at a time, so a long text never holds a [pos, vocab] tensor at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core import checks
from ..core.trace import Trace


@dataclass
class LensLayer:
    """The logit lens after one layer: the top tokens at every position."""

    layer: int
    ids: Tensor  # [pos, k] int64
    probs: Tensor  # [pos, k] float32


def logit_lens(trace: Trace, layer: int, k: int = 1, positions: slice | None = None) -> LensLayer:
    """The top-``k`` tokens after block ``layer``: its residual output through the final norm and unembedding.

    ``layer == n_layers - 1`` gives the model's own predictions. Positions are done in chunks so a
    long text never holds a [pos, vocab] tensor at once.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace = load_model("tiny-llama").trace("The capital of France is")
    >>> lens = logit_lens(trace, layer=1, k=2)
    >>> lens.ids.shape, int(lens.ids[-1, 0]) == trace.top_predictions(-1, k=1)[0].id
    (torch.Size([5, 2]), True)

    """
    layer = trace.check_layer(layer)
    resid = trace.resid_pre(layer + 1)
    return LensLayer(layer, *_unembed_top(trace, resid if positions is None else resid[positions], k))


def logit_lens_block(trace: Trace, positions: slice, layers: range | None = None) -> tuple[Tensor, Tensor]:
    """The top token and its probability after each of ``layers`` (default all) at ``positions``: ``[layer, position]``.

    The same numbers as :func:`logit_lens` with ``k=1``, in one batched unembedding (twice as fast
    for a few positions as one layer at a time).

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace = load_model("tiny-llama").trace("The capital of France is")
    >>> ids, probs = logit_lens_block(trace, slice(1, 4))
    >>> ids.shape, bool((ids[1] == logit_lens(trace, 1).ids[1:4, 0]).all())
    (torch.Size([2, 3]), True)

    """
    layers = range(trace.n_layers) if layers is None else layers
    resid = torch.stack([trace.resid_pre(trace.check_layer(layer) + 1)[positions] for layer in layers])
    ids, probs = _unembed_top(trace, resid.reshape(-1, resid.shape[-1]), 1)
    return ids.reshape(resid.shape[:2]), probs.reshape(resid.shape[:2])


def _unembed_top(trace: Trace, resid: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` tokens and probabilities of residual rows through the final norm and unembedding.

    Rows go 512 at a time, so a long text never holds a [rows, vocab] tensor at once.
    """
    ids, probs = [], []
    with trace.model.lock, torch.no_grad():
        for start in range(0, resid.shape[0], 512):
            logits = trace.model.adapter.logits(resid[start : start + 512].to(trace.model.device)).float()
            top = torch.topk(torch.softmax(logits, dim=-1), checks.int_in("k", k, 1, logits.shape[-1]), dim=-1)
            ids.append(top.indices.cpu())
            probs.append(top.values.cpu())
    return torch.cat(ids), torch.cat(probs)
