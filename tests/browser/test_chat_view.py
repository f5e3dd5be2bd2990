"""A chat transcript in real JupyterLab: template tokens greyed and named on hover, content tied to its message."""

from __future__ import annotations

import json
import re

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

MESSAGES = [
    {"role": "system", "content": "Réponds brièvement."},
    {"role": "user", "content": "法国的首都是哪里？🤖 <b>café</b>"},
]

STYLE = """(span) => { const s = getComputedStyle(span); return [s.color, s.fontStyle]; }"""


def test_a_chat_trace_greys_template_tokens_and_names_them_on_hover(notebook):
    nb = notebook(
        [
            "import llmasos_widgets as lw\nmodel = lw.load_model('smollm2-135m')",
            f"trace = model.trace({MESSAGES!r}, add_generation_prompt=True)\nview = lw.TokensView(trace)\nview",
        ],
        timeout=300,
    )
    page = nb.page
    tokens = page.locator('.lw-root.lw-tokens [data-testid="token"]')
    n = int(nb.kernel_exec("print(len(trace))"))
    expect(tokens).to_have_count(n, timeout=120_000)

    # The template tokens the page greys are the ones the kernel flagged, token for token.
    flags = json.loads(nb.kernel_exec("import json; print(json.dumps(trace.chat.template))"))
    greyed = [i for i in range(n) if "lw-template" in (tokens.nth(i).get_attribute("class") or "")]
    assert greyed == [i for i, f in enumerate(flags) if f] and 0 < len(greyed) < n
    first_content = flags.index(False)
    template_style = tokens.nth(0).evaluate(STYLE)
    content_style = tokens.nth(first_content).evaluate(STYLE)
    assert template_style != content_style and template_style[1] == "italic"

    # Hover text: a template token names the turn it opens or closes; a content token its message and the
    # characters it stands for in that message's own content.
    expect(tokens.nth(0)).to_have_attribute(
        "title", re.compile(r"^#0  template: start of system message \(messages\[0\]\)  id 1  ")
    )
    roles = json.loads(nb.kernel_exec("print(json.dumps(trace.chat.token_messages))"))
    user = [i for i in range(n) if roles[i] == 1]
    user_content = [i for i in user if not flags[i]]
    assert (
        tokens.nth(user[0])
        .get_attribute("title")
        .startswith(f"#{user[0]}  template: start of user message (messages[1])")
    )
    after = user_content[-1] + 1  # <|im_end|> closes the user's turn
    assert tokens.nth(after).get_attribute("title").startswith(f"#{after}  template: end of user message (messages[1])")
    assert (
        tokens.nth(user_content[0])
        .get_attribute("title")
        .startswith(f"#{user_content[0]}  user message (messages[1]), chars 0–1")
    )
    assert (
        tokens.nth(n - 1)
        .get_attribute("title")
        .startswith(f"#{n - 1}  template: start of assistant message (messages[2])")
    )
    # The user's text is shown as text, whole: its characters in the strip, no element made from it.
    shown = "".join(tokens.nth(i).text_content() for i in user_content).replace("⋯", "").replace("·", " ")
    assert shown == MESSAGES[1]["content"]
    assert page.locator(".lw-root.lw-tokens b").count() == 0
    assert nb.errors == [], f"page errors: {nb.errors}"
