"""Statistics over prompts for :mod:`.evaluation`: bootstrap intervals of a mean and a paired test.

Both resample with a seeded generator, so a notebook prints the same interval on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap interval ``[low, high]`` at ``level`` (over ``n`` values, NaNs left out)."""

    mean: float
    low: float
    high: float
    level: float
    n: int

    def __repr__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_mean(values: Tensor, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs left out).

    Examples
    --------
    >>> iv = bootstrap_mean(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    >>> iv.mean, iv.low <= 2.5 <= iv.high
    (2.5, True)

    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    v = values.double().flatten()
    v = v[~torch.isnan(v)]
    if len(v) == 0:
        return Interval(math.nan, math.nan, math.nan, level, 0)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(v), (n_boot, len(v)), generator=gen)
    means = v[idx].mean(1)
    alpha = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return Interval(float(v.mean()), low, high, level, len(v))


def paired_test(a: Tensor, b: Tensor, *, n_perm: int = 10000, seed: int = 0) -> dict[str, float]:
    """Paired sign-flip permutation test of ``mean(a - b) == 0`` over the same items (NaN pairs left out).

    With 2**n <= n_perm sign patterns the test is exact (every pattern); otherwise ``n_perm`` random ones.
    Returns ``mean_diff``, its bootstrap interval ``low``/``high`` (95 %), ``p_value`` (two-sided) and ``n``.

    Examples
    --------
    >>> r = paired_test(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.0, 0.5, 1.0, 1.5]))
    >>> r["mean_diff"], r["p_value"]
    (1.75, 0.125)

    """
    if a.shape != b.shape:
        raise ValueError(f"paired values must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    d = (a.double() - b.double()).flatten()
    d = d[~torch.isnan(d)]
    n = len(d)
    if n == 0:
        return {"mean_diff": math.nan, "low": math.nan, "high": math.nan, "p_value": math.nan, "n": 0}
    observed = abs(float(d.mean()))
    if 2**n <= n_perm:
        patterns = torch.tensor([[1 - 2 * ((i >> j) & 1) for j in range(n)] for i in range(2**n)], dtype=torch.float64)
    else:
        gen = torch.Generator().manual_seed(seed)
        patterns = torch.randint(0, 2, (n_perm, n), generator=gen).double() * 2 - 1
    flipped = (patterns * d).mean(1).abs()
    p = float((flipped >= observed - 1e-12 * max(1.0, observed)).double().mean())
    iv = bootstrap_mean(d, seed=seed)
    return {"mean_diff": float(d.mean()), "low": iv.low, "high": iv.high, "p_value": p, "n": n}
