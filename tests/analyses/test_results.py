"""Results as files: each saved type loads back as itself, with the same numbers and an identical view."""

from __future__ import annotations

import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.evaluation import CURVES


def _state(view):
    return {
        k: v for k, v in view.get_state().items() if k not in ("comm", "layout", "_view_count")
    }  # widget ids differ


@pytest.mark.parametrize("source", ["text", "generation"])
def test_attribution_round_trips_to_an_identical_view(tmp_path, source):
    model = lw.load_model("tiny-llama")
    src = "The cat sat on" if source == "text" else model.generate_trace("The cat", max_new_tokens=3)
    res = lw.attribute(model, src, method="input_x_gradient", progress=False)
    back = lw.load(res.save(tmp_path / "a.st"), model)
    assert type(back) is lw.Attribution
    for name in ("scores", "objective", "mask"):
        assert torch.equal(getattr(back, name), getattr(res, name))
    for name in ("input_tokens", "input_ids", "target_ids", "positions", "settings", "generated", "is_matrix"):
        assert getattr(back, name) == getattr(res, name), name
    assert _state(lw.SaliencyView(back)) == _state(lw.SaliencyView(res))
    assert torch.equal(back.recompute(method="saliency").scores, res.recompute(method="saliency").scores)


def test_ig_fields_and_wrong_model(tmp_path):
    model = lw.load_model("tiny-llama")
    res = lw.attribute(model, "The cat sat", n_steps=8, progress=False)
    path = res.save(tmp_path / "ig.st")
    back = lw.load(path, model)
    assert torch.equal(back.convergence_delta, res.convergence_delta) and back.ig_steps == res.ig_steps
    with pytest.raises(ValueError, match="made on another model"):
        lw.load(path, lw.load_model("tiny-gpt2"))
    assert lw.load(path).model is None  # the numbers load without a model, unchecked


def test_evaluation_round_trips(tmp_path):
    model = lw.load_model("tiny-llama")
    ev = lw.evaluate(
        model, ["The cat sat on the", "A dog ran to"], methods=["saliency", "attention_rollout", "random"],
        infidelity_samples=4, progress=False,
    )  # fmt: skip
    back = lw.load(ev.save(tmp_path / "ev.st"), model)
    assert type(back) is lw.Evaluation
    for metric in ev.metrics:
        assert torch.equal(back.values(metric), ev.values(metric))
    for p, q in zip(ev.prompts, back.prompts, strict=True):
        assert (p.tokens, p.token_ids, p.target_id) == (q.tokens, q.token_ids, q.target_id)
        for m in ev.methods:
            assert torch.equal(p.scores[m], q.scores[m])
            assert all(torch.equal(p.curves[c][m], q.curves[c][m]) for c in CURVES)
    assert back.table() == ev.table()
    with pytest.raises(ValueError, match="made on another model"):
        lw.load(tmp_path / "ev.st", lw.load_model("tiny-gpt2"))


def test_refusals_name_the_problem(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a result file"):
        lw.load(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="save takes an Attribution or an Evaluation"):
        lw.analyses.results.save(object(), tmp_path / "o.st")
