"""Explorer in real JupyterLab: one click on the shared strip and every panel follows, from the page alone."""

from __future__ import annotations

import json

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

TEXT = "The capital of France is Paris. 大型语言模型 🤖 naïve café"


def panel_shows_token(page, position: int) -> dict[str, bool]:
    """Whether each panel of the Explorer shows the token at ``position`` as the selected one."""
    return page.evaluate(
        """(i) => {
          const q = (panel, s) => document.querySelector(`.lw-explorer [data-testid="panel-${panel}"] ${s}`);
          return {
            tokens: q('tokens', '.lw-pred-title')?.textContent.includes('#' + i) ?? false,
            attention: q('attention', '[data-testid="overview"]')?.dataset.position === String(i),
            neurons: q('neurons', '[data-testid="token-neurons"]')?.dataset.position === String(i),
            lens: !!q('lens', `td.lw-in-col[data-pos="${i}"]`),
            saliency: !!q('saliency', `.lw-token.lw-selected[data-index="${i}"]`),
          };
        }""",
        position,
    )


def test_one_click_moves_every_panel_and_python_sees_it(notebook):
    nb = notebook(
        [
            "import llmasos_widgets as lw\nmodel = lw.load_model('tiny-llama')",
            f"ex = lw.Explorer(model, {TEXT!r})\nex",
        ]
    )
    page = nb.page
    root = page.locator(".lw-explorer")
    strip = root.locator(':scope > [data-testid="token-strip"] [data-testid="token"]')
    n = int(nb.kernel_exec("print(len(ex.tokens))"))
    expect(strip).to_have_count(n, timeout=120_000)
    shown = [t.text_content() for t in strip.all()]
    tokens = json.loads(nb.kernel_exec("import json; print(json.dumps(ex.tokens))"))
    assert [s for s in shown if s != "⋯"] == [t.replace(" ", "·") for t in tokens if t != ""]
    for name in ("tokens", "attention", "saliency", "neurons", "lens"):
        expect(root.locator(f'[data-testid="panel-{name}"]')).to_be_visible()
    expect(root.locator('[data-testid="note-concepts"]')).to_contain_text("no concepts")
    expect(root.locator('[data-testid="overview"]')).to_have_attribute("data-state", "ready", timeout=60_000)

    strip.nth(3).click()
    page.wait_for_function(
        """() => document.querySelector('.lw-explorer [data-testid="selection"]').textContent.startsWith('token #3')"""
    )
    predictions = root.locator('[data-testid="panel-tokens"] [data-testid="predictions"]')
    expect(predictions).to_have_attribute("data-state", "ready", timeout=30_000)
    expect(root.locator('[data-testid="overview"]')).to_have_attribute("data-position", "3", timeout=30_000)
    expect(root.locator('[data-testid="token-neurons"]')).to_have_attribute("data-position", "3", timeout=30_000)
    assert panel_shows_token(page, 3) == {k: True for k in ("tokens", "attention", "neurons", "lens", "saliency")}
    # Python sees the page's selection, on the Explorer and on each panel.
    assert nb.kernel_exec("print(ex.selected_token, ex.panel('lens').selected_token)").split() == ["3", "3"]

    # A lens cell sets the layer as well: the neuron panel follows it.
    root.locator('[data-testid="lens-cell"][data-layer="0"][data-pos="2"]').click()
    expect(root.locator('[data-testid="selection"]')).to_have_text("token #2 · layer 0", timeout=10_000)
    assert nb.kernel_exec("print(ex.selected_layer, ex.panel('neurons').selected_layer)").split() == ["0", "0"]

    # Folding a panel removes it from the page and tells Python; Python's selection reaches the page.
    root.locator('[data-testid="toggle-attention"]').click()
    expect(root.locator('[data-testid="panel-attention"] [data-testid="overview"]')).to_have_count(0)
    assert nb.kernel_value("print(ex.collapsed)", "['attention']") == "['attention']"
    nb.kernel_exec("ex.selected_token = 5")
    expect(root.locator('[data-testid="selection"]')).to_contain_text("token #5", timeout=30_000)
    expect(root.locator('[data-testid="token-neurons"]')).to_have_attribute("data-position", "5", timeout=30_000)
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_separate_views_linked_in_the_page_follow_one_click(notebook):
    nb = notebook(
        [
            "import llmasos_widgets as lw\ntrace = lw.load_model('tiny-llama').trace('The capital of France is')",
            "tokens, lens = lw.TokensView(trace), lw.LensView(trace)\nlinks = lw.link(tokens, lens)\ntokens",
            "lens",
        ]
    )
    page = nb.page
    strip = page.locator('.lw-tokens [data-testid="token-strip"] [data-testid="token"]')
    expect(strip).to_have_count(5, timeout=120_000)
    strip.nth(3).click()  # in the TokensView: the LensView follows through ipywidgets' front-end link
    expect(page.locator('.lw-lens td.lw-in-col[data-pos="3"]').first).to_be_visible(timeout=30_000)
    assert nb.kernel_exec("print(tokens.selected_token, lens.selected_token)").split() == ["3", "3"]
    assert nb.errors == [], f"page errors: {nb.errors}"
