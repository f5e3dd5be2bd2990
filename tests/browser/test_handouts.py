"""A handout (tools/course.py --handouts) opened from disk in Chromium with the network blocked: its view works."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import nbformat
import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

import llmasos_widgets as lw  # noqa: E402

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent.parent


def test_a_handouts_view_draws_and_answers_a_click_offline(browser, tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    handouts = importlib.import_module("handouts")
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Tokens\n\nClick a token."),
            nbformat.v4.new_code_cell("import llmasos_widgets as lw\nmodel = lw.load_model('tiny-llama')"),
            nbformat.v4.new_code_cell("lw.TokensView(model.trace('The capital of France is'))"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "tokens.ipynb")
    path = handouts.handout(tmp_path / "tokens.ipynb", tmp_path / "out")

    context = browser.new_context(offline=True)
    asked = []

    def route(r):
        asked.append(r.request.url)
        r.continue_() if r.request.url.startswith(("file:", "blob:")) else r.abort()

    context.route("**/*", route)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(path.as_uri())
        expect(page.locator("h1")).to_have_text("Tokens")
        expect(page.locator("[id^=lw-]").first).to_have_attribute("data-state", "ready", timeout=30_000)
        view = page.locator(".lw-root.lw-tokens")
        expect(view.locator('[data-testid="token"]')).to_have_count(5)
        view.locator('[data-testid="token"]').nth(4).click()
        expect(view.locator('[data-testid="predictions"]')).to_have_attribute("data-state", "ready", timeout=10_000)
        trace = lw.load_model("tiny-llama").trace("The capital of France is")
        shown = [r.get_attribute("data-token-id") for r in view.locator('[data-testid="prediction-row"]').all()]
        assert shown == [str(p.id) for p in trace.top_predictions(4, k=5)]
        assert errors == [] and all(u.startswith(("file:", "blob:")) for u in asked)
    finally:
        context.close()
