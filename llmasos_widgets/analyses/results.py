"""Results as files: ``save(result, path)`` and ``load(path, model)`` for attributions and evaluations.

One safetensors file per result, written atomically by :mod:`..core.files`: tensors as tensors, the
rest as JSON in the header's ``meta``, with the model's fingerprint. Loading on another model is
refused. The fields of each format are listed in DESIGN.md ("Result files").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core import files
from ..core.trace import Trace
from .attribution import Attribution
from .corpus_index import fingerprint
from .evaluation import CURVES, Evaluation, PromptResult

if TYPE_CHECKING:
    from ..core.models import LanguageModel

VERSION = 1
FORMATS = {"llmasos.attribution": Attribution, "llmasos.evaluation": Evaluation}
_OPTIONAL = ("convergence_delta", "baseline_objective")


def save(result: Attribution | Evaluation, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` to ``path`` (one safetensors file); ``load(path, model)`` gives it back.

    Examples
    --------
    >>> import tempfile, llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> res = lw.attribute(model, "The cat sat", method="saliency", progress=False)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     back = load(save(res, d + "/sal.st"), model)
    >>> bool(torch.equal(back.scores, res.scores)), back.method
    (True, 'saliency')

    """
    if isinstance(result, Attribution):
        meta, tensors, fmt = _attribution(result)
    elif isinstance(result, Evaluation):
        meta, tensors, fmt = _evaluation(result)
    else:
        raise ValueError(
            f"save takes an Attribution or an Evaluation, not {type(result).__name__} "
            "(patching, tracing, TCAV and steering results cannot be saved yet)"
        )
    return files.save(path, tensors, fmt, VERSION, meta)


def load(path: str | os.PathLike[str], model: LanguageModel | None = None) -> Attribution | Evaluation:
    """Read a result written by :func:`save`: the right type, tied to ``model`` (checked by fingerprint).

    ``model`` is needed for what recomputes or draws from the model (an Attribution's view and
    ``recompute``); without it the numbers load, unchecked, and ``result.model`` is None.

    Examples
    --------
    >>> import tempfile, llmasos_widgets as lw
    >>> res = lw.attribute(lw.load_model("tiny-llama"), "The cat sat", method="saliency", progress=False)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     load(save(res, d + "/sal.st"), lw.load_model("tiny-gpt2"))
    Traceback (most recent call last):
    ValueError: ...sal.st was made on another model (model: file 'tiny-llama' vs model 'tiny-gpt2', ...)

    """
    fmt = files.declared_format(path)
    if fmt not in FORMATS:
        raise ValueError(
            f"{path} is not a result file of llmasos_widgets (its header names format {fmt!r}; "
            f"results are {', '.join(FORMATS)})"
        )
    meta, tensors = files.load(path, fmt, VERSION, fmt.split(".")[1] + " file")
    if model is not None:
        mine, theirs = meta["fingerprint"], fingerprint(model)
        if mine != theirs:
            diff = ", ".join(
                f"{k}: file {mine.get(k)!r} vs model {theirs.get(k)!r}" for k in theirs if mine.get(k) != theirs[k]
            )
            raise ValueError(f"{path} was made on another model ({diff})")
    if fmt == "llmasos.attribution":
        return _to_attribution(meta, tensors, model)
    return _to_evaluation(meta, tensors)


# -- Attribution -----------------------------------------------------------------------------------


def _attribution(res: Attribution) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    if res.model is None:
        raise ValueError("this Attribution has no model (loaded without one): load it with its model to save it")
    if isinstance(res.source, Trace):
        if res.source.chat is not None:
            raise ValueError("an attribution of a chat transcript cannot be saved yet: attribute its text instead")
        source = {
            "kind": "trace",
            "text": res.source.text,
            "token_ids": list(res.source.token_ids),
            "offsets": [list(o) for o in res.source.offsets],
            "generated": list(res.source.generated),
        }
    else:
        source = {"kind": "text", "text": res.source}
    tensors = {"scores": res.scores, "objective": res.objective, "mask": res.mask.to(torch.uint8)}
    tensors.update({k: getattr(res, k) for k in _OPTIONAL if getattr(res, k) is not None})
    meta = {
        "fingerprint": fingerprint(res.model),
        "source": source,
        **{
            k: getattr(res, k)
            for k in (
                "input_tokens",
                "input_ids",
                "target_tokens",
                "target_ids",
                "method",
                "settings",
                "positions",
                "ig_steps",
                "contrast_tokens",
                "contrast_ids",
                "reference",
                "generated",
            )
        },
    }
    return meta, tensors, "llmasos.attribution"


def _to_attribution(meta: dict[str, Any], t: dict[str, torch.Tensor], model: LanguageModel | None) -> Attribution:
    src = meta.pop("source")
    source: Any = src["text"]
    if src["kind"] == "trace":
        source = None
        if model is not None:
            offsets = [tuple(o) for o in src["offsets"]]
            source = Trace.run(model, src["text"], src["token_ids"], offsets, src["generated"])
    meta.pop("fingerprint")
    return Attribution(
        **meta,
        scores=t["scores"],
        objective=t["objective"],
        mask=t["mask"].bool(),
        **{k: t.get(k) for k in _OPTIONAL},
        model=model,
        source=source,
    )


# -- Evaluation ------------------------------------------------------------------------------------


def _evaluation(ev: Evaluation) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    tensors: dict[str, torch.Tensor] = {}
    prompts = []
    for i, p in enumerate(ev.prompts):
        for m in ev.methods:
            tensors[f"{i}/scores/{m}"] = p.scores[m]
            for c in CURVES:
                tensors[f"{i}/{c}/{m}"] = p.curves[c][m]
        prompts.append(
            {
                "text": p.text,
                "tokens": p.tokens,
                "token_ids": p.token_ids,
                "target": p.target,
                "target_id": p.target_id,
                "p_target": p.p_target,
                "metrics": p.metrics,
            }
        )
    meta = {
        "fingerprint": ev.fingerprint,
        "model_name": ev.model_name,
        "methods": ev.methods,
        "baseline": ev.baseline,
        "baseline_id": ev.baseline_id,
        "bins": ev.bins,
        "settings": ev.settings,
        "prompts": prompts,
    }
    return meta, tensors, "llmasos.evaluation"


def _to_evaluation(meta: dict[str, Any], t: dict[str, torch.Tensor]) -> Evaluation:
    methods = meta["methods"]
    prompts = [
        PromptResult(
            **p,
            scores={m: t[f"{i}/scores/{m}"] for m in methods},
            curves={c: {m: t[f"{i}/{c}/{m}"] for m in methods} for c in CURVES},
        )
        for i, p in enumerate(meta["prompts"])
    ]
    return Evaluation(
        meta["model_name"],
        methods,
        meta["baseline"],
        meta["baseline_id"],
        meta["bins"],
        prompts,
        meta["settings"],
        meta["fingerprint"],
    )
