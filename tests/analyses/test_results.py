"""Results as files: each saved type loads back as itself, with the same numbers and an identical view."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings

import numpy as np
import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.evaluation import CURVES
from llmasos_widgets.views import export
from tests._views import arrays, ask, capture, wait_for

SHOUT = [
    f"STOP {w.upper()} NOW!!! GET OUT!!!" for w in "apple bread chair door eagle fox goat hill iron jar kite".split()
]
CALM = [
    f"please, the {w} is quite fine today." for w in "apple bread chair door eagle fox goat hill iron jar kite".split()
]


def same(a, b):
    """Every compared field of two dataclasses equal: tensors in dtype, shape and value (NaN where NaN)."""
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        if f.compare:
            x, y = getattr(a, f.name), getattr(b, f.name)
            pairs = x.items() if isinstance(x, dict) else [(None, x)]
            if isinstance(x, dict):
                assert x.keys() == y.keys(), f.name
            for key, value in pairs:
                other = y if key is None else y[key]
                if isinstance(value, torch.Tensor):
                    assert value.dtype == other.dtype, f.name
                    assert np.array_equal(value.numpy(), other.numpy(), equal_nan=value.is_floating_point()), f.name
                else:
                    assert value == other and type(value) is type(other), f.name


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
    with pytest.raises(ValueError, match=r"save takes a result of llmasos_widgets \(Attribution, .*SteerResult\)"):
        lw.analyses.results.save(object(), tmp_path / "o.st")
    cav = lw.CAV("food", "random", 0, "mean", "logistic", torch.ones(64) / 8, 0.9, 0.9, 20, 10)  # by hand: no model
    with pytest.raises(ValueError, match="this CAV has no model"):
        cav.save(tmp_path / "cav.st")


def _sweep_answer(view, method):
    """What the page gets when it asks for a kept grid: the response's fields and its arrays."""
    capture(view)._on_custom_msg(view, {"type": "request", "id": 1, "what": "sweep", "method": method}, [])
    ((content, buffers),) = wait_for(view, "response")  # on the view's worker thread
    return {k: v for k, v in content.items() if k != "arrays"}, arrays(content, buffers)


@pytest.mark.parametrize(("method", "over"), [("exact", "resid"), ("attribution", "resid"), ("exact", "heads")])
def test_patch_result_round_trips_to_an_identical_view(tmp_path, method, over):
    model = lw.load_model("tiny-llama")
    clean, corrupt = "Le café ☕ est dans la", "Le cafè ☕ est dans la"  # accented text and emoji in the tokens
    res = lw.patch(model, clean, corrupt, metric=lw.logit_diff(" the", " a"), over=over, method=method, progress=False)
    back = lw.load(res.save(tmp_path / "p.st"), model)
    same(back, res)
    assert back.experiment.clean_text == clean and back.experiment.positions == res.experiment.positions
    one, two = lw.PatchingView(res), lw.PatchingView(back)
    assert _state(one) == _state(two)
    (f1, a1), (f2, a2) = _sweep_answer(one, method), _sweep_answer(two, method)
    assert f1 == f2 and a1.keys() == a2.keys()
    assert all(np.array_equal(a1[k], a2[k], equal_nan=True) for k in a1)
    # A clicked cell re-runs on the rebuilt experiment: the same patched run.
    cell = {"what": "cell", "layer": 1, "index": 1, "k": 3}
    (c1, b1), (c2, b2) = ask(capture(one), **cell), ask(capture(two), **cell)
    assert c1 == c2 and np.array_equal(arrays(c1, b1)["probs"], arrays(c2, b2)["probs"])
    assert torch.equal(back.direction_at(1, 2).vector, res.direction_at(1, 2).vector)
    alone = lw.load(tmp_path / "p.st")  # without a model: the numbers, no experiment, no view
    assert alone.experiment is None and torch.equal(alone.values, res.values)
    with pytest.raises(ValueError, match="load it with its model"):
        lw.PatchingView(alone)
    with pytest.raises(ValueError, match="made on another model"):
        lw.load(tmp_path / "p.st", lw.load_model("tiny-gpt2"))


def test_a_patch_result_with_a_function_metric_needs_it_again(tmp_path):
    model = lw.load_model("tiny-llama")
    ids = model.tokenizer(" the")["input_ids"][-1], model.tokenizer(" a")["input_ids"][-1]

    def gap(logits):
        return logits[:, ids[0]] - logits[:, ids[1]]

    res = lw.patch(model, "The cat is in the", "The dog is in the", metric=gap, progress=False)
    path = res.save(tmp_path / "f.st")
    with pytest.raises(ValueError, match=r"a function whose code is not in the file: give it again"):
        lw.load(path, model)
    same(lw.load(path, model, metric=gap), res)
    with pytest.raises(ValueError, match="not the metric"):
        lw.load(path, model, metric=lambda logits: logits[:, 0])


def test_causal_trace_round_trips(tmp_path):
    model = lw.load_model("tiny-gpt2")
    ct = lw.causal_trace(model, "La tour Eiffel 🗼 est à", "La tour Eiffel", samples=2, progress=False)
    back = lw.load(ct.save(tmp_path / "ct.st"), model)
    same(back, ct)
    assert back.subject == ct.subject and isinstance(back.subject, tuple)
    assert torch.equal(back.scores("mlp"), ct.scores("mlp"))
    with pytest.raises(ValueError, match="made on another model"):
        lw.load(tmp_path / "ct.st", lw.load_model("tiny-llama"))


def test_tcav_result_round_trips_to_an_identical_view(tmp_path):
    model = lw.load_model("tiny-llama")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random model's CAVs are unreliable, as they should be
        concepts = [lw.Concept("shout", SHOUT), lw.Concept("calme 🌿", CALM)]
        res = lw.tcav(model, ["The capital of France is", "我去了"], 5, concepts, [0, 1], n_random=3, progress=False)
    back = lw.load(res.save(tmp_path / "t.st"), model)
    same(back, res)
    assert back.model is model and back.rows() == res.rows()
    trace = model.trace("Bonjour, ça va ? 😀")
    one, two = lw.ConceptView(res, trace), lw.ConceptView(back, trace)
    assert _state(one) == _state(two)
    assert _recorded(one) == _recorded(two)


def _recorded(view):
    """Every answer the view's page can ask for, as JSON, bokeh's object ids (a process-wide counter) renumbered."""
    text = json.dumps(export.record(view), sort_keys=True, default=bytes.hex)
    ids: dict[str, str] = {}
    return re.sub(r'"p\d+"', lambda m: ids.setdefault(m.group(0), f'"id{len(ids)}"'), text)


def test_cav_round_trips_and_steers_an_identical_view(tmp_path):
    model = lw.load_model("tiny-llama")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cav = lw.train_cav(model, lw.Concept("shout", SHOUT, CALM), 1)
    back = lw.load(cav.save(tmp_path / "c.st"), model)
    same(back, cav)
    assert back.model is model
    one, two = (lw.SteeringView(model, "The cat", direction=c, max_new_tokens=3) for c in (cav, back))
    assert _state(one) == _state(two)
    assert _recorded(one) == _recorded(two)  # every slider step's steered generation


def test_steer_result_round_trips_to_the_same_answer(tmp_path):
    model = lw.load_model("tiny-llama")
    direction = lw.Direction.neuron(model, 0, 3)
    res = lw.steer(model, "Le café ☕", direction, 40.0, max_new_tokens=4, metric=lw.prob(" the"))
    back = lw.load(res.save(tmp_path / "s.st"), model)
    assert back == res and back.model is model
    assert back.summary() == res.summary()  # what a SteeringView sends for this step
    view = lw.SteeringView(model, "Le café ☕", direction=direction, alphas=(-40.0, 40.0), max_new_tokens=4,
                           metric=lw.prob(" the"))  # fmt: skip
    capture(view)._on_custom_msg(view, {"type": "request", "id": 1, "what": "steer", "step": 20}, [])
    ((content, _),) = wait_for(view, "response")  # on the view's worker thread
    assert {k: v for k, v in content.items() if k not in ("type", "id", "step", "what", "arrays")} == back.summary()
    with pytest.raises(ValueError, match="made on another model"):
        lw.load(tmp_path / "s.st", lw.load_model("tiny-gpt2"))
