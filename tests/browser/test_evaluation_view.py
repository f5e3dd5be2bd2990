"""EvaluationView live in JupyterLab (alone and as an Explorer panel) and offline from an exported file.

What the page draws (curve points, areas, table cells, paired tests, the scores on each method's strip) is
read back from the page and compared with the Evaluation's own numbers.
"""

from __future__ import annotations

import json

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

import llmasos_widgets as lw  # noqa: E402

pytestmark = pytest.mark.browser

PROMPTS = ["The cat sat on the <img src=x onerror=alert(1)>", "大型语言模型 🤖 naïve"]
METHODS = ["saliency", "attention_last", "random"]
SETUP = (
    "import llmasos_widgets as lw, json\nmodel = lw.load_model('tiny-llama')\n"
    f"ev = lw.evaluate(model, {PROMPTS!r}, methods={METHODS!r}, infidelity_samples=4, progress=False)"
)
# The Evaluation's numbers the page must show, as JSON: run in the kernel (live) or here (offline).
EXPECTED = """
from llmasos_widgets.views.evaluation import mean_curve
expected = json.dumps({
    "summary": {m: {k: [v.mean, v.low, v.high] for k, v in ev.summary(m).items()} for m in ev.metrics},
    "paired": {m: {k: ev.compare(m, k, "random")["p_value"] for k in ev.methods if k != "random"} for m in ev.metrics},
    "mean_area": {c: ev.values(c).mean(0).tolist() for c in ("deletion", "insertion")},
    "mean_curve": {c: [mean_curve([p.curves[c][k] for p in ev.prompts])[1].tolist() for k in ev.methods]
                   for c in ("deletion", "insertion")},
    "curves": [{c: {k: p.curves[c][k].tolist() for k in ev.methods} for c in ("deletion", "insertion")}
               for p in ev.prompts],
    "scores": [{k: p.scores[k].tolist() for k in ev.methods} for p in ev.prompts],
    "tokens": [p.tokens for p in ev.prompts],
})
"""


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def check_drawn(root, want) -> None:
    """The chart, the legend, the table and the paired tests of the mean over prompts equal the Evaluation's."""
    chart = root.locator('[data-testid="chart"]')
    expect(chart).to_have_attribute("data-prompt", "-1")
    for curve in ("deletion", "insertion"):
        if chart.get_attribute("data-curve") != curve:
            root.locator('[data-testid="curve-select"]').select_option(curve)
        expect(chart).to_have_attribute("data-curve", curve)
        lines = chart.locator('[data-testid="curve-line"]')
        expect(lines).to_have_count(len(METHODS))
        for line in lines.all():
            j = METHODS.index(line.get_attribute("data-method"))
            assert floats(line.get_attribute("data-values")) == pytest.approx(want["mean_curve"][curve][j], rel=1e-5)
            assert float(line.get_attribute("data-area")) == pytest.approx(want["mean_area"][curve][j], rel=1e-5)
        floor = chart.locator('[data-testid="curve-line"][data-floor="true"]')
        expect(floor).to_have_attribute("data-method", "random")
        assert floor.get_attribute("stroke-dasharray")
    for metric, by_method in want["summary"].items():
        for method, (mean, low, high) in by_method.items():
            cell = root.locator(f'[data-testid="cell"][data-metric="{metric}"][data-method="{method}"]')
            got = [float(cell.get_attribute(f"data-{k}")) for k in ("mean", "low", "high")]
            assert got == pytest.approx([mean, low, high], rel=1e-5, abs=1e-9)
    root.locator('[data-testid="metric-select"]').select_option("loo_tau")
    rows = root.locator('[data-testid="paired-row"]')
    expect(rows).to_have_count(len(METHODS))
    for method, p in want["paired"]["loo_tau"].items():
        row = root.locator(f'[data-testid="paired-row"][data-method="{method}"]')
        assert float(row.get_attribute("data-p")) == pytest.approx(p, rel=1e-6)
        expect(row).to_contain_text(f"p = {p:.2g}" if p >= 0.001 else "p < 0.001")


def check_prompt(root, want, p: int) -> None:
    """Prompt p's curves, and every method's scores on its own strip, its text shown as text."""
    chart = root.locator('[data-testid="chart"]')
    expect(chart).to_have_attribute("data-prompt", str(p))
    curve = chart.get_attribute("data-curve")
    for line in chart.locator('[data-testid="curve-line"]').all():
        method = line.get_attribute("data-method")
        assert floats(line.get_attribute("data-values")) == pytest.approx(want["curves"][p][curve][method], rel=1e-5)
    overlays = root.locator('[data-testid="overlay"]')
    expect(overlays).to_have_count(len(METHODS))
    for box in overlays.all():
        method = box.get_attribute("data-method")
        tokens = box.locator('[data-testid="token"]')
        expect(tokens).to_have_count(len(want["tokens"][p]))
        shown = [float(t.get_attribute("data-score")) for t in tokens.all()]
        assert shown == pytest.approx(want["scores"][p][method], rel=1e-5, abs=1e-12)
    text = "".join(
        t.replace("·", " ")
        for t in root.locator('[data-testid="overlay"]').first.locator('[data-testid="token"]').all_inner_texts()
    ).replace("⋯", "")
    assert text == PROMPTS[p]


def rank_of(scores: list[float], i: int) -> int:
    return sorted(range(len(scores)), key=lambda t: (-scores[t], t)).index(i)


def test_the_view_in_jupyterlab_draws_the_evaluation_and_a_prompts_strips_follow_the_selection(notebook):
    nb = notebook([SETUP, "view = lw.EvaluationView(ev)\nview"])
    page = nb.page
    root = page.locator(".lw-root.lw-evaluation")
    expect(root.locator('[data-testid="evaluation"]')).to_have_attribute("data-state", "ready", timeout=120_000)
    want = json.loads(nb.kernel_exec(EXPECTED + "\nprint(expected)"))
    check_drawn(root, want)
    assert nb.kernel_value("print(view.metric)", "loo_tau") == "loo_tau"  # the page's choice reaches the kernel

    root.locator('[data-testid="prompt"][data-index="1"]').click()
    assert nb.kernel_value("print(view.selected_prompt, view.text_prompt)", "1 1") == "1 1"
    check_prompt(root, want, 1)
    # A token clicked in one method's strip is selected in every strip and in the kernel, and marked on each curve.
    root.locator('[data-testid="overlay"][data-method="attention_last"] [data-testid="token"]').nth(3).click()
    assert nb.kernel_value("print(view.selected_token)", "3") == "3"
    expect(root.locator('[data-testid="overlay"] .lw-token.lw-selected')).to_have_count(len(METHODS))
    expect(root.locator('[data-testid="detail"]')).to_have_attribute("data-token", "3")
    curve = root.locator('[data-testid="chart"]').get_attribute("data-curve")
    for marker in root.locator('[data-testid="marker"]').all():
        method = marker.get_attribute("data-method")
        rank = rank_of(want["scores"][1][method], 3)
        assert int(marker.get_attribute("data-rank")) == rank
        assert float(marker.get_attribute("data-value")) == pytest.approx(want["curves"][1][curve][method][rank + 1])
    nb.kernel_exec("view.selected_token = 5")  # and the kernel moves the page
    expect(root.locator('[data-testid="detail"]')).to_have_attribute("data-token", "5")
    assert page.locator("img").count() == 0


def test_the_explorer_panel_follows_the_explorers_token(notebook):
    nb = notebook(
        [SETUP, f"ex = lw.Explorer(model, {PROMPTS[1]!r}, panels=['tokens', 'evaluation'], evaluation=ev)\nex"]
    )
    page = nb.page
    root = page.locator(".lw-root.lw-explorer")
    panel = root.locator('[data-testid="panel-evaluation"]')
    expect(panel.locator('[data-testid="evaluation"]')).to_have_attribute("data-state", "ready", timeout=120_000)
    expect(panel.locator('[data-testid="chart"]')).to_have_attribute("data-prompt", "1")
    root.locator(':scope > [data-testid="token-strip"] [data-testid="token"]').nth(2).click()
    expect(panel.locator('[data-testid="detail"]')).to_have_attribute("data-token", "2")
    expect(panel.locator('[data-testid="overlay"] .lw-token.lw-selected')).to_have_count(len(METHODS))
    panel.locator('[data-testid="overlay"][data-method="saliency"] [data-testid="token"]').nth(4).click()
    assert nb.kernel_value("print(ex.selected_token)", "4") == "4"
    expect(root.locator(':scope > [data-testid="token-strip"] .lw-token.lw-selected')).to_have_attribute(
        "data-index", "4"
    )


def test_an_exported_view_works_offline(browser, tmp_path):
    from test_export import open_offline

    scope: dict = {}
    exec(SETUP + EXPECTED, scope)
    want = json.loads(scope["expected"])
    path = lw.EvaluationView(scope["ev"]).save_html(tmp_path / "evaluation.html")
    page, errors, asked = open_offline(browser, path)
    try:
        root = page.locator(".lw-root.lw-evaluation")
        expect(root.locator('[data-testid="evaluation"]')).to_have_attribute("data-state", "ready", timeout=30_000)
        check_drawn(root, want)
        root.locator('[data-testid="prompt"][data-index="0"]').click()
        check_prompt(root, want, 0)
        root.locator('[data-testid="overlay"][data-method="saliency"] [data-testid="token"]').nth(1).click()
        expect(root.locator('[data-testid="detail"]')).to_have_attribute("data-token", "1")
        expect(root.locator('[data-testid="marker"]')).to_have_count(len(METHODS))
        root.locator('[data-testid="overlay"][data-method="random"] .lw-strip').press("ArrowRight")
        expect(root.locator('[data-testid="detail"]')).to_have_attribute("data-token", "2")
        root.locator('[data-testid="prompt"][data-index="1"]').press("Enter")  # the keyboard picks a prompt too
        check_prompt(root, want, 1)
        expect(root.locator('[data-testid="marker"]')).to_have_count(0)  # a new prompt: no token selected
        expect(root.locator(".lw-error")).to_have_count(0)
        assert page.locator("img").count() == 0
        assert [u for u in asked if not u.startswith(("file:", "blob:"))] == []
        assert errors == []
    finally:
        page.context.close()


def test_an_exported_explorer_keeps_its_evaluation_panel_linked_offline(browser, tmp_path):
    from test_export import open_offline

    scope: dict = {}
    exec(SETUP, scope)
    ex = lw.Explorer(scope["model"], PROMPTS[1], panels=["tokens", "evaluation"], evaluation=scope["ev"])
    page, errors, asked = open_offline(browser, ex.save_html(tmp_path / "explorer.html"))
    try:
        root = page.locator(".lw-root.lw-explorer")
        panel = root.locator('[data-testid="panel-evaluation"]')
        expect(panel.locator('[data-testid="evaluation"]')).to_have_attribute("data-state", "ready", timeout=30_000)
        expect(panel.locator('[data-testid="chart"]')).to_have_attribute("data-prompt", "1")
        panel.locator('[data-testid="overlay"][data-method="random"] [data-testid="token"]').nth(6).click()
        expect(root.locator(':scope > [data-testid="token-strip"] .lw-token.lw-selected')).to_have_attribute(
            "data-index", "6"
        )
        expect(panel.locator('[data-testid="marker"]').first).to_be_visible()
        # Another prompt: its strips keep a selection of their own; the Explorer's stays on its text.
        panel.locator('[data-testid="prompt"][data-index="0"]').click()
        expect(panel.locator('[data-testid="chart"]')).to_have_attribute("data-prompt", "0")
        panel.locator('[data-testid="overlay"][data-method="saliency"] [data-testid="token"]').nth(2).click()
        expect(panel.locator('[data-testid="detail"]')).to_have_attribute("data-token", "2")
        expect(root.locator(':scope > [data-testid="token-strip"] .lw-token.lw-selected')).to_have_attribute(
            "data-index", "6"
        )
        expect(root.locator(".lw-error")).to_have_count(0)
        assert [u for u in asked if not u.startswith(("file:", "blob:"))] == []
        assert errors == []
    finally:
        page.context.close()
