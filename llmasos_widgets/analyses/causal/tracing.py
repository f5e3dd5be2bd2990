"""Causal tracing (Meng et al. 2022): corrupt the subject with noise, restore one state at a time."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ...core import checks
from ...core.progress import tqdm

if TYPE_CHECKING:
    from ...core.models import LanguageModel

from .engine import Cell, Edit, Engine


# -- causal tracing --------------------------------------------------------------------------
@dataclass
class CausalTrace:
    """ROME's causal trace: ``probs[kind]`` [layer, position] is p(target) with that state restored.

    ``kind`` is ``"resid"`` (the residual stream entering the layer), ``"mlp"`` or ``"attn"`` (their
    outputs restored over a window of layers centred on the layer), each averaged over the noise samples.
    """

    tokens: list[str]
    subject: tuple[int, int]  # positions [start, end) of the subject
    target: str
    clean_prob: float
    corrupt_prob: float
    probs: dict[str, Tensor]
    noise: float
    samples: int
    window: int
    seconds: float
    model: Any = field(default=None, repr=False, compare=False)  # what a result file's fingerprint is of

    def scores(self, kind: str = "resid") -> Tensor:
        """``probs[kind]`` normalised: 0 = the corrupted run, 1 = the clean run."""
        return (self.probs[kind] - self.corrupt_prob) / (self.clean_prob - self.corrupt_prob)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this trace to one file; ``lw.load(path, model)`` reads it back (``analyses/results.py``).

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> model = lw.load_model("tiny-gpt2")
        >>> ct = lw.causal_trace(model, "The cat is in the", "The cat", samples=2, kinds=("resid",), progress=False)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     back = lw.load(ct.save(d + "/ct.st"), model)
        >>> bool(back.probs["resid"].equal(ct.probs["resid"])), back.subject
        (True, (0, 2))

        """
        from ..results import save

        return save(self, path)


def _subject_span(model: LanguageModel, prompt: str, subject: str, offsets: list[tuple[int, int]]) -> tuple[int, int]:
    if not isinstance(subject, str) or not subject.strip():
        raise ValueError("subject is empty: give the words of the prompt to corrupt, e.g. 'The Eiffel Tower'")
    at = prompt.find(subject)
    if at < 0:
        raise ValueError(f"subject {subject!r} is not in the prompt {prompt!r}")
    end = at + len(subject)
    inside = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > at]
    return inside[0], inside[-1] + 1


def causal_trace(
    model: LanguageModel,
    prompt: str,
    subject: str,
    target: str | None = None,
    *,
    kinds: Sequence[str] = ("resid", "mlp", "attn"),
    samples: int = 10,
    noise: float | None = None,
    window: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> CausalTrace:
    """Causal tracing (Meng et al. 2022): corrupt the subject, restore one state at a time.

    Gaussian noise of standard deviation ``noise`` (3 × the standard deviation of the token
    embeddings by default, as in the paper) is added to the subject's token embeddings, ``samples``
    times from ``seed``. For every layer and position, the clean state is restored in each corrupted
    run and p(``target``) read at the last position; mlp and attn restore their outputs over
    ``window`` layers centred on the layer.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-gpt2")
    >>> ct = lw.causal_trace(model, "The cat is in the", "The cat", samples=2, kinds=("resid",), progress=False)
    >>> ct.probs["resid"].shape  # [layer, position]
    torch.Size([2, 5])

    """
    began = time.perf_counter()
    engine = Engine(model)
    for kind in kinds:
        if kind not in ("resid", "mlp", "attn"):
            raise ValueError(f"kinds must be among 'resid', 'mlp', 'attn'; got {kind!r}")
    samples = checks.int_in("samples", samples, 1, 1000)
    window = checks.int_in("window", window, 1, 1000)
    ids, offsets = model._encode(prompt, truncate=False)
    tokens = model.token_texts(prompt, ids, offsets)
    first, end = _subject_span(model, prompt, subject, offsets)
    clean, _ = engine.capture(ids)
    if target is None:
        target_id = int(clean.logits[0].argmax())
        target = model.decode_token(target_id)
    else:
        target_id = checks.one_token(model, target, "target")
    if noise is None:
        noise = 3 * float(model.model.get_input_embeddings().weight.detach().float().std())
    elif not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise must be a positive number (a standard deviation), got {noise!r}")
    generator = torch.Generator().manual_seed(seed)
    added = torch.zeros(samples, len(ids), model.d_model)
    added[:, first:end] = torch.randn(samples, end - first, model.d_model, generator=generator) * noise
    corrupted, _ = engine.capture(ids, noise=added)

    def p_target(logits: Tensor) -> Tensor:
        return logits.float().softmax(-1)[:, target_id]

    L, T = model.n_layers, len(ids)
    clean_prob = float(p_target(clean.logits)[0])
    corrupt_prob = float(p_target(corrupted.logits).mean())
    probs = {}
    with tqdm(total=len(kinds) * L * (T - first), desc="causal trace", unit="cell", disable=not progress) as bar:
        for kind in kinds:
            grid = torch.full((L, T), corrupt_prob)  # before the subject nothing differs from the corrupted run
            for p in range(first, T):
                cells = []
                for layer in range(L):
                    layers = (
                        [layer]
                        if kind == "resid"
                        else range(max(0, layer - window // 2), min(L, layer - (-window // 2)))
                    )
                    edits = [Edit(w, kind, [p], clean.site(kind, w)[0, [p]]) for w in layers]
                    cells += [Cell(edits, base=n) for n in range(samples)]
                got = p_target(engine.run(corrupted, cells)).view(L, samples).mean(-1)
                grid[:, p] = got
                bar.update(L)
            probs[kind] = grid
    return CausalTrace(
        tokens=tokens,
        subject=(first, end),
        target=target,
        clean_prob=clean_prob,
        corrupt_prob=corrupt_prob,
        probs=probs,
        noise=float(noise),
        samples=samples,
        window=window,
        seconds=time.perf_counter() - began,
        model=model,
    )
