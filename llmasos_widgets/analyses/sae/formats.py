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
from .export import OURS_FILE
from .model import SAE, SAE_FORMAT

if TYPE_CHECKING:
    from ...core.models import LanguageModel

# Every layout load_sae reads, named in its errors.
LAYOUTS = (
    "a file written by SAE.save (one .safetensors with format llmasos_widgets.SAE)",
    "an EleutherAI sparsify folder (cfg.json + sae.safetensors, or one such folder per hookpoint: layers.12, "
    "layers.12.mlp, layers.12/seed0)",
    "a SAELens folder (cfg.json + sae_weights.safetensors)",
    "a GemmaScope params.npz (W_enc, W_dec, b_enc, b_dec, threshold)",
)


# -- sites -------------------------------------------------------------------------------------
# A site is (layer, "hook_resid_post" | "hook_mlp_out"): where SAE.site says the SAE reads.
_SAELENS_HOOK = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_mlp_out)$")
# sparsify names a hookpoint by the module it hooks (the module's output): `layers.12` is the decoder layer,
# the residual stream after it; `layers.12.mlp` its MLP. Prefixes (`model.`, `gpt_neox.`) and GPT-2's `h.12`
# name the same modules.
_SPARSIFY_HOOK = re.compile(r"^(?:.*\.)?(?:layers|h|layer|blocks)\.(\d+)(\.mlp)?$")
_SPARSIFY_LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.\d+(?:\.|$)")  # names a layer's module
_SEED = re.compile(r"^seed\d+$")  # sparsify's folder per initialisation seed: layers.12/seed0
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# GemmaScope repositories: gemma-scope-2b-pt-res (residual stream), -mlp (MLP output), -att, -transcoders.
_GEMMASCOPE_REPO = re.compile(r"gemma-scope-.*-(res|mlp|att|transcoders)(?:-canonical)?$")
_SITE_NAMES = "blocks.L.hook_resid_post (or blocks.L.hook_resid_pre, L ≥ 1) and blocks.L.hook_mlp_out"


def _site_of_hook(hook: str) -> tuple[int, str] | None:
    """(layer, site) of a TransformerLens hook name an SAE can read, else None."""
    match = _SAELENS_HOOK.match(hook)
    if not match:
        return None
    layer, what = int(match.group(1)), match.group(2)
    if what == "hook_resid_pre":  # the stream entering block L is the one leaving block L − 1
        return (layer - 1, "hook_resid_post") if layer >= 1 else None
    return layer, what


def _site_of_hookpoint(name: str) -> tuple[int, str] | None:
    """(layer, site) of a sparsify hookpoint (``layers.12``, ``layers.12.mlp``), else None."""
    match = _SPARSIFY_HOOK.match(name)
    if not match:
        return None
    return int(match.group(1)), "hook_mlp_out" if match.group(2) else "hook_resid_post"


def _given_site(layer: int | None, hook_name: str | None) -> tuple[int, str] | None:
    """The site the caller gave: ``hook_name``, or ``layer`` (the residual stream after it), or None."""
    if hook_name is None:
        return None if layer is None else (layer, "hook_resid_post")
    site = _site_of_hook(hook_name)
    if site is None:
        raise ValueError(f"hook_name={hook_name!r} is not a site an SAE here reads: use {_SITE_NAMES}")
    if layer is not None and layer != site[0]:
        raise ValueError(f"layer={layer} and hook_name={hook_name!r} disagree: give one")
    return site


def _settle_site(path: Path, said: tuple[int, str] | None, what: str, layer: int | None, hook_name: str | None):
    """The site of the SAE at ``path``: what its files say (``said``, described by ``what``), else the caller's.

    The files win; a caller's layer or hook name that disagrees with them is refused, never overridden.
    """
    if said is None:
        given = _given_site(layer, hook_name)
        if given is None:
            raise ValueError(f"{path} does not say where it reads ({what}): pass layer= or hook_name= ({_SITE_NAMES})")
        return given
    if hook_name is not None and _given_site(None, hook_name) != said:
        raise ValueError(f"{path} reads blocks.{said[0]}.{said[1]} ({what}), not hook_name={hook_name!r}")
    if layer is not None and layer != said[0]:
        raise ValueError(f"{path} reads blocks.{said[0]}.{said[1]} ({what}), not layer {layer}")
    return said


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
    hook_name: str | None = None,
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
        The sub-folder to read (``"layers.12"``, ``"layers.12.mlp/seed1"``, ``"blocks.12.hook_resid_post"``),
        instead of ``layer``.
    hook_name : str, optional
        Where the SAE reads, as TransformerLens names it (``"blocks.12.hook_resid_post"``,
        ``"blocks.12.hook_mlp_out"``): for files that do not say it (``layer=`` alone means the
        residual stream), or to choose between ``layers.12`` and ``layers.12.mlp``. Files that say
        another site are refused.
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
        sae = _load_path(path, layer, hookpoint, hook_name)
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

    roots = ["cfg.json", "sae.safetensors", "sae_weights.safetensors", "params.npz"]
    if hookpoint is not None:
        patterns = [f"{hookpoint}/*"]
    elif layer is not None:
        names = (
            f"layers.{layer}",
            f"layers.{layer}.mlp",
            f"blocks.{layer}.hook_resid_post",
            f"blocks.{layer}.hook_mlp_out",
        )
        patterns = [f"{n}/*" for n in names] + roots
    else:
        patterns = roots
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except Exception as e:  # huggingface_hub raises many kinds (offline, not found, HTTP, auth)
        raise OSError(
            f"could not download the SAE {repo_id!r} from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Offline, load a local folder instead: {'; '.join(LAYOUTS)}"
        ) from e


def _load_path(path: Path, layer: int | None, hookpoint: str | None, hook_name: str | None) -> SAE:
    if path.is_file():
        head = files.header(path)
        if files.declared_format(path) == SAE_FORMAT:
            return SAE.load(path)  # a damaged one is refused there, with the reason
        if path.name in ("sae.safetensors", "sae_weights.safetensors"):
            return _load_path(path.parent, layer, hookpoint, hook_name)
        if path.suffix == ".npz":
            return _from_gemmascope(path, layer, hook_name)
        kind = "a safetensors file of another format" if head is not None else "not a safetensors file"
        raise ValueError(f"{path} is not an SAE this package reads ({kind}); it reads {'; '.join(LAYOUTS)}")
    if hookpoint is not None:
        sub = path / hookpoint
        if not (sub / "cfg.json").is_file() and not _seeds(sub):
            raise ValueError(f"{path} has no hookpoint folder {hookpoint!r}; it has {_hookpoints(path) or 'none'}")
        return _load_path(sub, layer, None, hook_name)
    if (path / "params.npz").is_file() and not (path / "cfg.json").is_file():
        return _from_gemmascope(path / "params.npz", layer, hook_name)
    cfg_file = path / "cfg.json"
    if not cfg_file.is_file():
        seeds = _seeds(path)
        if seeds:
            if len(seeds) > 1:
                raise ValueError(
                    f"{path} holds SAEs for several seeds ({', '.join(seeds)}): "
                    f"pass hookpoint='{path.name}/{seeds[0]}' "
                    "or load one seed's folder"
                )
            return _load_path(path / seeds[0], layer, None, hook_name)
        folders = _hookpoints(path)
        if not folders:
            raise ValueError(
                f"{path} holds no SAE (no cfg.json, no hookpoint folders); it must be {'; '.join(LAYOUTS)}"
            )
        wanted = _given_site(layer, hook_name)
        if wanted is None:
            if len(folders) == 1:
                return _load_path(path / folders[0], None, None, None)
            raise ValueError(
                f"{path} holds SAEs for several hookpoints ({', '.join(folders)}): "
                "pass layer=, hook_name= or hookpoint="
            )
        # layer= alone picks any site of that layer; hook_name= its site too.
        found = [n for n in folders if _folder_site(n) == wanted or (hook_name is None and _folder_layer(n) == layer)]
        if len(found) == 1:
            return _load_path(path / found[0], layer, None, hook_name)
        if found:
            raise ValueError(
                f"{path} has several SAEs at layer {layer} ({', '.join(found)}): pass hookpoint= or hook_name= "
                f"(blocks.{layer}.hook_resid_post for layers.{layer}, "
                f"blocks.{layer}.hook_mlp_out for layers.{layer}.mlp)"
            )
        raise ValueError(f"{path} has no SAE for {hook_name or f'layer {layer}'}; it has {', '.join(folders)}")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{cfg_file} is not readable JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_file} must hold a JSON object, got {type(cfg).__name__}")
    if (path / "sae.safetensors").is_file():
        return _from_sparsify(path, cfg, layer, hook_name)
    if (path / "sae_weights.safetensors").is_file():
        return _from_saelens(path, cfg, layer, hook_name)
    raise ValueError(
        f"{path} has cfg.json but neither sae.safetensors (sparsify) nor sae_weights.safetensors (SAELens)"
    )


def _seeds(path: Path) -> list[str]:
    """The per-seed folders sparsify writes under a hookpoint folder (``seed0``, ``seed1``), in natural order."""
    if not path.is_dir():
        return []
    found = [p.name for p in path.iterdir() if _SEED.match(p.name) and (p / "cfg.json").is_file()]
    return sorted(found, key=lambda n: int(n[4:]))


def _hookpoints(path: Path) -> list[str]:
    found = [p.name for p in path.iterdir() if p.is_dir() and ((p / "cfg.json").is_file() or _seeds(p))]
    return sorted(found, key=lambda n: (_folder_layer(n) is None, _folder_layer(n) or 0, n))


def _folder_site(name: str) -> tuple[int, str] | None:
    """The site a hookpoint folder's name says: sparsify's (``layers.12.mlp``) or SAELens's (``blocks.12.…``)."""
    return _site_of_hookpoint(name) or _site_of_hook(name)


def _folder_layer(name: str) -> int | None:
    site = _folder_site(name)
    return None if site is None else site[0]


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


def _ours(cfg: dict[str, Any]) -> dict[str, Any]:
    """What SAE.save(format="saelens" | "sparsify") kept of ours in a config (export.py): skip_first, max_norm."""
    kept = cfg.get("llmasos_widgets") or {}
    return {k: kept[k] for k in ("skip_first", "max_norm") if kept.get(k) is not None}


def _from_sparsify(path: Path, cfg: dict[str, Any], layer: int | None, hook_name: str | None) -> SAE:
    if cfg.get("transcode"):
        raise ValueError(f"{path} is a sparsify transcoder (it predicts a module's output): only SAEs are supported")
    if cfg.get("activation", "topk") != "topk":
        raise ValueError(f"{path} uses sparsify's {cfg.get('activation')!r} activation: only 'topk' is supported")
    if cfg.get("skip_connection"):
        raise ValueError(f"{path} has a skip connection (skip_connection=true): only plain SAEs are supported")
    t = _read_weights(path / "sae.safetensors", ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), "sparsify")
    if t.get("W_skip") is not None:
        raise ValueError(f"{path} has a skip connection (W_skip): only plain SAEs are supported")
    enc = t["encoder.weight"]
    d_in = int(cfg.get("d_in", enc.shape[1]))
    n = int(cfg.get("num_latents") or 0) or d_in * int(cfg.get("expansion_factor", 0) or 0) or enc.shape[0]
    if tuple(enc.shape) != (n, d_in):
        raise ValueError(f"{path}: encoder.weight is {list(enc.shape)} but cfg.json says [{n}, {d_in}]")
    # The hookpoint is the folder's name, or its parent's where sparsify wrote one folder per seed.
    hookpoint = f"{path.parent.name}/{path.name}" if _SEED.match(path.name) else path.name
    name = hookpoint.split("/")[0]
    said = _site_of_hookpoint(name)
    if said is None and _SPARSIFY_LAYER.search(name):
        raise ValueError(
            f"{path} is sparsify's SAE of the module {name!r}: supported hookpoints are layers.L (the residual stream "
            "after block L) and layers.L.mlp (its MLP's output)"
        )
    layer, site = _settle_site(
        path, said, f"sparsify hookpoint {name!r}" if said else "no hookpoint name", layer, hook_name
    )
    meta = {"source": f"sparsify: {path}", "hookpoint": hookpoint, "cfg": cfg}
    return SAE(
        enc.T.contiguous(),
        t["encoder.bias"],
        t["W_dec"],
        t["b_dec"],
        layer,
        int(cfg.get("k", 32)),  # sparsify's default k
        site=site,
        meta=meta,
        **_ours(_sidecar(path)),
    )


def _sidecar(path: Path) -> dict[str, Any]:
    """What SAE.save(format="sparsify") wrote beside sparsify's cfg.json (export.py), or {}."""
    try:
        found = json.loads((path / OURS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


# SAELens settings that change what encode or decode computes, and what a file here may hold.
_SAELENS_ARCHITECTURES = ("standard", "topk", "jumprelu")


def _from_saelens(path: Path, cfg: dict[str, Any], layer: int | None, hook_name: str | None) -> SAE:
    meta_cfg = cfg.get("metadata") or cfg.get("meta") or {}
    hook = cfg.get("hook_name") or cfg.get("hook_point") or meta_cfg.get("hook_name")
    arch = cfg.get("architecture", "standard")
    act_fn = cfg.get("activation_fn") or cfg.get("activation_fn_str") or "relu"
    if arch not in _SAELENS_ARCHITECTURES:
        raise ValueError(
            f"{path} is a SAELens {arch!r} SAE: supported architectures are {', '.join(_SAELENS_ARCHITECTURES)}"
        )
    # SAELens before 6 wrote TopK SAEs as architecture "standard" with activation_fn "topk" (its loader converts).
    if arch == "topk" or act_fn == "topk":
        activation = "topk"
        k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
        if k is None:
            raise ValueError(f"{path}/cfg.json is a TopK SAE but gives no k (neither 'k' nor 'activation_fn_kwargs.k')")
    elif act_fn != "relu":
        raise ValueError(f"{path} uses activation_fn={act_fn!r}: supported are relu (standard, jumprelu) and topk")
    else:
        activation, k = ("jumprelu" if arch == "jumprelu" else "relu"), None
    # Settings that rescale each token in and out again: decode would need the token, so they are refused.
    norm = cfg.get("normalize_activations") or "none"
    if norm != "none":
        why = {
            "expected_average_only_in": "its scaling factor is kept in SAELens's release list, not in the folder",
        }.get(norm, "it rescales each token's input and output, which this package's decode does not")
        raise ValueError(f"{path} has normalize_activations={norm!r}: not supported ({why}); only 'none' is")
    if cfg.get("reshape_activations", "none") not in ("none", None):
        raise ValueError(f"{path} has reshape_activations={cfg['reshape_activations']!r}: only 'none' is supported")
    if cfg.get("finetuning_scaling_factor"):
        raise ValueError(f"{path} has finetuning_scaling_factor=true: not supported")
    rescale = bool(cfg.get("rescale_acts_by_decoder_norm", False)) and activation == "topk"
    if cfg.get("rescale_acts_by_decoder_norm") and activation != "topk":
        raise ValueError(f"{path} has rescale_acts_by_decoder_norm=true, which SAELens applies to TopK SAEs only")
    keys = ["W_enc", "b_enc", "W_dec", "b_dec"]
    t = _read_weights(path / "sae_weights.safetensors", keys, "SAELens")
    if activation == "jumprelu":
        if "threshold" not in t and "log_threshold" in t:  # older checkpoints: SAELens loads exp(log_threshold)
            t["threshold"] = torch.exp(t["log_threshold"])
        if "threshold" not in t:
            raise ValueError(f"{path} is a JumpReLU SAE without threshold (it has {sorted(t)})")
    d_in, d_sae = int(cfg.get("d_in", t["W_enc"].shape[0])), int(cfg.get("d_sae", t["W_enc"].shape[1]))
    if tuple(t["W_enc"].shape) != (d_in, d_sae):
        raise ValueError(f"{path}: W_enc is {list(t['W_enc'].shape)} but cfg.json says [{d_in}, {d_sae}]")
    said = None
    if hook is not None:
        said = _site_of_hook(hook)
        if said is None:
            raise ValueError(f"{path} reads {hook!r}; supported sites are {_SITE_NAMES}")
    layer, site = _settle_site(
        path, said, f"hook_name {hook!r}" if hook else "no hook_name in cfg.json", layer, hook_name
    )
    W_enc, b_enc, W_dec = t["W_enc"], t["b_enc"], t["W_dec"]  # noqa: N806
    if rescale:
        # SAELens's TopK with rescale_acts_by_decoder_norm: pre · |W_dec_i| picks the top k, and decode divides
        # by |W_dec_i| again. The same maths, folded as its fold_W_dec_norm does: W_enc and b_enc times the
        # norms, W_dec rows divided by them (exact: a row of norm 0 would be a division by 0 there too).
        norms = W_dec.float().norm(dim=-1).to(W_dec.dtype)
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]  # noqa: N806
    meta = {
        "source": f"SAELens: {path}",
        "hook_name": hook,
        "model": meta_cfg.get("model_name") or cfg.get("model_name"),
        "folded": "rescale_acts_by_decoder_norm" if rescale else None,
    }
    return SAE(
        W_enc,
        b_enc,
        W_dec,
        t["b_dec"],
        layer,
        int(k) if k is not None else None,
        activation=activation,
        threshold=t.get("threshold"),
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        site=site,
        meta={k: v for k, v in meta.items() if v is not None},
        **_ours(meta_cfg),
    )


def _from_gemmascope(file: Path, layer: int | None, hook_name: str | None) -> SAE:
    """GemmaScope's params.npz: JumpReLU, ``acts = ReLU(pre) · (pre > threshold)``, ``pre = x @ W_enc + b_enc``.

    GemmaScope does not subtract ``b_dec`` from the input (its tutorial's encode; SAELens's GemmaScope loader
    sets ``apply_b_dec_to_input`` false). The layer is the ``layer_N`` folder and the site the repository's
    name (``gemma-scope-2b-pt-res``: the residual stream after block N; ``-mlp``: that block's MLP output).
    """
    import numpy as np

    try:
        with np.load(file, allow_pickle=False) as data:
            # SAELens's GemmaScope loader reads w_enc as W_enc too.
            t = {("W_" + k[2:] if k.startswith("w_") else k): torch.from_numpy(np.asarray(data[k])) for k in data}
    except (OSError, ValueError) as e:
        raise ValueError(f"{file} is not a readable numpy .npz file: {e}") from e
    missing = [k for k in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold") if k not in t]
    if missing:
        raise ValueError(f"{file} is not a GemmaScope SAE: it lacks {missing} (it has {sorted(t)})")
    scale = t.get("scaling_factor")
    if scale is not None and not torch.equal(scale, torch.ones_like(scale)):
        raise ValueError(f"{file} has a scaling_factor other than 1: not supported")
    parts = file.resolve().parent.parts
    repo = next((m for m in map(_GEMMASCOPE_REPO.search, parts) if m), None)
    kind = repo.group(1) if repo else None
    if kind in ("att", "transcoders"):
        raise ValueError(f"{file} is a GemmaScope {kind} SAE; supported are residual-stream (-res) and MLP (-mlp) ones")
    layer_dir = next(
        (re.fullmatch(r"layer_(\d+)", p) for p in reversed(parts) if re.fullmatch(r"layer_(\d+)", p)), None
    )
    said = None
    if kind and layer_dir:
        said = (int(layer_dir.group(1)), "hook_resid_post" if kind == "res" else "hook_mlp_out")
    what = f"GemmaScope folders {repo.group(0) if repo else '?'}/layer_{layer_dir.group(1) if layer_dir else '?'}"
    layer, site = _settle_site(file, said, what if said else "no gemma-scope-…-res/layer_N folders", layer, hook_name)
    return SAE(
        t["W_enc"].float(),
        t["b_enc"].float(),
        t["W_dec"].float(),
        t["b_dec"].float(),
        layer,
        activation="jumprelu",
        threshold=t["threshold"].float(),
        apply_b_dec_to_input=False,
        site=site,
        meta={"source": f"GemmaScope: {file}"},
    )
