"""Results as files: ``save(result, path)`` and ``load(path, model)`` for every result type.

Attributions, evaluations, patching grids, causal traces, TCAV results, CAVs and steering results.

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
from .causal import CausalTrace, Metric, Patching, PatchResult, SteerResult
from .causal.metrics import rebuild
from .concepts import CAV, TCAVResult
from .corpus_index import fingerprint
from .evaluation import CURVES, Evaluation, PromptResult

if TYPE_CHECKING:
    from ..core.models import LanguageModel

VERSION = 1
Result = Attribution | Evaluation | PatchResult | CausalTrace | TCAVResult | CAV | SteerResult
FORMATS: dict[str, type] = {
    "llmasos.attribution": Attribution,
    "llmasos.evaluation": Evaluation,
    "llmasos.patching": PatchResult,
    "llmasos.causal_trace": CausalTrace,
    "llmasos.tcav": TCAVResult,
    "llmasos.cav": CAV,
    "llmasos.steering": SteerResult,
}
_OPTIONAL = ("convergence_delta", "baseline_objective")


def save(result: Result, path: str | os.PathLike[str]) -> Path:
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
    writers = {
        Attribution: _attribution,
        Evaluation: _evaluation,
        PatchResult: _patching,
        CausalTrace: _causal_trace,
        TCAVResult: _tcav,
        CAV: _cav,
        SteerResult: _steering,
    }
    write = writers.get(type(result))
    if write is None:
        raise ValueError(
            f"save takes a result of llmasos_widgets ({', '.join(t.__name__ for t in writers)}), "
            f"not {type(result).__name__}"
        )
    meta, tensors, fmt = write(result)  # type: ignore[operator]
    return files.save(path, tensors, fmt, VERSION, meta)


def _fingerprint(model: LanguageModel | None, what: str) -> dict[str, Any]:
    if model is None:
        raise ValueError(
            f"this {what} has no model (made by hand, or loaded without one): a result file is tied to its "
            "model's fingerprint, so load it with its model (lw.load(path, model)) to save it"
        )
    return fingerprint(model)


def load(path: str | os.PathLike[str], model: LanguageModel | None = None, *, metric: Metric | None = None) -> Result:
    """Read a result written by :func:`save`: the right type, tied to ``model`` (checked by fingerprint).

    ``model`` is needed for what recomputes or draws from the model (an Attribution's view and
    ``recompute``, a PatchResult's experiment, which a PatchingView needs); without it the numbers
    load, unchecked, and ``result.model`` (a PatchResult's ``experiment``) is None. ``metric`` is for
    a PatchResult whose metric was a function (its code is not in the file): give it again.

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
    if fmt == "llmasos.evaluation":
        return _to_evaluation(meta, tensors)
    if fmt == "llmasos.patching":
        return _to_patching(path, meta, tensors, model, metric)
    meta.pop("fingerprint")
    if fmt == "llmasos.causal_trace":
        kinds, subject = meta.pop("kinds"), tuple(meta.pop("subject"))
        return CausalTrace(**meta, subject=subject, probs={k: tensors[k] for k in kinds}, model=model)
    if fmt == "llmasos.tcav":
        return TCAVResult(**meta, **tensors, model=model)
    if fmt == "llmasos.cav":
        return CAV(**meta, direction=tensors["direction"], model=model)
    return SteerResult(**meta, model=model)


# -- Attribution -----------------------------------------------------------------------------------


def _attribution(res: Attribution) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    _fingerprint(res.model, "Attribution")
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


# -- PatchResult -----------------------------------------------------------------------------------


def _patching(res: PatchResult) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    p = res.experiment
    if p is None:
        raise ValueError(
            "this PatchResult has no experiment (run on NDIF, or loaded without a model): its prompts are not "
            "known here; load it with its model to save it"
        )
    meta = {
        "fingerprint": _fingerprint(p.model, "PatchResult"),
        "clean": p.clean_text,
        "corrupt": p.corrupt_text,
        "positions": p.positions,
        "metric_kind": p.metric.kind,
        "metric_tokens": list(p.metric.tokens),
        **{
            k: getattr(res, k)
            for k in (
                "over",
                "method",
                "direction",
                "metric",
                "clean_metric",
                "corrupt_metric",
                "tokens",
                "corrupt_tokens",
                "seconds",
            )
        },  # fmt: skip
    }
    return meta, {"scores": res.scores, "values": res.values}, "llmasos.patching"


def _to_patching(
    path: Any, meta: dict[str, Any], t: dict[str, torch.Tensor], model: LanguageModel | None, metric: Metric | None
) -> PatchResult:
    clean, corrupt, positions = meta.pop("clean"), meta.pop("corrupt"), meta.pop("positions")
    kind, tokens = meta.pop("metric_kind"), meta.pop("metric_tokens")
    meta.pop("fingerprint")
    experiment = None
    if model is not None:
        if metric is None and kind is None:
            raise ValueError(
                f"{path} was patched with the metric {meta['metric']!r}, a function whose code is not in the "
                "file: give it again, lw.load(path, model, metric=...)"
            )
        experiment = Patching(
            model, clean, corrupt, metric if metric is not None else rebuild(kind, tokens),
            over=meta["over"], direction=meta["direction"], positions=positions,
        )  # fmt: skip
        got = (experiment.clean_metric, experiment.corrupt_metric)
        want = (meta["clean_metric"], meta["corrupt_metric"])
        if any(abs(a - b) > 1e-4 * max(1.0, abs(b)) for a, b in zip(got, want, strict=True)):
            raise ValueError(
                f"{path}: the metric gives {got[0]:.6g} (clean) and {got[1]:.6g} (corrupt) on this model, the "
                f"file {want[0]:.6g} and {want[1]:.6g}: not the metric (or the weights) the grid was made with"
            )
    return PatchResult(**meta, scores=t["scores"], values=t["values"], experiment=experiment)


# -- causal tracing, TCAV, CAVs, steering ----------------------------------------------------------


def _causal_trace(ct: CausalTrace) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    meta = {
        "fingerprint": _fingerprint(ct.model, "CausalTrace"),
        "kinds": list(ct.probs),
        **{
            k: getattr(ct, k)
            for k in (
                "tokens",
                "subject",
                "target",
                "clean_prob",
                "corrupt_prob",
                "noise",
                "samples",
                "window",
                "seconds",
            )
        },
    }
    return meta, dict(ct.probs), "llmasos.causal_trace"


_TCAV_TENSORS = (
    "scores", "random_scores", "accuracy", "random_accuracy", "consistency", "p_values", "p_adjusted",
    "significant", "reliable", "directions",
)  # fmt: skip


def _fields(obj: Any, names: str) -> dict[str, Any]:
    """The attributes ``names`` (space-separated) of ``obj``, by name: a file's plain fields."""
    return {k: getattr(obj, k) for k in names.split()}


def _tcav(res: TCAVResult) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    tensors = _fields(res, " ".join(_TCAV_TENSORS))
    if res.random_directions is not None:
        tensors["random_directions"] = res.random_directions
    names = "model_name concepts layers target contrast pooling method inputs alpha seed random_sets test_size"
    meta = {"fingerprint": _fingerprint(res.model, "TCAVResult"), **_fields(res, names)}
    return meta, tensors, "llmasos.tcav"


def _cav(cav: CAV) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    names = "concept against layer pooling method accuracy stability n_train n_test"
    meta = {"fingerprint": _fingerprint(cav.model, "CAV"), **_fields(cav, names)}
    return meta, {"direction": cav.direction}, "llmasos.cav"


def _steering(res: SteerResult) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    names = (
        "prompt_tokens baseline steered baseline_ids steered_ids changed alpha layer direction kl_next kl_mean "
        "metric metric_change"
    )
    meta = {"fingerprint": _fingerprint(res.model, "SteerResult"), **_fields(res, names)}
    return meta, {}, "llmasos.steering"
