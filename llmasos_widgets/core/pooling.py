"""The pooling matrix of an attention overview's thumbnails (used here and where a remote model runs)."""

from __future__ import annotations

import torch
from torch import Tensor


def pooling_matrix(n: int, size: int) -> Tensor:  # [size, n]
    """Rows that average ``n`` positions into ``size`` bins, as adaptive average pooling does.

    Row i averages positions ``floor(i*n/size) .. ceil((i+1)*n/size)``, so ``bins @ pattern @ bins.T`` is the
    pattern mean-pooled to ``size`` × ``size``.

    Examples
    --------
    >>> pooling_matrix(4, 2)
    tensor([[0.5000, 0.5000, 0.0000, 0.0000],
            [0.0000, 0.0000, 0.5000, 0.5000]])

    """
    out = torch.zeros(size, n)
    for i in range(size):
        start, end = (i * n) // size, -((-(i + 1) * n) // size)
        out[i, start:end] = 1.0 / (end - start)
    return out
