"""AttentionView in real JupyterLab on smollm2-135m: overview, token drill-down, matrix hover, fast clicks."""

from __future__ import annotations

import re

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

LOAD = "import llmasos_widgets as lw\nmodel = lw.load_model('smollm2-135m')"
TEXT = "When Mary and John went to the store, John gave a drink to"


def overview_pixels(page) -> str:
    return page.evaluate("() => document.querySelector('[data-testid=overview-canvas]').toDataURL()")


@pytest.fixture(scope="module")
def nb(lab, browser):
    from _lab import open_notebook

    session = open_notebook(
        lab,
        browser,
        "attention.ipynb",
        [LOAD, f"trace = model.trace({TEXT!r})\nview = lw.AttentionView(trace)\nview"],
        timeout=300,
    )
    yield session
    session.close()


def test_overview_streams_every_layer(nb):
    overview = nb.page.locator('[data-testid="overview"]')
    expect(overview).to_have_attribute("data-state", "ready", timeout=120_000)
    progress = nb.page.locator('[data-testid="progress"]')
    expect(progress).to_have_attribute("data-done", "30")
    assert progress.get_attribute("data-total") == "30"
    assert nb.errors == []


def test_click_a_token_redraws_every_thumbnail_and_syncs_the_kernel(nb):
    page = nb.page
    overview = page.locator('[data-testid="overview"]')
    expect(overview).to_have_attribute("data-state", "ready", timeout=120_000)
    before = overview_pixels(page)
    page.locator('[data-testid="token"]').nth(9).click()  # the second " John"
    expect(overview).to_have_attribute("data-position", "9", timeout=30_000)
    expect(overview).to_have_attribute("data-state", "ready")
    assert overview_pixels(page) != before
    assert nb.kernel_value("print(view.selected_token)", "9") == "9"
    # The sharpest heads listed are the kernel's: the largest weights from token 9.
    first = page.locator('[data-testid="sharp-head"]').first
    layer, head = int(first.get_attribute("data-layer")), int(first.get_attribute("data-head"))
    best, here = map(
        float,
        nb.kernel_exec(
            "import torch\nrows = torch.stack([trace.attention(l)[:, 9].amax(-1) for l in range(30)])\n"
            f"print(rows.max().item(), rows[{layer}, {head}].item())"
        ).split(),
    )
    assert here >= best - 1e-5  # the sharpest head (another within rounding of it may be listed first)
    assert float(first.get_attribute("data-value")) == pytest.approx(here, abs=1e-3)
    assert nb.errors == []


def test_matrix_hover_shows_the_exact_weight(nb):
    page = nb.page
    nb.kernel_exec("view.selected_layer = 17; view.selected_head = 3; view.panel = 'matrix'")
    matrix = page.locator('[data-testid="matrix-view"]')
    expect(matrix).to_have_attribute("data-state", "ready", timeout=60_000)
    canvas = page.locator('[data-testid="matrix-canvas"]')
    box = canvas.bounding_box()
    q0, q1 = float(canvas.get_attribute("data-q0")), float(canvas.get_attribute("data-q1"))
    k0, k1 = float(canvas.get_attribute("data-k0")), float(canvas.get_attribute("data-k1"))
    for q, k in [(12, 9), (9, 3), (13, 0)]:
        x = (k + 0.5 - k0) / (k1 - k0) * box["width"]
        y = (q + 0.5 - q0) / (q1 - q0) * box["height"]
        canvas.hover(position={"x": x, "y": y})  # scrolls the canvas into view first
        tooltip = page.locator('[data-testid="matrix-tooltip"]')
        expect(tooltip).to_have_attribute("data-q", str(q), timeout=10_000)
        expect(tooltip).to_have_attribute("data-k", str(k))
        expect(tooltip).to_have_attribute("data-weight", re.compile(r".+"), timeout=10_000)
        shown = float(tooltip.get_attribute("data-weight"))
        approx = float(tooltip.get_attribute("data-approx"))
        exact = float(nb.kernel_exec(f"print(trace.attention(17)[3, {q}, {k}].item())"))
        assert shown == pytest.approx(exact, abs=1e-6)
        assert approx == pytest.approx(exact, abs=1 / 255 / 2 + 1e-6)  # the uint8 cell, before the exact answer
    assert nb.errors == []


def test_fifty_fast_clicks_end_on_the_last_one(nb):
    page = nb.page
    nb.kernel_exec("view.panel = 'overview'")
    overview = page.locator('[data-testid="overview"]')
    expect(overview).to_be_visible(timeout=30_000)
    tokens = page.locator('[data-testid="token"]')
    n = tokens.count()
    sequence = [(i * 7) % n for i in range(50)]
    for i in sequence:
        tokens.nth(i).click(delay=0)
    last = sequence[-1]
    expect(overview).to_have_attribute("data-position", str(last), timeout=30_000)
    expect(overview).to_have_attribute("data-state", "ready")
    page.wait_for_timeout(1000)  # a stale answer arriving late must not replace it
    assert overview.get_attribute("data-position") == str(last)
    assert nb.kernel_value("print(view.selected_token)", str(last)) == str(last)
    assert nb.errors == []


def test_out_of_range_selection_is_refused_and_the_view_stays_usable(nb):
    out = nb.kernel_exec("try:\n    view.selected_layer = 30\nexcept ValueError as e:\n    print(e)")
    assert "layer 30 is out of range: smollm2-135m has layers 0..29" in out
    nb.page.locator('[data-testid="token"]').nth(2).click()
    expect(nb.page.locator('[data-testid="overview"]')).to_have_attribute("data-position", "2", timeout=30_000)


def test_export_png_from_python(nb, tmp_path):
    path = tmp_path / "panel.png"
    nb.kernel_exec(f"future = view.save_png({str(path)!r})")
    # The view answers between cells: kernel_value's polls are those gaps. (future.exception() would wait for the
    # answer inside a cell, where it cannot come: ask it only once the future is done.)
    state = "print(future.done(), future.done() and future.exception())"
    assert nb.kernel_value(state, "True None") == "True None"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_tokens_render_as_text(lab, browser):
    from _lab import open_notebook

    payloads = "<img src=x onerror=alert(1)> <script>window.__pwned=1</script> <b>bold</b> <svg onload=alert(2)>"
    session = open_notebook(
        lab,
        browser,
        "attention-html.ipynb",
        [
            "import llmasos_widgets as lw\n"
            f"view = lw.AttentionView(lw.load_model('tiny-gpt2').trace({payloads!r}))\nview"
        ],
    )
    try:
        page = session.page
        expect(page.locator('[data-testid="overview"]')).to_have_attribute("data-state", "ready", timeout=120_000)
        root = page.locator('[data-testid="token-strip"]')
        assert root.locator("img, script, b, svg").count() == 0
        assert "<img" in root.text_content()
        session.kernel_exec("view.panel = 'head'; view.selected_layer = 0; view.selected_head = 0")
        head_view = page.locator('[data-testid="head-view"]')
        expect(head_view).to_have_attribute("data-state", "ready", timeout=30_000)
        assert head_view.locator("img, script, b, svg").count() == 0
        assert page.evaluate("() => window.__pwned === undefined")
        assert session.errors == []
    finally:
        session.close()
