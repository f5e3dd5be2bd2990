"""Activation caches: one forward pass over a corpus keeps several layers' residual streams on disk for training."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ...core import checks, files
from ...core.corpus import text_corpus
from ...core.progress import tqdm
from ..corpus_index import fingerprint
from .quality import forward_to

if TYPE_CHECKING:
    from ...core.models import LanguageModel

ACTIVATION_CACHE_FORMAT = "llmasos_widgets.ActivationCache"
ACTIVATION_CACHE_VERSION = 1
ACTIVATION_CACHE_INDEX = "index.safetensors"


# -- activation caches -------------------------------------------------------------------------
class ActivationCache:
    """Residual-stream activations of a corpus at several layers, stored once on disk for training.

    A folder written by :func:`cache_activations`: ``index.safetensors`` (the corpus as token ids,
    each piece's first row, the settings and how far the fill got; written atomically) and one
    ``layer{l}.bin`` per layer, a raw [tokens, d_model] array (float16 by default) read through a
    numpy memmap. Every position of every piece is stored, the first one included, so any
    ``skip_first`` can train from it. :func:`train_sae` takes a cache in place of texts: later
    epochs, and the other layers, read the disk instead of running the model again.

    Attributes
    ----------
    path : Path
        The folder.
    layers : list of int
        The layers stored (``blocks.{l}.hook_resid_post``, as an SAE's ``layer``).
    pieces : list of (int, list of int)
        The corpus as :func:`train_sae` splits it: (text index, token ids), pieces of at most ``max_tokens``.
    complete : bool
        Whether every piece has been run (an interrupted fill is continued by calling
        :func:`cache_activations` again).
    meta : dict
        ``model`` (fingerprint), ``max_tokens``, ``batch_size``, ``dtype``, ``d_model``, ``counts``, ``seconds``.

    Examples
    --------
    >>> import tempfile
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cache = cache_activations(model, ["The cat sat.", "A dog ran home."], [0, 1], d, progress=False)
    ...     again = ActivationCache(d)
    ...     again.layers, again.complete, tuple(again.piece(1, 0).shape)
    ([0, 1], True, (5, 64))

    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        index = self.path / ACTIVATION_CACHE_INDEX
        if not index.is_file():
            raise ValueError(
                f"{self.path} is not an activation cache (no {ACTIVATION_CACHE_INDEX}): make one with cache_activations"
            )
        meta, t = files.load(
            index,
            ACTIVATION_CACHE_FORMAT,
            ACTIVATION_CACHE_VERSION,
            "activation cache index",
            ("ids", "offsets", "text_index"),
        )
        self.meta: dict[str, Any] = meta
        self.layers: list[int] = list(meta["layers"])
        self.d_model = int(meta["d_model"])
        self.done_batches = int(meta["done_batches"])
        self.complete = bool(meta["complete"])
        self._ids, self._offsets, self._text_index = t["ids"], t["offsets"], t["text_index"]
        offsets = self._offsets.tolist()
        ids = self._ids.tolist()
        self.pieces: list[tuple[int, list[int]]] = [
            (int(i), ids[offsets[p] : offsets[p + 1]]) for p, i in enumerate(self._text_index.tolist())
        ]
        self._maps: dict[int, Any] = {}

    @property
    def n_tokens(self) -> int:
        """Rows per layer: every position of every piece."""
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{self.done_batches} of {self.meta['n_batches']} batches"
        return (
            f"ActivationCache({str(self.path)!r}, {self.meta['model'].get('model')!r}, layers {self.layers}, "
            f"{len(self.pieces)} pieces, {self.n_tokens} tokens, {self.meta['dtype']}, {state})"
        )

    def _file(self, layer: int) -> Path:
        return self.path / f"layer{layer}.bin"

    def _map(self, layer: int, mode: str = "r") -> Any:  # np.memmap [tokens, d_model]
        import numpy as np

        if layer not in self.layers:
            raise ValueError(f"this activation cache holds layers {self.layers}, not layer {layer}")
        if mode != "r" or layer not in self._maps:
            dtype = np.float16 if self.meta["dtype"] == "float16" else np.float32
            mm = np.memmap(self._file(layer), dtype=dtype, mode=mode, shape=(max(1, self.n_tokens), self.d_model))
            if mode != "r":
                return mm
            self._maps[layer] = mm
        return self._maps[layer]

    def check_model(self, model: LanguageModel) -> None:
        """Raise a ValueError if these activations were not made by ``model`` (another model or width).

        Examples
        --------
        >>> import tempfile
        >>> import llmasos_widgets as lw
        >>> with tempfile.TemporaryDirectory() as d:
        ...     cache = cache_activations(lw.load_model("tiny-llama"), ["Hi there."], [0], d, progress=False)
        ...     cache.check_model(lw.load_model("tiny-gpt2"))
        Traceback (most recent call last):
        ValueError: this activation cache was made by another model (...)

        """
        mine, theirs = self.meta["model"], fingerprint(model)
        diff = [f"{k}: cache {mine.get(k)!r} vs model {theirs[k]!r}" for k in theirs if mine.get(k) != theirs[k]]
        if diff:
            raise ValueError(f"this activation cache was made by another model ({', '.join(diff)})")

    def piece(self, layer: int, i: int) -> Tensor:  # [len, d_model] float32
        """The stored activations of piece ``i`` (every position) at ``layer``, as float32.

        Examples
        --------
        >>> import tempfile
        >>> import llmasos_widgets as lw
        >>> with tempfile.TemporaryDirectory() as d:
        ...     cache = cache_activations(lw.load_model("tiny-llama"), ["Hi there."], [1], d, progress=False)
        ...     cache.piece(1, 0).dtype
        torch.float32

        """
        i = checks.index(i, len(self.pieces), "piece", "this cache has pieces")
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        return torch.from_numpy(self._map(layer)[start:end].astype("float32"))

    def _rows(self, layer: int, pieces: Sequence[int], skip_first: int) -> Tensor:  # [tokens, d_model] float32
        """The rows of ``pieces`` (in that order), each from position ``skip_first`` on."""
        import numpy as np

        starts, ends = self._offsets[list(pieces)] + skip_first, self._offsets[[p + 1 for p in pieces]]
        keep = ends > starts
        starts, ends = starts[keep].numpy(), ends[keep].numpy()
        lengths = ends - starts
        # Row numbers of every kept position: each piece's start, then +1 along the piece.
        rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        return torch.from_numpy(np.asarray(self._map(layer)[rows], dtype=np.float32))


def cache_activations(
    model: LanguageModel,
    texts: Sequence[str],
    layers: int | Sequence[int],
    path: str | os.PathLike[str],
    *,
    max_tokens: int = 256,
    batch_size: int = 32,
    dtype: torch.dtype = torch.float16,
    flush_every: int = 50,
    progress: bool = True,
) -> ActivationCache:
    """Run ``texts`` through the model once and store the residual stream after each of ``layers``.

    One forward pass per batch serves every layer and stops after the deepest one; batches are
    sorted by length (little padding). The cache is resumable: every ``flush_every`` batches the
    arrays are flushed and the index rewritten atomically with the batches done, and a later call
    with the same arguments continues where it stopped (a complete cache returns at once). Train
    from it with ``train_sae(model, cache, layer)``: the same SAE as from the texts, for the same
    ``max_tokens`` and seed, up to the storage's rounding (float32 storage and ``batch_size=1`` in
    both give the identical SAE).

    Parameters
    ----------
    model : LanguageModel
        From :func:`~llmasos_widgets.load_model`.
    texts : sequence of str
        The corpus; pieces longer than ``max_tokens`` are split as :func:`train_sae` splits them.
    layers : int or sequence of int
        The sites ``blocks.{l}.hook_resid_post`` to store (negative counts from the end).
    path : path
        A folder (made if missing). Disk: tokens × d_model × 2 bytes per layer in float16
        (SmolLM2-135M: 1.15 kB a token and layer, 2.2 GB for 1.9M tokens).
    max_tokens, batch_size : int
        Longest piece, and pieces per forward pass.
    dtype : torch.dtype
        ``torch.float16`` (half the disk; a relative rounding of 2⁻¹¹, far below an SAE's error)
        or ``torch.float32``.
    flush_every : int
        Batches between saved progress.
    progress : bool
        Show a tqdm bar (tokens).

    Examples
    --------
    >>> import tempfile
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cache = cache_activations(model, lw.sample_texts()[:20], [0, 1], d, progress=False)
    ...     bool(torch.allclose(cache.piece(0, 0), model.trace(lw.sample_texts()[0]).resid_pre(1), atol=1e-2))
    True

    """
    import numpy as np

    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers:
        raise ValueError(f"give at least one layer to cache: {model.name} has layers 0..{model.n_layers - 1}")
    layers = sorted({checks.layer(layer, model.n_layers, model.name) for layer in layers})
    if dtype not in (torch.float16, torch.float32):
        raise ValueError(f"dtype must be torch.float16 or torch.float32, got {dtype!r}")
    checks.int_in("flush_every", flush_every, 1, 2**31)
    pieces, counts, max_tokens = text_corpus(model, texts, batch_size, max_tokens, "cache")
    lengths = [len(p) for _, p in pieces]
    offsets = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int64)
    order = sorted(range(len(pieces)), key=lambda i: lengths[i])
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "model": fingerprint(model),
        "layers": layers,
        "d_model": model.d_model,
        "dtype": str(dtype).removeprefix("torch."),
        "max_tokens": max_tokens,
        "batch_size": batch_size,
        "counts": counts,
        "n_batches": len(batches),
    }
    tensors = {
        "ids": torch.tensor([t for _, p in pieces for t in p], dtype=torch.int32),
        "offsets": offsets,
        "text_index": torch.tensor([i for i, _ in pieces], dtype=torch.int64),
    }
    index = folder / ACTIVATION_CACHE_INDEX
    done, seconds = 0, 0.0
    if index.exists():
        cache = ActivationCache(folder)
        theirs = {k: cache.meta.get(k) for k in settings}
        mine = json.loads(json.dumps(settings))
        same_corpus = torch.equal(cache._ids, tensors["ids"]) and torch.equal(cache._offsets, offsets)
        if theirs != mine or not same_corpus:
            diff = [f"{k}: cache {theirs[k]!r} vs now {mine[k]!r}" for k in mine if theirs[k] != mine[k]]
            raise ValueError(
                f"the activation cache {folder} was made from other settings ({', '.join(diff) or 'another corpus'}); "
                "give another folder or delete it to start over"
            )
        if cache.complete:
            return cache
        done, seconds = cache.done_batches, float(cache.meta.get("seconds", 0.0))

    def save(n_done: int) -> None:
        meta = {**settings, "done_batches": n_done, "complete": n_done == len(batches), "seconds": round(seconds, 2)}
        files.save(index, tensors, ACTIVATION_CACHE_FORMAT, ACTIVATION_CACHE_VERSION, meta)

    np_dtype = np.float16 if dtype == torch.float16 else np.float32
    rows = max(1, int(offsets[-1]))
    maps = {}
    for layer in layers:
        file = folder / f"layer{layer}.bin"
        mode = "r+" if done and file.exists() else "w+"
        maps[layer] = np.memmap(file, dtype=np_dtype, mode=mode, shape=(rows, model.d_model))
    if not done:
        save(0)  # the index first: a folder with arrays and no index is never taken for a cache
    bar = tqdm(
        total=int(offsets[-1]), initial=sum(lengths[i] for b in batches[:done] for i in b), unit="tok",
        desc=f"caching layers {layers}", disable=not progress,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        for n in range(done, len(batches)):
            kept, _, _ = forward_to(model, layers, [pieces[i] for i in batches[n]])
            for layer in layers:
                acts = kept[layer].to("cpu", torch.float32).numpy()
                for row, i in enumerate(batches[n]):
                    maps[layer][int(offsets[i]) : int(offsets[i + 1])] = acts[row, : lengths[i]]
            bar.update(sum(lengths[i] for i in batches[n]))
            if (n + 1) % flush_every == 0 or n + 1 == len(batches):
                for mm in maps.values():
                    mm.flush()
                seconds += time.perf_counter() - started
                started = time.perf_counter()
                save(n + 1)
    finally:
        bar.close()
        for mm in maps.values():
            mm.flush()
        del maps
    return ActivationCache(folder)
