"""The one place tensors become wire format: (JSON descriptor, bytes) pairs the front-end decodes.

See DESIGN.md, "Wire format and protocol". Arrays travel as little-endian C-order bytes in the
widget message's buffers, never as JSON lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

DTYPES = ("float32", "float16", "uint8", "int32")
# Encoded arrays as a message carries them: (descriptor, bytes) pairs, in the order of its buffers.
Arrays = list[tuple[dict[str, Any], bytes]]


def encode(name: str, array: torch.Tensor | np.ndarray, dtype: str = "float32") -> tuple[dict[str, Any], bytes]:
    """Encode an array as a descriptor and its bytes.

    ``uint8`` quantizes linearly between the array's min and max: ``value = offset + q * scale``,
    so every value is within ``scale / 2`` of the original.

    Examples
    --------
    >>> desc, data = encode("p", torch.tensor([0.0, 0.5, 1.0]), "uint8")
    >>> desc["dtype"], desc["shape"], list(data)
    ('uint8', [3], [0, 128, 255])

    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown wire dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if isinstance(array, torch.Tensor):
        array = array.detach().float().cpu().numpy() if dtype != "int32" else array.detach().cpu().numpy()
    arr = np.asarray(array)
    desc: dict[str, Any] = {"name": name, "dtype": dtype, "shape": list(arr.shape)}
    if dtype == "uint8":
        arr = arr.astype(np.float64)
        lo = float(arr.min()) if arr.size else 0.0
        hi = float(arr.max()) if arr.size else 0.0
        if lo >= 0.0:
            lo = 0.0  # non-negative data (attention, probabilities) keeps an exact zero
        scale = (hi - lo) / 255.0 if hi > lo else 1.0
        data = np.rint((arr - lo) / scale).clip(0, 255).astype(np.uint8)
        desc.update(scale=scale, offset=lo)
    else:
        data = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
    return desc, np.ascontiguousarray(data).tobytes()


def decode(desc: dict[str, Any], data: bytes | memoryview) -> np.ndarray:
    """Inverse of :func:`encode` (used by tests and the standalone exporter).

    Examples
    --------
    >>> decode(*encode("x", torch.tensor([1.5, -2.0]), "float16")).tolist()
    [1.5, -2.0]

    """
    dtype = desc["dtype"]
    arr = np.frombuffer(bytes(data), dtype=np.dtype(dtype).newbyteorder("<")).reshape(desc["shape"])
    if dtype == "uint8":
        return (desc["offset"] + arr.astype(np.float64) * desc["scale"]).astype(np.float32)
    return arr.astype(np.float32) if dtype == "float16" else arr


def pack(arrays: list[tuple[dict[str, Any], bytes]]) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Number the buffers of several encoded arrays for one message.

    Examples
    --------
    >>> descs, buffers = pack([encode("a", torch.zeros(2)), encode("b", torch.ones(1))])
    >>> [d["buffer"] for d in descs], len(buffers)
    ([0, 1], 2)

    """
    descs, buffers = [], []
    for i, (desc, data) in enumerate(arrays):
        descs.append({**desc, "buffer": i})
        buffers.append(data)
    return descs, buffers
