"""Writing an SAE in SAELens's and EleutherAI sparsify's own layouts, so that their loaders read ours.

Each writer gives exactly the files the library's own ``save_model`` / ``save_to_disk`` writes (the same
config keys, the same tensor names and shapes), checked in tests/analyses/test_sae_files.py by loading
them with the library and comparing its ``encode`` with ours. What the library has no field for is named
in a warning and kept under ``"llmasos_widgets"`` (in SAELens's config metadata, in a file beside sparsify's
config), where :func:`load_sae` reads it back.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file
from torch import Tensor

if TYPE_CHECKING:
    from .model import SAE

# SAELens reads a config whose metadata says a version below 6 as its older layout; ours is the 6.x one.
SAELENS_LAYOUT_VERSION = "6.0.0"
# sparsify names a hookpoint by the Hugging Face module it hooks: decoder layers are `layers.{l}` in Llama,
# Mistral, Qwen, GPT-NeoX and most models, their MLPs `layers.{l}.mlp` (GPT-2 says `h.{l}`, read too).
OURS_FILE = "llmasos_widgets.json"  # beside sparsify's cfg.json: what sparsify has no field for
SPARSIFY_HOOKPOINT = {"hook_resid_post": "layers.{layer}", "hook_mlp_out": "layers.{layer}.mlp"}


def save_saelens(sae: SAE, path: str | os.PathLike[str], dtype: torch.dtype | None = None) -> Path:
    """Write ``sae`` as a SAELens 6 folder (``cfg.json`` + ``sae_weights.safetensors``); return the folder.

    ``sae_lens.SAE.load_from_disk(folder)`` reads it as a ``TopKSAE`` (``rescale_acts_by_decoder_norm``
    off: the weights are used as they are), a ``StandardSAE`` (relu) or a ``JumpReLUSAE``.

    Examples
    --------
    >>> import tempfile, warnings
    >>> from llmasos_widgets.analyses.sae import SAE
    >>> with tempfile.TemporaryDirectory() as d:
    ...     folder = save_saelens(SAE.random(4, 8, 2, layer=1), d + "/sae")
    ...     cfg = json.loads((folder / "cfg.json").read_text())
    >>> cfg["architecture"], cfg["k"], cfg["metadata"]["hook_name"]
    ('topk', 2, 'blocks.1.hook_resid_post')

    """
    tensors = _tensors(dtype, {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec})
    if sae.activation == "jumprelu":
        tensors["threshold"] = _cast(sae.threshold, dtype)  # type: ignore[arg-type]
    architecture = {"topk": "topk", "relu": "standard", "jumprelu": "jumprelu"}[sae.activation]
    cfg: dict[str, Any] = {
        "d_in": sae.d_model,
        "d_sae": sae.n_latents,
        "dtype": str(tensors["W_enc"].dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_LAYOUT_VERSION,
            "sae_lens_training_version": SAELENS_LAYOUT_VERSION,
            "hook_name": sae.hook_name,
            "model_name": sae.meta.get("model"),
            "llmasos_widgets": _extras(sae, "SAELens"),
        },
        "architecture": architecture,
    }
    if sae.activation == "topk":
        cfg.update(k=sae.k, rescale_acts_by_decoder_norm=False)
    return _write(Path(path), {"sae_weights.safetensors": tensors}, cfg)


def save_sparsify(sae: SAE, path: str | os.PathLike[str], dtype: torch.dtype | None = None) -> Path:
    """Write ``sae`` as an EleutherAI sparsify folder ``path/layers.{l}`` (or ``layers.{l}.mlp``); return it.

    ``sparsify.Sae.load_from_disk(returned)`` reads it, ``Sae.load_many(path, local=True)`` finds it. sparsify's
    SAEs are TopK that subtract ``b_dec`` from the input: an SAE that does not gets ``b_dec @ W_enc`` added to
    its encoder bias instead (the same pre-activations); relu and jumprelu SAEs have no sparsify form.

    Examples
    --------
    >>> import tempfile, warnings
    >>> from llmasos_widgets.analyses.sae import SAE
    >>> with tempfile.TemporaryDirectory() as d:
    ...     folder = save_sparsify(SAE.random(4, 8, 2, layer=1), d)
    ...     cfg = json.loads((folder / "cfg.json").read_text())
    >>> folder.name, cfg["k"], cfg["num_latents"], cfg["d_in"]
    ('layers.1', 2, 8, 4)

    """
    if sae.activation != "topk":
        raise ValueError(
            f"sparsify has TopK SAEs only, and this one is {sae.activation}: save it with format='saelens' instead"
        )
    b_enc = sae.b_enc if sae.apply_b_dec_to_input else sae.b_enc + sae.b_dec @ sae.W_enc
    tensors = _tensors(
        dtype, {"encoder.weight": sae.W_enc.T, "encoder.bias": b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
    )
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, sae.n_latents // sae.d_model),
        "normalize_decoder": bool(torch.allclose(sae.W_dec.norm(dim=1), torch.ones(()), atol=1e-3)),
        "num_latents": sae.n_latents,
        "k": sae.k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": sae.d_model,
    }
    folder = Path(path) / SPARSIFY_HOOKPOINT[sae.site].format(layer=sae.layer)
    # sparsify's loader prints every key it does not know: ours go beside its cfg.json, in a file of their own.
    return _write(folder, {"sae.safetensors": tensors}, cfg, {OURS_FILE: {"llmasos_widgets": _extras(sae, "sparsify")}})


def _extras(sae: SAE, library: str) -> dict[str, Any]:
    # Our rules for which tokens an SAE reads have no field in either library: their encode reads every token.
    extras = {"layer": sae.layer, "site": sae.site, "skip_first": sae.skip_first, "max_norm": sae.max_norm}
    lost = [f"skip_first={sae.skip_first}"] if sae.skip_first else []
    lost += [f"max_norm={sae.max_norm:g}"] if sae.max_norm is not None else []
    if lost:
        warnings.warn(
            f"{library} has no setting for {' and '.join(lost)}: its encode reads every token (kept in cfg.json "
            "under 'llmasos_widgets', where load_sae reads them back)",
            stacklevel=4,
        )
    return extras


def _cast(t: Tensor, dtype: torch.dtype | None) -> Tensor:
    return t.detach().cpu().to(dtype or t.dtype).contiguous()


def _tensors(dtype: torch.dtype | None, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: _cast(t, dtype) for name, t in tensors.items()}


def _write(
    folder: Path, weights: dict[str, dict[str, Tensor]], cfg: dict[str, Any], more: dict[str, Any] | None = None
) -> Path:
    # Written beside the folder and moved into place: a folder is either the old one or the whole new one.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, tensors in weights.items():
            save_file(tensors, str(tmp / name))
        for name, content in {"cfg.json": cfg, **(more or {})}.items():
            (tmp / name).write_text(json.dumps(content, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
