"""Activation patching, exact and by attribution: a [layer, position] or [layer, head] grid of scores."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ...core import checks
from ...core.memory import require
from ...core.progress import tqdm
from ..memory import estimate_tokens

if TYPE_CHECKING:
    from ...core.models import LanguageModel
    from ...core.trace import Prediction

from .engine import SITES, Cell, Edit, Engine
from .metrics import Metric
from .steering import Direction

DIRECTIONS = ("denoise", "noise")
METHODS = ("exact", "attribution")


# -- activation patching ---------------------------------------------------------------------
@dataclass
class PatchResult:
    """A patching grid: ``scores`` [layer, position] (or [layer, head] for ``over="heads"``).

    Scores are normalised so that 0 is the corrupt run's metric and 1 the clean run's; ``values``
    are the metric itself (estimated, for attribution patching). Cells not swept are NaN.
    """

    over: str
    method: str
    direction: str
    metric: str
    scores: Tensor  # [layer, position] or [layer, head]
    values: Tensor
    clean_metric: float
    corrupt_metric: float
    tokens: list[str]
    corrupt_tokens: list[str]
    seconds: float
    # None: run on NDIF, or loaded from a file without a model
    experiment: Patching | None = field(repr=False, compare=False)

    def correlation(self, other: PatchResult) -> float:
        """Pearson correlation of this grid with ``other`` over the cells both have.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> model = lw.load_model("tiny-gpt2")
        >>> p = lw.Patching(model, "The cat is in the", "The dog is in the", lw.logit_diff(" cat", " the"))
        >>> round(p.exact(progress=False).correlation(p.exact(progress=False)), 6)
        1.0

        """
        if other.scores.shape != self.scores.shape:
            raise ValueError(f"grids differ in shape: {tuple(self.scores.shape)} and {tuple(other.scores.shape)}")
        both = self.scores.isfinite() & other.scores.isfinite()
        a, b = self.scores[both].double(), other.scores[both].double()
        a, b = a - a.mean(), b - b.mean()
        denom = (a.norm() * b.norm()).item()
        return float((a @ b).item() / denom) if denom > 0 else float("nan")

    def top_cells(self, n: int = 5) -> list[tuple[int, int, float]]:
        """The ``n`` cells that move the metric most, as ``(layer, position or head, score)``.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> model = lw.load_model("tiny-gpt2")
        >>> res = lw.patch(model, "The cat is in the", "The dog is in the", metric=lw.logit_diff(" cat", " the"))
        >>> len(res.top_cells(3))
        3

        """
        effect = (self.scores - (1.0 if self.direction == "noise" else 0.0)).abs().nan_to_num(-1.0)
        order = effect.flatten().argsort(descending=True)[: checks.int_in("n", n, 1, effect.numel())]
        cols = self.scores.shape[1]
        return [(int(i) // cols, int(i) % cols, float(self.scores.flatten()[i])) for i in order]

    def direction_at(self, layer: int, position: int) -> Direction:
        """Clean minus corrupt residual stream at (``layer``, ``position``): a direction to steer with.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> model = lw.load_model("tiny-gpt2")
        >>> res = lw.patch(model, "The cat is in the", "The dog is in the", metric=lw.logit_diff(" cat", " the"))
        >>> res.direction_at(1, 1).layer
        1

        """
        if self.experiment is None:
            raise ValueError(
                "this result has no experiment (run on NDIF, or loaded without a model): load it with its model"
            )
        return self.experiment.direction_at(layer, position)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this grid to one file; ``lw.load(path, model)`` reads it back (``analyses/results.py``).

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> model = lw.load_model("tiny-gpt2")
        >>> res = lw.patch(model, "The cat is in the", "The dog is in the", metric=lw.logit_diff(" cat", " the"))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     bool(lw.load(res.save(d + "/p.st"), model).scores.equal(res.scores))
        True

        """
        from ..results import save

        return save(self, path)


class Patching:
    """A patching experiment: the clean and corrupt runs, a metric and a site, ready to sweep.

    :func:`patch` is the one-call form; a view keeps the experiment to compute a clicked cell's run
    and the other method.

    Parameters
    ----------
    model : LanguageModel
        A causal language model.
    clean, corrupt : str
        Prompts of the same number of tokens (the error shows both tokenisations otherwise).
    metric : Metric or callable
        What to read from the last position's logits (:func:`logit_diff`, :func:`prob`,
        :func:`kl_to_clean`, or a function of the logits [batch, vocab] returning [batch]).
    over : {"resid", "attn", "mlp", "heads"}
        The site patched: a [layer, position] grid, or [layer, head] for heads.
    direction : {"denoise", "noise"}
        Patch clean values into the corrupt run (denoise) or corrupt values into the clean run.
    positions : sequence of int, optional
        Positions patched (columns swept, or where heads are patched); all of them by default.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> p = lw.Patching(model, "The cat is in the", "The dog is in the", lw.logit_diff(" cat", " the"))
    >>> p.shape
    (2, 5)

    """

    def __init__(
        self,
        model: LanguageModel,
        clean: str,
        corrupt: str,
        metric: Metric | Callable[[Tensor], Tensor],
        *,
        over: str = "resid",
        direction: str = "denoise",
        positions: Sequence[int] | None = None,
    ) -> None:
        if over not in SITES:
            raise ValueError(f"over must be one of {', '.join(SITES)}; got {over!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'denoise' or 'noise'; got {direction!r}")
        self.engine = Engine(model)
        self.model, self.over, self.direction = model, over, direction
        self.clean_text, self.corrupt_text = clean, corrupt
        clean_ids, clean_offsets = model._encode(clean, truncate=False)
        corrupt_ids, corrupt_offsets = model._encode(corrupt, truncate=False)
        self.tokens = model.token_texts(clean, clean_ids, clean_offsets)
        self.corrupt_tokens = model.token_texts(corrupt, corrupt_ids, corrupt_offsets)
        if len(clean_ids) != len(corrupt_ids):
            raise ValueError(
                f"the clean and corrupt prompts must have the same number of tokens, so that positions "
                f"match; clean is {len(clean_ids)} tokens {self.tokens}, corrupt is {len(corrupt_ids)} "
                f"tokens {self.corrupt_tokens}"
            )
        T = len(clean_ids)
        differ = [i for i, (a, b) in enumerate(zip(clean_ids, corrupt_ids, strict=True)) if a != b]
        if not differ:
            raise ValueError("the clean and corrupt prompts are the same tokens: there is nothing to patch")
        # Before the first difference the two runs are the same computation: a patch there is a no-op.
        self.first_difference = differ[0]
        if positions is None:
            self.positions = list(range(T))
        else:
            self.positions = sorted({checks.index(p, T, "position", "the prompts have positions") for p in positions})
            if not self.positions:
                raise ValueError("positions is empty: give at least one position")
        # Before the runs: a sweep that would not fit is refused, naming fewer positions or attribution.
        require(estimate_tokens(model, T, "patching", over=over, positions=len(self.positions)))
        metric = Metric.of(metric)
        self.metric = metric  # a result file records its kind and tokens
        self.metric_name = metric.name
        self._metric = metric.bind(model)
        self.clean, _ = self.engine.capture(clean_ids)
        self.corrupt, _ = self.engine.capture(corrupt_ids)
        clean_logits = self.clean.logits[0]
        self.clean_metric = float(self._metric(self.clean.logits, clean_logits)[0])
        self.corrupt_metric = float(self._metric(self.corrupt.logits, clean_logits)[0])
        if (
            not math.isfinite(self.clean_metric - self.corrupt_metric)
            or abs(self.clean_metric - self.corrupt_metric) < 1e-6
        ):
            raise ValueError(
                f"the metric {self.metric_name} is {self.clean_metric:.6g} on the clean prompt and "
                f"{self.corrupt_metric:.6g} on the corrupt one: patching has nothing to restore; choose a "
                "metric (or prompts) that tells them apart"
            )
        self.base, self.source = (self.corrupt, self.clean) if direction == "denoise" else (self.clean, self.corrupt)
        L = model.n_layers
        self.shape = (L, model.n_heads) if over == "heads" else (L, T)

    def __repr__(self) -> str:
        return (
            f"Patching({self.model.name}, over={self.over!r}, direction={self.direction!r}, metric={self.metric_name})"
        )

    @property
    def base_metric(self) -> float:
        return self.corrupt_metric if self.direction == "denoise" else self.clean_metric

    def normalise(self, values: Tensor) -> Tensor:
        """Metric values as scores: 0 = the corrupt run's metric, 1 = the clean run's."""
        return (values - self.corrupt_metric) / (self.clean_metric - self.corrupt_metric)

    def metric_of(self, logits: Tensor) -> Tensor:
        return self._metric(logits, self.clean.logits[0])

    # -- cells -----------------------------------------------------------------------------------
    def _cell(self, layer: int, index: int) -> Cell | None:
        """The patched run of grid cell (layer, position or head); None where it is the base run."""
        if self.over == "heads":
            where = [p for p in self.positions if p >= self.first_difference]
            if not where:
                return None
            head_dim = self.source.z[layer].shape[-1] // self.model.n_heads
            value = self.source.z[layer][0, where, index * head_dim : (index + 1) * head_dim]
            return Cell([Edit(layer, "heads", where, value, head=index)])
        if index < self.first_difference:
            return None
        return Cell([Edit(layer, self.over, [index], self.source.site(self.over, layer)[0, [index]])])

    def _groups(self) -> list[list[tuple[int, int]]]:
        """Cells in the order they stream: one position's layers (five layers' heads) per group."""
        L, cols = self.shape
        if self.over == "heads":  # five layers a group: larger batches, still streamed in rows
            return [[(layer, h) for layer in range(g, min(g + 5, L)) for h in range(cols)] for g in range(0, L, 5)]
        return [[(layer, p) for layer in range(L)] for p in self.positions]

    def sweep(self, *, should_stop: Callable[[], bool] | None = None) -> Iterator[tuple[list[tuple[int, int]], Tensor]]:
        """Exact patching, group by group: ``(cells, metric values)`` as each group is computed.

        Cells that equal the base run (before the prompts differ) come first, without a forward pass.
        """
        groups = self._groups()
        free = [c for g in groups for c in g if self._cell(*c) is None]
        if free:
            yield free, torch.full((len(free),), self.base_metric)
        for group in groups:
            if should_stop is not None and should_stop():
                return
            todo = [c for c in group if self._cell(*c) is not None]
            if todo:
                logits = self.engine.run(self.base, [self._cell(*c) for c in todo])  # type: ignore[misc]
                yield todo, self.metric_of(logits)

    def exact(self, *, progress: bool = True) -> PatchResult:
        """Patch every cell, exactly; a tqdm bar counts cells.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> model = lw.load_model("tiny-llama")
        >>> p = lw.Patching(model, "The cat is in the", "The dog is in the", lw.logit_diff(" cat", " the"))
        >>> res = p.exact(progress=False)
        >>> res.scores[:, 0].tolist()  # position 0 comes before the prompts differ
        [0.0, 0.0]

        """
        began = time.perf_counter()
        values = torch.full(self.shape, float("nan"))
        with tqdm(total=self.n_cells, desc=f"patching {self.over}", unit="cell", disable=not progress) as bar:
            for cells, got in self.sweep():
                for (layer, index), value in zip(cells, got.tolist(), strict=True):
                    values[layer, index] = value
                bar.update(len(cells))
        return self.as_result("exact", values, time.perf_counter() - began)

    @property
    def n_cells(self) -> int:
        return sum(len(g) for g in self._groups())

    def attribution(self) -> PatchResult:
        """Attribution patching (Nanda 2023): every cell's metric change estimated to first order.

        One forward and one backward pass on the base run: the change from patching an activation a
        is estimated as ``(a_source - a_base) · ∂metric/∂a`` at the base run.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> model = lw.load_model("tiny-llama")
        >>> p = lw.Patching(model, "The cat is in the", "The dog is in the", lw.logit_diff(" cat", " the"))
        >>> p.attribution().scores.shape
        torch.Size([2, 5])

        """
        began = time.perf_counter()
        clean_logits = self.clean.logits[0]
        _, grads = self.engine.capture(self.base.ids.tolist(), grad_of=lambda lg: self._metric(lg, clean_logits))
        assert grads is not None
        L, cols = self.shape
        est = torch.full(self.shape, float("nan"))
        for layer in range(L):
            delta = self.source.site(self.over, layer)[0] - self.base.site(self.over, layer)[0]  # [pos, width]
            contrib = (delta * grads[self.over][layer][0]).float().cpu()
            if self.over == "heads":
                rows = torch.tensor(self.positions)
                est[layer] = contrib[rows].view(len(rows), cols, -1).sum(dim=(0, 2))
            else:
                est[layer, self.positions] = contrib[self.positions].sum(-1)
        return self.as_result("attribution", est + self.base_metric, time.perf_counter() - began)

    def as_result(self, method: str, values: Tensor, seconds: float) -> PatchResult:
        """A grid of metric ``values`` (computed by ``method`` in ``seconds``) as a PatchResult."""
        return PatchResult(
            over=self.over,
            method=method,
            direction=self.direction,
            metric=self.metric_name,
            scores=self.normalise(values),
            values=values,
            clean_metric=self.clean_metric,
            corrupt_metric=self.corrupt_metric,
            tokens=self.tokens,
            corrupt_tokens=self.corrupt_tokens,
            seconds=seconds,
            experiment=self,
        )

    def cell_logits(self, layer: int, index: int) -> Tensor:
        """The next-token logits [vocab] of one cell's patched run (a click in PatchingView).

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> model = lw.load_model("tiny-llama")
        >>> p = lw.Patching(model, "The cat is in the", "The dog is in the", lw.logit_diff(" cat", " the"))
        >>> p.cell_logits(0, 1).shape[0] == model.model.config.vocab_size
        True

        """
        L, cols = self.shape
        layer = checks.layer(layer, L, self.model.name)
        what = (
            ("head", f"{self.model.name} has heads")
            if self.over == "heads"
            else ("position", "the prompt has positions")
        )
        index = checks.index(index, cols, *what)
        cell = self._cell(layer, index)
        if cell is None:
            return self.base.logits[0]
        return self.engine.run(self.base, [cell])[0]

    def cell_predictions(self, layer: int, index: int, k: int = 5) -> tuple[float, list[Prediction]]:
        """One cell's patched run: its metric and its top ``k`` next tokens.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> model = lw.load_model("tiny-llama")
        >>> p = lw.Patching(model, "The cat is in the", "The dog is in the", lw.logit_diff(" cat", " the"))
        >>> value, top = p.cell_predictions(1, 1, k=3)
        >>> len(top)
        3

        """
        from ...core.trace import Prediction

        logits = self.cell_logits(layer, index)
        k = checks.int_in("k", k, 1, 50)
        probs = logits.float().softmax(-1)
        top = probs.topk(k)
        value = float(self.metric_of(logits[None])[0])
        preds = [
            Prediction(self.model.decode_token(int(i)), int(i), float(p))
            for p, i in zip(top.values, top.indices, strict=True)
        ]
        return value, preds

    def direction_at(self, layer: int, position: int) -> Direction:
        """Clean minus corrupt ``blocks.{layer}.hook_resid_pre`` at ``position``, as a steering direction."""
        layer = checks.layer(layer, self.model.n_layers, self.model.name)
        position = checks.index(position, len(self.tokens), "position", "the prompt has positions")
        vector = self.clean.resid[layer][0, position] - self.corrupt.resid[layer][0, position]
        return Direction(vector, layer, f"clean - corrupt at layer {layer}, position {position}")


def patch(
    model: LanguageModel,
    clean: str,
    corrupt: str,
    metric: Metric | Callable[[Tensor], Tensor],
    *,
    over: str = "resid",
    direction: str = "denoise",
    method: str = "exact",
    positions: Sequence[int] | None = None,
    progress: bool = True,
) -> PatchResult:
    """Activation patching of ``over`` between two prompts: a [layer, position] (or [layer, head]) grid.

    ``method="exact"`` patches every cell (see the module docstring for how it reuses the base run);
    ``method="attribution"`` estimates every cell from one forward and one backward pass.
    See :class:`Patching` for the parameters.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> res = lw.patch(model, "The cat is in the", "The dog is in the", metric=lw.logit_diff(" cat", " the"))
    >>> res.scores.shape  # [layer, position]
    torch.Size([2, 5])
    >>> round(float(res.scores[0, 1]), 4)  # the only differing token patched at layer 0: the clean run
    1.0

    """
    if method not in METHODS:
        raise ValueError(f"method must be 'exact' or 'attribution'; got {method!r}")
    if model.backend.name == "nnsight" and method == "exact":
        return _patch_in_graph(model, clean, corrupt, metric, over, direction, positions)
    experiment = Patching(model, clean, corrupt, metric, over=over, direction=direction, positions=positions)
    return experiment.exact(progress=progress) if method == "exact" else experiment.attribution()


def _patch_in_graph(
    model: LanguageModel,
    clean: str,
    corrupt: str,
    metric: Metric | Callable[[Tensor], Tensor],
    over: str,
    direction: str,
    positions: Sequence[int] | None,
) -> PatchResult:
    """Exact patching through the model's nnsight backend: every patched run and its metric where the model runs.

    Locally the result also holds a :class:`Patching` (a view's cell click re-runs one cell here); on NDIF it
    holds None, and only the grid and the two end metrics came back (core/backends.py).
    """
    began = time.perf_counter()
    if over not in SITES:
        raise ValueError(f"over must be one of {', '.join(SITES)}; got {over!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'denoise' or 'noise'; got {direction!r}")
    experiment = (
        None
        if model.backend.remote is True
        else Patching(model, clean, corrupt, metric, over=over, direction=direction, positions=positions)
    )
    (clean_ids, clean_offsets), (corrupt_ids, corrupt_offsets) = (
        model._encode(t, truncate=False) for t in (clean, corrupt)
    )
    differ = [i for i, (a, b) in enumerate(zip(clean_ids, corrupt_ids, strict=False)) if a != b]
    if len(clean_ids) != len(corrupt_ids) or not differ:
        raise ValueError("the clean and corrupt prompts must have the same number of tokens and differ in one at least")
    T = len(clean_ids)
    where = (
        list(range(T))
        if positions is None
        else sorted({checks.index(p, T, "position", "the prompts have positions") for p in positions})
    )
    bound = Metric.of(metric)
    values, clean_metric, corrupt_metric = model.backend.patch_grid(
        model, clean_ids, corrupt_ids, over=over, direction=direction, positions=where,
        first_difference=differ[0], metric=bound.bind(model),
    )  # fmt: skip
    return PatchResult(
        over=over,
        method="exact",
        direction=direction,
        metric=bound.name,
        scores=(values - corrupt_metric) / (clean_metric - corrupt_metric),
        values=values,
        clean_metric=clean_metric,
        corrupt_metric=corrupt_metric,
        tokens=model.token_texts(clean, clean_ids, clean_offsets),
        corrupt_tokens=model.token_texts(corrupt, corrupt_ids, corrupt_offsets),
        seconds=time.perf_counter() - began,
        experiment=experiment,  # type: ignore[arg-type]
    )
