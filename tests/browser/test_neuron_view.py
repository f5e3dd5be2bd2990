"""NeuronView and LensView in real JupyterLab on smollm2-135m: click a token, then a neuron; the lens grid."""

from __future__ import annotations

import json
import re

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

SETUP = (
    "import json, torch\nimport llmasos_widgets as lw\nmodel = lw.load_model('smollm2-135m')\n"
    "trace = model.trace('The Eiffel Tower is in Paris, the capital of France.')\n"
    "index = lw.NeuronIndex.build(model, lw.sample_texts()[:48], layers=[12], top_k=5, progress=False)"
)


@pytest.fixture(scope="module")
def nb(lab, browser):
    from _lab import open_notebook

    session = open_notebook(
        lab,
        browser,
        "neurons.ipynb",
        [SETUP, "view = lw.NeuronView(trace, layer=12, index=index)\nview", "lens = lw.LensView(trace)\nlens"],
        timeout=300,
    )
    yield session
    session.close()


def test_click_a_token_then_a_neuron_shows_the_traces_values(nb):
    page = nb.page
    view = page.locator(".lw-neurons")
    tokens = view.locator('[data-testid="token-strip"] [data-testid="token"]')
    expect(tokens.first).to_be_visible(timeout=120_000)
    tokens.nth(6).click()
    panel = view.locator('[data-testid="token-neurons"]')
    expect(panel).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(panel).to_have_attribute("data-position", "6")
    assert nb.kernel_value("print(view.selected_token)", "6") == "6"
    rows = panel.locator('[data-testid="neuron-row"]')
    expect(rows).to_have_count(20)
    shown = [int(r.get_attribute("data-neuron")) for r in rows.all()]
    expected = json.loads(nb.kernel_exec("print(json.dumps(torch.topk(trace.mlp_post(12)[6], 20).indices.tolist()))"))
    assert shown == expected

    rows.nth(0).click()
    neuron = shown[0]
    npanel = view.locator('[data-testid="neuron-panel"]')
    expect(npanel).to_have_attribute("data-neuron", str(neuron), timeout=30_000)
    expect(npanel).to_have_attribute("data-state", "ready", timeout=60_000)
    assert nb.kernel_value("print(view.selected_neuron)", str(neuron)) == str(neuron)
    overlay = npanel.locator('[data-testid="overlay-token"]')
    values = [float(s.get_attribute("data-value")) for s in overlay.all()]
    exact = json.loads(nb.kernel_exec(f"print(json.dumps(trace.mlp_post(12)[:, {neuron}].tolist()))"))
    assert values == pytest.approx(exact, rel=1e-6, abs=1e-7)
    # The row clicked showed this neuron's activation at token 6 (float16 in the layer summary).
    assert values[6] == pytest.approx(float(rows.nth(0).get_attribute("data-value")), rel=1e-3)
    bars = npanel.locator('[data-testid="hist-bar"]')
    assert sum(int(b.get_attribute("data-count")) for b in bars.all()) == len(exact)
    expect(npanel.locator('[data-testid="promoted-token"]')).to_have_count(10)
    expect(npanel.locator('[data-testid="suppressed-token"]')).to_have_count(10)

    examples = npanel.locator('[data-testid="examples"]')
    expect(examples).to_have_attribute("data-state", "ready", timeout=30_000)
    shown_ex = [float(e.get_attribute("data-activation")) for e in examples.locator('[data-testid="example"]').all()]
    ref = json.loads(nb.kernel_exec(f"print(json.dumps([e.activation for e in index.top_examples(12, {neuron})]))"))
    assert shown_ex == pytest.approx(ref)
    assert nb.errors == []


def test_step_layers_and_rank_by_contribution(nb):
    page = nb.page
    view = page.locator(".lw-neurons")
    nb.kernel_exec("view.selected_token = 5; view.selected_layer = 12")
    panel = view.locator('[data-testid="token-neurons"]')
    # The page shows Python's selection before the click steps from it.
    expect(panel).to_have_attribute("data-position", "5", timeout=30_000)
    expect(panel).to_have_attribute("data-layer", "12", timeout=30_000)
    view.locator('[data-testid="layer-next"]').click()
    expect(panel).to_have_attribute("data-layer", "13", timeout=30_000)
    assert nb.kernel_value("print(view.selected_layer)", "13") == "13"
    view.locator('[data-testid="rank-by"]').select_option("contribution")
    expect(view.locator('[data-testid="target"]')).to_be_visible(timeout=60_000)
    expect(panel).to_have_attribute("data-state", "ready", timeout=60_000)
    rows = panel.locator('[data-testid="neuron-row"]')
    shown = [(int(r.get_attribute("data-neuron")), float(r.get_attribute("data-contribution"))) for r in rows.all()]
    ref = json.loads(
        nb.kernel_exec(
            "c = lw.neuron_contributions(trace, 13, 5, k=20)\n"
            "print(json.dumps([c.neurons.tolist(), c.contributions.tolist()]))"
        )
    )
    assert [n for n, _ in shown] == ref[0]
    assert [v for _, v in shown] == pytest.approx(ref[1], rel=1e-5)
    nb.kernel_exec("view.rank_by = 'activation'")
    assert nb.errors == []


def test_search_neurons_by_token(nb):
    view = nb.page.locator(".lw-neurons")
    token = nb.kernel_exec("e = index.top_examples(12, 0)[0]\nprint(e.tokens[e.peak], end='')")
    view.locator('[data-testid="search-input"]').fill(token)
    view.locator('[data-testid="search-button"]').click()
    results = view.locator('[data-testid="search-result"]')
    expect(results.first).to_be_visible(timeout=30_000)
    ref = json.loads(nb.kernel_exec(f"print(json.dumps(index.neurons_for_token({token!r}, k=10)))"))
    assert [(int(r.get_attribute("data-layer")), int(r.get_attribute("data-neuron"))) for r in results.all()] == [
        (la, n) for la, n, _, _ in ref
    ]
    results.first.click()
    expect(view.locator('[data-testid="neuron-panel"]')).to_have_attribute("data-neuron", str(ref[0][1]))
    assert nb.errors == []


def test_logit_lens_grid_and_cell(nb):
    page = nb.page
    lens = page.locator(".lw-lens")
    status = lens.locator('[data-testid="progress"]')
    expect(status).to_have_attribute("data-state", "ready", timeout=120_000)
    assert status.get_attribute("data-done") == status.get_attribute("data-total")  # every block shown
    cells = lens.locator('[data-testid="lens-cell"]')
    n = int(nb.kernel_exec("print(len(trace))"))
    expect(cells).to_have_count(30 * n)
    # The last layer's row is the model's own prediction (up to logits within rounding of the top one).
    last = [
        int(c.get_attribute("data-token-id")) for c in lens.locator('[data-testid="lens-cell"][data-layer="29"]').all()
    ]
    gaps = json.loads(
        nb.kernel_exec(
            f"print(json.dumps((trace.logits.max(-1).values - trace.logits[range(len(trace)), {last}]).tolist()))"
        )
    )
    assert len(last) == n and max(gaps) <= 1e-4
    lens.locator('[data-testid="lens-cell"][data-layer="20"][data-pos="7"]').click()
    topk = lens.locator('[data-testid="lens-topk"]')
    expect(topk).to_have_attribute("data-state", "ready", timeout=30_000)
    assert nb.kernel_value("print(lens.selected_layer, lens.selected_token)", "20 7") == "20 7"
    rows = topk.locator('[data-testid="lens-topk-row"]')
    shown = [(int(r.get_attribute("data-token-id")), float(r.get_attribute("data-prob"))) for r in rows.all()]
    ref = json.loads(
        nb.kernel_exec(
            "r = lw.logit_lens(trace, 20, k=10)\nprint(json.dumps([r.ids[7].tolist(), r.probs[7].tolist()]))"
        )
    )
    assert [p for _, p in shown] == pytest.approx(ref[1], rel=1e-5)
    # The same ten tokens in the same order, except where two probabilities are within rounding of each other.
    for (i, p), j, q in zip(shown, ref[0], ref[1], strict=True):
        assert i == j or abs(p - q) <= 1e-6 * max(q, 1e-12) + 1e-9
    assert nb.errors == []


def test_html_tokens_render_as_text(lab, browser):
    from _lab import open_notebook

    payloads = "<img src=x onerror=alert(1)> <script>window.__pwned=1</script> <b>bold</b>"
    session = open_notebook(
        lab,
        browser,
        "neurons-html.ipynb",
        [
            "import llmasos_widgets as lw\n"
            f"t = lw.load_model('tiny-gpt2').trace({payloads!r})\n"
            "view = lw.NeuronView(t, layer=1, token=2, neuron=3)\nlens = lw.LensView(t)\n"
            "import ipywidgets\nipywidgets.VBox([view, lens])"
        ],
    )
    try:
        page = session.page
        expect(page.locator('[data-testid="neuron-panel"]')).to_have_attribute("data-state", "ready", timeout=120_000)
        expect(page.locator('[data-testid="progress"]')).to_have_attribute("data-state", "ready", timeout=60_000)
        for root in (page.locator(".lw-neurons"), page.locator(".lw-lens")):
            assert root.locator("img, script, b").count() == 0
            assert "<img" in root.locator('[data-testid="token-strip"]').text_content()
        assert page.evaluate("() => window.__pwned === undefined")
        assert session.errors == []
    finally:
        session.close()


MOE_TEXT = "The café in 北京 🤖 is naïve"


def test_the_router_of_a_mixture_of_experts_in_the_view_and_the_explorer(notebook):
    """tiny-qwen2-moe: the selected token's experts and weights per layer, as text, in NeuronView and the Explorer."""
    nb = notebook(
        [
            "import json\nimport llmasos_widgets as lw\nmodel = lw.load_model('tiny-qwen2-moe')\n"
            f"trace = model.trace({MOE_TEXT!r})",
            "view = lw.NeuronView(trace, layer=1)\nview",
            "ex = lw.Explorer(trace, panels=['neurons'])\nex",
        ]
    )
    page = nb.page
    for root, name in ((page.locator(".lw-root.lw-neurons"), "view"), (page.locator(".lw-explorer"), "ex")):
        tokens = root.locator('[data-testid="token-strip"] [data-testid="token"]')
        expect(tokens.first).to_be_visible(timeout=120_000)
        tokens.nth(3).click()
        router = root.locator('[data-testid="router"]')
        expect(router).to_have_attribute("data-state", "ready", timeout=60_000)
        expect(router).to_have_attribute("data-position", "3")
        assert nb.kernel_value(f"print({name}.selected_token)", "3") == "3"
        rows = router.locator('[data-testid="router-row"]')
        expect(rows).to_have_count(2)
        code = (
            "r = [trace.router(l) for l in range(2)]\n"
            "print(json.dumps([[r[l].experts[3].tolist(), r[l].weights[3].tolist(), float(r[l].shared_gate[3])] "
            "for l in range(2)]))"
        )
        for layer, (experts, weights, gate) in enumerate(json.loads(nb.kernel_exec(code))):
            pairs = ", ".join(f"expert {e} · {w:.2f}" for e, w in zip(experts, weights, strict=True))
            expect(rows.nth(layer)).to_have_text(f"layer {layer}: {pairs}, shared · {gate:.2f}")
        expect(rows.nth(1)).to_have_class(re.compile("lw-selected"))  # the layer shown is layer 1 (the middle)
        # The token's top neurons are units of the experts it was sent to (or of the shared expert).
        labels = root.locator('[data-testid="token-neurons"] [data-testid="neuron-row"] .lw-rank-token')
        expect(labels.first).to_be_visible(timeout=30_000)
        sent = {f"E{e}·" for e in json.loads(nb.kernel_exec(code))[1][0]}
        assert all(t.startswith("S") or t[: t.index("·") + 1] in sent for t in labels.all_text_contents())
    assert nb.errors == []
