"""Sparse autoencoders (SAEs) on the residual stream: encode, decode, train, measure, save and load.

*Site.* An SAE of layer ``l`` reads the residual stream after block ``l``: TransformerLens's
``blocks.{l}.hook_resid_post``, the output of decoder layer ``l`` (what a forward hook on
``adapter.blocks()[l]`` sees), ``trace.resid_pre(l + 1)`` or ``trace["blocks.{l}.hook_resid_post"]``;
the same convention as concepts.py. Layers count from 0 and negative layers count from the end
(``_checks.layer``). EleutherAI's sparsify names this site ``layers.{l}``; SAELens's
``blocks.{l}.hook_resid_pre`` is the same tensor as ``blocks.{l-1}.hook_resid_post``.

*Encoder* (EleutherAI sparsify and OpenAI's TopK SAE, Gao et al. 2024, https://arxiv.org/abs/2406.04093)::

    pre  = (x − b_dec) @ W_enc + b_enc            # [.., n_latents]
    acts = TopK_k(ReLU(pre))                      # k largest kept, the rest 0
    x̂    = acts @ W_dec + b_dec                   # W_dec rows are unit vectors
    x    = x̂ + error                              # error: what the dictionary misses

``relu`` and ``jumprelu`` activations are read from SAELens files too. :func:`train_sae` trains a
TopK SAE sparsify's way: Adam, a learning rate scaled by ``1/sqrt(n_latents / 2**14)`` with linear
warm-up and decay, loss = FVU + AuxK/32 (the dead latents' best ``d_model/2`` predict the error), the
decoder's rows kept unit-norm, ``b_dec`` started at the activations' mean (or geometric median).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from . import _checks, _files
from .concepts import _block_output, _replace_output
from .hooks import hooked, post
from .neurons import _corpus, _padded, fingerprint
from .trace import Trace

if TYPE_CHECKING:
    from .causal import Direction
    from .models import LanguageModel

SAE_FORMAT = "llmasos_widgets.SAE"
SAE_VERSION = 1
CHECKPOINT_FORMAT = "llmasos_widgets.SAECheckpoint"
CHECKPOINT_VERSION = 1
ACTIVATION_CACHE_FORMAT = "llmasos_widgets.ActivationCache"
ACTIVATION_CACHE_VERSION = 1
ACTIVATION_CACHE_INDEX = "index.safetensors"
ACTIVATIONS = ("topk", "relu", "jumprelu")
MIN_TRAIN_TOKENS = 1024  # below this a dictionary of any useful width is mostly dead latents
AUXK_ALPHA = 1 / 32  # weight of the AuxK loss (Gao et al. 2024, appendix B.1)
MASSIVE_RATIO = 10.0  # tokens above this × the median norm are massive activations, left out (SAE.max_norm)
# Every layout load_sae reads, named in its errors.
LAYOUTS = (
    "a file written by SAE.save (one .safetensors with format llmasos_widgets.SAE)",
    "an EleutherAI sparsify folder (cfg.json + sae.safetensors, or one such folder per hookpoint)",
    "a SAELens folder (cfg.json + sae_weights.safetensors)",
)


class TopK(NamedTuple):
    """Sparse codes: the active latents of each row, largest first (zeros pad a row with fewer)."""

    values: Tensor  # [..., k]
    indices: Tensor  # [..., k] int64


@dataclass
class Reconstruction:
    """An SAE's reading of activations: ``x == reconstruction + error`` exactly."""

    reconstruction: Tensor  # [..., d_model]
    error: Tensor  # [..., d_model]
    codes: TopK  # the active latents
    n_latents: int

    @property
    def acts(self) -> Tensor:  # [..., n_latents]
        """The codes as a dense tensor."""
        values = self.codes.values
        return values.new_zeros(*values.shape[:-1], self.n_latents).scatter(-1, self.codes.indices, values)


@dataclass
class SAEQuality:
    """How well an SAE stands in for its layer, measured on held-out text.

    Attributes
    ----------
    variance_explained : float
        ``1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖²`` over every measured token (1 is perfect).
    fvu : float
        The fraction of variance unexplained, ``1 − variance_explained``.
    mean_l0 : float
        Active latents per token, on average.
    dead_share : float
        Share of latents that never fired on the measured tokens (``n_dead / n_latents``).
    ce_clean, ce_sae, ce_increase : float or None
        Next-token cross-entropy (nats per token) of the model, of the model with the SAE's
        reconstruction in place of the layer's output, and their difference. None for a model
        without a causal LM head.
    ce_zero, loss_recovered : float or None
        Cross-entropy with the layer's output zeroed, and ``(ce_zero − ce_sae) / (ce_zero − ce_clean)``
        (SAELens's "CE loss score": 1 when the SAE loses nothing).
    tokens, texts : int
        What was measured (skipped leading positions are not counted).
    massive : int
        Tokens left out because their norm is above the SAE's ``max_norm`` (massive activations).

    """

    variance_explained: float
    fvu: float
    mean_l0: float
    dead_share: float
    n_dead: int
    ce_clean: float | None
    ce_sae: float | None
    ce_increase: float | None
    ce_zero: float | None
    loss_recovered: float | None
    tokens: int
    texts: int
    massive: int = 0

    def __str__(self) -> str:
        ce = (
            f", CE {self.ce_clean:.3f} → {self.ce_sae:.3f} nats ({self.ce_increase:+.3f}), "
            f"loss recovered {self.loss_recovered:.1%}"
            if self.ce_sae is not None
            else ""
        )
        return (
            f"variance explained {self.variance_explained:.3f}, L0 {self.mean_l0:.1f}, "
            f"dead {self.dead_share:.1%}{ce} ({self.tokens} tokens"
            + (f"; {self.massive} massive ones left out)" if self.massive else ")")
        )


class SAE:
    """A sparse autoencoder of one layer's residual stream (see the module docstring for the maths).

    Parameters
    ----------
    W_enc : Tensor
        [d_model, n_latents] encoder.
    b_enc : Tensor
        [n_latents] encoder bias.
    W_dec : Tensor
        [n_latents, d_model] decoder: row i is latent i's direction.
    b_dec : Tensor
        [d_model] decoder bias (subtracted from the input first when ``apply_b_dec_to_input``).
    layer : int
        The site is the residual stream after block ``layer`` (``blocks.{layer}.hook_resid_post``).
    k : int, optional
        Active latents per token (``activation="topk"``).
    activation : str
        ``"topk"``, ``"relu"`` or ``"jumprelu"`` (the last with ``threshold``).
    threshold : Tensor, optional
        [n_latents] JumpReLU thresholds.
    apply_b_dec_to_input : bool
        Subtract ``b_dec`` from the input before encoding (sparsify and most SAELens SAEs do).
    skip_first : int
        Leading positions of each text left out of training and of the CE splice (SmolLM2's first
        position holds a "massive activation" a hundred times the others' norm).
    max_norm : float, optional
        Tokens whose activation norm is above this are not read either: the rare massive activations
        past the first position (attention sinks, Sun et al. 2024; in SmolLM2 about 1 token in 2,000,
        at 10–200× the median norm). Read, those few tokens would hold most of the variance (90 % in
        SmolLM2's layer 12), dominate the training loss and make the variance explained look near
        perfect. :meth:`reads` applies both rules.
    meta : dict
        Provenance: ``source``, ``model`` and ``fingerprint`` where known, training settings.

    Examples
    --------
    >>> import torch
    >>> sae = SAE.random(d_model=4, n_latents=8, k=2, layer=0)
    >>> x = torch.randn(3, 4)
    >>> sae.encode(x).shape, int((sae.encode(x) > 0).sum(-1).max()) <= 2
    (torch.Size([3, 8]), True)
    >>> r = sae.reconstruct(x)
    >>> bool(torch.allclose(r.reconstruction + r.error, x))
    True

    """

    def __init__(
        self,
        W_enc: Tensor,  # noqa: N803 (the field's names)
        b_enc: Tensor,
        W_dec: Tensor,  # noqa: N803
        b_dec: Tensor,
        layer: int,
        k: int | None = None,
        *,
        activation: str = "topk",
        threshold: Tensor | None = None,
        apply_b_dec_to_input: bool = True,
        skip_first: int = 0,
        max_norm: float | None = None,
        meta: dict[str, Any] | None = None,
        quality: SAEQuality | None = None,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown SAE activation {activation!r}: use one of {', '.join(ACTIVATIONS)}")
        d_model, n = W_enc.shape
        shapes = {"b_enc": (b_enc, (n,)), "W_dec": (W_dec, (n, d_model)), "b_dec": (b_dec, (d_model,))}
        if activation == "jumprelu":
            if threshold is None:
                raise ValueError("a jumprelu SAE needs its threshold [n_latents]")
            shapes["threshold"] = (threshold, (n,))
        for name, (t, shape) in shapes.items():
            if tuple(t.shape) != shape:
                raise ValueError(
                    f"SAE weights do not fit together: W_enc is [{d_model}, {n}] so {name} must be {list(shape)}, "
                    f"got {list(t.shape)}"
                )
        if activation == "topk":
            k = _checks.int_in("k", k, 1, n)
        self.W_enc, self.b_enc, self.W_dec, self.b_dec = W_enc, b_enc, W_dec, b_dec
        self.threshold = threshold
        self.layer, self.k, self.activation = int(layer), k, activation
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.skip_first = int(skip_first)
        self.max_norm = None if max_norm is None else float(max_norm)
        self.meta: dict[str, Any] = dict(meta or {})
        self.quality = quality

    @classmethod
    def random(cls, d_model: int, n_latents: int, k: int, layer: int, seed: int = 0) -> SAE:
        """An untrained TopK SAE as training starts it: unit decoder rows, encoder their transpose.

        Examples
        --------
        >>> sae = SAE.random(d_model=16, n_latents=64, k=4, layer=1)
        >>> round(float(sae.W_dec.norm(dim=1).mean()), 4)
        1.0

        """
        gen = torch.Generator().manual_seed(seed)
        bound = 1 / math.sqrt(d_model)  # nn.Linear's default initialisation, as sparsify's encoder
        enc = (torch.rand(n_latents, d_model, generator=gen) * 2 - 1) * bound
        W_dec = enc / enc.norm(dim=1, keepdim=True).clamp_min(torch.finfo(enc.dtype).eps)  # noqa: N806
        return cls(enc.T.contiguous(), torch.zeros(n_latents), W_dec, torch.zeros(d_model), layer, k)

    # -- shape ---------------------------------------------------------------------------------
    @property
    def d_model(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def n_latents(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def hook_name(self) -> str:
        """The site as TransformerLens names it, e.g. ``blocks.12.hook_resid_post``."""
        return f"blocks.{self.layer}.hook_resid_post"

    def reads(self, x: Tensor) -> Tensor:  # [..., pos] bool
        """Which tokens of ``x`` [..., pos, d_model] the SAE reads: position ≥ ``skip_first``, norm ≤ ``max_norm``.

        Training, the quality figures, :class:`~llmasos_widgets.FeatureIndex` and the views leave the
        others out.

        Examples
        --------
        >>> sae = SAE(torch.eye(2), torch.zeros(2), torch.eye(2), torch.zeros(2), 0, 1, skip_first=1, max_norm=10.0)
        >>> sae.reads(torch.tensor([[50.0, 0], [1, 2], [0, 300], [3, 1]])).tolist()
        [False, True, False, True]

        """
        read = (torch.arange(x.shape[-2], device=x.device) >= self.skip_first).expand(x.shape[:-1])
        if self.max_norm is not None:
            read = read & (x.detach().float().norm(dim=-1) <= self.max_norm)
        return read

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    def __repr__(self) -> str:
        act = f"TopK k={self.k}" if self.activation == "topk" else self.activation
        src = self.meta.get("model") or self.meta.get("source") or "?"
        return f"SAE({src!r}, layer {self.layer}, {self.d_model} → {self.n_latents} latents, {act})"

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> SAE:
        """Move the weights (in place) and return the SAE.

        Examples
        --------
        >>> SAE.random(4, 8, 2, 0).to(dtype=torch.float16).dtype
        torch.float16

        """
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device=device, dtype=dtype))
        return self

    # -- the maths -----------------------------------------------------------------------------
    def _input(self, x: Tensor | Trace) -> Tensor:
        if isinstance(x, Trace):
            self.check_model(x.model)
            x = x.resid_pre(self.layer + 1)
        if not isinstance(x, Tensor) or x.shape[-1] != self.d_model:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"this SAE reads [..., {self.d_model}] activations, got {got}")
        return x.to(device=self.device, dtype=self.dtype)

    def pre_acts(self, x: Tensor | Trace) -> Tensor:  # [..., n_latents]
        """The encoder's pre-activations, ``(x − b_dec) @ W_enc + b_enc`` (before ReLU / TopK).

        Examples
        --------
        >>> sae = SAE.random(4, 8, 2, 0)
        >>> sae.pre_acts(torch.zeros(4)).shape
        torch.Size([8])

        """
        x = self._input(x)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: Tensor | Trace, *, sparse: bool = False) -> Tensor | TopK:
        """Latent activations of ``x`` [..., d_model] (or of a Trace at this SAE's layer).

        Parameters
        ----------
        x : Tensor or Trace
            Residual-stream activations, or a trace of the model this SAE was made for.
        sparse : bool
            Return :class:`TopK` ``(values, indices)`` [..., k], largest first, instead of the dense
            [..., n_latents] tensor. For relu/jumprelu SAEs, k is the most latents any row has active.

        Examples
        --------
        >>> sae = SAE.random(4, 8, 2, 0)
        >>> codes = sae.encode(torch.randn(5, 4), sparse=True)
        >>> codes.values.shape, bool((codes.values[:, 0] >= codes.values[:, 1]).all())
        (torch.Size([5, 2]), True)

        """
        pre = self.pre_acts(x)
        if self.activation == "topk":
            top = torch.topk(pre, self.k, dim=-1)  # type: ignore[arg-type]
            values = top.values.clamp_min(0)
            if sparse:
                return TopK(values, top.indices)
            return torch.zeros_like(pre).scatter(-1, top.indices, values)
        dense = pre.clamp_min(0) if self.activation == "relu" else pre * (pre > self.threshold)
        if not sparse:
            return dense
        width = max(1, int((dense > 0).sum(-1).max())) if dense.numel() else 1
        top = torch.topk(dense, width, dim=-1)
        return TopK(top.values, top.indices)

    def decode(self, acts: Tensor | TopK) -> Tensor:  # [..., d_model]
        """``acts @ W_dec + b_dec`` from dense [..., n_latents] activations or sparse :class:`TopK` codes.

        Examples
        --------
        >>> sae = SAE.random(4, 8, 2, 0)
        >>> x = torch.randn(3, 4)
        >>> bool(torch.allclose(sae.decode(sae.encode(x)), sae.decode(sae.encode(x, sparse=True)), atol=1e-6))
        True

        """
        if isinstance(acts, TopK):
            return _decode_sparse(acts.values.to(self.dtype), acts.indices, self.W_dec) + self.b_dec
        return acts.to(device=self.device, dtype=self.dtype) @ self.W_dec + self.b_dec

    def reconstruct(self, x: Tensor | Trace) -> Reconstruction:
        """The reconstruction of ``x`` and the error term, ``x == reconstruction + error``.

        Examples
        --------
        >>> sae = SAE.random(4, 8, 2, 0)
        >>> r = sae.reconstruct(torch.randn(4))
        >>> r.acts.shape, r.codes.indices.shape
        (torch.Size([8]), torch.Size([2]))

        """
        x = self._input(x)
        codes = self.encode(x, sparse=True)
        assert isinstance(codes, TopK)
        recon = self.decode(codes)
        return Reconstruction(recon, x - recon, codes, self.n_latents)

    def direction(self, feature: int) -> Direction:
        """Feature ``feature``'s decoder row as a steering :class:`~llmasos_widgets.Direction`.

        The SAE of layer ``l`` reads ``blocks.{l}.hook_resid_post``, the stream entering block ``l + 1``,
        which is what a Direction's layer names: ``Direction(W_dec[feature], layer + 1)``.

        Examples
        --------
        >>> d = SAE.random(4, 8, 2, layer=1).direction(3)
        >>> d.layer, d.name, round(d.norm, 4)
        (2, 'SAE L1 feature 3', 1.0)

        """
        from .causal import Direction

        f = _checks.index(feature, self.n_latents, "feature", "this SAE has features")
        return Direction(self.W_dec[f].detach().float().cpu().clone(), self.layer + 1, f"SAE L{self.layer} feature {f}")

    # -- the model -----------------------------------------------------------------------------
    def check_model(self, model: LanguageModel) -> None:
        """Raise a ValueError if this SAE cannot read ``model``'s layer (width or layer differ).

        Examples
        --------
        >>> from llmasos_widgets import load_model
        >>> SAE.random(d_model=32, n_latents=64, k=4, layer=1).check_model(load_model("tiny-llama"))
        Traceback (most recent call last):
        ValueError: this SAE reads 32-wide activations but tiny-llama's residual stream is 64 wide ...

        """
        if model.d_model != self.d_model:
            raise ValueError(
                f"this SAE reads {self.d_model}-wide activations but {model.name}'s residual stream is "
                f"{model.d_model} wide (an SAE made for another model?)"
            )
        _checks.layer(self.layer, model.n_layers, model.name)
        mine = self.meta.get("fingerprint")
        if mine:
            theirs = fingerprint(model)
            diff = [f"{k}: SAE {mine.get(k)!r} vs model {theirs[k]!r}" for k in theirs if mine.get(k) != theirs[k]]
            shape_diff = [d for d in diff if not d.startswith("model:")]
            if shape_diff:
                raise ValueError(f"this SAE was made for another model ({', '.join(diff)})")
            if diff:
                warnings.warn(f"this SAE was made for {mine.get('model')!r}, not {model.name!r}", stacklevel=2)

    def evaluate(
        self,
        model: LanguageModel,
        texts: Sequence[str],
        *,
        batch_size: int = 16,
        max_tokens: int | None = 256,
        progress: bool = False,
    ) -> SAEQuality:
        """Measure the SAE on ``texts`` (see :class:`SAEQuality`), store it as ``self.quality`` and return it.

        The CE figures come from hooks on the real model: the layer's output is replaced by the
        reconstruction (or by zeros) at every position from ``skip_first`` on, and the next-token
        loss is averaged over the predictions made at those positions.

        Examples
        --------
        >>> import llmasos_widgets as lw
        >>> model = lw.load_model("tiny-llama")
        >>> q = SAE.random(64, 128, 8, layer=0).evaluate(model, lw.sample_texts()[:8])
        >>> q.tokens > 0, q.ce_increase is not None
        (True, True)

        """
        self.check_model(model)
        pieces, counts, _ = _corpus(model, texts, batch_size, max_tokens, "measure")
        self.quality = _evaluate(self, model, pieces, batch_size, progress)
        self.quality.texts = counts["texts"] - counts["skipped"]
        return self.quality

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], dtype: torch.dtype | None = None) -> Path:
        """Write the SAE to one safetensors file (atomically), optionally cast (``torch.float16`` halves it).

        Examples
        --------
        >>> import tempfile
        >>> sae = SAE.random(4, 8, 2, layer=1)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     back = SAE.load(sae.save(d + "/s.sae"))
        >>> back.layer, back.k, bool(torch.equal(back.W_dec, sae.W_dec))
        (1, 2, True)

        """
        tensors = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.threshold is not None:
            tensors["threshold"] = self.threshold
        tensors = {k: v.detach().cpu().to(dtype or v.dtype) for k, v in tensors.items()}
        meta = {
            "layer": self.layer,
            "k": self.k,
            "activation": self.activation,
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "skip_first": self.skip_first,
            "max_norm": self.max_norm,
            "meta": self.meta,
            "quality": asdict(self.quality) if self.quality is not None else None,
        }
        return _files.save(path, tensors, SAE_FORMAT, SAE_VERSION, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: LanguageModel | None = None) -> SAE:
        """Read a file written by :meth:`save`; with ``model``, check that the SAE fits it.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = open(d + "/x.sae", "w").write("not an SAE")
        ...     SAE.load(d + "/x.sae")
        Traceback (most recent call last):
        ValueError: ...x.sae is not a readable sparse autoencoder (corrupt or another kind of file): ...

        """
        meta, t = _files.load(path, SAE_FORMAT, SAE_VERSION, "sparse autoencoder", ("W_enc", "b_enc", "W_dec", "b_dec"))
        try:
            quality = SAEQuality(**meta["quality"]) if meta.get("quality") else None
            sae = cls(
                t["W_enc"],
                t["b_enc"],
                t["W_dec"],
                t["b_dec"],
                meta["layer"],
                meta.get("k"),
                activation=meta.get("activation", "topk"),
                threshold=t.get("threshold"),
                apply_b_dec_to_input=meta.get("apply_b_dec_to_input", True),
                skip_first=meta.get("skip_first", 0),
                max_norm=meta.get("max_norm"),
                meta=meta.get("meta"),
                quality=quality,
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path} has a corrupt sparse autoencoder header: {e!r}") from e
        if model is not None:
            sae.check_model(model)
        return sae


def _decode_sparse(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:  # noqa: N803
    # Σ_j values[.., j] · W_dec[indices[.., j]] without a dense [.., n_latents] tensor.
    flat_i, flat_v = indices.reshape(-1, indices.shape[-1]), values.reshape(-1, values.shape[-1])
    out = F.embedding_bag(flat_i, W_dec, per_sample_weights=flat_v, mode="sum")
    return out.reshape(*indices.shape[:-1], W_dec.shape[1])


# -- activations of a corpus -------------------------------------------------------------------
class _Stop(Exception):
    """Raised by a hook once the deepest layer needed has run: the rest of the forward is not needed."""


def _included(mask: Tensor, skip_first: int) -> Tensor:  # [batch, pos] bool
    pos = torch.arange(mask.shape[1], device=mask.device)[None]
    return mask.bool() & (pos >= skip_first)


def _forward_to(
    model: LanguageModel, layers: Sequence[int], batch: list[tuple[int, list[int]]]
) -> tuple[dict[int, Tensor], Tensor, Tensor]:
    """One forward pass, stopped after the deepest of ``layers``: ``({layer: acts [batch, pos, d_model]}, ids, mask)``.

    The stop is concepts.py's: a hook raises once the last layer needed has run.
    """
    ids, mask, _ = _padded(model, batch)
    ids, mask = ids.to(model.device), mask.to(model.device)
    kept: dict[int, Tensor] = {}
    blocks = model.adapter.blocks()
    deepest = max(layers)

    def keeper(layer: int):  # type: ignore[no-untyped-def]
        def hook(module, args, output):  # type: ignore[no-untyped-def]
            kept[layer] = _block_output(output).detach()
            if layer == deepest:
                raise _Stop  # nothing after the deepest layer asked for is needed

        return hook

    try:
        with hooked(model, [post(blocks[layer], keeper(layer)) for layer in sorted(set(layers))]), torch.no_grad():
            model.adapter.base()(input_ids=ids, attention_mask=mask)
    except _Stop:
        pass
    return kept, ids, mask


def _layer_acts(
    model: LanguageModel, layer: int, batch: list[tuple[int, list[int]]], skip_first: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One forward to ``layer``: ``(acts [batch, pos, d_model], ids, mask, included)`` on the model's device."""
    kept, ids, mask = _forward_to(model, [layer], batch)
    return kept[layer], ids, mask, _included(mask, skip_first)


def _next_token_loss(
    model: LanguageModel, hidden: Tensor, ids: Tensor, mask: Tensor, where: Tensor
) -> tuple[float, int]:
    """Summed next-token cross-entropy of predictions at positions ``where`` [batch, pos], and their count."""
    head = model.adapter.head()
    where = where[:, :-1] & mask[:, 1:].bool()  # the next token must be real, not padding
    rows, targets = hidden[:, :-1][where], ids[:, 1:][where]
    total = 0.0
    for start in range(0, rows.shape[0], 512):  # never a [tokens, vocab] tensor for the whole batch
        logits = head(rows[start : start + 512]).float()
        total += float(F.cross_entropy(logits, targets[start : start + 512], reduction="sum"))
    return total, int(rows.shape[0])


def _evaluate(
    sae: SAE, model: LanguageModel, pieces: list[tuple[int, list[int]]], batch_size: int, progress: bool
) -> SAEQuality:
    causal = model.is_causal and model.adapter.unembed() is not None
    block = model.adapter.blocks()[sae.layer]
    n = 0
    sum_x = torch.zeros(sae.d_model, dtype=torch.float64)
    sum_sq = sum_err = l0 = 0.0
    fired = torch.zeros(sae.n_latents, dtype=torch.bool)
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    n_pred = massive = 0
    # One hook for the whole run: it keeps the layer's output, or replaces it at the included positions.
    state: dict[str, Tensor | None] = {"with": None, "inc": None, "acts": None}

    def hook(module, args, output):  # type: ignore[no-untyped-def]
        h = _block_output(output)
        if state["with"] is None:
            state["acts"] = h.detach()
            return None
        new = torch.where(state["inc"][..., None], state["with"].to(h.dtype), h)  # type: ignore[index]
        return _replace_output(output, new)

    def forward(ids: Tensor, mask: Tensor) -> Tensor:
        return model.adapter.base()(input_ids=ids, attention_mask=mask).last_hidden_state

    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][1]))
    bar = tqdm(total=sum(len(p) for _, p in pieces), unit="tok", desc="measuring SAE", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            batch = [pieces[i] for i in order[start : start + batch_size]]
            ids, mask, _ = _padded(model, batch)
            ids, mask = ids.to(model.device), mask.to(model.device)
            state.update({"with": None, "inc": None})
            # One batch at a time holds the model: other views' requests run between batches.
            with hooked(model, [post(block, hook)]), torch.no_grad():
                hidden = forward(ids, mask)
                x = state["acts"]
                assert x is not None
                read = sae.reads(x)
                massive += int((_included(mask, sae.skip_first) & ~read).sum())
                inc = state["inc"] = mask.bool() & read
                rows = x[inc].float()
                r = sae.reconstruct(rows)
                n += rows.shape[0]
                sum_x += rows.double().sum(0).cpu()
                sum_sq += float(rows.double().pow(2).sum())
                sum_err += float(r.error.double().pow(2).sum())
                l0 += float((r.codes.values > 0).sum())
                fired[r.codes.indices[r.codes.values > 0].cpu()] = True
                if causal:
                    loss, count = _next_token_loss(model, hidden, ids, mask, inc)
                    ce["clean"] += loss
                    n_pred += count
                    recon = torch.zeros_like(x)
                    recon[inc] = r.reconstruction.to(x)
                    for name, value in (("sae", recon), ("zero", torch.zeros_like(x))):
                        state["with"] = value
                        ce[name] += _next_token_loss(model, forward(ids, mask), ids, mask, inc)[0]
            bar.update(int(mask.sum()))
    finally:
        bar.close()
    if n == 0:
        raise ValueError(
            f"no tokens to measure at positions ≥ skip_first={sae.skip_first} with norm ≤ max_norm={sae.max_norm}: "
            "give longer texts"
        )
    total_var = sum_sq - float(sum_x.pow(2).sum()) / n
    fvu = sum_err / total_var if total_var > 0 else float("nan")
    n_dead = int((~fired).sum())
    if causal and n_pred:
        clean, with_sae, zero = (ce[k] / n_pred for k in ("clean", "sae", "zero"))
        recovered = (zero - with_sae) / (zero - clean) if zero != clean else float("nan")
        ce_values: tuple[float | None, ...] = (clean, with_sae, with_sae - clean, zero, recovered)
    else:
        ce_values = (None,) * 5
    return SAEQuality(
        1 - fvu, fvu, l0 / n, n_dead / sae.n_latents, n_dead, *ce_values,  # type: ignore[arg-type]
        tokens=n, texts=len(pieces), massive=massive,
    )  # fmt: skip


# -- training ----------------------------------------------------------------------------------
def geometric_median(points: Tensor, iters: int = 100, eps: float = 1e-6) -> Tensor:
    """The point minimising the summed distance to ``points`` [n, d] (Weiszfeld's iteration).

    Examples
    --------
    >>> geometric_median(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])).round(decimals=2)
    tensor([0.5000, 0.5000])

    """
    points = points.double()
    guess = points.mean(0)
    for _ in range(iters):
        weights = 1 / (points - guess).norm(dim=1).clamp_min(eps)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if (new - guess).norm() < eps * (1 + guess.norm()):
            guess = new
            break
        guess = new
    return guess.float()


@dataclass
class _Settings:
    """Everything that decides a training run; a checkpoint resumes only the run it was written for."""

    layer: int
    n_latents: int
    k: int
    seed: int
    epochs: int
    lr: float
    warmup_steps: int
    batch_tokens: int
    buffer_tokens: int
    dead_tokens: int
    b_dec_init: str
    skip_first: int
    massive_ratio: float | None
    corpus: dict[str, Any] = field(default_factory=dict)


class _Trainer:
    """The optimisation of a TopK SAE over a fixed plan of activation buffers (sparsify's recipe)."""

    def __init__(self, s: _Settings, d_model: int, device: torch.device, total_steps: int) -> None:
        self.s, self.total_steps = s, total_steps
        init = SAE.random(d_model, s.n_latents, s.k, s.layer, seed=s.seed)
        self.params = {
            name: getattr(init, name).to(device).requires_grad_(True) for name in ("W_enc", "b_enc", "W_dec", "b_dec")
        }
        self.opt = torch.optim.Adam(list(self.params.values()), lr=s.lr)
        self.since_fired = torch.zeros(s.n_latents, dtype=torch.long, device=device)
        self.step = 0

    def lr_at(self, step: int) -> float:
        # Linear warm-up, then linear decay to 0 at the last step (transformers' linear schedule).
        if step < self.s.warmup_steps:
            return self.s.lr * (step + 1) / self.s.warmup_steps
        left = max(1, self.total_steps - self.s.warmup_steps)
        return self.s.lr * max(0.0, (self.total_steps - step) / left)

    def init_b_dec(self, acts: Tensor) -> None:
        with torch.no_grad():
            sample = acts[:16384].float()
            center = sample.mean(0) if self.s.b_dec_init == "mean" else geometric_median(sample.cpu())
            self.params["b_dec"].copy_(center.to(self.params["b_dec"].device))

    def train_step(self, x: Tensor) -> tuple[float, float]:
        """One Adam step on a minibatch ``x`` [tokens, d_model]; returns (FVU, AuxK loss)."""
        p = self.params
        W_enc, b_enc, W_dec, b_dec = p["W_enc"], p["b_enc"], p["W_dec"], p["b_dec"]  # noqa: N806
        pre = (x - b_dec) @ W_enc + b_enc
        top = torch.topk(pre, self.s.k, dim=-1)
        values = top.values.clamp_min(0)
        recon = _decode_sparse(values, top.indices, W_dec) + b_dec
        err = x - recon
        total_var = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        fvu = err.pow(2).sum() / total_var
        dead = self.since_fired > self.s.dead_tokens
        n_dead = int(dead.sum())
        auxk = x.new_zeros(())
        if n_dead:
            # The dead latents' best k_aux pre-activations predict what the live ones missed
            # (Gao et al. 2024, B.1; pre-ReLU values as in SAELens, so negative ones still learn).
            k_aux = min(x.shape[1] // 2, n_dead)
            scale = min(n_dead / (x.shape[1] // 2), 1.0)
            aux = torch.topk(pre.masked_fill(~dead, -math.inf), k_aux, dim=-1)
            e_hat = _decode_sparse(aux.values, aux.indices, W_dec)
            auxk = scale * (e_hat - err.detach()).pow(2).sum() / total_var
        loss = fvu + AUXK_ALPHA * auxk
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            # Keep decoder rows unit-norm: drop the gradient along each row, step, renormalise.
            g = W_dec.grad
            assert g is not None
            g -= (g * W_dec).sum(1, keepdim=True) * W_dec
            for group in self.opt.param_groups:
                group["lr"] = self.lr_at(self.step)
            self.opt.step()
            W_dec /= W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(W_dec.dtype).eps)
            fired = torch.zeros_like(dead)
            fired[top.indices[values > 0]] = True
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0
        self.step += 1
        return float(fvu.detach()), float(auxk.detach())

    def sae(self, meta: dict[str, Any], max_norm: float | None) -> SAE:
        p = {k: v.detach().cpu().clone() for k, v in self.params.items()}
        return SAE(
            p["W_enc"],
            p["b_enc"],
            p["W_dec"],
            p["b_dec"],
            self.s.layer,
            self.s.k,
            skip_first=self.s.skip_first,
            max_norm=max_norm,
            meta=meta,
        )

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path: Path, position: dict[str, Any], log: dict[str, Any]) -> None:
        tensors = {f"param.{k}": v.detach() for k, v in self.params.items()}
        tensors["since_fired"] = self.since_fired
        state = self.opt.state_dict()["state"]
        for i, name in enumerate(self.params):
            if i in state:
                tensors[f"adam.{name}.exp_avg"] = state[i]["exp_avg"]
                tensors[f"adam.{name}.exp_avg_sq"] = state[i]["exp_avg_sq"]
                tensors[f"adam.{name}.step"] = torch.as_tensor(state[i]["step"], dtype=torch.float64).reshape(1)
        meta = {"settings": asdict(self.s), "step": self.step, "position": position, "log": log}
        _files.save(path, {k: v.cpu() for k, v in tensors.items()}, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, meta)

    def restore(self, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        meta, t = _files.load(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "SAE training checkpoint")
        if meta["settings"] != json.loads(json.dumps(asdict(self.s))):
            theirs, mine = meta["settings"], json.loads(json.dumps(asdict(self.s)))
            diff = ", ".join(
                f"{k}: checkpoint {theirs.get(k)!r} vs now {mine[k]!r}" for k in mine if theirs.get(k) != mine[k]
            )
            raise ValueError(
                f"the checkpoint {path} was written by another training run ({diff}); "
                "give another checkpoint path or delete it to start over"
            )
        device = self.since_fired.device
        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(t[f"param.{k}"].to(device))
        self.since_fired.copy_(t["since_fired"].to(device))
        state = {}
        for i, name in enumerate(self.params):
            if f"adam.{name}.step" in t:
                state[i] = {
                    "step": t[f"adam.{name}.step"].reshape(()).float(),
                    "exp_avg": t[f"adam.{name}.exp_avg"].to(device),
                    "exp_avg_sq": t[f"adam.{name}.exp_avg_sq"].to(device),
                }
        sd = self.opt.state_dict()
        sd["state"] = state
        self.opt.load_state_dict(sd)
        self.step = int(meta["step"])
        return meta["position"], meta["log"]


def _plan(n_tokens: list[int], buffer_tokens: int, epochs: int, seed: int) -> list[list[int]]:
    """Buffers of piece indices: each epoch shuffles the pieces (seeded) and fills buffers greedily."""
    plan = []
    for epoch in range(epochs):
        order = list(range(len(n_tokens)))
        random.Random(f"{seed}/{epoch}").shuffle(order)
        buf: list[int] = []
        size = 0
        for i in order:
            buf.append(i)
            size += n_tokens[i]
            if size >= buffer_tokens:
                plan.append(buf)
                buf, size = [], 0
        if buf:
            plan.append(buf)
    return plan


def train_sae(
    model: LanguageModel,
    texts: Sequence[str] | ActivationCache,
    layer: int,
    n_latents: int | None = None,
    k: int = 32,
    *,
    seed: int = 0,
    epochs: int = 1,
    lr: float | None = None,
    warmup_steps: int | None = None,
    batch_tokens: int = 2048,
    buffer_tokens: int = 65536,
    dead_tokens: int | None = None,
    b_dec_init: str = "mean",
    skip_first: int | None = None,
    massive_ratio: float | None = MASSIVE_RATIO,
    max_tokens: int = 256,
    batch_size: int = 32,
    eval_texts: Sequence[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 200,
    max_steps: int | None = None,
    progress: bool = True,
) -> SAE:
    """Train a TopK sparse autoencoder on the residual stream after block ``layer`` over ``texts``.

    Activations are gathered ``buffer_tokens`` at a time (memory: buffer × d_model floats), shuffled
    within the buffer and fed in minibatches of ``batch_tokens``. The run is seeded (weights, text
    order, buffer shuffles) and, with ``checkpoint``, resumable: the checkpoint is rewritten
    atomically every ``checkpoint_every`` steps, on Ctrl-C and at the end, and a later call with the
    same arguments continues where it stopped (a finished run returns at once).

    Parameters
    ----------
    model : LanguageModel
        From :func:`~llmasos_widgets.load_model`.
    texts : sequence of str or ActivationCache
        The training corpus; pieces longer than ``max_tokens`` are split. Or a complete
        :class:`ActivationCache` of this model holding ``layer`` (:func:`cache_activations`): the
        activations are read from disk instead of running the model (its pieces and ``max_tokens``
        are used; the same seed gives the same SAE up to the cache's float16 rounding).
    layer : int
        The site is ``blocks.{layer}.hook_resid_post`` (negative counts from the end).
    n_latents : int, optional
        Dictionary size; default ``8 × d_model``.
    k : int
        Active latents per token.
    seed, epochs, lr, warmup_steps : optional
        ``lr`` defaults to sparsify's ``2e-4 / sqrt(n_latents / 2**14)``; ``warmup_steps`` to
        ``min(1000, total_steps // 10)``.
    batch_tokens, buffer_tokens : int
        Tokens per optimiser step, tokens gathered per buffer.
    dead_tokens : int, optional
        A latent that has not fired for this many training tokens is dead and gets the AuxK loss;
        default ``min(10_000_000, training tokens // 10)`` (sparsify uses 10M on far larger corpora).
    b_dec_init : str
        ``"mean"`` (sparsify) or ``"geometric_median"`` (Bricken et al. 2023) of the first buffer.
    skip_first : int, optional
        Leading positions of every piece left out (default 1 for models whose first position carries
        a massive activation, as SmolLM2's does; 0 otherwise: see :func:`massive_first_position`).
    massive_ratio : float, optional
        Tokens whose norm is above this many times the median norm of the first buffer are left out
        (the SAE's ``max_norm``; see :class:`SAE`); None keeps every token.
    max_tokens, batch_size : int
        Longest piece, and pieces per forward pass.
    eval_texts : sequence of str, optional
        Texts for :attr:`SAE.quality`; by default about 5 % of the pieces (up to ~16k tokens) are
        held out of training for it.
    checkpoint : path, optional
        A file to resume from and write to.
    checkpoint_every : int
        Steps between checkpoints.
    max_steps : int, optional
        Stop after this many steps in total (the checkpoint lets a later call continue).
    progress : bool
        Show a tqdm bar (FVU, dead share).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> texts = lw.sample_texts()[:300]
    >>> sae = train_sae(model, texts, layer=1, n_latents=128, k=8, batch_tokens=256, epochs=3, progress=False)
    >>> sae.n_latents, sae.quality.variance_explained > 0.5
    (128, True)

    """
    layer = _checks.layer(layer, model.n_layers, model.name)
    d_model = model.d_model
    n_latents = 8 * d_model if n_latents is None else n_latents
    _checks.int_in("n_latents", n_latents, 2, 2**22)
    _checks.int_in("k", k, 1, n_latents)
    _checks.int_in("epochs", epochs, 1, 10_000)
    _checks.int_in("batch_tokens", batch_tokens, 1, 2**24)
    _checks.int_in("buffer_tokens", buffer_tokens, 1, 2**30)
    _checks.int_in("checkpoint_every", checkpoint_every, 1, 2**31)
    if b_dec_init not in ("mean", "geometric_median"):
        raise ValueError(f"b_dec_init must be 'mean' or 'geometric_median', got {b_dec_init!r}")
    cache = texts if isinstance(texts, ActivationCache) else None
    if cache is not None:
        cache.check_model(model)
        if layer not in cache.layers:
            raise ValueError(f"the activation cache {cache.path} holds layers {cache.layers}, not layer {layer}")
        if not cache.complete:
            raise ValueError(
                f"the activation cache {cache.path} is incomplete ({cache.done_batches} of {cache.meta['n_batches']} "
                "batches): call cache_activations again with the same arguments to finish it"
            )
        pieces, counts, max_tokens = list(cache.pieces), cache.meta["counts"], int(cache.meta["max_tokens"])
        _checks.int_in("batch_size", batch_size, 1, 2**31)
    else:
        pieces, counts, max_tokens = _corpus(model, texts, batch_size, max_tokens, "train on")  # type: ignore[arg-type]
    if skip_first is None:
        skip_first = 1 if massive_first_position(model) else 0
    _checks.int_in("skip_first", skip_first, 0, max_tokens - 1)
    if massive_ratio is not None and not (isinstance(massive_ratio, (int, float)) and massive_ratio > 1):
        raise ValueError(f"massive_ratio must be a number above 1 (× the median norm) or None, got {massive_ratio!r}")
    source = list(range(len(pieces)))  # training piece -> the corpus's piece (a cache's row block)
    if eval_texts is None:
        # Hold out a fixed, seeded share for the quality report (the training plan never sees it).
        order = list(range(len(pieces)))
        random.Random(f"{seed}/held-out").shuffle(order)
        held, size = [], 0
        for i in order[: max(1, len(pieces) // 20)]:
            if size >= 16384:
                break
            held.append(i)
            size += len(pieces[i][1])
        held_set = set(held)
        eval_pieces = [pieces[i] for i in held]
        source = [i for i in source if i not in held_set]
        pieces = [pieces[i] for i in source]
    else:
        eval_pieces, _, _ = _corpus(model, eval_texts, batch_size, max_tokens, "measure")
    n_tokens = [max(0, len(p) - skip_first) for _, p in pieces]
    total = sum(n_tokens) * epochs
    if sum(n_tokens) < MIN_TRAIN_TOKENS:
        raise ValueError(
            f"the corpus is too small to train an SAE: {sum(n_tokens)} training tokens at positions ≥ {skip_first} "
            f"({len(pieces)} pieces after holding out {len(eval_pieces)} for evaluation); give at least "
            f"{MIN_TRAIN_TOKENS} (lw.sample_texts() has about 40,000)"
        )
    plan = _plan(n_tokens, buffer_tokens, epochs, seed)
    # A buffer's last minibatch takes the remainder (a tiny batch would have ~no variance to explain).
    buffer_sizes = [sum(n_tokens[i] for i in buf) for buf in plan]
    steps_per_buffer = [max(1, size // batch_tokens) if size > 1 else 0 for size in buffer_sizes]
    total_steps = sum(steps_per_buffer)
    lr = 2e-4 / math.sqrt(n_latents / 2**14) if lr is None else float(lr)
    warmup_steps = min(1000, max(1, total_steps // 10)) if warmup_steps is None else warmup_steps
    dead_tokens = min(10_000_000, max(1, total // 10)) if dead_tokens is None else dead_tokens
    corpus_id = {
        "model": fingerprint(model),
        "texts": counts["texts"],
        "pieces": len(pieces),
        "tokens": sum(n_tokens),
        "max_tokens": max_tokens,
    }
    settings = _Settings(
        layer, n_latents, k, seed, epochs, lr, warmup_steps, batch_tokens, buffer_tokens, dead_tokens,
        b_dec_init, skip_first, massive_ratio, corpus_id,
    )  # fmt: skip
    trainer = _Trainer(settings, d_model, model.device, total_steps)
    position = {"buffer": 0, "batch": 0}
    log: dict[str, Any] = {"seconds_forward": 0.0, "seconds_sae": 0.0, "tokens": 0, "fvu": None, "massive": 0}
    log["max_norm"] = None  # set from the first buffer's median norm
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        position, log = trainer.restore(path)

    def save() -> None:
        if path is not None:
            trainer.save(path, position, log)

    bar = tqdm(
        total=total_steps, initial=trainer.step, unit="step", desc=f"training SAE L{layer}", disable=not progress
    )
    stopped = False
    try:
        for b in range(position["buffer"], len(plan)):
            if max_steps is not None and trainer.step >= max_steps:
                stopped = True
                break
            started = time.perf_counter()
            if cache is not None:  # the rows in the order _gather gives them: pieces sorted by length
                order = sorted(plan[b], key=lambda i: len(pieces[i][1]))
                acts = cache._rows(layer, [source[i] for i in order], skip_first).to(model.device)
            else:
                acts = _gather(model, layer, [pieces[i] for i in plan[b]], batch_size, skip_first)
            log["seconds_forward"] += time.perf_counter() - started
            if massive_ratio is not None:
                norms = acts.float().norm(dim=-1)
                if log["max_norm"] is None:
                    log["max_norm"] = massive_ratio * float(norms.median())
                ordinary = norms <= log["max_norm"]
                log["massive"] += int((~ordinary).sum()) if position["batch"] == 0 else 0
                acts = acts[ordinary]
            if trainer.step == 0:
                trainer.init_b_dec(acts)
            perm = torch.randperm(acts.shape[0], generator=torch.Generator().manual_seed(seed * 1_000_003 + b))
            started = time.perf_counter()
            for m in range(position["batch"], steps_per_buffer[b]):
                if max_steps is not None and trainer.step >= max_steps:
                    stopped = True
                    break
                end = (m + 1) * batch_tokens if m < steps_per_buffer[b] - 1 else acts.shape[0]
                rows = perm[m * batch_tokens : end].to(acts.device)
                fvu, _ = trainer.train_step(acts[rows].float())
                log["tokens"] += int(rows.shape[0])
                log["fvu"] = fvu
                position = {"buffer": b, "batch": m + 1}
                bar.update()
                if trainer.step % 20 == 0:
                    dead = float((trainer.since_fired > dead_tokens).float().mean())
                    bar.set_postfix(fvu=f"{fvu:.3f}", dead=f"{dead:.1%}")
                if trainer.step % checkpoint_every == 0:
                    log["seconds_sae"] += time.perf_counter() - started
                    started = time.perf_counter()
                    save()
            log["seconds_sae"] += time.perf_counter() - started
            if stopped:
                break
            position = {"buffer": b + 1, "batch": 0}
    except KeyboardInterrupt:
        save()
        raise
    finally:
        bar.close()
    save()
    seconds = log["seconds_forward"] + log["seconds_sae"]
    meta = {
        "source": "train_sae",
        "model": model.name,
        "fingerprint": fingerprint(model),
        "train": {
            **{k: v for k, v in asdict(settings).items() if k != "corpus"},
            "texts": counts["texts"],
            "activations": f"cache {cache.path}" if cache is not None else "model",
            "training_tokens": sum(n_tokens),
            "steps": trainer.step,
            "total_steps": total_steps,
            "finished": trainer.step >= total_steps,
            "tokens_seen": log["tokens"],
            "seconds_forward": round(log["seconds_forward"], 2),
            "seconds_sae": round(log["seconds_sae"], 2),
            "tokens_per_second": round(log["tokens"] / seconds, 1) if seconds else None,
            "dead_share_train": float((trainer.since_fired > dead_tokens).float().mean()),
            "massive_left_out": log["massive"],
            "last_fvu": log["fvu"],
        },
    }
    sae = trainer.sae(meta, log["max_norm"])
    sae.quality = _evaluate(sae, model, eval_pieces, batch_size, progress=False)
    if stopped and progress:
        tqdm.write(f"stopped at step {trainer.step} of {total_steps} (max_steps); call again to continue")
    return sae


def _gather(
    model: LanguageModel, layer: int, batch_pieces: list[tuple[int, list[int]]], batch_size: int, skip_first: int
) -> Tensor:  # [tokens, d_model] on the model's device, in the order of batch_pieces' tokens
    chunks = []
    # Forward in length-sorted batches (little padding); the buffer is shuffled afterwards anyway.
    order = sorted(range(len(batch_pieces)), key=lambda i: len(batch_pieces[i][1]))
    for start in range(0, len(order), batch_size):
        acts, _, _, inc = _layer_acts(
            model, layer, [batch_pieces[i] for i in order[start : start + batch_size]], skip_first
        )
        chunks.append(acts[inc])
    return torch.cat(chunks)


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
        meta, t = _files.load(
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
        i = _checks.index(i, len(self.pieces), "piece", "this cache has pieces")
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
    layers = sorted({_checks.layer(layer, model.n_layers, model.name) for layer in layers})
    if dtype not in (torch.float16, torch.float32):
        raise ValueError(f"dtype must be torch.float16 or torch.float32, got {dtype!r}")
    _checks.int_in("flush_every", flush_every, 1, 2**31)
    pieces, counts, max_tokens = _corpus(model, texts, batch_size, max_tokens, "cache")
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
        _files.save(index, tensors, ACTIVATION_CACHE_FORMAT, ACTIVATION_CACHE_VERSION, meta)

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
            kept, _, _ = _forward_to(model, layers, [pieces[i] for i in batches[n]])
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


def massive_first_position(model: LanguageModel, ratio: float = MASSIVE_RATIO) -> bool:
    """Whether the model's first position carries a "massive activation" (an attention sink).

    The residual norm at position 0, halfway through the model, over the median of the others' on a
    short text, against ``ratio`` (``MASSIVE_RATIO``, the rule :attr:`SAE.max_norm` uses for every
    other token). SmolLM2's is about 150×; an SAE trained with it would spend its variance on one
    token, so :func:`train_sae` leaves position 0 out where this is true. The norm ratio is measured
    once per model; each call compares it with its own ``ratio``.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> massive_first_position(load_model("tiny-llama"))
    False
    >>> massive_first_position(load_model("tiny-llama"), ratio=1e-3)  # any first position clears a tiny ratio
    True

    """
    if not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and ratio > 0):
        raise ValueError(f"ratio must be a positive number, got {ratio!r}")
    measured = _FIRST_POSITION_RATIO.get(model)
    if measured is None:
        ids = model.tokenizer("The cat sat on the mat and looked at the door.", add_special_tokens=True)["input_ids"]
        acts, _, _, _ = _layer_acts(model, model.n_layers // 2, [(0, list(ids))], 0)
        norms = acts[0].float().norm(dim=-1)
        measured = float(norms[0] / norms[1:].median()) if norms.shape[0] > 2 else 0.0
        _FIRST_POSITION_RATIO[model] = measured
    return measured > ratio


# The first position's norm over the median of the others', per model (massive_first_position).
_FIRST_POSITION_RATIO: weakref.WeakKeyDictionary[LanguageModel, float] = weakref.WeakKeyDictionary()


# -- loading -----------------------------------------------------------------------------------
_SPARSIFY_HOOK = re.compile(r"^(?:.*\.)?(?:layers|h|layer|blocks)\.(\d+)$")
_SAELENS_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def shipped_saes() -> dict[str, list[int]]:
    """The SAEs that ship inside the package: ``{model name: [layers]}``.

    Examples
    --------
    >>> isinstance(shipped_saes(), dict)
    True

    """
    folder = resources.files("llmasos_widgets").joinpath("data/saes")
    out: dict[str, list[int]] = {}
    if not folder.is_dir():
        return out
    for entry in folder.iterdir():
        match = re.match(r"^(.+)-layer(\d+)\.safetensors$", entry.name)
        if match:
            out.setdefault(match.group(1), []).append(int(match.group(2)))
    return {name: sorted(layers) for name, layers in sorted(out.items())}


def load_sae(
    name_or_path: str | os.PathLike[str],
    layer: int | None = None,
    *,
    model: LanguageModel | None = None,
    hookpoint: str | None = None,
    revision: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
) -> SAE:
    """Load an SAE: a shipped one by model name, a local file or folder, or a Hugging Face hub id.

    Parameters
    ----------
    name_or_path : str or path
        A bundled model's name (``"smollm2-135m"``, with ``layer``: the SAE shipped for it;
        ``"smollm2-135m-randomized"``: the control trained the same way on
        :func:`~llmasos_widgets.randomized` weights, see :func:`shipped_saes`); a file
        written by :meth:`SAE.save`; an EleutherAI sparsify folder (``cfg.json`` with ``d_in``, ``k``,
        ``num_latents`` or ``expansion_factor``, and ``sae.safetensors`` with ``encoder.weight``
        [n_latents, d_in], ``encoder.bias``, ``W_dec`` [n_latents, d_in], ``b_dec``), or a folder of
        such folders, one per hookpoint (``layers.12``); a SAELens folder (``cfg.json`` with ``d_in``,
        ``d_sae``, ``architecture``, ``hook_name``, ``k`` or ``activation_fn_kwargs.k`` for TopK, and
        ``sae_weights.safetensors`` with ``W_enc`` [d_in, d_sae], ``b_enc``, ``W_dec`` [d_sae, d_in],
        ``b_dec``); or a hub id (``"EleutherAI/sae-SmolLM2-135M-64x"``), downloaded with
        ``huggingface_hub.snapshot_download`` (only the chosen layer's folder).
    layer : int, optional
        Which layer's SAE, where a repository holds several; also the layer of an SAE whose files do
        not say it.
    model : LanguageModel, optional
        Check that the SAE fits this model (width and layer).
    hookpoint : str, optional
        The sub-folder to read (``"layers.12"``, ``"blocks.12.hook_resid_post"``), instead of ``layer``.
    revision : str, optional
        A hub revision.
    device : str or torch.device
        Where to put the weights.
    dtype : torch.dtype, optional
        The weights' dtype in memory (float32 by default: the shipped files are float16 to halve
        them, and float16 matmuls are slow and coarse on a CPU); None keeps the file's.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     sae = load_sae(SAE.random(4, 8, 2, layer=3).save(d + "/s.sae"))
    >>> sae.layer
    3
    >>> load_sae("no/such-sae-offline")
    Traceback (most recent call last):
    OSError: could not download the SAE 'no/such-sae-offline' from the Hugging Face hub ...

    """
    if isinstance(name_or_path, str) and (name_or_path in _bundled_names() or name_or_path in shipped_saes()):
        sae = _load_shipped(name_or_path, layer)
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            text = str(name_or_path)
            if not _HUB_ID.match(text):
                raise ValueError(
                    f"no SAE at {text!r}: give a bundled model's name ({', '.join(_bundled_names())}), a hub id "
                    f"such as 'EleutherAI/sae-SmolLM2-135M-64x', or a path to {'; '.join(LAYOUTS)}"
                )
            path = _download(text, layer, hookpoint, revision)
        sae = _load_path(path, layer, hookpoint)
    if model is not None:
        sae.check_model(model)
    return sae.to(device, dtype)


def _bundled_names() -> tuple[str, ...]:
    from .models import BUNDLED

    return tuple(BUNDLED)


def _load_shipped(name: str, layer: int | None) -> SAE:
    available = shipped_saes().get(name, [])
    if layer is None or layer not in available:
        have = f"layers {available}" if available else "none yet"
        raise ValueError(
            f"no shipped SAE for {name!r} at layer {layer!r} (shipped: {have}); train one with "
            f"lw.train_sae(model, texts, layer=...) or load a sparsify or SAELens folder"
        )
    entry = resources.files("llmasos_widgets").joinpath(f"data/saes/{name}-layer{layer}.safetensors")
    with resources.as_file(entry) as file:
        return SAE.load(file)


def _download(repo_id: str, layer: int | None, hookpoint: str | None, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    roots = ["cfg.json", "sae.safetensors", "sae_weights.safetensors"]
    if hookpoint is not None:
        patterns = [f"{hookpoint}/*"]
    elif layer is not None:
        patterns = [f"layers.{layer}/*", f"blocks.{layer}.hook_resid_post/*", *roots]
    else:
        patterns = roots
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except Exception as e:  # huggingface_hub raises many kinds (offline, not found, HTTP, auth)
        raise OSError(
            f"could not download the SAE {repo_id!r} from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Offline, load a local folder instead: {'; '.join(LAYOUTS)}"
        ) from e


def _load_path(path: Path, layer: int | None, hookpoint: str | None) -> SAE:
    if path.is_file():
        head = _files.header(path)
        if _files.declared_format(path) == SAE_FORMAT:
            return SAE.load(path)  # a damaged one is refused there, with the reason
        if path.name in ("sae.safetensors", "sae_weights.safetensors"):
            return _load_path(path.parent, layer, hookpoint)
        kind = "a safetensors file of another format" if head is not None else "not a safetensors file"
        raise ValueError(f"{path} is not an SAE this package reads ({kind}); it reads {'; '.join(LAYOUTS)}")
    if hookpoint is not None:
        sub = path / hookpoint
        if not (sub / "cfg.json").is_file():
            raise ValueError(f"{path} has no hookpoint folder {hookpoint!r}; it has {_hookpoints(path) or 'none'}")
        return _load_path(sub, layer, None)
    cfg_file = path / "cfg.json"
    if not cfg_file.is_file():
        folders = _hookpoints(path)
        if not folders:
            raise ValueError(
                f"{path} holds no SAE (no cfg.json, no hookpoint folders); it must be {'; '.join(LAYOUTS)}"
            )
        if layer is None:
            if len(folders) == 1:
                return _load_path(path / folders[0], None, None)
            raise ValueError(
                f"{path} holds SAEs for several hookpoints ({', '.join(folders)}): pass layer= or hookpoint="
            )
        for name in folders:
            if _layer_of(name) == layer:
                return _load_path(path / name, layer, None)
        raise ValueError(f"{path} has no SAE for layer {layer}; it has {', '.join(folders)}")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{cfg_file} is not readable JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_file} must hold a JSON object, got {type(cfg).__name__}")
    if (path / "sae.safetensors").is_file():
        return _from_sparsify(path, cfg, layer)
    if (path / "sae_weights.safetensors").is_file():
        return _from_saelens(path, cfg, layer)
    raise ValueError(
        f"{path} has cfg.json but neither sae.safetensors (sparsify) nor sae_weights.safetensors (SAELens)"
    )


def _hookpoints(path: Path) -> list[str]:
    return sorted(
        (p.name for p in path.iterdir() if p.is_dir() and (p / "cfg.json").is_file()),
        key=lambda n: (_layer_of(n) is None, _layer_of(n) or 0, n),
    )


def _layer_of(name: str) -> int | None:
    for pattern in (_SPARSIFY_HOOK, _SAELENS_HOOK):
        match = pattern.match(name)
        if match:
            layer = int(match.group(1))
            return layer - 1 if match.re is _SAELENS_HOOK and match.group(2) == "pre" else layer
    return None


def _read_weights(file: Path, keys: Sequence[str], layout: str) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        t = load_file(str(file))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{file} is not a readable {layout} weights file (corrupt or truncated): {e}") from e
    missing = [k for k in keys if k not in t]
    if missing:
        raise ValueError(f"{file} is not a {layout} SAE: it lacks {missing} (it has {sorted(t)})")
    return t


def _from_sparsify(path: Path, cfg: dict[str, Any], layer: int | None) -> SAE:
    if cfg.get("transcode"):
        raise ValueError(f"{path} is a sparsify transcoder (it predicts a module's output): only SAEs are supported")
    if cfg.get("activation", "topk") != "topk":
        raise ValueError(f"{path} uses sparsify's {cfg.get('activation')!r} activation: only 'topk' is supported")
    t = _read_weights(path / "sae.safetensors", ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), "sparsify")
    if t.get("W_skip") is not None:
        raise ValueError(f"{path} has a skip connection (W_skip): only plain SAEs are supported")
    enc = t["encoder.weight"]
    d_in = int(cfg.get("d_in", enc.shape[1]))
    n = int(cfg.get("num_latents") or 0) or d_in * int(cfg.get("expansion_factor", 0) or 0) or enc.shape[0]
    if tuple(enc.shape) != (n, d_in):
        raise ValueError(f"{path}: encoder.weight is {list(enc.shape)} but cfg.json says [{n}, {d_in}]")
    layer = _layer_of(path.name) if layer is None else layer
    if layer is None:
        raise ValueError(f"{path} does not say its layer (the folder is not named layers.N): pass layer=")
    meta = {"source": f"sparsify: {path}", "hookpoint": path.name, "cfg": cfg}
    return SAE(enc.T.contiguous(), t["encoder.bias"], t["W_dec"], t["b_dec"], layer, int(cfg.get("k", 32)), meta=meta)


def _from_saelens(path: Path, cfg: dict[str, Any], layer: int | None) -> SAE:
    meta_cfg = cfg.get("metadata") or cfg.get("meta") or {}
    hook = cfg.get("hook_name") or cfg.get("hook_point") or meta_cfg.get("hook_name")
    arch = cfg.get("architecture", "standard")
    act_fn = cfg.get("activation_fn") or cfg.get("activation_fn_str") or "relu"
    if arch == "topk" or act_fn == "topk":
        activation = "topk"
        k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
        if k is None:
            raise ValueError(f"{path}/cfg.json is a TopK SAE but gives no k (neither 'k' nor 'activation_fn_kwargs.k')")
    elif arch == "standard":
        activation, k = "relu", None
    elif arch == "jumprelu":
        activation, k = "jumprelu", None
    else:
        raise ValueError(f"{path} is a SAELens {arch!r} SAE: supported architectures are standard, topk and jumprelu")
    norm = cfg.get("normalize_activations") or "none"
    if norm not in ("none", False):
        raise ValueError(
            f"{path} rescales its input (normalize_activations={norm!r}); only SAEs without normalisation are supported"
        )
    if cfg.get("finetuning_scaling_factor"):
        raise ValueError(f"{path} has a finetuning scaling factor: not supported")
    keys = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if activation == "jumprelu" else [])
    t = _read_weights(path / "sae_weights.safetensors", keys, "SAELens")
    d_in, d_sae = int(cfg.get("d_in", t["W_enc"].shape[0])), int(cfg.get("d_sae", t["W_enc"].shape[1]))
    if tuple(t["W_enc"].shape) != (d_in, d_sae):
        raise ValueError(f"{path}: W_enc is {list(t['W_enc'].shape)} but cfg.json says [{d_in}, {d_sae}]")
    if layer is None:
        if hook is None:
            raise ValueError(f"{path}/cfg.json names no hook_name: pass layer=")
        match = _SAELENS_HOOK.match(hook)
        if not match or (match.group(2) == "pre" and int(match.group(1)) == 0):
            raise ValueError(
                f"{path} reads {hook!r}; only residual-stream SAEs are supported "
                "(blocks.L.hook_resid_post, or blocks.L.hook_resid_pre with L ≥ 1)"
            )
        layer = _layer_of(hook)
    meta = {
        "source": f"SAELens: {path}",
        "hook_name": hook,
        "model": meta_cfg.get("model_name") or cfg.get("model_name"),
    }
    return SAE(
        t["W_enc"],
        t["b_enc"],
        t["W_dec"],
        t["b_dec"],
        int(layer),  # type: ignore[arg-type]
        int(k) if k is not None else None,
        activation=activation,
        threshold=t.get("threshold"),
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        meta={k: v for k, v in meta.items() if v is not None},
    )
