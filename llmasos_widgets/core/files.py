"""Result files: one safetensors file whose header names its format, version and metadata (JSON).

Neuron indexes, feature indexes, sparse autoencoders and training checkpoints are all written here:
to a temporary name in the same folder, then renamed, so a file is never half-written; and read
back with one set of errors that name the file, what it should have been and what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor


def save(path: str | os.PathLike[str], tensors: dict[str, Tensor], fmt: str, version: int, meta: Any) -> Path:
    """Write ``tensors`` and ``meta`` (anything JSON can hold) to ``path`` atomically.

    Examples
    --------
    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save(d + "/x.st", {"a": torch.ones(2)}, "demo", 1, {"n": 2})
    ...     load(p, "demo", 1, "demo file")[0]
    {'n': 2}

    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    header = {"format": fmt, "version": str(version), "meta": json.dumps(meta)}
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=header)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def header(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """The string metadata of a safetensors file, or None if it is not a readable one.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = open(d + "/t.txt", "w").write("text")
    ...     header(d + "/t.txt") is None
    True

    """
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, RuntimeError, ValueError):
        return None


def declared_format(path: str | os.PathLike[str]) -> str | None:
    """The format a safetensors file's header names, read from its first bytes even if the rest is cut off.

    Examples
    --------
    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d:
    ...     data = open(save(d + "/x.st", {"a": torch.ones(100)}, "demo", 1, {}), "rb").read()
    ...     _ = open(d + "/cut.st", "wb").write(data[:-50])
    ...     header(d + "/cut.st") is None, declared_format(d + "/cut.st")
    (True, 'demo')

    """
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= 100_000_000:
                return None
            head = json.loads(f.read(size))
        value = head.get("__metadata__", {}).get("format")
        return value if isinstance(value, str) else None
    except (OSError, ValueError, AttributeError):
        return None


def load(
    path: str | os.PathLike[str], fmt: str, version: int, what: str, required: Iterable[str] = ()
) -> tuple[Any, dict[str, Tensor]]:
    """Read ``(meta, tensors)`` written by :func:`save`, or raise a ValueError naming the problem.

    ``what`` names the kind of file in messages ("neuron index"). A missing, corrupt or truncated
    file, another format, another version or missing tensors are each refused with their own reason.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = open(d + "/bad.idx", "w").write("not an index")
    ...     load(d + "/bad.idx", "demo", 1, "demo file")
    Traceback (most recent call last):
    ValueError: ...bad.idx is not a readable demo file (corrupt or another kind of file): ...

    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no {what} at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            head = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path} is not a readable {what} (corrupt or another kind of file): {e}") from e
    if head.get("format") != fmt:
        raise ValueError(f"{path} is not a {what}: its header names format {head.get('format')!r}")
    if head.get("version") != str(version):
        raise ValueError(
            f"{path} is a {what} of format version {head.get('version')}; "
            f"this llmasos_widgets reads version {version}: rebuild it"
        )
    try:
        meta = json.loads(head["meta"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} has a corrupt {what} header: {e}") from e
    missing = set(required) - set(tensors)
    if missing:
        raise ValueError(f"{path} is a corrupt {what}: it lacks {sorted(missing)}")
    return meta, tensors
