"""Causal interventions: activation patching (exact and attribution), causal tracing and steering.

Activation patching runs the model on a *base* prompt while one activation is replaced by its value
on a *source* prompt, and reads a metric from the logits. Denoising patches clean values into the
corrupt run (the base) and asks which single activation restores the behaviour; noising patches
corrupt values into the clean run. Scores are normalised so that 0 is the corrupt run's metric and 1
the clean run's, in both directions. The sites, per layer l and position p (TransformerLens names):

- ``resid``: ``blocks.{l}.hook_resid_pre``, the residual stream entering block l;
- ``attn``: ``blocks.{l}.hook_attn_out``, what the attention adds to the residual stream;
- ``mlp``: ``blocks.{l}.hook_mlp_out``, what the MLP adds;
- ``heads``: one head's output ``blocks.{l}.attn.hook_z`` (before the output projection), patched at
  every position of ``positions``: a [layer, head] grid.

Exact patching is computed, not estimated, but not by one forward pass per cell: a patch at layer l and
position p leaves every layer below l and every position before p as in the base run (the model is
causal), so a patched run starts at block l from the base run's residual stream, computes positions p..
only, attends to the base run's keys and values before p, and unembeds only the last position. Cells
of one position (or one layer, for heads) run as one batch, and cells before the first position where
the two prompts differ are the base run itself (nothing to patch there). ``_Engine`` runs the blocks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from . import _checks
from .hooks import Hook, hooked, post, pre

if TYPE_CHECKING:
    from .concepts import CAV
    from .models import LanguageModel
    from .trace import Prediction, Trace

SITES = ("resid", "attn", "mlp", "heads")
DIRECTIONS = ("denoise", "noise")
METHODS = ("exact", "attribution")
STEER_POSITIONS = ("all", "prompt", "generated")


# -- metrics -------------------------------------------------------------------------------------
class Metric:
    """A number read from the next-token logits at the last position: what a patch restores.

    Build one with :func:`logit_diff`, :func:`prob`, :func:`kl_to_clean` or :meth:`Metric.of` (any
    function of the logits). ``bind(model)`` resolves its tokens and returns
    ``f(logits [batch, vocab], clean_logits [vocab]) -> [batch]``.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> m = lw.logit_diff(" Paris", " London")
    >>> m.name
    "logit(' Paris') - logit(' London')"

    """

    def __init__(self, name: str, tokens: Sequence[str], fn: Callable[..., Tensor]) -> None:
        self.name = name
        self.tokens = tuple(tokens)
        self._fn = fn  # fn(logits, clean_logits, *token_ids)

    def __repr__(self) -> str:
        return f"Metric({self.name})"

    @classmethod
    def of(cls, fn: Any, name: str | None = None) -> Metric:
        """``fn`` itself if it is a Metric, else a metric from a function of the logits [batch, vocab] -> [batch].

        Examples
        --------
        >>> Metric.of(lambda logits: logits[:, 0], name="logit of token 0").name
        'logit of token 0'

        """
        if isinstance(fn, Metric):
            return fn
        if not callable(fn):
            raise ValueError(
                "metric must be lw.logit_diff(...), lw.prob(...), lw.kl_to_clean() or a function of the "
                f"logits [batch, vocab] returning [batch]; got {type(fn).__name__}"
            )
        return cls(name or getattr(fn, "__name__", "metric"), (), lambda lg, _: fn(lg))

    def bind(self, model: LanguageModel) -> Callable[[Tensor, Tensor], Tensor]:
        ids = [one_token(model, token) for token in self.tokens]

        def bound(logits: Tensor, clean: Tensor) -> Tensor:
            out = self._fn(logits, clean, *ids)
            if not isinstance(out, Tensor) or out.shape != logits.shape[:1]:
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(
                    f"the metric {self.name} must return one number per run, a tensor of shape "
                    f"[{logits.shape[0]}] for logits [{logits.shape[0]}, vocab]; it returned {shape}"
                )
            return out.float()

        return bound


def one_token(model: LanguageModel, text: str) -> int:
    """The id of ``text`` as exactly one token of ``model``, or a ValueError showing its tokens.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-gpt2")
    >>> one_token(model, " the") == model.tokenizer.encode(" the")[0]
    True

    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"a metric token must be a non-empty str, got {text!r}")
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        pieces = [model.decode_token(i) for i in ids]
        hint = ""
        for other in (" " + text, text.lstrip()):
            if other != text and len(model.tokenizer.encode(other, add_special_tokens=False)) == 1:
                hint = f"; {other!r} is one token"
                break
        raise ValueError(f"{text!r} is {len(ids)} tokens for {model.name} ({pieces}), not one{hint}")
    return int(ids[0])


def logit_diff(correct: str, wrong: str) -> Metric:
    """Logit of ``correct`` minus logit of ``wrong`` at the last position (each one token).

    Examples
    --------
    >>> logit_diff(" Mary", " John").tokens
    (' Mary', ' John')

    """
    return Metric(f"logit({correct!r}) - logit({wrong!r})", (correct, wrong), lambda lg, _, a, b: lg[:, a] - lg[:, b])


def prob(token: str) -> Metric:
    """Probability of ``token`` (one token) as the next token.

    Examples
    --------
    >>> prob(" Paris").name
    "p(' Paris')"

    """
    return Metric(f"p({token!r})", (token,), lambda lg, _, a: lg.float().softmax(-1)[:, a])


def kl_to_clean() -> Metric:
    """KL divergence KL(clean ‖ patched) of the next-token distributions (0 on the clean run).

    Examples
    --------
    >>> kl_to_clean().name
    'KL(clean || run)'

    """

    def kl(logits: Tensor, clean: Tensor) -> Tensor:
        clean_log = clean.float().log_softmax(-1)
        return (clean_log.exp() * (clean_log - logits.float().log_softmax(-1))).sum(-1)

    return Metric("KL(clean || run)", (), kl)


# -- runs and the block engine ---------------------------------------------------------------
@dataclass
class _Run:
    """One forward pass (or a batch of them, N) with every activation patching reads: [N, pos, width]."""

    ids: Tensor  # [pos]
    resid: list[Tensor]  # n_layers + 1 entries: each block's input, then the final residual stream
    attn_out: list[Tensor]
    mlp_out: list[Tensor]
    z: list[Tensor]  # [N, pos, head * head_dim]
    logits: Tensor  # [N, vocab] at the last position
    kv: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)  # layer -> keys, values [N, kv_head, pos, hd]

    def site(self, site: str, layer: int) -> Tensor:
        return {"resid": self.resid, "attn": self.attn_out, "mlp": self.mlp_out, "heads": self.z}[site][layer]


@dataclass
class _Edit:
    """Replace ``site`` at ``layer`` and ``positions`` with ``value`` [len(positions), width] (or one head's slice)."""

    layer: int
    site: str
    positions: list[int]
    value: Tensor
    head: int | None = None


@dataclass
class _Cell:
    """One patched run: a base run (sample ``base`` of it) with edits."""

    edits: list[_Edit]
    base: int = 0

    @property
    def entry(self) -> int:
        return min(e.layer for e in self.edits)

    @property
    def start(self) -> int:
        return min(min(e.positions) for e in self.edits)


class _Engine:
    """Captures runs and re-runs the blocks from a layer and position on, with edits inside them."""

    max_rows = 8192  # batch x positions per block call: bounds memory for long prompts

    def __init__(self, model: LanguageModel) -> None:
        if not model.is_causal:
            raise ValueError(
                f"{model.name} is an encoder ({model.adapter.family}); patching, tracing and steering need a causal LM"
            )
        self.model = model
        self.adapter = model.adapter
        self.adapter.head()  # a ValueError now if the model predicts no tokens
        self.n_layers = model.n_layers

    # -- capture ---------------------------------------------------------------------------------
    def capture(
        self,
        ids: Sequence[int],
        *,
        noise: Tensor | None = None,
        grad_of: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[_Run, dict[str, list[Tensor]] | None]:
        """Run the model on ``ids`` and keep every site; ``noise`` [N, pos, d] is added to the embeddings.

        With ``grad_of`` (a function of the last logits [N, vocab] returning [N]), also return the
        gradient of its sum with respect to every site (for attribution patching).
        """
        adapter, n_layers = self.adapter, self.n_layers
        N = 1 if noise is None else noise.shape[0]
        keep: dict[str, list[Any]] = {s: [None] * n_layers for s in ("attn", "mlp", "heads")}
        keep["resid"] = [None] * (n_layers + 1)

        def keep_input(site: str, layer: int):  # type: ignore[no-untyped-def]
            def hook(module, args, kwargs):  # type: ignore[no-untyped-def]
                keep[site][layer] = args[0] if args else kwargs["hidden_states"]

            return hook

        def keep_output(site: str, layer: int):  # type: ignore[no-untyped-def]
            def hook(module, args, output):  # type: ignore[no-untyped-def]
                keep[site][layer] = output[0] if isinstance(output, tuple) else output

            return hook

        def add_noise(module, args, output):  # type: ignore[no-untyped-def]
            return output + noise.to(output)

        placed = []
        for layer, block in enumerate(adapter.blocks()):
            proj = adapter.attn_out_proj(layer)
            placed += [
                pre(block, keep_input("resid", layer), with_kwargs=True),
                pre(proj, keep_input("heads", layer), with_kwargs=True),
                post(proj, keep_output("attn", layer)),
                post(adapter.mlp(layer), keep_output("mlp", layer)),
            ]
        placed.append(pre(adapter.final_norm(), keep_input("resid", n_layers), with_kwargs=True))
        if noise is not None:
            placed.append(post(self.model.model.get_input_embeddings(), add_noise))
        input_ids = torch.tensor([list(ids)] * N, device=self.model.device)
        with hooked(self.model, placed), torch.set_grad_enabled(grad_of is not None):
            adapter.base()(input_ids=input_ids, use_cache=False)
            logits = adapter.logits(keep["resid"][n_layers][:, -1])
            grads = None
            if grad_of is not None:
                sites = [(s, i) for s in ("resid", "attn", "mlp", "heads") for i in range(n_layers)]
                found = torch.autograd.grad(grad_of(logits).sum(), [keep[s][i] for s, i in sites])
                grads = {s: [g.detach() for (s2, _), g in zip(sites, found, strict=True) if s2 == s] for s in SITES}
        run = _Run(
            ids=torch.tensor(list(ids)),
            resid=[t.detach() for t in keep["resid"]],
            attn_out=[t.detach() for t in keep["attn"]],
            mlp_out=[t.detach() for t in keep["mlp"]],
            z=[t.detach() for t in keep["heads"]],
            logits=logits.detach(),
        )
        return run, grads

    def _kv(self, run: _Run, layer: int) -> tuple[Tensor, Tensor]:  # called under the model's lock
        if layer not in run.kv:
            x = self.adapter.attn_norm(layer)(run.resid[layer])
            _, k, v = self.adapter.qkv(layer, x, torch.arange(x.shape[1], device=x.device))
            run.kv[layer] = (k, v)
        return run.kv[layer]

    # -- patched runs ----------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, base: _Run, cells: Sequence[_Cell]) -> Tensor:
        """The last position's logits [len(cells), vocab] of each patched run of ``base``."""
        with self.model.lock:
            return self._run(base, cells)

    def _run(self, base: _Run, cells: Sequence[_Cell]) -> Tensor:
        out: list[Tensor | None] = [None] * len(cells)
        by_start: dict[int, list[int]] = {}
        for i, cell in enumerate(cells):
            by_start.setdefault(cell.start, []).append(i)
        T = base.resid[0].shape[1]
        for start, members in by_start.items():
            per_batch = max(1, self.max_rows // (T - start))
            members.sort(key=lambda i: cells[i].entry)
            for b in range(0, len(members), per_batch):
                chunk = members[b : b + per_batch]
                logits = self._run_group(base, [cells[i] for i in chunk], start)
                for i, row in zip(chunk, logits, strict=True):
                    out[i] = row
        return torch.stack(out)  # type: ignore[arg-type]

    def _run_group(self, base: _Run, cells: list[_Cell], start: int) -> Tensor:
        # Cells enter at their first edited layer, in order; below it they are the base run.
        T = base.resid[0].shape[1]
        x = base.resid[0][:0, start:]
        entered = 0
        for layer in range(cells[0].entry, self.n_layers):
            # The base run's stream entering this layer sits where the layer runs (also on a sharded model).
            device = base.resid[layer].device
            x = x.to(device)
            while entered < len(cells) and cells[entered].entry == layer:
                entered += 1
                x = torch.cat([x, base.resid[layer][cells[entered - 1].base, start:][None]])
            edits = {
                s: [(i, e) for i, c in enumerate(cells[:entered]) for e in c.edits if e.layer == layer and e.site == s]
                for s in SITES
            }
            bases = torch.tensor([c.base for c in cells[:entered]], device=device)
            positions = torch.arange(start, T, device=device)
            x = self._block(layer, x, base, bases, start, positions, self._mask(start, T, device), edits)
        return self.adapter.logits(x[:, -1].to(base.resid[self.n_layers].device))

    def _mask(self, start: int, T: int, device: torch.device) -> Tensor:  # [T - start, T], True = attend
        q = torch.arange(start, T, device=device)[:, None]
        k = torch.arange(T, device=device)[None, :]
        allowed = k <= q
        if self.adapter.window is not None:
            allowed &= k > q - self.adapter.window
        return allowed

    def _block(
        self,
        layer: int,
        x: Tensor,  # [batch, pos - start, d_model]
        base: _Run,
        bases: Tensor,
        start: int,
        positions: Tensor,
        allowed: Tensor,
        edits: dict[str, list[tuple[int, _Edit]]],
    ) -> Tensor:
        a = self.adapter
        x = _apply(x, edits["resid"], start)
        q, k, v = a.qkv(layer, a.attn_norm(layer)(x), positions)
        if start:  # keys and values before `start` are the base run's
            base_k, base_v = self._kv(base, layer)
            k = torch.cat([base_k[bases, :, :start], k], dim=2)
            v = torch.cat([base_v[bases, :, :start], v], dim=2)
        group = a.n_heads // a.n_kv_heads
        if group > 1:
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=a.attn_scale(layer))
        z = z.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)  # [batch, pos, head * head_dim]
        if edits["heads"]:
            head_dim = z.shape[-1] // a.n_heads
            z = z.clone()
            for i, e in edits["heads"]:
                rows = torch.tensor(e.positions) - start
                z[i, rows, e.head * head_dim : (e.head + 1) * head_dim] = e.value.to(z)
        attn_out = _apply(a.attn_out_proj(layer)(z), edits["attn"], start)
        h = x + attn_out
        return h + _apply(a.mlp(layer)(a.mlp_norm(layer)(h)), edits["mlp"], start)


def _apply(t: Tensor, edits: list[tuple[int, _Edit]], start: int) -> Tensor:
    if not edits:
        return t
    t = t.clone()
    for i, e in edits:
        t[i, torch.tensor(e.positions) - start] = e.value.to(t)
    return t


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
    experiment: Patching = field(repr=False)

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
        order = effect.flatten().argsort(descending=True)[: _checks.int_in("n", n, 1, effect.numel())]
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
        return self.experiment.direction_at(layer, position)


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
        self.engine = _Engine(model)
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
            self.positions = sorted({_checks.index(p, T, "position", "the prompts have positions") for p in positions})
            if not self.positions:
                raise ValueError("positions is empty: give at least one position")
        metric = Metric.of(metric)
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
    def _cell(self, layer: int, index: int) -> _Cell | None:
        """The patched run of grid cell (layer, position or head); None where it is the base run."""
        if self.over == "heads":
            where = [p for p in self.positions if p >= self.first_difference]
            if not where:
                return None
            head_dim = self.source.z[layer].shape[-1] // self.model.n_heads
            value = self.source.z[layer][0, where, index * head_dim : (index + 1) * head_dim]
            return _Cell([_Edit(layer, "heads", where, value, head=index)])
        if index < self.first_difference:
            return None
        return _Cell([_Edit(layer, self.over, [index], self.source.site(self.over, layer)[0, [index]])])

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
        layer = _checks.layer(layer, L, self.model.name)
        what = (
            ("head", f"{self.model.name} has heads")
            if self.over == "heads"
            else ("position", "the prompt has positions")
        )
        index = _checks.index(index, cols, *what)
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
        from .trace import Prediction

        logits = self.cell_logits(layer, index)
        k = _checks.int_in("k", k, 1, 50)
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
        layer = _checks.layer(layer, self.model.n_layers, self.model.name)
        position = _checks.index(position, len(self.tokens), "position", "the prompt has positions")
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
    experiment = Patching(model, clean, corrupt, metric, over=over, direction=direction, positions=positions)
    return experiment.exact(progress=progress) if method == "exact" else experiment.attribution()


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

    def scores(self, kind: str = "resid") -> Tensor:
        """``probs[kind]`` normalised: 0 = the corrupted run, 1 = the clean run."""
        return (self.probs[kind] - self.corrupt_prob) / (self.clean_prob - self.corrupt_prob)


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
    engine = _Engine(model)
    for kind in kinds:
        if kind not in ("resid", "mlp", "attn"):
            raise ValueError(f"kinds must be among 'resid', 'mlp', 'attn'; got {kind!r}")
    samples = _checks.int_in("samples", samples, 1, 1000)
    window = _checks.int_in("window", window, 1, 1000)
    ids, offsets = model._encode(prompt, truncate=False)
    tokens = model.token_texts(prompt, ids, offsets)
    first, end = _subject_span(model, prompt, subject, offsets)
    clean, _ = engine.capture(ids)
    if target is None:
        target_id = int(clean.logits[0].argmax())
        target = model.decode_token(target_id)
    else:
        target_id = one_token(model, target)
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
                    edits = [_Edit(w, kind, [p], clean.site(kind, w)[0, [p]]) for w in layers]
                    cells += [_Cell(edits, base=n) for n in range(samples)]
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
    )


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
        from .neurons import check_neuron, neuron_output_weights

        weights = neuron_output_weights(model, layer)  # [neuron, d_model]; checks the layer
        vector = weights[check_neuron(model, neuron)].detach().float().clone()
        return cls(vector, _checks.layer(layer, model.n_layers, model.name) + 1, f"neuron {layer}.{neuron}")

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
        layer = _checks.index(layer, model.n_layers + 1, "layer", f"{model.name}'s residual stream has layers")

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
    where = _checks.index(where, model.n_layers + 1, "layer", f"{model.name}'s residual stream has layers")
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
        self.max_new_tokens = _checks.int_in("max_new_tokens", max_new_tokens, 1, room)
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
        found = {_checks.index(p, n, "position", "the prompt and its generation have positions") for p in positions}
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
