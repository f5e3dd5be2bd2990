"""EvaluationView: what it sends equals the Evaluation's numbers; prompt and token selection; Explorer panel; export."""

import math

import numpy as np
import pytest
import torch

import llmasos_widgets as lw
from llmasos_widgets.analyses.evaluation import auc
from llmasos_widgets.views import export
from llmasos_widgets.views.evaluation import mean_curve
from tests._views import arrays, capture, wait_for

PROMPTS = ["The cat sat on the", "大型语言模型 🤖 naïve"]
METHODS = ["saliency", "attention_last", "random"]


@pytest.fixture(scope="module")
def model():
    return lw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def ev(model):
    return lw.evaluate(model, PROMPTS, methods=METHODS, infidelity_samples=4, progress=False)


def sent_payload(view):
    fresh = view._answer is None  # computed once (with progress per metric), then kept
    capture(view)._on_custom_msg(view, {"type": "request", "id": 7, "what": "evaluation"}, [])
    content, buffers = wait_for(view, "response")[0]  # on the worker thread
    progress = [c["done"] for c, _ in view.sent if c["type"] == "progress"]
    assert progress == (list(range(1, len(content["metrics"]) + 1)) if fresh else [])
    return content, arrays(content, buffers)


def trapezoid(x, y):
    return float(sum((x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2 for i in range(1, len(x))))


def test_the_answer_holds_the_evaluations_numbers(ev):
    content, got = sent_payload(lw.EvaluationView(ev))
    assert content["methods"] == METHODS and content["metrics"] == ev.metrics
    assert [p["tokens"] for p in content["prompts"]] == [p.tokens for p in ev.prompts]
    assert content["prompts"][1]["text"] == PROMPTS[1] and content["references"]["insertion"] == "random"
    m = len(METHODS)
    for k, metric in enumerate(ev.metrics):
        # The table: Evaluation.summary's mean and interval per method.
        for j, (method, iv) in enumerate(ev.summary(metric).items()):
            assert got["summary"][k, j].tolist() == pytest.approx([iv.mean, iv.low, iv.high], rel=1e-6, nan_ok=True)
            if method == "random":
                assert np.isnan(got["paired"][k, j]).all()
            else:
                t = ev.compare(metric, method, "random")
                want = [t["mean_diff"], t["low"], t["high"], t["p_value"]]
                assert got["paired"][k, j].tolist() == pytest.approx(want, rel=1e-6, abs=1e-12, nan_ok=True)
        assert got["values"][:, k].flatten().tolist() == pytest.approx(
            ev.values(metric).flatten().tolist(), rel=1e-6, nan_ok=True
        )
    scores = got["scores"]
    start = 0
    for p in ev.prompts:
        n = len(p.tokens)
        for j, method in enumerate(METHODS):
            assert scores[start : start + n, j].tolist() == pytest.approx(p.scores[method].tolist(), rel=1e-6)
        start += n
    assert start == len(scores)
    for curve in ("deletion", "insertion", "deletion_drop", "insertion_drop"):
        lengths = content["curve_lengths"][curve]
        flat, at = got[f"curve/{curve}"], 0
        for p, n in zip(ev.prompts, lengths, strict=True):
            block = flat[at : at + m * n].reshape(m, n)
            for j, method in enumerate(METHODS):
                assert block[j].tolist() == pytest.approx(p.curves[curve][method].tolist(), rel=1e-6)
            at += m * n
        # The mean curve's area is the mean of the prompts' areas (its grid holds every curve's points).
        grid, means = got[f"grid/{curve}"], got[f"mean/{curve}"]
        for j in range(m):
            assert trapezoid(grid, means[j]) == pytest.approx(float(ev.values(curve)[:, j].mean()), rel=1e-5)


def test_mean_curve_interpolates_each_curve_on_its_own_points():
    a, b = torch.tensor([0.9, 0.3, 0.1]), torch.tensor([0.8, 0.6, 0.5, 0.0])
    grid, mean = mean_curve([a, b])
    assert grid.tolist() == pytest.approx([0, 1 / 3, 0.5, 2 / 3, 1])
    at_half_b = 0.6 + (0.5 - 0.6) * (0.5 - 1 / 3) * 3  # b between its points 1/3 and 2/3
    assert float(mean[2]) == pytest.approx((0.3 + at_half_b) / 2)
    assert trapezoid(grid.tolist(), mean.tolist()) == pytest.approx((auc(a) + auc(b)) / 2)
    grid, mean = mean_curve([torch.tensor([0.4])])  # one point: a constant, area the point (auc's rule)
    assert grid.tolist() == [0, 1] and mean.tolist() == pytest.approx([0.4, 0.4])


def test_a_selected_prompt_is_the_text_and_its_tokens_are_selectable(ev):
    view = lw.EvaluationView(ev, curve="insertion")
    assert (view.selected_prompt, view.text_prompt, view.tokens, view.metric) == (-1, -1, [], "insertion")
    with pytest.raises(ValueError, match="select one"):
        view.selected_token = 0
    view.selected_prompt = 1
    assert view.tokens == ev.prompts[1].tokens and view.text_prompt == 1 and view.model_name == "tiny-llama"
    assert "".join(view.tokens) == PROMPTS[1]  # the text itself, CJK and emoji whole on their first token
    view.selected_token = len(ev.prompts[1].tokens) - 1
    view.selected_prompt = 0  # another prompt clears the selection
    assert view.selected_token == -1 and view.token_ids == ev.prompts[0].token_ids
    with pytest.raises(ValueError, match="position"):
        view.selected_token = len(ev.prompts[0].tokens)
    view.selected_prompt = -1
    assert view.tokens == [] and view.text_prompt == -1


def test_bad_input_is_named(ev, model):
    with pytest.raises(ValueError, match="needs an Evaluation"):
        lw.EvaluationView(model.trace("The cat"))
    with pytest.raises(Exception, match="curve 'area'"):
        lw.EvaluationView(ev, curve="area")
    with pytest.raises(Exception, match="metric 'auc'"):
        lw.EvaluationView(ev, metric="auc")
    with pytest.raises(ValueError, match="prompt"):
        lw.EvaluationView(ev, prompt=2)
    with pytest.raises(TypeError, match="curvve"):
        lw.EvaluationView(ev, curvve="deletion")
    no_floor = lw.evaluate(
        model, PROMPTS[:1], methods=["saliency", "attention_last"], infidelity_samples=0, progress=False
    )
    view = lw.EvaluationView(no_floor)
    content, got = sent_payload(view)
    best = no_floor.ranking("deletion")[0]
    assert view.floor == "" and content["references"]["deletion"] == best
    assert "infidelity" not in content["metrics"]
    assert np.isnan(got["paired"][0, METHODS.index(best)]).all()


def test_an_explorer_panel_on_one_of_the_prompts_follows_its_token_selection(ev, model):
    ex = lw.Explorer(model, PROMPTS[1], panels=["tokens", "evaluation"], evaluation=ev)
    panel = ex.panel("evaluation")
    assert ex.panels == ["tokens", "evaluation"] and (panel.selected_prompt, panel.text_prompt) == (1, 1)
    ex.selected_token = 3
    assert panel.selected_token == 3
    panel.selected_prompt = 0  # another prompt is shown; the text stays the Explorer's
    assert panel.text_prompt == 1 and panel.tokens == ev.prompts[1].tokens
    ex.selected_token = len(ev.prompts[1].tokens) - 1
    assert panel.selected_token == ex.selected_token
    # The page's request reaches the panel through the Explorer, and comes back tagged.
    capture(ex)
    ex._on_custom_msg(ex, {"type": "request", "id": 1, "what": "evaluation", "panel": "evaluation"}, [])
    content = wait_for(ex, "response")[0][0]
    assert content["panel"] == "evaluation" and content["methods"] == METHODS
    # Another text: the panel shows the evaluation with no prompt linked; without one, it says how.
    other = lw.Explorer(model, "A dog ran", panels=["evaluation"], evaluation=ev).panel("evaluation")
    assert (other.selected_prompt, other.text_prompt) == (-1, -1)
    ex = lw.Explorer(model, PROMPTS[0], panels=["tokens", "evaluation"])
    assert ex.panels == ["tokens"] and "evaluation=lw.evaluate" in ex.panel_notes["evaluation"]


def test_an_export_records_the_whole_evaluation(ev, tmp_path):
    view = lw.EvaluationView(ev, prompt=1)
    path = view.save_html(tmp_path / "ev.html")
    page = path.read_text(encoding="utf-8")
    data = export.unpack(page.split('data-host="lw-view-0">')[1].split("</script>")[0])
    (answer,) = data["recorded"].values()
    (message,) = answer["messages"]
    descs = message["content"]["arrays"]
    got = {d["name"]: lw.views.wire.decode(d, message["buffers"][d["buffer"]]) for d in descs}
    live = sent_payload(view)[1]
    assert got.keys() == live.keys() and all(np.array_equal(got[k], live[k], equal_nan=True) for k in got)
    assert data["state"]["selected_prompt"] == 1 and data["state"]["prompt_texts"] == PROMPTS
    assert PROMPTS[1] not in page  # model text travels inside the gzip, never as page markup
    assert not math.isnan(float(got["summary"][0, 0, 0]))


def test_a_view_of_an_evaluation_read_back_from_its_file_is_the_same_view(ev, tmp_path):
    back = lw.load(ev.save(tmp_path / "ev.safetensors"))
    a, b = lw.EvaluationView(ev, prompt=1), lw.EvaluationView(back, prompt=1)
    own = [k for k in a.keys if k != "layout"]  # the layout is a widget of its own, with its own id
    assert a.get_state(own) == b.get_state(own)
    (fa, arrays_a), (fb, arrays_b) = sent_payload(a), sent_payload(b)
    assert {k: v for k, v in fa.items() if k not in ("id", "arrays")} == {
        k: v for k, v in fb.items() if k not in ("id", "arrays")
    }
    assert arrays_a.keys() == arrays_b.keys()
    assert all(np.array_equal(arrays_a[k], arrays_b[k], equal_nan=True) for k in arrays_a)
