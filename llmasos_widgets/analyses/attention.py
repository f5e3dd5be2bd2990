"""Attention analyses on a Trace: token rows and columns, head scores, thumbnails, rollout.

One token's row or column in every head, per-head scores, pooled thumbnails, windows of a
pattern, the mean over heads and attention rollout.

:class:`AttentionIndex` keeps each layer's queries and keys (tokens × width, like the Trace) and the
log-sum-exp of every query, so a token's attention in all layers and heads is a few small matrix
products, never a recomputation of every T × T pattern.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import checks
from ..core.offload import execution_device
from ..core.pooling import pooling_matrix
from ..core.trace import Trace

SCORE_NAMES = ("entropy", "prev_token", "sink")
POOL_BLOCK = 8  # tokens pooled together (pooled_token): 1.6 ms a token at 1,024 tokens, 17 ms for a lone miss
POOL_BLOCKS_KEPT = 8
AGGREGATES = ("mean", "rollout")


@dataclass
class LayerOverview:
    """What the overview shows of one layer."""

    layer: int
    thumbs: Tensor  # [head, size, size] mean-pooled pattern
    scores: Tensor  # [score, head] in SCORE_NAMES order
    rollout: Tensor | None  # [size, size] pooled rollout up to this layer, if T <= rollout_limit


@dataclass
class PooledToken:
    """One token's attention in every layer, max-pooled to what a thumbnail draws (see :func:`max_pool`)."""

    heads: Tensor  # [layer, head, bins]
    mean: Tensor  # [layer, bins] the mean over heads of the full rows, then pooled
    rollout: Tensor | None  # [layer, bins], if T <= rollout_limit


def max_pool(values: Tensor, bins: int) -> Tensor:
    """The largest of each of ``bins`` runs of the last dim: run ``b`` holds ``⌊b·n/bins⌋ .. ⌊(b+1)·n/bins⌋``.

    The runs of the page's ``maxPool`` (js/attention/pool.ts), so a row pooled here draws the bars the page
    would draw from the whole row; the largest value of a row is kept. ``bins`` must not exceed ``n``.

    Examples
    --------
    >>> max_pool(torch.tensor([0.1, 0.7, 0.2, 0.0, 0.4]), 2)
    tensor([0.7000, 0.4000])

    """
    n = values.shape[-1]
    if not 1 <= bins <= n:
        raise ValueError(f"bins must be between 1 and the {n} values pooled, not {bins}")
    starts = torch.arange(bins) * n // bins
    which = torch.searchsorted(starts, torch.arange(n), right=True) - 1  # the run of each value
    out = values.new_zeros(*values.shape[:-1], bins)
    return out.scatter_reduce_(-1, which.expand(values.shape), values, "amax", include_self=False)


def pool(pattern: Tensor, size: int) -> Tensor:
    """Mean-pool the last two dims of ``pattern`` to at most ``size`` × ``size`` cells.

    Examples
    --------
    >>> pool(torch.eye(4), 2)
    tensor([[0.5000, 0.0000],
            [0.0000, 0.5000]])

    """
    rows, cols = min(size, pattern.shape[-2]), min(size, pattern.shape[-1])
    if (rows, cols) == tuple(pattern.shape[-2:]):
        return pattern
    lead = pattern.shape[:-2]
    flat = pattern.reshape(-1, 1, *pattern.shape[-2:])
    return F.adaptive_avg_pool2d(flat, (rows, cols)).reshape(*lead, rows, cols)


def head_scores(pattern: Tensor, causal: bool) -> Tensor:  # [head, q, k] -> [score, head]
    """Per-head scores of a pattern: mean row entropy (nats), previous-token weight, first-token weight.

    For causal models the first query is left out of the last two (it can only look at itself).

    Examples
    --------
    >>> prev = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # query 1 looks only at token 0
    >>> head_scores(prev, causal=True)[:, 0].tolist()
    [0.0, 1.0, 1.0]

    """
    first = 1 if causal and pattern.shape[-1] > 1 else 0
    entropy = torch.special.entr(pattern).sum(-1).mean(-1)
    prev = pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1) if pattern.shape[-1] > 1 else entropy * 0
    sink = pattern[:, first:, 0].mean(-1)
    return torch.stack([entropy, prev, sink])


class AttentionIndex:
    """Fast, exact access to the attention of a Trace, for views that click around.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> trace = load_model("tiny-llama").trace("The cat sat on the mat")
    >>> index = AttentionIndex(trace)
    >>> bool(torch.allclose(index.rows(3)[1], trace.attention(1)[:, 3], atol=1e-6))
    True

    """

    def __init__(self, trace: Trace, rollout_limit: int = 1024) -> None:
        self.trace = trace
        self.adapter = trace.model.adapter
        self.rollout_limit = rollout_limit
        self._qk: dict[int, tuple[Tensor, Tensor, float]] = {}
        self._lse: dict[int, Tensor] = {}  # [head, query]
        self._rollout: list[Tensor] = []  # rollout up to layer l, for l = 0.. (T <= rollout_limit)
        self._served: tuple[int, Tensor, Tensor, Tensor | None] | None = None  # a remote model's overview, by size
        self._pooled: dict[tuple[str, int, int], list[PooledToken]] = {}  # (direction, bins, block) -> tokens
        self._lock = threading.RLock()

    @property
    def n_tokens(self) -> int:
        return len(self.trace)

    def _check_head(self, head: int) -> int:
        return checks.head(head, self.trace.n_heads, self.trace.model.name)

    def qk(self, layer: int) -> tuple[Tensor, Tensor, float]:
        """Queries and keys of ``layer`` ([head, pos, head_dim] each, float32, CPU) and the score scale."""
        layer = self.trace.check_layer(layer)
        with self._lock:
            if layer not in self._qk:
                block = self.adapter.blocks()[layer]
                device = execution_device(block)
                with self.trace.model.lock, torch.no_grad():
                    q, k, scale = self.adapter.attention_qk(layer, self.trace.resid_pre(layer).to(device))
                self._qk[layer] = (q.float().cpu(), k.float().cpu(), scale)
            return self._qk[layer]

    def head_pattern(self, layer: int, head: int, q0: int = 0, q1: int | None = None) -> Tensor:
        """Exact pattern rows ``q0:q1`` of one head [query, key]."""
        return self._head(layer, head, q0, q1)[0]

    def _head(self, layer: int, head: int, q0: int = 0, q1: int | None = None) -> tuple[Tensor, Tensor]:
        q, k, scale = self.qk(layer)
        q1 = self.n_tokens if q1 is None else q1
        head = self._check_head(head)
        scores = (q[head, q0:q1] @ k[head].T).mul_(scale)
        lse = self.adapter.softmax_(scores, layer, q0)
        return scores, lse

    def lse(self, layer: int) -> Tensor:  # [head, query]
        """Log-sum-exp of every query's masked scores in ``layer`` (what turns a score into a weight)."""
        layer = self.trace.check_layer(layer)
        with self._lock:
            if layer not in self._lse:
                q, k, scale = self.qk(layer)
                out = []
                for head in range(q.shape[0]):
                    scores = self.adapter.cap_and_mask_((q[head] @ k[head].T).mul_(scale), layer, 0)
                    out.append(torch.logsumexp(scores, dim=-1))
                self._lse[layer] = torch.stack(out)
            return self._lse[layer]

    # -- one token, every layer and head -------------------------------------------------------
    def rows(self, pos: int) -> Tensor:  # [layer, head, key]
        """Where token ``pos`` looks: its attention row in every layer and head."""
        pos = self.trace.check_position(pos)
        if self._served_here():
            return self.trace.model.backend.attention_token(self.trace.model, self._ids(), pos, "from")
        out = []
        for layer in range(self.trace.n_layers):
            q, k, scale = self.qk(layer)
            scores = (q[:, pos : pos + 1] @ k.transpose(1, 2)).mul_(scale)  # [head, 1, key]
            self.adapter.softmax_(scores, layer, pos)
            out.append(scores[:, 0])
        return torch.stack(out)

    def columns(self, pos: int) -> Tensor:  # [layer, head, query]
        """Who looks at token ``pos``: its attention column in every layer and head."""
        pos = self.trace.check_position(pos)
        if self._served_here():
            return self.trace.model.backend.attention_token(self.trace.model, self._ids(), pos, "to")
        out = []
        for layer in range(self.trace.n_layers):
            q, k, scale = self.qk(layer)
            scores = self.adapter.cap_((q @ k[:, pos : pos + 1].transpose(1, 2)).mul_(scale)[..., 0], layer)
            column = (scores - self.lse(layer)).exp_()  # [head, query]
            allowed = self.adapter.allowed(layer, torch.arange(self.n_tokens), torch.tensor([pos]))
            if allowed is not None:  # earlier queries, and those past a sliding window, cannot see the key
                column[:, ~allowed[:, 0]] = 0.0
            out.append(column)
        return torch.stack(out)

    def pooled_token(self, pos: int, direction: str, bins: int) -> PooledToken:
        """Token ``pos``'s row (``"from"``) or column (``"to"``) in every layer and head, max-pooled to ``bins``.

        What a thumbnail draws, a fiftieth of the row at 1,024 tokens. Tokens are computed ``POOL_BLOCK`` at a
        time, every head of a layer in one product (a block costs about what one token's full rows do), and
        the last few blocks are kept: a page that asks for the tokens around a selection finds them here.

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> index = AttentionIndex(load_model("tiny-gpt2").trace("one two three four"))
        >>> p = index.pooled_token(3, "from", 2)
        >>> bool(torch.equal(p.heads, max_pool(index.rows(3), 2)))
        True

        """
        pos = self.trace.check_position(pos)
        bins = checks.int_in("bins", bins, 1, self.n_tokens)
        block = pos // POOL_BLOCK
        key = (direction, bins, block)
        with self._lock:
            if key not in self._pooled:
                positions = range(block * POOL_BLOCK, min(self.n_tokens, (block + 1) * POOL_BLOCK))
                self._pooled[key] = self._pool_block(positions, direction, bins)
                while len(self._pooled) > POOL_BLOCKS_KEPT:
                    del self._pooled[next(iter(self._pooled))]
            return self._pooled[key][pos - block * POOL_BLOCK]

    def _pool_block(self, positions: range, direction: str, bins: int) -> list[PooledToken]:
        heads, mean = [], []
        for weights in self._block_weights(positions, direction):  # one layer at a time: [head, token, T]
            heads.append(max_pool(weights, bins))
            mean.append(max_pool(weights.mean(0), bins))
        rollout = None
        if self.n_tokens <= self.rollout_limit:
            self.rollout(self.trace.n_layers - 1)
            p0, p1 = positions.start, positions.stop
            parts = [r[p0:p1] if direction == "from" else r[:, p0:p1].T for r in self._rollout]
            rollout = max_pool(torch.stack(parts, 1), bins)  # [token, layer, bins]
        by_token = torch.stack(heads).permute(2, 0, 1, 3), torch.stack(mean).transpose(0, 1)  # token first
        return [
            PooledToken(by_token[0][i], by_token[1][i], None if rollout is None else rollout[i])
            for i in range(len(positions))
        ]

    def _block_weights(self, positions: range, direction: str) -> Iterator[Tensor]:
        """Each layer's rows (or columns) of ``positions`` in every head, ``[head, token, T]``."""
        p0, p1, n = positions.start, positions.stop, self.n_tokens
        if self._served_here():  # a remote model serves one token's rows at a time
            full = torch.stack([self.rows(p) if direction == "from" else self.columns(p) for p in positions])
            yield from full.permute(1, 2, 0, 3)  # [token, layer, head, T] -> per layer [head, token, T]
            return
        for layer in range(self.trace.n_layers):
            q, k, scale = self.qk(layer)
            if direction == "from":  # rows: softmax over the keys
                keys = p1 if self.adapter.causal else n
                weights = torch.bmm(q[:, p0:p1], k[:, :keys].transpose(1, 2)).mul_(scale)
                self.adapter.softmax_(weights, layer, p0)
            else:  # columns: each weight exp(score - the query's lse)
                scores = self.adapter.cap_(torch.bmm(q, k[:, p0:p1].transpose(1, 2)).mul_(scale), layer)
                weights = (scores - self.lse(layer)[:, :, None]).exp_()
                allowed = self.adapter.allowed(layer, torch.arange(n), torch.arange(p0, p1))
                if allowed is not None:
                    weights[:, ~allowed] = 0.0
                weights = weights.transpose(1, 2)
            yield F.pad(weights, (0, n - weights.shape[-1]))  # a causal row stops at its token: the rest is zero

    # -- overview ------------------------------------------------------------------------------
    def overview(self, layer: int, size: int, block: int = 64) -> LayerOverview:
        """Thumbnails, scores (and pooled rollout) of one layer, from every head's full pattern.

        All heads are computed together in blocks of ``block`` queries, which for causal models only meet
        the keys before them (half the work), and reduced on the fly: thumbnails by two pooling
        matrix products, entropy as ``lse - sum(p * score)``. Layers must be asked in order
        0, 1, ... for the rollout, which multiplies up layer by layer.
        """
        layer = self.trace.check_layer(layer)
        if self._served_here():
            return self._served_overview(layer, size)
        q, k, scale = self.qk(layer)
        n_heads, n = q.shape[0], self.n_tokens
        causal = self.adapter.causal
        size = min(size, n)
        bins = pooling_matrix(n, size)  # [size, n]
        touched = (bins > 0).int()  # bins overlap by a position where n / size is not whole
        lowest_bin = touched.argmax(0).tolist()  # [n]: the first and last bin each position falls in
        highest_bin = (size - 1 - touched.flip(0).argmax(0)).tolist()
        thumbs = torch.zeros(n_heads, size, size)
        entropy, prev, sink, lse = (torch.zeros(n_heads, n) for _ in range(4))
        mean = torch.zeros(n, n) if n <= self.rollout_limit else None
        heads = torch.arange(n_heads)
        for q0 in range(0, n, block):  # every head at once: few large operations, not many small ones
            q1 = min(n, q0 + block)
            keys = q1 if causal else n
            scores = torch.bmm(q[:, q0:q1], k[:, :keys].transpose(1, 2)).mul_(scale)  # [head, query, key]
            self.adapter.cap_and_mask_(scores, layer, q0)
            top = scores.amax(-1)
            pattern = torch.softmax(scores, dim=-1)
            block_lse = top - pattern.amax(-1).log()  # the largest weight is >= 1/n: no underflow
            lse[:, q0:q1] = block_lse
            # H(row) = lse - sum_k p_k * score_k; masked scores are finite (dtype min), p = 0 there.
            entropy[:, q0:q1] = block_lse - torch.linalg.vecdot(pattern, scores)
            rows = torch.arange(max(q0, 1), q1)
            prev[:, rows] = pattern[heads[:, None], rows - q0, rows - 1]
            sink[:, q0:q1] = pattern[:, :, 0]
            # Pool the block's rows first: they fall in one or a few thumbnail rows, so the key pooling
            # then multiplies a few rows instead of all of them.
            r0, r1 = lowest_bin[q0], highest_bin[q1 - 1] + 1
            thumbs[:, r0:r1] += (bins[r0:r1, q0:q1] @ pattern) @ bins[:, :keys].T
            if mean is not None:
                mean[q0:q1, :keys] += pattern.mean(0)
        first = 1 if causal and n > 1 else 0
        scores = torch.stack(
            [entropy.mean(-1), prev[:, 1:].mean(-1) if n > 1 else prev[:, 0], sink[:, first:].mean(-1)]
        )
        rollout = None
        with self._lock:  # two threads may compute overviews (a prefetch and a request)
            self._lse.setdefault(layer, lse)  # columns need it: it came for free here
            if mean is not None and len(self._rollout) == layer:
                self._rollout.append(self._rollout_step(mean, layer))
            if mean is not None and len(self._rollout) > layer:
                rollout = bins @ self._rollout[layer] @ bins.T
        return LayerOverview(layer, thumbs, scores, rollout)

    def _served_here(self) -> bool:  # a remote model (nnsight, NDIF) whose attention is computed where it runs
        model = self.trace.model
        return bool(model.backend.remote) and model.backend.serves_attention(model)

    def _ids(self) -> Tensor:
        return torch.tensor([self.trace.token_ids])

    def _served_overview(self, layer: int, size: int) -> LayerOverview:
        # A remote model (nnsight, NDIF): every layer's summaries in one request, computed where the model runs,
        # so that the overview never brings the residual stream back (core/backends.attention_overview).
        model = self.trace.model
        with self._lock:
            if self._served is None or self._served[0] != size:
                self._served = (size, *model.backend.attention_overview(model, self._ids(), size, self.rollout_limit))
            _, thumbs, scores, rollout = self._served
        return LayerOverview(layer, thumbs[layer], scores[layer], None if rollout is None else rollout[layer])

    # -- aggregates ----------------------------------------------------------------------------
    def mean(self, layer: int, q0: int = 0, q1: int | None = None) -> Tensor:  # [query, key]
        """Mean over the heads of ``layer`` (rows ``q0:q1``)."""
        heads = range(self.trace.n_heads)
        return torch.stack([self.head_pattern(layer, h, q0, q1) for h in heads]).mean(0)

    def _rollout_step(self, mean: Tensor, layer: int) -> Tensor:
        # Abnar & Zuidema (2020): average the attention with the identity (the residual path),
        # renormalise rows, and multiply through the layers.
        mixed = 0.5 * mean + 0.5 * torch.eye(mean.shape[0])
        mixed /= mixed.sum(-1, keepdim=True)
        return mixed if layer == 0 else mixed @ self._rollout[layer - 1]

    def rollout(self, layer: int) -> Tensor:  # [query, key]
        """Attention rollout up to and including ``layer`` (Abnar & Zuidema 2020).

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> index = AttentionIndex(load_model("tiny-gpt2").trace("one two three"))
        >>> r = index.rollout(1)
        >>> bool(torch.allclose(r.sum(-1), torch.ones(r.shape[0])))
        True

        """
        layer = self.trace.check_layer(layer)
        if self.n_tokens > self.rollout_limit:
            raise ValueError(
                f"attention rollout multiplies {self.n_tokens} x {self.n_tokens} matrices per layer; it is "
                f"limited to {self.rollout_limit} tokens (rollout_limit) and this trace has {self.n_tokens}"
            )
        with self._lock:
            while len(self._rollout) <= layer:
                done = len(self._rollout)
                self._rollout.append(self._rollout_step(self.mean(done), done))
            return self._rollout[layer]

    def token_rollout(self, pos: int, direction: str) -> Tensor:  # [layer, T]
        """The rollout row (``"from"``) or column (``"to"``) of token ``pos`` up to every layer."""
        pos = self.trace.check_position(pos)
        self.rollout(self.trace.n_layers - 1)  # one token's slices, not a stack of every layer's T x T
        return torch.stack([r[pos] if direction == "from" else r[:, pos] for r in self._rollout])

    # -- windows, for the head and matrix views ------------------------------------------------
    def window(
        self, layer: int, head: int | None, aggregate: str, q0: int, q1: int, k0: int, k1: int
    ) -> Tensor:  # [query, key]
        """Exact weights of rows ``q0:q1`` and columns ``k0:k1`` of a head or an aggregate."""
        n = self.n_tokens
        if not (0 <= q0 < q1 <= n and 0 <= k0 < k1 <= n):
            raise ValueError(f"window [{q0}:{q1}, {k0}:{k1}] is not inside the {n} x {n} pattern")
        if aggregate == "rollout":
            return self.rollout(layer)[q0:q1, k0:k1]
        if aggregate == "mean":
            return self.mean(layer, q0, q1)[:, k0:k1]
        if aggregate:
            raise ValueError(f"unknown aggregate {aggregate!r}: use one of {', '.join(AGGREGATES)} or a head")
        if head is None:
            raise ValueError("give a head or an aggregate")
        return self.head_pattern(layer, head, q0, q1)[:, k0:k1]
