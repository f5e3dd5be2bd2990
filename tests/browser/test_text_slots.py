"""Every text slot of every view keeps a right-to-left override and a zero-width space inert.

A RIGHT-TO-LEFT OVERRIDE (U+202E) in model or user text, applied by the browser, reverses what follows
it on the line: "#6 "‮"  score 0.1  for "x"" reads backwards. Each view is built on tiny-llama from
text that holds U+202E and U+200B inside words (the text, the patching prompts, a concept's name and
its examples, a steering direction's name, a metric's name, a typed saliency target, the model's name,
an exported file's title, the corpus of the neuron and feature indexes), exercised (tokens, a head, a
query row, a matrix cell, a neuron, a lens cell, a layer, a patching cell and its hover title, a
feature, a steered generation), then the whole view is walked in the page: no text node and no
``title``, ``aria-label`` or ``placeholder`` holds a raw bidi control or zero-width space, and the
slots that showed the text show the marker ``⟨U+202E⟩`` instead. An exported file is walked the same
way, opened from disk in the same browser.
"""

from __future__ import annotations

import json
import re

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

RLO = "⟨U+202E⟩"  # how visibleText shows U+202E
ZWSP = "⟨U+200B⟩"
TEXT = "The cat is in the ho\u202euse, zero\u200bwidth 大型 🤖 naïve"
CLEAN = "The cat is in the ho\u202euse, ze\u200bro"
CORRUPT = "The dog is in the ho\u202euse, ze\u200bro"

SETUP = f"""import json, warnings, torch
import llmasos_widgets as lw
model = lw.load_model('tiny-llama')
model.name = 'tiny\\u202ellama\\u200b'  # a model loaded from a user's path names itself
TEXT = {TEXT!r}
trace = model.trace(TEXT)
RLO = trace.tokens.index('\\u202e')
corpus = [TEXT, 'ab\\u202ecd ef\\u200bgh the cat', {CORRUPT!r}] + lw.sample_texts()[:20]
words = ['river', 'port', 'sea', 'lake', 'bay', 'coast', 'hill', 'cliff', 'delta', 'island', 'canal', 'harbor']
geo = lw.Concept('geo\\u202egraphy\\u200b', [f'The {{w}} is near the ci\\u202ety.' for w in words])
food = lw.Concept('food 大型 🤖', [f'I ate {{w}} for dinner.' for w in
    ['pasta', 'rice', 'soup', 'bread', 'cheese', 'salad', 'fish', 'beans', 'pizza', 'curry', 'tacos', 'stew']])
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    tcav = lw.tcav(model, ['The cat is in the', 'The ho\\u202euse is'], ' cat', [geo, food], [0, 1], n_random=2,
                   progress=False)
neuron_index = lw.NeuronIndex.build(model, corpus, layers=[0, 1], top_k=5, progress=False)
sae = lw.SAE.random(64, 128, 8, layer=1, seed=3)
feature_index = lw.FeatureIndex.build(model, sae, corpus, top_k=5, samples=8, progress=False)
metric = lw.Metric.of(lambda logits: logits[:, 408], name='logit of ca\\u202et\\u200b')
direction = lw.Direction(torch.randn(64, generator=torch.Generator().manual_seed(0)), layer=1,
                         name='dir\\u202eection\\u200b')"""
VIEWS = {
    "tokens": "tv = lw.TokensView(trace)\ntv",
    "attention": "av = lw.AttentionView(trace)\nav",
    "saliency": "sv = lw.SaliencyView(lw.attribute(model, TEXT, method='saliency', progress=False))\nsv",
    "neurons": "nv = lw.NeuronView(trace, 1, index=neuron_index)\nnv",
    "lens": "lv = lw.LensView(trace)\nlv",
    "concepts": "cv = lw.ConceptView(tcav).show_projection(trace)\ncv",
    "patching": f"pv = lw.PatchingView(model, {CLEAN!r}, {CORRUPT!r}, metric=metric)\npv",
    "steering": "stv = lw.SteeringView(model, TEXT, direction=direction, alphas=(-60, 60), max_new_tokens=4,"
    " metric=metric)\nstv",
    "features": "fv = lw.FeatureView(trace, sae, feature_index)\nfv.steer_tokens = 4\nfv",
    "explorer": "ex = lw.Explorer(model, TEXT, panels=['tokens', 'saliency', 'lens', 'concepts'])\nex",
}

# Every text node and every shown attribute under the given elements (open shadow roots too, where
# bokeh draws), and the ones that hold a raw bidi control (U+202A-U+202E, U+2066-U+2069, U+200E/F) or
# a zero-width space; <script> and <style> hold code, not text.
WALK = r"""(roots) => {
  const RAW = /[\u202a-\u202e\u2066-\u2069\u200e\u200f\u200b]/;
  const SHOWN = ["title", "aria-label", "placeholder", "alt"];
  const bad = [];
  let texts = 0;
  const describe = (el) => {
    const parts = [];
    for (let e = el, n = 0; e && e.nodeType === 1 && n < 4; e = e.parentElement || e.getRootNode().host, n++) {
      const id = e.dataset?.testid ? `[${e.dataset.testid}]` : "";
      const cls = typeof e.className === "string" && e.className ? "." + e.className.trim().split(/\s+/).join(".") : "";
      parts.unshift(`${e.tagName.toLowerCase()}${cls}${id}`);
    }
    return parts.join(" > ");
  };
  const walk = (node) => {
    if (node.nodeType === 3) {
      texts++;
      if (RAW.test(node.data)) bad.push({ where: describe(node.parentElement), text: JSON.stringify(node.data) });
      return;
    }
    if (node.nodeType === 1) {
      if (node.tagName === "SCRIPT" || node.tagName === "STYLE") return;
      for (const a of SHOWN) {
        const v = node.getAttribute(a);
        if (v !== null && RAW.test(v)) bad.push({ where: `${describe(node)} @${a}`, text: JSON.stringify(v) });
      }
      if (node.shadowRoot) walk(node.shadowRoot);
    }
    for (const child of node.childNodes) walk(child);
  };
  for (const root of roots) walk(root);
  return { bad, texts };
}"""


def assert_inert(root) -> None:
    """No raw bidi control or zero-width space anywhere under ``root`` (a locator), in text or shown attributes."""
    found = root.evaluate_all(WALK)
    assert found["texts"] > 0
    listing = "\n".join(f"  {b['where']}: {b['text']}" for b in found["bad"])
    assert not found["bad"], f"{len(found['bad'])} raw bidi/zero-width characters reached the page:\n{listing}"


def shows_marker(locator, marker: str = RLO) -> None:
    expect(locator).to_contain_text(marker, timeout=30_000)


@pytest.fixture(scope="module")
def nb(lab, browser):
    from _lab import open_notebook

    session = open_notebook(lab, browser, "text-slots.ipynb", [SETUP, *VIEWS.values()], timeout=300)
    session.rlo = int(session.kernel_exec("print(RLO)"))
    yield session
    session.close()


def strip_token(root, i: int):
    return root.locator(':scope > [data-testid="token-strip"] [data-testid="token"]').nth(i)


def test_tokens_view(nb):
    root = nb.page.locator(".lw-root.lw-tokens")
    strip_token(root, nb.rlo).click()
    expect(root.locator('[data-testid="predictions"]')).to_have_attribute("data-state", "ready", timeout=60_000)
    assert_inert(root)
    shows_marker(root.locator(".lw-pred-title"))
    shows_marker(root.locator('[data-testid="token-strip"]'))
    shows_marker(root.locator('[data-testid="token-strip"]'), ZWSP)
    shows_marker(root.locator(".lw-header .lw-model"))  # the model's name
    assert nb.errors == []


def test_attention_view(nb):
    page, i = nb.page, nb.rlo
    root = page.locator(".lw-root.lw-attention")
    strip_token(root, i).click()
    expect(root.locator('[data-testid="overview"]')).to_have_attribute("data-position", str(i), timeout=60_000)
    expect(root.locator('[data-testid="sharp-head"]').first).to_be_visible(timeout=30_000)
    shows_marker(root.locator('[data-testid="overview"]'))  # the legend and the sharp heads' line
    root.locator('[data-testid="sharp-head"]').first.click()  # a head: the head view
    head = root.locator('[data-testid="head-view"]')
    expect(head).to_have_attribute("data-state", "ready", timeout=30_000)
    head.locator(f'[data-testid="hv-query"][data-index="{i}"]').hover()
    shows_marker(head.locator('[data-testid="head-view-info"]'))
    shows_marker(head.locator('[data-testid="head-view-queries"]'))
    assert_inert(root)
    root.locator('[data-testid="tab-matrix"]').click()
    matrix = root.locator('[data-testid="matrix-view"]')
    expect(matrix).to_have_attribute("data-state", "ready", timeout=30_000)
    canvas = root.locator('[data-testid="matrix-canvas"]')
    box = canvas.bounding_box()
    q0, q1, k0, k1 = (float(canvas.get_attribute(f"data-{a}")) for a in ("q0", "q1", "k0", "k1"))
    canvas.hover(
        position={"x": (i + 0.5 - k0) / (k1 - k0) * box["width"], "y": (i + 0.5 - q0) / (q1 - q0) * box["height"]}
    )
    tooltip = root.locator('[data-testid="matrix-tooltip"]')
    expect(tooltip).to_have_attribute("data-q", str(i), timeout=10_000)
    shows_marker(tooltip)
    assert_inert(root)
    assert nb.errors == []


def test_saliency_view(nb):
    page, i = nb.page, nb.rlo
    root = page.locator(".lw-root.lw-saliency")
    overlay = root.locator('[data-testid="overlay"]')
    expect(overlay).to_have_attribute("data-state", "ready", timeout=60_000)
    strip_token(overlay, i).click()
    detail = root.locator('[data-testid="detail"]')
    expect(detail).to_contain_text(f"#{i} ", timeout=30_000)
    assert_inert(root)  # the detail line quotes the token
    shows_marker(detail)
    # A target typed by the user, with an override inside: the picker lists it, the detail line quotes it.
    version = overlay.get_attribute("data-version")
    root.locator('[data-testid="target-input"]').fill("x\u202ey")
    root.locator('[data-testid="target-input"]').press("Enter")
    expect(overlay).not_to_have_attribute("data-version", version, timeout=60_000)
    expect(overlay).to_have_attribute("data-state", "ready")
    assert nb.kernel_value("print(ascii(sv.target))", ascii("x\u202ey")) == ascii("x\u202ey")
    strip_token(overlay, i).click()
    assert_inert(root)
    assert root.locator('[data-testid="target-select"] option:checked').text_content() == f"“x{RLO}y”"
    shows_marker(detail)
    assert nb.errors == []


def test_neuron_view(nb):
    page, i = nb.page, nb.rlo
    root = page.locator(".lw-root.lw-neurons")
    strip_token(root, i).click()
    panel = root.locator('[data-testid="token-neurons"]')
    expect(panel).to_have_attribute("data-state", "ready", timeout=60_000)
    shows_marker(panel.locator(".lw-title"))
    panel.locator('[data-testid="neuron-row"]').first.click()
    neuron = root.locator('[data-testid="neuron-panel"]')
    expect(neuron).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(neuron.locator('[data-testid="examples"]')).to_have_attribute("data-state", "ready", timeout=60_000)
    shows_marker(neuron.locator('[data-testid="overlay"]'))
    root.locator('[data-testid="search-input"]').fill("\u202e")  # a token typed with an override
    root.locator('[data-testid="search-button"]').click()
    expect(root.locator('[data-testid="search-results"]')).to_have_attribute(
        "data-state", re.compile("ready|error"), timeout=60_000
    )
    assert_inert(root)
    assert nb.errors == []


def test_lens_view(nb):
    page, i = nb.page, nb.rlo
    root = page.locator(".lw-root.lw-lens")
    cell = root.locator(f'[data-testid="lens-cell"][data-layer="1"][data-pos="{i}"]')
    expect(cell).to_have_attribute("data-token-id", re.compile(r"\d+"), timeout=60_000)
    cell.click()
    topk = root.locator('[data-testid="lens-topk"]')
    expect(topk).to_have_attribute("data-state", "ready", timeout=60_000)
    assert_inert(root)
    shows_marker(topk.locator(".lw-topk-title"))
    shows_marker(root.locator('[data-testid="lens-grid"] th.lw-selected'))  # the column's token
    assert nb.errors == []


def test_concept_view(nb):
    page, i = nb.page, nb.rlo
    root = page.locator(".lw-root.lw-concepts")
    root.locator('[data-testid="layer-button"][data-layer="1"]').click()
    chart = root.locator('[data-testid="chart"]')
    expect(chart).to_have_attribute("data-state", "ready", timeout=120_000)
    overlay = root.locator('[data-testid="overlay"]')
    expect(overlay).to_have_attribute("data-state", "ready", timeout=60_000)
    overlay.locator('[data-testid="token"]').nth(i).click()
    value = root.locator('[data-testid="token-value"]')
    expect(value).to_have_attribute("data-index", str(i), timeout=30_000)
    assert_inert(root)
    shows_marker(value)  # the token
    shows_marker(root.locator('[data-testid="stats"]'))  # the concept's name
    shows_marker(root.locator(".lw-overlay-title"))
    shows_marker(root.locator('[data-testid="concept-button"]').first)
    # The chart names the concepts on its canvas (its x axis) and in its hover: the marker there too.
    factors = json.loads(
        page.evaluate(
            """() => {
              const docs = window.Bokeh?.documents ?? [];
              for (let i = docs.length - 1; i >= 0; i--) {
                const fig = docs[i].get_model_by_name('lw-tcav-chart');
                if (!fig) continue;
                const column = (d) => (d instanceof Map ? d.get("concept") : d?.concept) ?? [];
                const concepts = fig.renderers.map((r) => Array.from(column(r.data_source?.data)));
                return JSON.stringify([fig.x_range.factors, concepts]);
              }
              return null;
            }"""
        )
    )
    names = [name for _, name in factors[0]] + [n for col in factors[1] for n in col]
    assert f"geo{RLO}graphy{ZWSP}" in names
    assert not [n for n in names if re.search("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u200b]", n)]
    assert nb.errors == []


def test_patching_view(nb):
    page = nb.page
    root = page.locator(".lw-root.lw-patching")
    expect(root.locator('[data-testid="progress"]')).to_have_attribute("data-state", "ready", timeout=120_000)
    i = int(nb.kernel_exec("print(pv.tokens.index('\\u202e'))"))
    canvas = root.locator('[data-testid="patch-grid"]')
    assert int(canvas.get_attribute("data-rows")) == int(nb.kernel_exec("print(len(pv.tokens))"))  # token rows
    cell_w = float(canvas.get_attribute("data-cell-w"))
    at = {"x": 1 * cell_w + cell_w / 2, "y": 18 + i * 20 + 10}  # layer 1 at the override's position
    canvas.click(position=at)
    cell = root.locator('[data-testid="cell-predictions"]')
    expect(cell).to_have_attribute("data-state", "ready", timeout=60_000)
    canvas.hover(position={"x": at["x"] + 1, "y": at["y"] + 1})  # the canvas's hover title
    expect(canvas).to_have_attribute("title", re.compile(f"position {i} "), timeout=10_000)
    assert_inert(root)
    assert RLO in canvas.get_attribute("title")
    shows_marker(cell.locator(".lw-cell-title"))
    shows_marker(root.locator(".lw-metric-name"))  # the metric's name
    shows_marker(cell.locator('[data-testid="cell-metric"]'))
    shows_marker(root.locator(f'.lw-row-label[data-row="{i}"]'))
    assert nb.errors == []


def test_steering_view(nb):
    page = nb.page
    root = page.locator(".lw-root.lw-steering")
    effect = root.locator('[data-testid="effect"]')
    expect(effect).to_have_attribute("data-state", re.compile("ready|no-effect"), timeout=120_000)
    slider = root.locator('[data-testid="alpha-slider"]')
    slider.fill(slider.get_attribute("max"))
    expect(effect).to_have_attribute("data-step", slider.get_attribute("max"), timeout=30_000)
    expect(effect).to_have_attribute("data-state", re.compile("ready|no-effect"), timeout=120_000)
    assert_inert(root)
    shows_marker(root.locator(".lw-header"))  # the direction's name
    shows_marker(effect)  # the metric's name
    shows_marker(root.locator('[data-testid="steered"]'))  # the prompt
    assert nb.errors == []


def test_feature_view(nb):
    page, i = nb.page, nb.rlo
    root = page.locator(".lw-root.lw-features")
    strip_token(root, i).click()
    panel = root.locator('[data-testid="token-features"]')
    expect(panel).to_have_attribute("data-state", re.compile("ready|skipped"), timeout=60_000)
    shows_marker(panel.locator(".lw-title"))
    panel.locator('[data-testid="feature-row"]').first.click()
    dashboard = root.locator('[data-testid="dashboard"]')
    expect(dashboard).to_have_attribute("data-state", "ready", timeout=60_000)
    shows_marker(dashboard.locator('[data-testid="overlay"]'))
    dashboard.locator('[data-testid="steer-button"]').click()
    expect(dashboard.locator('[data-testid="steer-result"]')).to_have_attribute(
        "data-state", re.compile("ready|no-effect"), timeout=120_000
    )
    assert_inert(root)
    assert nb.errors == []


def test_explorer(nb):
    page, i = nb.page, nb.rlo
    root = page.locator(".lw-root.lw-explorer")
    strip_token(root, i).click()
    expect(root.locator('[data-testid="panel-tokens"] [data-testid="predictions"]')).to_have_attribute(
        "data-state", "ready", timeout=60_000
    )
    saliency = root.locator('[data-testid="panel-saliency"]')
    expect(saliency.locator('[data-testid="overlay"]')).to_have_attribute("data-state", "ready", timeout=120_000)
    expect(saliency.locator('[data-testid="detail"]')).to_contain_text(f"#{i} ", timeout=30_000)
    expect(root.locator(f'[data-testid="panel-lens"] td.lw-in-col[data-pos="{i}"]').first).to_be_visible(timeout=60_000)
    assert_inert(root)
    shows_marker(saliency.locator('[data-testid="detail"]'))
    shows_marker(root.locator('[data-testid="panel-lens"] th.lw-selected'))
    expect(root.locator('[data-testid="note-concepts"]')).to_be_visible()
    assert nb.errors == []


def test_an_exported_file(nb, browser, tmp_path):
    path = tmp_path / "text-slots.html"
    nb.kernel_exec(
        "from llmasos_widgets.views.export import save_html\n"
        "for v in (tv, sv, nv, lv, cv, fv):\n    v.selected_token = RLO\n"
        "cv.selected_layer = 1\npv.selected_layer = 1\npv.selected_token = pv.tokens.index('\\u202e')\n"
        f"save_html([tv, sv, nv, lv, cv, pv, stv, fv], {str(path)!r}, title='text \\u202eslots\\u200b 大型 🤖')",
        timeout=300,
    )
    context = browser.new_context(offline=True)
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "blob:")) else r.abort())
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    try:
        hosts = page.locator("[id^=lw-view-]")
        expect(hosts).to_have_count(8)
        for n in range(8):
            expect(hosts.nth(n)).to_have_attribute("data-state", "ready", timeout=60_000)
        expect(page.locator('.lw-saliency [data-testid="overlay"]')).to_have_attribute(
            "data-state", "ready", timeout=30_000
        )
        expect(page.locator('.lw-concepts [data-testid="overlay"]')).to_have_attribute(
            "data-state", "ready", timeout=30_000
        )
        expect(page.locator('.lw-patching [data-testid="cell-predictions"]')).to_have_attribute(
            "data-state", "ready", timeout=30_000
        )
        expect(page.locator('.lw-steering [data-testid="effect"]')).to_have_attribute(
            "data-state", re.compile("ready|no-effect"), timeout=30_000
        )
        assert_inert(page.locator("body"))
        assert f"text {RLO}slots{ZWSP} 大型 🤖" in page.title()
        expect(page.locator("body > h1")).to_have_text(f"text {RLO}slots{ZWSP} 大型 🤖")
        shows_marker(page.locator('.lw-saliency [data-testid="detail"]'))
        shows_marker(page.locator('.lw-concepts [data-testid="token-value"]'))
        shows_marker(page.locator(".lw-patching .lw-cell-title"))
        shows_marker(page.locator(".lw-root.lw-steering > .lw-header"))
        assert errors == []
    finally:
        context.close()
