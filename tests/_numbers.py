"""Comparisons of numbers computed two ways (another batch shape, float64 by hand, the model's own forward).

Such numbers agree within rounding, not bit for bit, so a test compares them within a tolerance, and a ranking
(top-k, argmax, a greedy token, a TopK code) only where the maths decides it: two scores within rounding of
each other may come in either order. Each helper is the exact comparison wherever no such tie exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def assert_ranked(ids: Sequence[int], scores: torch.Tensor, *, tol: float, k: int | None = None) -> None:
    """``ids`` (best first) is a top-``k`` ranking of ``scores`` (one per candidate) up to ties within ``tol``.

    What ``ids == topk(scores, k).indices`` means when ``scores`` come from another computation: the ids are
    distinct, each scores at least the next one minus ``tol``, and no candidate left out scores more than
    ``tol`` above the last one kept. (For the lowest first, pass ``-scores``.)
    """
    ids = [int(i) for i in ids]
    s = torch.as_tensor(scores).detach().double().flatten()
    assert len(set(ids)) == len(ids), f"repeated ids in {ids}"
    if k is not None:
        assert len(ids) == min(k, s.numel()), f"{len(ids)} ids, expected {min(k, s.numel())}"
    got = s[ids]
    for i in range(len(ids) - 1):
        assert got[i] >= got[i + 1] - tol, f"id {ids[i]} ({got[i]:.8g}) ranked above {ids[i + 1]} ({got[i + 1]:.8g})"
    rest = torch.ones_like(s, dtype=torch.bool)
    rest[ids] = False
    if ids and rest.any():
        best_left = int(torch.where(rest, s, -torch.inf).argmax())
        assert s[best_left] <= got[-1] + tol, (
            f"id {best_left} ({s[best_left]:.8g}) left out, above the last kept {ids[-1]} ({got[-1]:.8g})"
        )


def assert_greedy(model, prompt_ids: Sequence[int], generated: Sequence[int], *, hook=None, tol: float = 1e-4) -> None:
    """``generated`` is a greedy continuation of ``prompt_ids`` by the model's own full forward (no KV cache).

    One forward over the whole sequence gives every step's logits (the model is causal); each generated token
    must be the largest logit of its step up to ``tol`` times the row's largest magnitude. ``hook`` (module,
    forward pre-hook with kwargs) is registered during that forward, as a steering would be. A greedy loop
    compared token for token would also demand that near-equal logits break the same way in both computations.
    """
    seq = [*prompt_ids, *generated]
    handle = hook[0].register_forward_pre_hook(hook[1], with_kwargs=True) if hook is not None else None
    try:
        with torch.no_grad():
            logits = model.model(torch.tensor([seq]), use_cache=False).logits[0].double()
    finally:
        if handle is not None:
            handle.remove()
    for step, token in enumerate(generated):
        row = logits[len(prompt_ids) - 1 + step]
        slack = tol * max(1.0, float(row.abs().max()))
        top = int(row.argmax())
        assert row[token] >= row[top] - slack, (
            f"step {step}: token {token} (logit {row[token]:.6g}) is not the greedy choice {top} ({row[top]:.6g})"
        )


def undecided_topk(pre: torch.Tensor, k: int, *, tol: float) -> torch.Tensor:
    """The TopK(ReLU) codes of ``pre`` [..., n] that rounding can change: a mask, all False as a rule.

    Where a row's k-th and (k+1)-th largest pre-activations are within ``2 tol``, which of them (and of any
    others that close) is kept depends on rounding; and one of the kept within ``tol`` of 0 may fire or not.
    """
    kth = torch.topk(pre, k, dim=-1).values[..., -1:]
    near_zero = (pre.abs() <= tol) & (pre >= kth - tol)
    if pre.shape[-1] <= k:  # every one is kept
        return near_zero
    after = torch.topk(pre, k + 1, dim=-1).values[..., -1:]  # the largest left out
    tied = (kth - after <= 2 * tol) & (pre >= after - tol) & (pre <= kth + tol)
    return tied | near_zero


def topk_relu(pre: torch.Tensor, k: int, got: torch.Tensor, *, tol: float, atol: float) -> torch.Tensor:
    """TopK(ReLU(``pre``)) row by row, by hand, checked against ``got`` (an encoder's dense codes); returns it.

    Where rounding can change the code (:func:`undecided_topk`), ``got`` decides and is returned there, and must
    be 0 or the ReLU of ``pre``. Everywhere else ``got`` must equal the by-hand code within ``atol``. Counts taken
    from the result (L0, firing positions, dead features) are then the maths' own.
    """
    pre, got = pre.double(), got.double()
    kth = torch.topk(pre, k, dim=-1).values[..., -1:]
    want = torch.where(pre >= kth, pre.clamp_min(0), torch.zeros_like(pre))
    open_ = undecided_topk(pre, k, tol=tol)
    either = (got.abs() <= atol) | ((got - pre.clamp_min(0)).abs() <= atol)
    assert bool(either[open_].all()), "an undecided entry is neither 0 nor its ReLU"
    bad = ~open_ & ((got - want).abs() > atol)
    assert not bool(bad.any()), (
        f"{int(bad.sum())} codes differ from TopK(ReLU) by hand, e.g. at {bad.nonzero()[0].tolist()}"
    )
    return torch.where(open_, got, want)
