"""TokensView and the Explorer in the other hosts anywidget supports: Jupyter Notebook 7 and marimo.

The user's story of test_tokens_view.py (JupyterLab), told again in each host: the strip shows the
model's tokens (Chinese and emoji too), a click asks the kernel for the predictions there through
the widget's custom messages, and the selection travels between the page and Python.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _hosts import json_cell
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

TEXT = "The capital of France is 大型语言模型 🤖"
MAKE_VIEW = f"""import llmasos_widgets as lw

trace = lw.load_model("tiny-llama").trace({TEXT!r})
view = lw.TokensView(trace)"""
CLICKED = 2  # " of"
SELECTED_TINT = "rgba(25, 118, 210, 0.18)"  # --lw-selected-tint in js/shared/base.css


def drawn(token: str) -> str:
    """How the strip draws ``token`` (js/shared/tokens.ts ``visibleText``); TEXT's only whitespace is spaces."""
    return "⋯" if token == "" else token.replace(" ", "·")


def check_strip_then_click(page: Any, tokens: list[str], top_id: int) -> None:
    """The strip draws ``tokens``; a click on token CLICKED shows the kernel's predictions, ``top_id`` first."""
    assert "".join(tokens) == TEXT and "🤖" in tokens and "" in tokens  # the text this test needs
    shown = page.locator(".lw-tokens [data-testid=token-strip] [data-testid=token]")
    expect(shown).to_have_count(len(tokens), timeout=120_000)
    assert shown.all_text_contents() == [drawn(t) for t in tokens]

    shown.nth(CLICKED).click()
    panel = page.locator(".lw-tokens [data-testid=predictions]")
    expect(panel).to_have_attribute("data-state", "ready", timeout=60_000)
    rows = panel.locator("[data-testid=prediction-row]")
    expect(rows).to_have_count(5)
    assert rows.first.get_attribute("data-token-id") == str(top_id)


def expect_selected(page: Any, index: int) -> None:
    """The view marks token ``index`` (tinted: the view's sheet reached it) and shows the predictions after it."""
    selected = page.locator(".lw-tokens .lw-token.lw-selected")
    expect(selected).to_have_attribute("data-index", str(index))
    expect(selected).to_have_css("background-color", SELECTED_TINT)
    expect(page.locator(".lw-tokens .lw-pred-title")).to_contain_text(f"#{index}", timeout=30_000)
    expect(page.locator(".lw-tokens [data-testid=predictions]")).to_have_attribute("data-state", "ready")


def test_notebook7_click_shows_predictions_and_selection_syncs_both_ways(notebook7):
    nb = notebook7([MAKE_VIEW + "\nview"])
    tokens, top_id = json.loads(
        nb.kernel_exec(f"import json; print(json.dumps([view.tokens, trace.top_predictions({CLICKED}, k=5)[0].id]))")
    )
    check_strip_then_click(nb.page, tokens, top_id)
    assert nb.kernel_value("print(view.selected_token)", str(CLICKED)) == str(CLICKED)

    nb.kernel_exec("view.selected_token = 4")
    expect_selected(nb.page, 4)
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_marimo_click_shows_predictions_and_selection_syncs_both_ways(marimo_app):
    app = marimo_app(
        [
            MAKE_VIEW + "\n\nimport marimo as mo\n\nwidget = mo.ui.anywidget(view)\nwidget",
            json_cell("expected", f"[view.tokens, trace.top_predictions({CLICKED}, k=5)[0].id]"),
            # Runs again on every change in the view: what Python holds after a click.
            json_cell("python-selected", "widget.selected_token"),
            # marimo changes Python state by running cells: a button whose cell sets the trait.
            'select_4 = mo.ui.run_button(label="Select token 4 from Python")\nselect_4',
            "if select_4.value:\n    view.selected_token = 4",
        ]
    )
    page = app.page
    expect(page.locator("[data-testid=expected]")).to_have_count(1, timeout=120_000)
    tokens, top_id = app.read_json("expected")
    check_strip_then_click(page, tokens, top_id)
    expect(page.locator("[data-testid=python-selected]")).to_have_text(str(CLICKED))

    page.get_by_role("button", name="Select token 4 from Python").click()
    expect_selected(page, 4)
    app.raise_cell_errors()
    assert app.errors == [], f"page errors: {app.errors}"


MAKE_EXPLORER = f"""import llmasos_widgets as lw

ex = lw.Explorer(lw.load_model("tiny-llama"), {TEXT!r}, panels=["tokens", "neurons", "lens"])"""


def check_explorer_follows_a_click(page: Any, n_tokens: int, top_id: int) -> None:
    """A click on the Explorer's strip moves every panel to that token, each answered by the kernel."""
    root = page.locator(".lw-explorer")
    strip = root.locator(":scope > [data-testid=token-strip] [data-testid=token]")
    expect(strip).to_have_count(n_tokens, timeout=120_000)
    expect(root.locator("[data-testid=panel-lens] [data-testid=progress]")).to_have_attribute("data-state", "ready")
    strip.nth(CLICKED).click()
    predictions = root.locator("[data-testid=panel-tokens] [data-testid=predictions]")
    expect(predictions).to_have_attribute("data-state", "ready", timeout=60_000)
    assert predictions.locator("[data-testid=prediction-row]").first.get_attribute("data-token-id") == str(top_id)
    neurons = root.locator("[data-testid=token-neurons]")
    expect(neurons).to_have_attribute("data-position", str(CLICKED), timeout=30_000)
    expect(neurons).to_have_attribute("data-state", "ready", timeout=30_000)
    expect(root.locator(f'[data-testid=panel-lens] td.lw-in-col[data-pos="{CLICKED}"]').first).to_be_visible()


def test_notebook7_explorer_panels_follow_one_click(notebook7):
    nb = notebook7([MAKE_EXPLORER + "\nex"])
    n, top_id = json.loads(
        nb.kernel_exec(
            f"import json; print(json.dumps([len(ex.tokens), ex.trace.top_predictions({CLICKED}, k=5)[0].id]))"
        )
    )
    check_explorer_follows_a_click(nb.page, n, top_id)
    both = f"{CLICKED} {CLICKED}"
    assert nb.kernel_value("print(ex.selected_token, ex.panel('neurons').selected_token)", both) == both
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_marimo_explorer_panels_follow_one_click(marimo_app):
    app = marimo_app(
        [
            MAKE_EXPLORER + "\n\nimport marimo as mo\n\nwidget = mo.ui.anywidget(ex)\nwidget",
            json_cell("expected", f"[len(ex.tokens), ex.trace.top_predictions({CLICKED}, k=5)[0].id]"),
            json_cell("python-selected", "widget.selected_token"),
        ]
    )
    page = app.page
    expect(page.locator("[data-testid=expected]")).to_have_count(1, timeout=120_000)
    n, top_id = app.read_json("expected")
    check_explorer_follows_a_click(page, n, top_id)
    expect(page.locator("[data-testid=python-selected]")).to_have_text(str(CLICKED))
    app.raise_cell_errors()
    assert app.errors == [], f"page errors: {app.errors}"
