import html
import time

import pytest
import torch
import traitlets

import llmasos_widgets as lw
from llmasos_widgets.views import export
from llmasos_widgets.views.steering import RANGE, alpha_grid
from tests._exported import read_export
from tests._views import capture, join_threads, track_threads

PROMPT = "The cat is in the"


@pytest.fixture(scope="module")
def model():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def direction():
    return lw.Direction(torch.randn(64, generator=torch.Generator().manual_seed(0)), layer=1, name="random")


def steer_at(view, step, id_=1, **params):
    view.sent.clear()
    view._on_custom_msg(view, {"type": "request", "id": id_, "what": "steer", "step": step, **params}, [])
    end = time.time() + 60
    while time.time() < end:
        with view.lock:
            done = [c for c, _ in view.sent if c["type"] in ("response", "error") and c["id"] == id_]
        if done:
            return done[0]
        time.sleep(0.01)
    raise AssertionError("no answer")


def test_default_range_comes_from_the_stream_norm_over_the_directions(model, direction):
    view = lw.SteeringView(model, PROMPT, direction=direction, max_new_tokens=5)
    norms = model.trace(PROMPT)._resid[1].norm(dim=-1)  # one per token: the median of them sets the scale
    hi = RANGE * float(norms.median()) / direction.norm
    assert view.alpha_values[0] == pytest.approx(-hi) and view.alpha_values[-1] == pytest.approx(hi)
    assert view.alpha_values[10] == 0.0 and view.alpha == 0.0 and len(view.alpha_values) == 21
    assert (
        view.layer == 1 and view.direction_name == "random" and view.steer_positions == ["all", "prompt", "generated"]
    )
    with pytest.raises(traitlets.TraitError, match="read-only"):
        view.alpha_values = [1.0]


def test_a_step_answers_steer_at_that_coefficient(model, direction):
    view = capture(lw.SteeringView(model, PROMPT, direction=direction, alphas=(-60, 60), max_new_tokens=6))
    content = steer_at(view, 20)
    expected = lw.steer(model, PROMPT, direction, 60.0, max_new_tokens=6)
    assert content["type"] == "response" and content["alpha"] == 60.0 and view.alpha == 0.0  # the page sets alpha
    assert content["steered"] == expected.steered and content["baseline"] == expected.baseline
    assert content["changed"] == expected.changed and content["kl_mean"] == pytest.approx(expected.kl_mean)
    assert content["no_effect"] is expected.no_effect is False and any(content["changed"])
    zero = steer_at(view, 10, id_=2)
    assert zero["no_effect"] is True and zero["steered"] == zero["baseline"] and not any(zero["changed"])


def test_metric_change_and_positions(model, direction):
    view = capture(
        lw.SteeringView(model, PROMPT, direction=direction, alphas=(-60, 60), metric=lw.prob(" the"), max_new_tokens=3)
    )
    content = steer_at(view, 0, positions="prompt")
    expected = lw.steer(model, PROMPT, direction, -60.0, positions="prompt", max_new_tokens=3, metric=lw.prob(" the"))
    assert content["metric"] == "p(' the')" and content["metric_change"] == pytest.approx(expected.metric_change)
    assert view.positions == "all"  # the page sets the traits; a request changes none
    bad = steer_at(view, 0, id_=2, positions="everywhere")
    assert bad["type"] == "error" and "positions 'everywhere' is not one of" in bad["message"]


def test_a_bad_alpha_is_an_error_in_place_and_the_view_stays_usable(model, direction):
    view = capture(lw.SteeringView(model, "The cat", direction=direction, alphas=(-1e38, 1e38), max_new_tokens=2))
    content = steer_at(view, 20)
    assert content["type"] == "error" and "makes the logits non-finite" in content["message"]
    assert steer_at(view, 10, id_=2)["type"] == "response"
    assert steer_at(view, 99, id_=3)["message"].startswith("step 99 is out of range")


def test_stale_slider_positions_are_skipped(model, direction, monkeypatch):
    view = capture(lw.SteeringView(model, PROMPT, direction=direction, alphas=(-60, 60), max_new_tokens=4))
    workers = track_threads(monkeypatch)
    with view._lock:  # the kernel is busy: three positions queue, the first two go stale
        for i, step in enumerate((3, 5, 7)):
            view._on_custom_msg(view, {"type": "request", "id": i + 1, "what": "steer", "step": step}, [])
    join_threads(workers)  # all three have run (or been skipped): nothing more will come
    with view.lock:
        answered = [(c["id"], c["step"]) for c, _ in view.sent if c["type"] in ("response", "error")]
    assert answered == [(3, 7)]


def test_bad_arguments(model, direction):
    with pytest.raises(ValueError, match="direction has 3 values"):
        lw.SteeringView(model, PROMPT, direction=torch.ones(3), layer=1)
    with pytest.raises(ValueError, match="needs layer="):
        lw.SteeringView(model, PROMPT, direction=torch.ones(64))
    with pytest.raises(ValueError, match="all zeros"):
        lw.SteeringView(model, PROMPT, direction=torch.zeros(64), layer=1)
    with pytest.raises(ValueError, match="alphas must be two finite numbers with lo < hi"):
        lw.SteeringView(model, PROMPT, direction=direction, alphas=(3, 1))
    with pytest.raises(ValueError, match="encoder"):
        lw.SteeringView(lw.load_model("tiny-bert"), PROMPT, direction=torch.ones(64), layer=1)
    with pytest.raises(TypeError, match="unexpected keyword argument.*: alpah"):
        lw.SteeringView(model, PROMPT, direction=direction, alpah=1)
    view = lw.SteeringView(model, PROMPT, direction=direction, alphas=(-2, 2))
    view.alpha = 0.33  # snapped to the slider
    assert view.alpha == pytest.approx(0.4)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        view.alpha = float("nan")


def test_any_script_prompt(model, direction):
    view = capture(lw.SteeringView(model, "naïve 大型 🤖", direction=direction, alphas=(-60, 60), max_new_tokens=3))
    assert "".join(view.tokens) == "naïve 大型 🤖"
    assert steer_at(view, 20)["type"] == "response"


def test_alpha_grid_and_export(model, direction, tmp_path):
    assert alpha_grid(-1.0, 3.0, 4) == [-1.0, 0.0, 1.0, 2.0, 3.0]
    assert alpha_grid(1.0, 3.0, 2) == [1.0, 2.0, 3.0]
    view = lw.SteeringView(model, PROMPT, direction=direction, max_new_tokens=3)
    recorded, note = export.record(view)
    assert len(recorded) == 21 and "21 slider steps" in note and view.alpha == 0.0  # recording moved nothing
    # The file holds every slider step's answer, each the kernel's own at that step's coefficient.
    path = view.save_html(tmp_path / "steer.html")
    (part,) = read_export(path)
    assert part.state["alpha_values"] == view.alpha_values and part.state["direction_name"] == "random"
    assert sorted(r["step"] for r in part.requests) == list(range(21))
    assert all(r == {"what": "steer", "step": r["step"], "positions": "all"} for r in part.requests)
    for step, alpha in enumerate(view.alpha_values):
        content, _ = part.answer(what="steer", step=step, positions="all")
        assert content["type"] == "response" and content["step"] == step and content["alpha"] == alpha
    for step in (0, 10, 20):  # the same call as the kernel's, at the same coefficient: the same tokens
        content, _ = part.answer(what="steer", step=step, positions="all")
        expected = lw.steer(model, PROMPT, direction, view.alpha_values[step], max_new_tokens=3)
        assert content["steered_ids"] == expected.steered_ids and content["baseline_ids"] == expected.baseline_ids
        assert content["no_effect"] is (step == 10) is expected.no_effect
    assert "21 slider steps with positions='all' are recorded" in html.unescape(path.read_text(encoding="utf-8"))


def test_steer_from_python_moves_the_slider_to_the_nearest_step(model, direction):
    view = lw.SteeringView(model, PROMPT, direction=direction, alphas=(-4, 4), max_new_tokens=3)
    res = view.steer(3.9)
    assert res.alpha == 3.9 and view.alpha == 4.0  # the result at 3.9; the slider at its nearest step
    assert view.result is res
    with pytest.raises(ValueError, match="finite"):
        view.steer(float("inf"))
    assert view.alpha == 4.0


def test_slider_steps_generate_the_baseline_once(model, direction, monkeypatch):
    view = capture(lw.SteeringView(model, PROMPT, direction=direction, alphas=(-4, 4), max_new_tokens=3))
    generate, calls = model.model.generate, []
    monkeypatch.setattr(model.model, "generate", lambda *a, **kw: calls.append(1) or generate(*a, **kw))
    answers = [steer_at(view, step, id_=step) for step in (0, 5, 20)]
    assert [a["type"] for a in answers] == ["response"] * 3
    assert len(calls) == 1 + 3  # one baseline, then one steered generation per step
    assert answers[0]["baseline_ids"] == answers[1]["baseline_ids"] == answers[2]["baseline_ids"]
    assert answers[2]["steered_ids"] == lw.steer(model, PROMPT, direction, 4.0, max_new_tokens=3).steered_ids
