"""Steering: a direction added to the residual stream while the model generates, compared with the baseline."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ...core import checks
from ...core.hooks import Hook, hooked, pre

if TYPE_CHECKING:
    from ...core.models import LanguageModel
    from ...core.trace import Trace
    from ..concepts import CAV

from .metrics import Metric

STEER_POSITIONS = ("all", "prompt", "generated")


# -- steering --------------------------------------------------------------------------------
@dataclass
class Direction:
    """A direction in the residual stream, added to ``blocks.{layer}.hook_resid_pre`` when steering.

    ``layer`` runs from 0 to ``n_layers``: ``n_layers`` is the final residual stream (before the final
    norm). Build one from a CAV (:meth:`from_cav`), a neuron (:meth:`neuron`), two sets of texts
    (:meth:`mean_difference`) or a patching result (:meth:`PatchResult.direction_at`).

    Examples
    --------
    >>> import torch
    >>> Direction(torch.ones(64), layer=1).norm
    8.0

    """

    vector: Tensor  # [d_model]
    layer: int
    name: str = "direction"

    @property
    def norm(self) -> float:
        return float(self.vector.float().norm())

    @classmethod
    def from_cav(cls, cav: CAV) -> Direction:
        """A CAV's unit vector; a CAV of layer l reads the stream after block l, which enters block l + 1.

        Examples
        --------
        >>> import torch, llmasos_widgets as lw
        >>> cav = lw.CAV("food", "random", 0, "mean", "logistic", torch.ones(64) / 8, 0.9, 0.9, 20, 10)
        >>> Direction.from_cav(cav).layer
        1

        """
        return cls(cav.direction.detach().float().clone(), cav.layer + 1, f"CAV {cav.concept} (layer {cav.layer})")

    @classmethod
    def neuron(cls, model: LanguageModel, layer: int, neuron: int) -> Direction:
        """What MLP neuron ``neuron`` of ``layer`` writes to the residual stream (its output weights).

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> Direction.neuron(lw.load_model("tiny-llama"), 0, 3).vector.shape
        torch.Size([64])

        """
        from ..neurons import check_neuron, neuron_output_weights

        weights = neuron_output_weights(model, layer)  # [neuron, d_model]; checks the layer
        vector = weights[check_neuron(model, neuron)].detach().float().clone()
        return cls(vector, checks.layer(layer, model.n_layers, model.name) + 1, f"neuron {layer}.{neuron}")

    @classmethod
    def mean_difference(
        cls, model: LanguageModel, texts: Sequence[str], baseline: Sequence[str], layer: int
    ) -> Direction:
        """Mean residual stream entering ``layer`` over the tokens of ``texts`` minus over ``baseline``.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> model = lw.load_model("tiny-llama")
        >>> Direction.mean_difference(model, ["I love it"], ["I hate it"], layer=1).layer
        1

        """
        layer = checks.index(layer, model.n_layers + 1, "layer", f"{model.name}'s residual stream has layers")

        def mean(group: Sequence[str], what: str) -> Tensor:
            if isinstance(group, str) or not group:
                raise ValueError(f"{what} must be a non-empty list of texts")
            return torch.cat([model.trace(t)._resid[layer] for t in group]).float().mean(0)

        return cls(mean(texts, "texts") - mean(baseline, "baseline"), layer, "mean difference")


def stream_norm(trace: Trace, layer: int) -> float:
    """The median over a text's tokens of the norm of the residual stream entering ``layer`` (0..n_layers).

    The scale a steering coefficient is read against. The median, not the mean: the first token's
    stream is often tens of times larger than the others' (an attention sink) and would set it alone.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> stream_norm(lw.load_model("tiny-llama").trace("The cat sat"), 1) > 0
    True

    """
    return float(trace.resid_pre(layer).float().norm(dim=-1).median())


def as_direction(model: LanguageModel, direction: Any, layer: int | None = None) -> Direction:
    """``direction`` (a Direction, a CAV, or a vector with ``layer``) checked against ``model``.

    Raises a ValueError for a vector of the wrong size, with non-finite values, or all zeros.

    Examples
    --------
    >>> import torch, llmasos_widgets as lw
    >>> as_direction(lw.load_model("tiny-llama"), torch.ones(64), layer=1).layer
    1

    """
    if isinstance(direction, Direction):
        found = direction
    elif hasattr(direction, "direction") and hasattr(direction, "concept"):  # a CAV
        found = Direction.from_cav(direction)
    elif isinstance(direction, Tensor):
        if layer is None:
            raise ValueError("a direction given as a tensor needs layer=: the residual stream it is added to")
        found = Direction(direction, layer)
    else:
        raise ValueError(
            "direction must be a lw.Direction, a CAV (lw.train_cav), or a tensor [d_model] with layer=; "
            f"got {type(direction).__name__}"
        )
    vector = found.vector.detach().float().flatten().cpu()
    if vector.numel() != model.d_model:
        raise ValueError(
            f"direction has {vector.numel()} values but {model.name}'s residual stream has {model.d_model}"
        )
    if not vector.isfinite().all():
        raise ValueError("direction has non-finite values (NaN or inf)")
    if not vector.any():
        raise ValueError("direction is all zeros: steering with it changes nothing")
    where = found.layer if layer is None else layer
    where = checks.index(where, model.n_layers + 1, "layer", f"{model.name}'s residual stream has layers")
    return Direction(vector, where, found.name)


@dataclass
class SteerResult:
    """Baseline and steered generations of one prompt, and how much the steering changed.

    ``changed[i]`` marks steered token i where it differs from the baseline's token i. ``kl_next``
    is KL(baseline ‖ steered) of the first generated token's distribution; ``kl_mean`` the mean of
    that KL over the baseline's continuation, read with and without steering.
    """

    prompt_tokens: list[str]
    baseline: list[str]
    steered: list[str]
    baseline_ids: list[int]
    steered_ids: list[int]
    changed: list[bool]
    alpha: float
    layer: int
    direction: str
    kl_next: float
    kl_mean: float
    metric: str | None = None
    metric_change: float | None = None
    model: Any = field(default=None, repr=False, compare=False)  # what a result file's fingerprint is of

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this result to one file; ``lw.load(path, model)`` reads it back (``analyses/results.py``).

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> model = lw.load_model("tiny-llama")
        >>> res = lw.steer(model, "The cat", lw.Direction.neuron(model, 0, 3), 4.0, max_new_tokens=3)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     lw.load(res.save(d + "/s.st"), model) == res
        True

        """
        from ..results import save

        return save(self, path)

    @property
    def baseline_text(self) -> str:
        return "".join(self.baseline)

    @property
    def steered_text(self) -> str:
        return "".join(self.steered)

    @property
    def no_effect(self) -> bool:
        """True when no generated token changed and the mean KL is below 0.001 nats."""
        return not any(self.changed) and self.kl_mean < 1e-3

    def summary(self) -> dict[str, Any]:
        """The result as JSON-ready fields (what a view sends its page); a non-finite number is None.

        Examples
        --------
        >>> import torch, llmasos_widgets as lw
        >>> res = lw.steer(lw.load_model("tiny-llama"), "The cat", torch.ones(64), 0.0, layer=1, max_new_tokens=2)
        >>> fields = res.summary()
        >>> fields["no_effect"], fields["alpha"], len(fields["steered_ids"])
        (True, 0.0, 2)

        """

        def finite(value: float | None) -> float | None:
            return value if value is not None and math.isfinite(value) else None  # JSON has no NaN

        return {
            "alpha": self.alpha,
            "layer": self.layer,
            "direction": self.direction,
            "baseline": self.baseline,
            "steered": self.steered,
            "baseline_ids": self.baseline_ids,
            "steered_ids": self.steered_ids,
            "changed": self.changed,
            "kl_next": finite(self.kl_next),
            "kl_mean": finite(self.kl_mean),
            "metric": self.metric,
            "metric_change": finite(self.metric_change),
            "no_effect": self.no_effect,
        }


class _Steering:
    """A pre-hook adding ``alpha * vector`` to the stream entering ``layer`` at chosen absolute positions.

    ``positions`` is "all", "prompt", "generated" or a set of positions; it counts the positions it has
    seen, so it steers a generation's new tokens too (each forward of ``generate`` feeds it the next).
    """

    def __init__(self, direction: Direction, alpha: float, positions: str | set[int], prompt_len: int) -> None:
        self.direction, self.alpha = direction, alpha
        self.positions, self.prompt_len, self.offset = positions, prompt_len, 0

    def _wanted(self, n: int) -> Tensor:
        at = torch.arange(self.offset, self.offset + n)
        if self.positions == "all":
            return torch.ones(n, dtype=torch.bool)
        if self.positions == "prompt":
            return at < self.prompt_len
        if self.positions == "generated":
            return at >= self.prompt_len
        return torch.tensor([int(p) in self.positions for p in at], dtype=torch.bool)

    def __call__(self, module: Any, args: Any, kwargs: Any) -> Any:
        hidden = args[0] if args else kwargs["hidden_states"]
        wanted = self._wanted(hidden.shape[1]).to(hidden.device)
        self.offset += hidden.shape[1]
        if self.alpha == 0 or not wanted.any():
            return None
        add = (self.alpha * self.direction.vector).to(hidden) * wanted[:, None].to(hidden)
        hidden = hidden + add
        return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})


class Steering:
    """One prompt's steering experiment: its baseline generation, made once, and steered runs at any alpha.

    :func:`steer` is the one-call form. A view keeps one, so that moving its slider generates only the
    steered run (the baseline does not depend on the direction or the coefficient).

    Parameters
    ----------
    model : LanguageModel
        A causal language model.
    prompt : str
        The text to continue.
    max_new_tokens : int
        Tokens generated by each run (greedy unless ``sample``).
    sample : bool
        Sample instead of greedy decoding.
    temperature : float
        Sampling temperature.
    seed : int
        Seed of the sampling draws (the same draws for every run).

    Examples
    --------
    >>> import torch, llmasos_widgets as lw
    >>> experiment = Steering(lw.load_model("tiny-llama"), "The cat", max_new_tokens=3)
    >>> a = experiment.run(torch.ones(64), 2.0, layer=1)
    >>> b = experiment.run(torch.ones(64), -2.0, layer=1)  # the baseline is not generated again
    >>> a.baseline_ids == b.baseline_ids == experiment.baseline_ids
    True

    """

    def __init__(
        self,
        model: LanguageModel,
        prompt: str,
        *,
        max_new_tokens: int = 20,
        sample: bool = False,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        if not model.is_causal:
            raise ValueError(f"{model.name} is an encoder ({model.adapter.family}); steering needs a causal LM")
        self.model, self.prompt = model, prompt
        self.ids, self.offsets = model._encode(prompt, truncate=False)
        room = max(1, model.context_length - len(self.ids))
        self.max_new_tokens = checks.int_in("max_new_tokens", max_new_tokens, 1, room)
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        self.sample, self.temperature, self.seed = bool(sample), float(temperature), seed
        with model.lock:
            self.baseline_ids = self._generate(None)
            self.baseline_logits = self._next_logits(None, self.baseline_ids)
        self.baseline = self._texts(self.baseline_ids)

    def _hooks(self, steering: _Steering | None) -> list[Hook]:
        if steering is None:
            return []
        adapter, layer = self.model.adapter, steering.direction.layer
        module = adapter.final_norm() if layer == adapter.n_layers else adapter.blocks()[layer]
        return [pre(module, steering, with_kwargs=True)]

    def _generate(self, steering: _Steering | None) -> list[int]:
        model, ids = self.model, self.ids
        with hooked(model, self._hooks(steering)), torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(self.seed)
            out = model.model.generate(
                torch.tensor([ids], device=model.device),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=model.device),
                max_new_tokens=self.max_new_tokens,
                do_sample=self.sample,
                temperature=self.temperature if self.sample else None,
                top_k=None,
                top_p=None,
                pad_token_id=model.pad_token_id,
            )
        return out[0, len(ids) :].tolist()

    def _next_logits(self, steering: _Steering | None, new_ids: list[int]) -> Tensor:
        """[len(new_ids), vocab]: the logits that predicted each of ``new_ids`` (teacher-forced)."""
        model, ids = self.model, self.ids
        with hooked(model, self._hooks(steering)), torch.no_grad():
            out = model.model(torch.tensor([ids + new_ids[:-1]], device=model.device), use_cache=False)
        return out.logits[0, len(ids) - 1 :].float()

    def _texts(self, new_ids: list[int]) -> list[str]:
        model, prompt = self.model, self.prompt
        text, new_offsets = model.continuation(new_ids, start=len(prompt))
        return model.token_texts(prompt + text, self.ids + new_ids, self.offsets + new_offsets)[len(self.ids) :]

    def _positions(self, positions: str | Sequence[int]) -> str | set[int]:
        if isinstance(positions, str):
            if positions not in STEER_POSITIONS:
                raise ValueError(
                    f"positions must be one of {', '.join(STEER_POSITIONS)} or a list of positions; got {positions!r}"
                )
            return positions
        n = len(self.ids) + self.max_new_tokens
        found = {checks.index(p, n, "position", "the prompt and its generation have positions") for p in positions}
        if not found:
            raise ValueError("positions is empty: give at least one position, or 'all', 'prompt' or 'generated'")
        return found

    def run(
        self,
        direction: Any,
        alpha: float,
        *,
        layer: int | None = None,
        positions: str | Sequence[int] = "all",
        metric: Metric | None = None,
    ) -> SteerResult:
        """Generate with ``alpha × direction`` added; compare with the baseline. See :func:`steer`.

        Examples
        --------
        >>> import torch, llmasos_widgets as lw
        >>> experiment = Steering(lw.load_model("tiny-llama"), "The cat", max_new_tokens=3)
        >>> experiment.run(torch.ones(64), 0.0, layer=1).no_effect
        True

        """
        model = self.model
        found = as_direction(model, direction, layer)
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number, got {alpha!r}")
        where = self._positions(positions)
        with model.lock:
            steered_ids = self._generate(_Steering(found, float(alpha), where, len(self.ids)))
            steered_logits = self._next_logits(_Steering(found, float(alpha), where, len(self.ids)), self.baseline_ids)
        if not steered_logits.isfinite().all():
            norm = stream_norm(model.trace(self.prompt), found.layer)
            raise ValueError(
                f"alpha={alpha} makes the logits non-finite; the residual stream at layer {found.layer} has a "
                f"median norm of {norm:.3g} and the direction {found.norm:.3g}: try a smaller alpha"
            )
        base_logits = self.baseline_logits
        base_log, steered_log = base_logits.log_softmax(-1), steered_logits.log_softmax(-1)
        kl = (base_log.exp() * (base_log - steered_log)).sum(-1).clamp_min(0)
        change = None
        if metric is not None:
            bound = Metric.of(metric).bind(model)
            change = float(bound(steered_logits[:1], base_logits[0])[0] - bound(base_logits[:1], base_logits[0])[0])
        n = len(self.baseline_ids)
        return SteerResult(
            prompt_tokens=model.token_texts(self.prompt, self.ids, self.offsets),
            baseline=list(self.baseline),
            steered=self._texts(steered_ids),
            baseline_ids=list(self.baseline_ids),
            steered_ids=steered_ids,
            changed=[i >= n or t != self.baseline_ids[i] for i, t in enumerate(steered_ids)],
            alpha=float(alpha),
            layer=found.layer,
            direction=found.name,
            kl_next=float(kl[0]),
            kl_mean=float(kl.mean()),
            metric=None if metric is None else Metric.of(metric).name,
            metric_change=change,
            model=model,
        )


def steer(
    model: LanguageModel,
    prompt: str,
    direction: Any,
    alpha: float,
    *,
    layer: int | None = None,
    positions: str | Sequence[int] = "all",
    max_new_tokens: int = 20,
    sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    metric: Metric | None = None,
) -> SteerResult:
    """Generate from ``prompt`` with and without ``alpha × direction`` added to the residual stream.

    Parameters
    ----------
    model : LanguageModel
        A causal language model.
    prompt : str
        The text to continue.
    direction : Direction, CAV or Tensor
        Added to ``blocks.{layer}.hook_resid_pre`` of the direction's layer.
    alpha : float
        The coefficient (0 reproduces the plain generation).
    layer : int, optional
        Overrides the direction's layer (0..n_layers; required for a plain tensor).
    positions : {"all", "prompt", "generated"} or sequence of int
        Absolute positions steered (each one of the prompt's or the generation's; negative counts from
        the end of the generation).
    max_new_tokens : int
        Tokens generated by each run (greedy unless ``sample``).
    sample : bool
        Sample instead of greedy decoding.
    temperature : float
        Sampling temperature.
    seed : int
        Seed of the sampling draws (the same draws for both runs).
    metric : Metric, optional
        Also report its change at the first generated token.

    Examples
    --------
    >>> import torch, llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> res = lw.steer(model, "The cat", torch.ones(64), alpha=0.0, layer=1, max_new_tokens=3)
    >>> res.baseline == res.steered, res.no_effect
    (True, True)

    """
    if not model.is_causal:
        raise ValueError(f"{model.name} is an encoder ({model.adapter.family}); steering needs a causal LM")
    as_direction(model, direction, layer)  # the cheap checks first: a bad argument costs no generation
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    if isinstance(positions, str) and positions not in STEER_POSITIONS:
        raise ValueError(
            f"positions must be one of {', '.join(STEER_POSITIONS)} or a list of positions; got {positions!r}"
        )
    experiment = Steering(
        model, prompt, max_new_tokens=max_new_tokens, sample=sample, temperature=temperature, seed=seed
    )
    return experiment.run(direction, alpha, layer=layer, positions=positions, metric=metric)
