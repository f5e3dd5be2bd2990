"""The SAE itself: its weights, encode, decode and reconstruct, its site, and its own file format."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core import checks, files
from ...core.corpus import text_corpus
from ...core.trace import Trace
from ..corpus_index import fingerprint
from .export import save_saelens, save_sparsify
from .quality import SAEQuality, measure

if TYPE_CHECKING:
    from ...core.models import LanguageModel
    from ..causal import Direction

SAE_FORMAT = "llmasos_widgets.SAE"
SAE_VERSION = 1
ACTIVATIONS = ("topk", "relu", "jumprelu")
# Where an SAE reads, as TransformerLens names the site at block `layer` (core/hooks.py resolves both).
SITES = ("hook_resid_post", "hook_mlp_out")
FORMATS = ("llmasos_widgets", "saelens", "sparsify")  # what SAE.save writes
MASSIVE_RATIO = 10.0  # tokens above this × the median norm are massive activations, left out (SAE.max_norm)


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
        The block whose output the SAE reads (see ``site``).
    k : int, optional
        Active latents per token (``activation="topk"``).
    activation : str
        ``"topk"``, ``"relu"`` or ``"jumprelu"`` (the last with ``threshold``).
    threshold : Tensor, optional
        [n_latents] JumpReLU thresholds: a latent is ``ReLU(pre)`` where ``pre > threshold``, else 0
        (SAELens's and GemmaScope's rule, so a negative threshold still gives no negative activation).
    apply_b_dec_to_input : bool
        Subtract ``b_dec`` from the input before encoding (sparsify and most SAELens SAEs do).
    site : str
        ``"hook_resid_post"`` (the residual stream after block ``layer``, the default) or
        ``"hook_mlp_out"`` (what block ``layer``'s MLP adds to it): :attr:`hook_name` is
        ``blocks.{layer}.{site}``. Training, the feature index and the views read the residual stream only.
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
        site: str = "hook_resid_post",
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
            k = checks.int_in("k", k, 1, n)
        if site not in SITES:
            raise ValueError(f"unknown SAE site {site!r}: use one of {', '.join(SITES)}")
        self.W_enc, self.b_enc, self.W_dec, self.b_dec = W_enc, b_enc, W_dec, b_dec
        self.threshold = threshold
        self.layer, self.k, self.activation = int(layer), k, activation
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.site = site
        self.skip_first = int(skip_first)
        self.max_norm = None if max_norm is None else float(max_norm)
        self.meta: dict[str, Any] = dict(meta or {})
        self.quality = quality

    @classmethod
    def random(
        cls, d_model: int, n_latents: int, k: int, layer: int, seed: int = 0, site: str = "hook_resid_post"
    ) -> SAE:
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
        return cls(enc.T.contiguous(), torch.zeros(n_latents), W_dec, torch.zeros(d_model), layer, k, site=site)

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
        return f"blocks.{self.layer}.{self.site}"

    def require_residual(self, what: str) -> None:
        """Raise a ValueError naming ``what`` if this SAE does not read the residual stream.

        Examples
        --------
        >>> SAE.random(4, 8, 2, 0, site="hook_mlp_out").require_residual("FeatureView")
        Traceback (most recent call last):
        ValueError: FeatureView reads the residual stream, but this SAE reads blocks.0.hook_mlp_out ...

        """
        if self.site != "hook_resid_post":
            raise ValueError(
                f"{what} reads the residual stream, but this SAE reads {self.hook_name} (an MLP's output): "
                "encode activations read at that site instead (lw.core.hooks.read(model, [sae.hook_name], ...))"
            )

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
        where = f"layer {self.layer}" if self.site == "hook_resid_post" else self.hook_name
        return f"SAE({src!r}, {where}, {self.d_model} → {self.n_latents} latents, {act})"

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
            self.require_residual("encoding a Trace")
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
        dense = pre.clamp_min(0)
        if self.activation == "jumprelu":
            dense = dense * (pre > self.threshold)  # ReLU first: a negative threshold lets no negative through
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
            return decode_sparse(acts.values.to(self.dtype), acts.indices, self.W_dec) + self.b_dec
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
        from ..causal import Direction

        f = checks.index(feature, self.n_latents, "feature", "this SAE has features")
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
        checks.layer(self.layer, model.n_layers, model.name)
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
        pieces, counts, _ = text_corpus(model, texts, batch_size, max_tokens, "measure")
        self.quality = measure(self, model, pieces, batch_size, progress)
        self.quality.texts = counts["texts"] - counts["skipped"]
        return self.quality

    # -- files ---------------------------------------------------------------------------------
    def save(
        self,
        path: str | os.PathLike[str],
        dtype: torch.dtype | None = None,
        *,
        format: str = "llmasos_widgets",  # noqa: A002 (the word the libraries use)
    ) -> Path:
        """Write the SAE (atomically), optionally cast (``torch.float16`` halves it); return what was written.

        ``format="llmasos_widgets"`` (the default): one safetensors file that :meth:`load` reads back whole.
        ``"saelens"``: a SAELens folder (``cfg.json`` + ``sae_weights.safetensors``) that
        ``sae_lens.SAE.load_from_disk`` reads; ``"sparsify"``: an EleutherAI sparsify folder holding one
        hookpoint folder (``path/layers.{layer}`` or ``path/layers.{layer}.mlp``, returned) that
        ``sparsify.Sae.load_from_disk`` reads. Either gives the same codes as this SAE; settings the
        library has no field for (``skip_first``, ``max_norm``) are named in a warning, and kept in the
        files where :func:`load_sae` reads them back. See export.py.

        Examples
        --------
        >>> import tempfile
        >>> sae = SAE.random(4, 8, 2, layer=1)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     back = SAE.load(sae.save(d + "/s.sae"))
        >>> back.layer, back.k, bool(torch.equal(back.W_dec, sae.W_dec))
        (1, 2, True)

        """
        if format != "llmasos_widgets":
            if format not in FORMATS:
                raise ValueError(f"unknown SAE file format {format!r}: use one of {', '.join(FORMATS)}")
            return (save_saelens if format == "saelens" else save_sparsify)(self, path, dtype)
        tensors = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.threshold is not None:
            tensors["threshold"] = self.threshold
        tensors = {k: v.detach().cpu().to(dtype or v.dtype) for k, v in tensors.items()}
        meta = {
            "layer": self.layer,
            "k": self.k,
            "activation": self.activation,
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "site": self.site,
            "skip_first": self.skip_first,
            "max_norm": self.max_norm,
            "meta": self.meta,
            "quality": asdict(self.quality) if self.quality is not None else None,
        }
        return files.save(path, tensors, SAE_FORMAT, SAE_VERSION, meta)

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
        meta, t = files.load(path, SAE_FORMAT, SAE_VERSION, "sparse autoencoder", ("W_enc", "b_enc", "W_dec", "b_dec"))
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
                site=meta.get("site", "hook_resid_post"),
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


def decode_sparse(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:  # noqa: N803
    # Σ_j values[.., j] · W_dec[indices[.., j]] without a dense [.., n_latents] tensor.
    flat_i, flat_v = indices.reshape(-1, indices.shape[-1]), values.reshape(-1, values.shape[-1])
    out = F.embedding_bag(flat_i, W_dec, per_sample_weights=flat_v, mode="sum")
    return out.reshape(*indices.shape[:-1], W_dec.shape[1])
