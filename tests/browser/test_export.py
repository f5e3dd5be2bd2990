"""An exported file opened from disk in Chromium with the network blocked: the views draw and answer clicks."""

from __future__ import annotations

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

import llmasos_widgets as lw  # noqa: E402
from llmasos_widgets.views.export import save_html  # noqa: E402

pytestmark = pytest.mark.browser

TEXT = "The capital of France is Paris. 大型语言模型 🤖 <img src=x onerror=alert(1)>"


def open_offline(browser, path):
    """Open ``path`` from disk; any request that is not the file itself (or its blob URLs) is refused."""
    context = browser.new_context(offline=True)
    asked = []

    def route(r):
        asked.append(r.request.url)
        r.continue_() if r.request.url.startswith(("file:", "blob:")) else r.abort()

    context.route("**/*", route)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    return page, errors, asked


def test_an_exported_file_works_offline_and_answers_from_what_it_recorded(browser, tmp_path):
    model = lw.load_model("tiny-llama")
    trace = model.trace(TEXT)
    tokens, attention = lw.TokensView(trace), lw.AttentionView(trace)
    saliency = lw.SaliencyView(lw.attribute(model, "The capital of France is", method="saliency", progress=False))
    path = save_html([tokens, attention, saliency], tmp_path / "france.html")
    page, errors, asked = open_offline(browser, path)
    try:
        hosts = page.locator("[id^=lw-view-]")
        for i in range(3):
            expect(hosts.nth(i)).to_have_attribute("data-state", "ready", timeout=30_000)
        # TokensView: a click shows the predictions the kernel gave at export.
        view = page.locator(".lw-root.lw-tokens")
        expect(view.locator('[data-testid="token"]')).to_have_count(len(trace))
        view.locator('[data-testid="token"]').nth(4).click()
        panel = view.locator('[data-testid="predictions"]')
        expect(panel).to_have_attribute("data-state", "ready", timeout=10_000)
        shown = [r.get_attribute("data-token-id") for r in view.locator('[data-testid="prediction-row"]').all()]
        assert shown == [str(p.id) for p in trace.top_predictions(4, k=5)]
        # AttentionView: the overview is drawn, and a token's rows come back for a click.
        att = page.locator(".lw-root.lw-attention")
        expect(att.locator(".lw-header")).to_contain_text(f"overview: {trace.n_layers}/{trace.n_layers} layers")
        att.locator('[data-testid="token"]').nth(2).click()
        expect(att.locator('[data-testid="sharp-head"]').first).to_be_visible(timeout=10_000)  # from the rows
        expect(att.locator(".lw-error:visible")).to_have_count(0)
        # SaliencyView: the recorded scores are shown; a recompute needs the kernel and says so in place.
        sal = page.locator(".lw-root.lw-saliency")
        expect(sal.locator('[data-testid="overlay"]')).to_have_attribute("data-state", "ready", timeout=10_000)
        sal.locator('[data-testid="method-select"]').select_option("input_x_gradient")
        sal.locator('[data-testid="apply"]').click()
        expect(sal.locator('[data-testid="error"]')).to_contain_text("not recorded in this file: recompute")
        # Model text stayed text, nothing reached for the network, nothing threw.
        assert page.locator("img").count() == 0
        assert [u for u in asked if not u.startswith(("file:", "blob:"))] == []
        assert errors == []
    finally:
        page.context.close()


def test_an_exported_explorer_stays_linked_offline(browser, tmp_path):
    model = lw.load_model("tiny-llama")
    explorer = lw.Explorer(model, TEXT, collapsed=["attention"])
    path = explorer.save_html(tmp_path / "explorer.html")
    page, errors, asked = open_offline(browser, path)
    try:
        expect(page.locator("#lw-view-0")).to_have_attribute("data-state", "ready", timeout=30_000)
        root = page.locator(".lw-root.lw-explorer")
        strip = root.locator(':scope > [data-testid="token-strip"] [data-testid="token"]')
        expect(strip).to_have_count(len(explorer.tokens))
        strip.nth(4).click()  # every open panel follows, answered from the file
        expect(root.locator('[data-testid="selection"]')).to_contain_text("token #4")
        predictions = root.locator('[data-testid="panel-tokens"] [data-testid="predictions"]')
        expect(predictions).to_have_attribute("data-state", "ready", timeout=10_000)
        shown = [r.get_attribute("data-token-id") for r in predictions.locator('[data-testid="prediction-row"]').all()]
        assert shown == [str(p.id) for p in explorer.trace.top_predictions(4, k=5)]
        expect(root.locator('[data-testid="token-neurons"]')).to_have_attribute("data-position", "4", timeout=10_000)
        expect(root.locator('[data-testid="panel-lens"] td.lw-in-col[data-pos="4"]').first).to_be_visible()
        # The folded panel was not recorded: opened, it says so in place instead of staying blank.
        root.locator('[data-testid="toggle-attention"]').click()
        expect(root.locator('[data-testid="panel-attention"]')).to_contain_text(
            "not recorded in this file", timeout=10_000
        )
        assert page.locator("img").count() == 0
        assert [u for u in asked if not u.startswith(("file:", "blob:"))] == []
        assert errors == []
    finally:
        page.context.close()


def test_an_exported_concept_view_draws_its_chart_and_projection_offline(browser, tmp_path):
    import warnings

    from llmasos_widgets.analyses.concepts import projection

    model = lw.load_model("tiny-llama")
    shout = lw.Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
    calm = lw.Concept("calm", [f"please, the {w} is fine." for w in "abcdefghijkl"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = lw.tcav(model, ["The capital of France is"], 5, [shout, calm], [0, 1], n_random=2, progress=False)
    trace = model.trace(TEXT)
    view = lw.ConceptView(result).show_projection(trace)
    view.selected_layer = 1
    page, errors, asked = open_offline(browser, save_html([view], tmp_path / "concepts.html"))
    try:
        root = page.locator(".lw-root.lw-concepts")
        chart, overlay = root.locator('[data-testid="chart"]'), root.locator('[data-testid="overlay"]')
        for concept, layer in ((0, 1), (0, 0), (1, 0)):
            if layer != int(chart.get_attribute("data-layer") or 1):
                root.locator(f'[data-testid="layer-button"][data-layer="{layer}"]').click()
            if concept:
                root.locator(f'[data-testid="concept-button"][data-index="{concept}"]').click()
            # The chart is drawn by the BokehJS recorded in the file, for the layer picked.
            expect(chart).to_have_attribute("data-layer", str(layer), timeout=30_000)
            expect(chart).to_have_attribute("data-state", "ready")
            expect(chart.locator("canvas").first).to_be_visible(timeout=10_000)
            expect(overlay).to_have_attribute("data-layer", str(layer), timeout=10_000)
            expect(overlay).to_have_attribute("data-concept", str(concept))
            expect(overlay).to_have_attribute("data-state", "ready")
            tokens = overlay.locator('[data-testid="token"]')
            shown = [float(tokens.nth(i).get_attribute("data-cosine")) for i in range(tokens.count())]
            assert shown == pytest.approx(projection(result, trace, concept, layer).tolist(), abs=1e-6)
        expect(root.locator(".lw-error")).to_have_count(0)
        assert page.locator("img").count() == 0
        assert [u for u in asked if not u.startswith(("file:", "blob:"))] == []
        assert errors == []
    finally:
        page.context.close()
