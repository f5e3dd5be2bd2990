"""Loading SAEs: the shipped ones, our files, EleutherAI sparsify and SAELens folders, and hub ids."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ...core import checks, files
from .model import SAE, SAE_FORMAT

if TYPE_CHECKING:
    from ...core.models import LanguageModel

# Every layout load_sae reads, named in its errors.
LAYOUTS = (
    "a file written by SAE.save (one .safetensors with format llmasos_widgets.SAE)",
    "an EleutherAI sparsify folder (cfg.json + sae.safetensors, or one such folder per hookpoint)",
    "a SAELens folder (cfg.json + sae_weights.safetensors)",
)


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
    from ...core.models import BUNDLED

    return tuple(BUNDLED)


def _load_shipped(name: str, layer: int | None) -> SAE:
    available = shipped_saes().get(name, [])
    if available and isinstance(layer, int) and not isinstance(layer, bool) and layer < 0:
        # Negative counts from the end of the model's layers, as everywhere: the files say how many it has.
        meta = json.loads((files.header(_shipped_file(name, available[0])) or {})["meta"])
        layer = checks.layer(layer, int(meta["meta"]["fingerprint"]["n_layers"]), name)
    if layer is None or layer not in available:
        have = f"layers {available}" if available else "none yet"
        raise ValueError(
            f"no shipped SAE for {name!r} at layer {layer!r} (shipped: {have}); train one with "
            f"lw.train_sae(model, texts, layer=...) or load a sparsify or SAELens folder"
        )
    return SAE.load(_shipped_file(name, layer))


def _shipped_file(name: str, layer: int) -> Path:
    entry = resources.files("llmasos_widgets").joinpath(f"data/saes/{name}-layer{layer}.safetensors")
    with resources.as_file(entry) as file:  # the package is installed as files: this is the file itself
        return Path(file)


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
        head = files.header(path)
        if files.declared_format(path) == SAE_FORMAT:
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
