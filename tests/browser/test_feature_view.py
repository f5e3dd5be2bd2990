"""FeatureView in real JupyterLab: a token's features, a feature's dashboard, search, steering, linked views."""

from __future__ import annotations

import json

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

TEXT = "The capital of France is Paris. 大型语言模型 🤖🧠 naïve café, the end."
SETUP = (
    "import json, torch\nimport llmasos_widgets as lw\nmodel = lw.load_model('tiny-llama')\n"
    "sae = lw.train_sae(model, lw.sample_texts()[:200], layer=1, n_latents=128, k=8, batch_tokens=256, max_steps=30,"
    " progress=False)\n"
    "index = lw.FeatureIndex.build(model, sae, lw.sample_texts()[:40], top_k=5, samples=8, progress=False)\n"
    f"trace = model.trace({TEXT!r})"
)


@pytest.fixture(scope="module")
def nb(lab, browser):
    from _lab import open_notebook

    session = open_notebook(
        lab,
        browser,
        "features.ipynb",
        [
            SETUP,
            "fv = lw.FeatureView(trace, sae, index)\nfv.steer_tokens = 6\nfv",
            "nv = lw.NeuronView(trace)\ntv = lw.TokensView(trace)\nlinks = lw.link(fv, nv, tv)\nnv",
            "tv",
        ],
        timeout=300,
    )
    yield session
    session.close()


def test_click_a_token_then_a_feature_draws_its_dashboard_and_moves_linked_views(nb):
    page = nb.page
    view = page.locator(".lw-features")
    tokens = view.locator('[data-testid="token-strip"] [data-testid="token"]')
    expect(tokens.first).to_be_visible(timeout=120_000)
    assert "".join(json.loads(nb.kernel_exec("print(json.dumps(fv.tokens))"))) == TEXT
    tokens.nth(5).click()
    panel = view.locator('[data-testid="token-features"]')
    expect(panel).to_have_attribute("data-position", "5", timeout=30_000)
    expect(panel).to_have_attribute("data-state", "ready", timeout=30_000)
    rows = panel.locator('[data-testid="feature-row"]')
    expected = json.loads(nb.kernel_exec("print(json.dumps(fv.token_features(5)))"))
    assert [int(r.get_attribute("data-feature")) for r in rows.all()] == [f for f, _ in expected]
    assert [float(r.get_attribute("data-value")) for r in rows.all()] == pytest.approx([a for _, a in expected])
    # The linked views moved with the click, in the page (jslink) and in the kernel.
    expect(page.locator('.lw-neurons [data-testid="token-neurons"]')).to_have_attribute(
        "data-position", "5", timeout=30_000
    )
    expect(page.locator('.lw-tokens [data-testid="token"][data-index="5"]').first).to_have_class(
        __import__("re").compile("lw-selected"), timeout=30_000
    )
    assert nb.kernel_value("print(fv.selected_token, nv.selected_token, tv.selected_token)", "5 5 5") == "5 5 5"

    feature = expected[0][0]
    rows.first.click()
    dash = view.locator('[data-testid="dashboard"]')
    expect(dash).to_have_attribute("data-feature", str(feature), timeout=30_000)
    expect(dash).to_have_attribute("data-state", "ready", timeout=30_000)
    assert nb.kernel_value("print(fv.selected_feature)", str(feature)) == str(feature)
    values = [float(s.get_attribute("data-value")) for s in dash.locator('[data-testid="overlay-token"]').all()]
    exact = json.loads(nb.kernel_exec(f"print(json.dumps(fv.feature_activations({feature}).tolist()))"))
    assert values == pytest.approx(exact, rel=1e-6, abs=1e-7)
    fires = sum(v > 0 for v in exact)
    assert sum(int(b.get_attribute("data-count")) for b in dash.locator('[data-testid="hist-bar"]').all()) == fires
    expect(dash.locator('[data-testid="text-density"]')).to_contain_text(f"fires on {fires} of {len(exact)} tokens")
    promoted = dash.locator('[data-testid="promoted-token"]')
    expect(promoted).to_have_count(10)
    ref = json.loads(
        nb.kernel_exec(
            "from llmasos_widgets.analyses.neurons import direction_logits\n"
            f"print(json.dumps(torch.topk(direction_logits(model, sae.W_dec[{feature}]), 10).indices.tolist()))"
        )
    )
    assert [int(p.get_attribute("data-token-id")) for p in promoted.all()] == ref
    expect(dash.locator('[data-testid="suppressed-token"]')).to_have_count(10)
    # The corpus part, from the index: corpus histogram, top examples, examples by quantile.
    top = json.loads(nb.kernel_exec(f"print(json.dumps([e.activation for e in index.top_examples({feature})]))"))
    shown = [float(e.get_attribute("data-activation")) for e in dash.locator('[data-testid="example"]').all()]
    assert shown == pytest.approx(top)
    assert dash.locator('[data-testid="index-hist-bar"]').count() > 0
    assert dash.locator('[data-testid="band"]').count() >= 1
    # A click in the dashboard's own strip selects that token everywhere.
    dash.locator('[data-testid="overlay-token"]').nth(3).click()
    expect(page.locator('.lw-neurons [data-testid="token-neurons"]')).to_have_attribute(
        "data-position", "3", timeout=30_000
    )
    expect(panel).to_have_attribute("data-position", "3")
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_steer_with_this_feature_shows_a_steered_generation(nb):
    view = nb.page.locator(".lw-features")
    nb.kernel_exec("fv.selected_feature = fv.token_features(5)[0][0]")
    dash = view.locator('[data-testid="dashboard"]')
    expect(dash).to_have_attribute("data-state", "ready", timeout=30_000)
    n = int(nb.kernel_exec("print(len(fv.steer_scales))"))
    dash.locator('[data-testid="steer-scale"]').select_option(str(n - 1))  # +2 × the stream's norm
    dash.locator('[data-testid="steer-button"]').click()
    result = dash.locator('[data-testid="steer-result"]')
    expect(result).to_have_attribute("data-state", __import__("re").compile("ready|no-effect"), timeout=60_000)
    ref = json.loads(
        nb.kernel_exec(
            "f = fv.selected_feature; d = sae.direction(f)\n"
            "r = lw.steer(model, trace.text, d, fv.steer_scales[-1] * fv.stream_norm / d.norm, max_new_tokens=6)\n"
            "print(json.dumps([r.steered, r.changed]))"
        )
    )
    gen = result.locator('[data-testid="steered"] [data-testid="gen-token"]')
    expect(gen).to_have_count(len(ref[0]))
    assert result.locator('[data-testid="steered"] [data-changed="true"]').count() == sum(ref[1])
    assert sum(ref[1]) >= 1, "a feature at twice the stream's norm should change the tiny model's generation"
    expect(result.locator('[data-testid="baseline"] .lw-generation-prompt')).to_contain_text("naïve")
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_search_by_token_and_bad_input_in_place(nb):
    view = nb.page.locator(".lw-features")
    token = nb.kernel_exec(
        "e = index.top_examples(int(index.tensors['fires'].argmax()))[0]\nprint(e.tokens[e.peak], end='')"
    )
    view.locator('[data-testid="search-input"]').fill(token)
    view.locator('[data-testid="search-button"]').click()
    results = view.locator('[data-testid="search-result"]')
    expect(results.first).to_be_visible(timeout=30_000)
    ref = json.loads(nb.kernel_exec(f"print(json.dumps(index.features_for_token({token!r}, k=10)))"))
    assert [int(r.get_attribute("data-feature")) for r in results.all()] == [f for f, _, _ in ref]
    results.first.click()
    expect(view.locator('[data-testid="dashboard"]')).to_have_attribute("data-feature", str(ref[0][0]), timeout=30_000)
    # A feature out of range from the kernel is refused there; the view keeps working.
    out = nb.kernel_exec("try:\n    fv.selected_feature = 999\nexcept ValueError as e:\n    print(e)")
    assert "feature 999 is out of range: this SAE has features 0..127" in out
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_without_an_index_and_exported_offline(lab, browser, tmp_path):
    import llmasos_widgets as lw

    model = lw.load_model("tiny-llama")
    sae = lw.SAE.random(64, 64, 4, layer=1)
    view = lw.FeatureView(model.trace(TEXT), sae, token=4)
    first = view.token_features(4)[0][0]
    path = view.save_html(tmp_path / "features.html")
    context = browser.new_context(offline=True)
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "blob:")) else r.abort())
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    try:
        panel = page.locator('.lw-features [data-testid="token-features"]')
        expect(panel).to_have_attribute("data-state", "ready", timeout=30_000)
        panel.locator(f'[data-testid="feature-row"][data-feature="{first}"]').click()
        dash = page.locator('.lw-features [data-testid="dashboard"]')
        expect(dash).to_have_attribute("data-state", "ready", timeout=30_000)
        expect(dash.locator('[data-testid="index-missing"]')).to_contain_text("no FeatureIndex")
        expect(dash.locator('[data-testid="promoted-token"]')).to_have_count(10)
        page.locator('.lw-features [data-testid="token-strip"] [data-testid="token"]').nth(7).click()
        expect(panel).to_have_attribute("data-position", "7")
        expect(panel).to_have_attribute("data-state", "ready")  # every token's features are in the file
        dash.locator('[data-testid="steer-button"]').click()  # needs the kernel: said in place
        expect(dash.locator('[data-testid="steer-error"]')).to_contain_text("not recorded in this file")
        assert errors == []
    finally:
        context.close()
