"""TokensView in real JupyterLab: click a token, see the kernel's predictions, selection synced."""

from __future__ import annotations

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

PAYLOADS = ["<img src=x onerror=alert(1)>", "<script>window.__pwned=1</script>", "<b>bold</b>"]


def test_click_a_token_shows_the_models_predictions_and_syncs_selection(notebook):
    nb = notebook(
        [
            "import llmasos_widgets as lw\nmodel = lw.load_model('smollm2-135m')",
            "trace = model.trace('The capital of France is')\nview = lw.TokensView(trace)\nview",
        ],
        timeout=300,
    )
    page = nb.page
    tokens = page.locator('[data-testid="token"]')
    expect(tokens).to_have_count(5, timeout=120_000)
    # The output also carries a static table for hosts without widgets (views/summary.py): JupyterLab draws the
    # widget, not the table.
    assert page.locator(".lw-static-summary").count() == 0

    tokens.nth(4).click()  # " is"
    panel = page.locator('[data-testid="predictions"]')
    expect(panel).to_have_attribute("data-state", "ready", timeout=60_000)
    rows = page.locator('[data-testid="prediction-row"]')
    expect(rows).to_have_count(5)
    assert rows.first.locator(".lw-rank-token").text_content() == "·Paris"

    # What the page shows is what the kernel computes.
    assert nb.kernel_value("print(view.selected_token)", "4") == "4"
    expected = nb.kernel_exec("print([(p.id, round(p.prob, 5)) for p in trace.top_predictions(4, k=5)])")
    shown = [(int(r.get_attribute("data-token-id")), round(float(r.get_attribute("data-prob")), 5)) for r in rows.all()]
    assert str(shown) == expected.strip()

    # Selecting from Python moves the view and fetches the new position's predictions.
    nb.kernel_exec("view.selected_token = 1")
    expect(tokens.nth(1)).to_have_class("lw-token lw-selected", timeout=30_000)
    expect(page.locator(".lw-pred-title")).to_contain_text("#1", timeout=30_000)
    expect(panel).to_have_attribute("data-state", "ready", timeout=30_000)
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_generated_tokens_are_marked_and_html_tokens_stay_text(notebook):
    text = " ".join(PAYLOADS)
    nb = notebook(
        [
            "import llmasos_widgets as lw\nmodel = lw.load_model('tiny-gpt2')",
            f"trace = model.generate_trace({text!r}, max_new_tokens=4)\nview = lw.TokensView(trace)\nview",
        ]
    )
    page = nb.page
    tokens = page.locator('[data-testid="token"]')
    n = int(nb.kernel_exec("print(len(trace))"))
    expect(tokens).to_have_count(n, timeout=120_000)
    expect(page.locator(".lw-generated")).to_have_count(4)

    strip_text = page.locator('[data-testid="token-strip"]').text_content()
    for payload in PAYLOADS:
        assert payload.replace(" ", "·") in strip_text.replace("\u00b7", "·")
    # No element came from model text anywhere in the widget (strip and predictions), and no script ran.
    widget = page.locator(".lw-root.lw-tokens")
    expect(widget).to_have_count(1)
    assert widget.locator("img, script, b").count() == 0
    assert page.evaluate("() => window.__pwned === undefined")
    tokens.nth(n - 1).click()
    expect(page.locator('[data-testid="predictions"]')).to_have_attribute("data-state", "ready", timeout=60_000)
    assert nb.errors == [], f"page errors: {nb.errors}"


# Chinese with full-width punctuation, emoji, accents, a zero-width space and a right-to-left override.
MIXED = "大型语言模型的可解释性：理解其工作原理。注意力机制是核心 🤖🧠 naïve café x\u200by \u202eevil"

READ_BACK = """(strip) => {
  // The text a reader sees: continuation marks carry no character; whitespace and invisible marks
  // stand for the character they name.
  const names = {"·": " ", "↵": "\\n", "→": "\\t"};
  let out = "";
  for (const span of strip.querySelectorAll('[data-testid="token"]')) {
    if (span.querySelector(".lw-cont")) continue;
    for (const node of span.childNodes) {
      const t = node.textContent;
      if (node.nodeType === Node.ELEMENT_NODE && node.classList.contains("lw-ws")) {
        const m = /^⟨U\\+([0-9A-F]+)⟩$/.exec(t);
        out += m ? String.fromCodePoint(parseInt(m[1], 16)) : (names[t] ?? t);
      } else out += t;
    }
  }
  return out;
}"""


def test_text_in_any_script_reads_back_from_the_strip_character_for_character(notebook):
    nb = notebook(
        [
            "import llmasos_widgets as lw\nmodel = lw.load_model('smollm2-135m')",
            f"trace = model.trace({MIXED!r})\nview = lw.TokensView(trace)\nview",
        ],
        timeout=300,
    )
    page = nb.page
    n = int(nb.kernel_exec("print(len(trace))"))
    tokens = page.locator('[data-testid="token"]')
    expect(tokens).to_have_count(n, timeout=120_000)
    strip = page.locator('[data-testid="token-strip"]')
    assert strip.evaluate(READ_BACK) == MIXED
    assert "\ufffd" not in strip.text_content()
    # The bidi override and the zero-width space are named, not applied.
    assert "⟨U+202E⟩" in strip.text_content() and "⟨U+200B⟩" in strip.text_content()
    # A token carrying the rest of 语 shows the continuation mark and its bytes on hover.
    rest = int(nb.kernel_exec("print(trace.tokens.index(''))"))
    assert tokens.nth(rest).text_content() == "⋯"
    title = tokens.nth(rest).get_attribute("title")
    hexed = nb.kernel_exec(f"print(model.token_bytes(trace.token_ids[{rest}]).hex(' '))").strip()
    assert f"bytes {hexed}" in title and "the rest of the character before" in title
    assert nb.errors == [], f"page errors: {nb.errors}"
