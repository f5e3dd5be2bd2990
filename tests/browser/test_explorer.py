"""Explorer in real JupyterLab: one click on the shared strip and every panel follows, from the page alone."""

from __future__ import annotations

import json
import re

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
    assert nb.kernel_value("print(ex.selected_token, ex.panel('lens').selected_token)", "3 3") == "3 3"

    # A lens cell sets the layer as well: the neuron panel follows it.
    root.locator('[data-testid="lens-cell"][data-layer="0"][data-pos="2"]').click()
    expect(root.locator('[data-testid="selection"]')).to_have_text("token #2 · layer 0", timeout=10_000)
    assert nb.kernel_value("print(ex.selected_layer, ex.panel('neurons').selected_layer)", "0 0") == "0 0"

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
    assert nb.kernel_value("print(tokens.selected_token, lens.selected_token)", "3 3") == "3 3"
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_the_features_panel_follows_the_strip_and_a_feature_click_draws_its_dashboard(notebook):
    nb = notebook(
        [
            "import json\nimport llmasos_widgets as lw\nmodel = lw.load_model('tiny-llama')\n"
            "sae = lw.SAE.random(64, 128, 8, layer=1, seed=3)",
            f"ex = lw.Explorer(model, {TEXT!r}, panels=['lens', 'features'], sae=sae)\n"
            "ex.panel('features').steer_tokens = 4\nalone = lw.FeatureView(ex.trace, sae)  # the reference\nex",
        ]
    )
    page = nb.page
    root = page.locator(".lw-explorer")
    strip = root.locator(':scope > [data-testid="token-strip"] [data-testid="token"]')
    tokens = json.loads(nb.kernel_exec("print(json.dumps(ex.tokens))"))
    expect(strip).to_have_count(len(tokens), timeout=120_000)
    panel = root.locator('[data-testid="panel-features"]')
    expect(panel.locator(".lw-panel-title")).to_have_text("SAE features")
    features = panel.locator('[data-testid="token-features"]')
    expect(features).to_have_attribute("data-state", "idle", timeout=30_000)

    i = next(j for j, t in enumerate(tokens) if "语" in t)  # a Chinese character's token
    strip.nth(i).click()
    expect(features).to_have_attribute("data-position", str(i), timeout=30_000)
    expect(features).to_have_attribute("data-state", "ready", timeout=30_000)
    expect(root.locator(f'[data-testid="panel-lens"] td.lw-in-col[data-pos="{i}"]').first).to_be_visible()
    rows = features.locator('[data-testid="feature-row"]')
    expected = json.loads(nb.kernel_exec(f"print(json.dumps(alone.token_features({i})))"))
    assert expected, "a TopK SAE has active features on every token"
    assert [int(r.get_attribute("data-feature")) for r in rows.all()] == [f for f, _ in expected]
    assert [float(r.get_attribute("data-value")) for r in rows.all()] == pytest.approx([a for _, a in expected])
    assert nb.kernel_value("print(ex.selected_token, ex.panel('features').selected_token)", f"{i} {i}") == f"{i} {i}"

    feature = expected[1][0]  # not the first row: the click picks the row it lands on
    rows.nth(1).click()
    dash = panel.locator('[data-testid="dashboard"]')
    expect(dash).to_have_attribute("data-feature", str(feature), timeout=30_000)
    expect(dash).to_have_attribute("data-state", "ready", timeout=30_000)
    state = "print(ex.panel('features').selected_feature, ex.panel_states['features']['selected_feature'])"
    assert nb.kernel_value(state, f"{feature} {feature}") == f"{feature} {feature}"
    values = [float(s.get_attribute("data-value")) for s in dash.locator('[data-testid="overlay-token"]').all()]
    exact = json.loads(nb.kernel_exec(f"print(json.dumps(alone.feature_activations({feature}).tolist()))"))
    assert values == pytest.approx(exact, rel=1e-6, abs=1e-7)
    expect(dash.locator('[data-testid="promoted-token"]')).to_have_count(10)

    # Steering streams through the Explorer's comm as well.
    dash.locator('[data-testid="steer-button"]').click()
    result = dash.locator('[data-testid="steer-result"]')
    expect(result).to_have_attribute("data-state", re.compile("ready|no-effect"), timeout=60_000)
    step = int(result.get_attribute("data-step"))
    ref = json.loads(
        nb.kernel_exec(
            f"d = sae.direction({feature}); v = ex.panel('features')\n"
            f"alpha = v.steer_scales[{step}] * v.stream_norm / d.norm\n"
            "r = lw.steer(model, ex.trace.text, d, alpha, max_new_tokens=4)\n"
            "print(json.dumps(r.changed))"
        )
    )
    expect(result.locator('[data-testid="steered"] [data-testid="gen-token"]')).to_have_count(len(ref))
    assert result.locator('[data-testid="steered"] [data-changed="true"]').count() == sum(ref)
    assert nb.errors == [], f"page errors: {nb.errors}"


_RUN_CELL = """(source) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  nb.activeCellIndex = nb.widgets.length - 1;
  window.jupyterapp.commands.execute('notebook:insert-cell-below');
  nb.activeCell.model.sharedModel.setSource(source);
  window.jupyterapp.commands.execute('notebook:run-cell');
}"""


def run_busy_cell(page, seconds: float) -> None:
    """Run a cell that holds the kernel for ``seconds``, from the page, and wait until it has started.

    The cell computes in pure Python with a long GIL switch interval: no other thread of the kernel runs
    meanwhile (ipykernel 7 reads comm messages on another thread; a sleeping cell would leave it free).
    """
    page.evaluate(_RUN_CELL, BUSY_CELL.format(seconds=seconds))
    page.wait_for_function(_PRINTED, arg="kernel busy", timeout=30_000)
    page.wait_for_timeout(1000)  # past the cell's half-second sleep: in the loop


BUSY_CELL = """import sys, time
print('kernel busy', flush=True)
time.sleep(0.5)  # the output leaves
sys.setswitchinterval({seconds})
end = time.perf_counter() + {seconds}
while time.perf_counter() < end:
    pass
sys.setswitchinterval(0.005)
print('kernel free')"""
_PRINTED = "(s) => [...document.querySelectorAll('.jp-OutputArea-output')].some(o => o.textContent.includes(s))"


def kernel_free(page) -> bool:
    """Whether the busy cell has finished."""
    return page.evaluate(_PRINTED, "kernel free")


def every_panel_shows(page, position: int, timeout: float = 10_000) -> None:
    page.wait_for_function(
        """(i) => {
          const q = (panel, s) => document.querySelector(`.lw-explorer [data-testid="panel-${panel}"] ${s}`);
          return q('tokens', '[data-testid="predictions"]')?.dataset.state === 'ready'
            && q('tokens', '.lw-pred-title')?.textContent.includes('#' + i)
            && q('attention', '[data-testid="overview"]')?.dataset.position === String(i)
            && q('attention', '[data-testid="overview"]')?.dataset.state === 'ready'
            && q('neurons', '[data-testid="token-neurons"]')?.dataset.position === String(i)
            && q('neurons', '[data-testid="token-neurons"]')?.dataset.state === 'ready'
            && !!q('lens', `td.lw-in-col[data-pos="${i}"]`) && !q('lens', `td.lw-in-col.lw-pending[data-pos="${i}"]`)
            && q('lens', '[data-testid="lens-topk"]')?.dataset.state === 'ready'
            && !!q('saliency', `.lw-token.lw-selected[data-index="${i}"]`);
        }""",
        arg=position,
        timeout=timeout,
        polling=50,
    )


def test_cached_clicks_send_no_request_and_are_answered_while_the_kernel_is_busy(notebook):
    nb = notebook(
        [
            "import llmasos_widgets as lw\nmodel = lw.load_model('tiny-llama')",
            f"ex = lw.Explorer(model, {TEXT!r}, layer=1)\nex",
        ]
    )
    page = nb.page
    root = page.locator(".lw-explorer")
    strip = root.locator(':scope > [data-testid="token-strip"] [data-testid="token"]')
    expect(root.locator('[data-testid="overview"]')).to_have_attribute("data-state", "ready", timeout=120_000)
    # After the first draw the kernel fills the page's cache around the selection, then says it is done.
    expect(root.locator('[data-testid="panel-lens"] [data-testid="progress"]')).to_have_attribute(
        "data-state", "ready", timeout=60_000
    )
    expect(root).to_have_attribute("data-prefetch-done", "true", timeout=60_000)
    before = {k: root.get_attribute(f"data-{k}") for k in ("kernel-batches", "kernel-requests")}
    hits = int(root.get_attribute("data-cache-hits") or 0)

    run_busy_cell(page, 12)
    last = strip.count() - 1
    for i in (3, last, 0):  # every token's answers are in the page, the far ones too
        strip.nth(i).click()
        every_panel_shows(page, i)
    assert not kernel_free(page)  # every answer came from the page
    assert {k: root.get_attribute(f"data-{k}") for k in ("kernel-batches", "kernel-requests")} == before
    assert int(root.get_attribute("data-cache-hits")) >= hits + 3 * 3  # tokens, attention, lens (column, cell)
    page.wait_for_function(_PRINTED, arg="kernel free", timeout=60_000)
    # Python saw the clicks once the kernel was free.
    assert nb.kernel_value("print(ex.selected_token)", "0") == "0"
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_a_request_made_stale_by_a_newer_click_is_never_computed(notebook):
    nb = notebook(
        [
            "import llmasos_widgets as lw\nmodel = lw.load_model('tiny-llama')",
            f"ex = lw.Explorer(model, {TEXT!r}, panels=['tokens', 'lens'], cache_mb=0)\nex",  # no cache: clicks ask
        ]
    )
    page = nb.page
    root = page.locator(".lw-explorer")
    strip = root.locator(':scope > [data-testid="token-strip"] [data-testid="token"]')
    expect(root.locator('[data-testid="panel-lens"] [data-testid="progress"]')).to_have_attribute(
        "data-state", "ready", timeout=120_000
    )
    run_busy_cell(page, 6)
    strip.nth(3).click()  # leaves at once; the busy kernel reads it later
    page.wait_for_timeout(300)
    strip.nth(4).click()  # waits in the page: the kernel has not acknowledged the first
    page.wait_for_timeout(300)
    strip.nth(5).click()  # makes the second stale before it ever left
    assert not kernel_free(page)
    page.wait_for_function(_PRINTED, arg="kernel free", timeout=60_000)
    expect(root.locator('[data-testid="predictions"] .lw-pred-title')).to_contain_text("#5", timeout=30_000)
    log = json.loads(
        nb.kernel_exec("import json; print(json.dumps([k for kind, k in ex._server.log if kind == 'urgent']))")
    )
    asked = [json.loads(k) for k in log]
    positions = [a.get("position") for a in asked if a["what"] in ("predictions", "cell", "column")]
    assert 5 in positions and 4 not in positions, asked
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_a_wide_cell_lays_the_panels_out_in_a_grid_the_reader_rearranges_and_python_keeps(notebook):
    nb = notebook(
        [
            "import llmasos_widgets as lw\nmodel = lw.load_model('tiny-llama')",
            f"ex = lw.Explorer(model, {TEXT!r})\nex",
        ]
    )
    page = nb.page
    root = page.locator(".lw-explorer")
    expect(root).to_have_attribute("data-layout", "grid", timeout=120_000)  # the page is 1,400 px wide

    def box(name):
        return root.locator(f'[data-testid="panel-{name}"]').bounding_box()

    tokens, saliency, attention = box("tokens"), box("saliency"), box("attention")
    assert attention["width"] > 1.8 * tokens["width"]  # attention spans both columns, tokens one
    # Saliency and neurons share a row: side by side.
    neurons = box("neurons")
    assert abs(saliency["y"] - neurons["y"]) < 2 and neurons["x"] > saliency["x"] + saliency["width"] - 1
    root.locator('[data-testid="span-attention"]').click()
    expect(root.locator('[data-testid="panel-attention"]')).to_have_attribute("data-span", "1")
    root.locator('[data-testid="move-back-lens"]').click()
    expected = "['tokens', 'attention', 'saliency', 'lens', 'neurons']"
    assert nb.kernel_value("print(ex.panels)", expected) == expected
    assert nb.kernel_value("print(ex.panel_spans['attention'])", "1") == "1"
    order = root.locator(":scope > .lw-panels > section").evaluate_all("(s) => s.map((x) => x.dataset.panel)")
    assert order == ["tokens", "attention", "saliency", "lens", "neurons"]
    # A narrow cell keeps one column.
    page.set_viewport_size({"width": 700, "height": 1000})
    expect(root).to_have_attribute("data-layout", "column", timeout=10_000)
    tokens, attention = box("tokens"), box("attention")
    assert attention["y"] > tokens["y"] + tokens["height"] - 1 and abs(attention["width"] - tokens["width"]) < 2
    # Scrolled down into the panels, the shared strip stays at the top of what is visible of the Explorer.
    strip = root.locator(':scope > [data-testid="token-strip"]')
    scroller = page.locator(".jp-WindowedPanel-outer")
    top = scroller.bounding_box()["y"]
    scroller.evaluate("(s, y) => s.scrollBy(0, y)", box("lens")["y"] - top - 100)
    expect(root).not_to_have_attribute("data-strip-shift", "0", timeout=10_000)
    # Panels coming into view mount and grow the Explorer meanwhile: the strip is placed again.
    page.wait_for_function(
        "(top) => Math.abs(document.querySelector('.lw-explorer > [data-testid=token-strip]')"
        ".getBoundingClientRect().top - top) < 2",
        arg=top,
        timeout=10_000,
    )
    strip.locator('[data-testid="token"]').nth(4).click()  # still usable there
    assert nb.kernel_value("print(ex.selected_token)", "4") == "4"
    scroller.evaluate("(s) => s.scrollTo(0, 0)")
    expect(root).to_have_attribute("data-strip-shift", "0", timeout=10_000)
    assert nb.errors == [], f"page errors: {nb.errors}"
