"""ConceptView in real JupyterLab on smollm2-135m: the bokeh chart offline, a layer pick, the overlay, linking."""

from __future__ import annotations

import json

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

SETUP = """import warnings
import llmasos_widgets as lw
model = lw.load_model('smollm2-135m')
cities = ['Paris', 'Rome', 'Berlin', 'Madrid', 'Lisbon', 'Vienna', 'Oslo', 'Cairo', 'Lima', 'Quito', 'Delhi', 'Tokyo']
geo = lw.Concept('geography', [f'{c} is a city with a river and a port.' for c in cities])
food = lw.Concept('food', [f'I ate {f} for dinner.' for f in
    ['pasta', 'rice', 'soup', 'bread', 'cheese', 'salad', 'fish', 'beans', 'pizza', 'curry', 'tacos', 'stew']])
prompts = ['The capital of France is', 'The Eiffel Tower is in', 'He flew to France and landed in',
           'The Louvre is a museum in', 'The Seine flows through']
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    res = lw.tcav(model, prompts, ' Paris', [geo, food], [3, 9, 15], n_random=3, progress=False)
trace = model.trace('We sailed from Lisbon to Cairo and ate soup.')"""
SHOW = "view = lw.ConceptView(res).show_projection(trace)\ntokens = lw.TokensView(trace)\nview"

# The figure BokehJS drew last: its tags hold the layer the chart was built for.
CHART_TAGS = """() => {
  const docs = window.Bokeh?.documents ?? [];
  for (let i = docs.length - 1; i >= 0; i--) {
    const fig = docs[i].get_model_by_name('lw-tcav-chart');
    if (fig) return JSON.stringify(fig.tags);
  }
  return null;
}"""


@pytest.fixture(scope="module")
def nb(lab, browser):
    from _lab import open_notebook

    session = open_notebook(lab, browser, "concepts.ipynb", [SETUP, SHOW], timeout=300)
    yield session
    session.close()


def kernel_cosines(nb, concept: int, layer: int) -> list[float]:
    out = nb.kernel_exec(
        "from llmasos_widgets.analyses.concepts import projection\n"
        f"print(projection(res, trace, {concept}, {layer}).tolist())"
    )
    return json.loads(out)


def overlay_cosines(page) -> list[float]:
    spans = page.locator('[data-testid="overlay"] [data-testid="token"]')
    return [float(spans.nth(i).get_attribute("data-cosine")) for i in range(spans.count())]


def test_chart_renders_offline_with_the_bundled_bokehjs(nb):
    page = nb.page
    chart = page.locator('[data-testid="chart"]')
    expect(chart).to_have_attribute("data-state", "ready", timeout=120_000)
    version = nb.kernel_exec("import bokeh; print(bokeh.__version__)").strip()
    assert page.evaluate("() => Object.keys(window.Bokeh ?? {})").count(version) == 1
    # The chart was drawn (bokeh renders to a canvas inside its shadow DOM; locators pierce it).
    expect(chart.locator("canvas").first).to_be_visible(timeout=30_000)
    layer = chart.get_attribute("data-layer")  # the layer drawn is the kernel's
    assert nb.kernel_value("print(view.selected_layer)", layer) == layer
    assert page.evaluate(CHART_TAGS) == f"[{layer}]"
    # No request left the machine: every script came from the page or the kernel.
    assert (
        page.evaluate(
            "() => performance.getEntriesByType('resource').filter(e => /bokeh\\.org|cdn\\./.test(e.name)).length"
        )
        == 0
    )
    assert nb.errors == []


def test_picking_a_layer_updates_chart_stats_and_overlay(nb):
    page = nb.page
    chart = page.locator('[data-testid="chart"]')
    overlay = page.locator('[data-testid="overlay"]')
    expect(chart).to_have_attribute("data-state", "ready", timeout=120_000)
    expect(overlay).to_have_attribute("data-state", "ready", timeout=60_000)
    for layer in (15, 3):
        before = overlay_cosines(page)
        page.locator(f'[data-testid="layer-button"][data-layer="{layer}"]').click()
        expect(chart).to_have_attribute("data-layer", str(layer), timeout=60_000)
        expect(chart).to_have_attribute("data-state", "ready")
        expect(overlay).to_have_attribute("data-layer", str(layer), timeout=60_000)
        expect(overlay).to_have_attribute("data-state", "ready")
        expect(page.locator('[data-testid="stats"]')).to_have_attribute("data-layer", str(layer))
        assert page.evaluate(CHART_TAGS) == f"[{layer}]"
        assert nb.kernel_value("print(view.selected_layer)", str(layer)) == str(layer)
        shown = overlay_cosines(page)
        assert shown != before
        assert shown == pytest.approx(kernel_cosines(nb, 0, layer), abs=1e-6)
        button = page.locator(f'[data-testid="layer-button"][data-layer="{layer}"]')
        assert button.get_attribute("aria-pressed") == "true"
    assert nb.errors == []


def test_picking_a_concept_reprojects_the_text(nb):
    page = nb.page
    overlay = page.locator('[data-testid="overlay"]')
    page.locator('[data-testid="concept-button"][data-index="1"]').click()
    expect(overlay).to_have_attribute("data-concept", "1", timeout=60_000)
    expect(overlay).to_have_attribute("data-state", "ready")
    layer = overlay.get_attribute("data-layer")  # the concept changed, the layer did not: the kernel's
    assert nb.kernel_value("print(view.selected_layer)", layer) == layer
    assert overlay_cosines(page) == pytest.approx(kernel_cosines(nb, 1, int(layer)), abs=1e-6)
    expect(page.locator('[data-testid="stats"]')).to_have_attribute("data-concept", "food")
    assert nb.kernel_value("print(view.selected_concept)", "1") == "1"
    assert nb.errors == []


def test_token_selection_syncs_and_links_with_another_view(nb):
    page = nb.page
    nb.kernel_exec("import ipywidgets as W\nlink = W.jslink((view, 'selected_token'), (tokens, 'selected_token'))")
    # The link widget is made in the page asynchronously: it works once a change from Python crosses it there.
    nb.kernel_exec("view.selected_token = 2")
    assert nb.kernel_value("print(tokens.selected_token)", "2") == "2"
    page.locator('[data-testid="overlay"] [data-testid="token"]').nth(4).click()
    value = page.locator('[data-testid="token-value"]')
    expect(value).to_have_attribute("data-index", "4", timeout=30_000)
    assert float(value.get_attribute("data-cosine")) == pytest.approx(overlay_cosines(page)[4])
    # The link lives in the page: the other view's model changes there, then syncs to the kernel.
    assert nb.kernel_value("print(view.selected_token, tokens.selected_token)", "4 4") == "4 4"
    nb.kernel_exec("view.selected_token = 6")
    expect(value).to_have_attribute("data-index", "6", timeout=30_000)
    assert nb.errors == []


def test_bad_input_leaves_the_view_usable(nb):
    out = nb.kernel_exec("try:\n    view.selected_layer = 4\nexcept ValueError as e:\n    print(e)")
    assert "layer 4 is not in this result: its layers are [3, 9, 15]" in out
    page = nb.page
    page.locator('[data-testid="layer-button"][data-layer="9"]').click()
    expect(page.locator('[data-testid="chart"]')).to_have_attribute("data-layer", "9", timeout=60_000)
    assert nb.errors == []
