"""A view looks the same whichever other views are on the page: its stylesheet rules are its own."""

from __future__ import annotations

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

SETUP = (
    "import llmasos_widgets as lw\nmodel = lw.load_model('tiny-llama')\n"
    "trace = model.trace('The capital of France is Paris. The cat sat on the mat.')"
)
OTHERS = (
    "others = [lw.TokensView(trace), lw.NeuronView(trace), lw.AttentionView(trace),\n"
    "          lw.SaliencyView(lw.attribute(model, 'The cat sat', method='saliency', progress=False))]\n"
    "display(*others)"
)
PROPS = [
    "color",
    "background-color",
    "font-family",
    "font-size",
    "font-weight",
    "display",
    "opacity",
    "height",
    "padding-left",
    "margin-bottom",
    "grid-template-columns",
    "outline-style",
    "white-space",
    "cursor",
]
STYLES = f"""(root) => Array.from(root.querySelectorAll("*"), (node) => {{
  const style = getComputedStyle(node);
  return node.tagName + "." + node.className + " " + {PROPS!r}.map((p) => style.getPropertyValue(p)).join("|");
}})"""


def lens_styles(notebook, cells: list[str]) -> list[str]:
    nb = notebook(cells, timeout=300)
    lens = nb.page.locator(".lw-root.lw-lens")
    expect(lens.locator('[data-testid="progress"]')).to_have_attribute("data-state", "ready", timeout=120_000)
    lens.locator('[data-testid="lens-cell"]').first.click()  # the top-k table with its bars
    expect(lens.locator('[data-testid="lens-topk"]')).to_have_attribute("data-state", "ready", timeout=60_000)
    nb.page.mouse.move(0, 0)  # no hover styles
    assert nb.errors == [], f"page errors: {nb.errors}"
    return lens.evaluate(STYLES)


def test_lens_view_looks_the_same_with_every_other_view_on_the_page(notebook):
    alone = lens_styles(notebook, [SETUP, "lw.LensView(trace)"])
    # The other views' sheets come after the lens's in the page, so their rules would win any tie.
    crowded = lens_styles(notebook, [SETUP, "lw.LensView(trace)", OTHERS])
    assert len(alone) > 50
    assert alone == crowded, [(a, b) for a, b in zip(alone, crowded, strict=False) if a != b][:5]
