"""What a view says where widgets cannot run: a text summary and a small static HTML table beside the widget.

A notebook saved without widget state shows, on a host that runs no JavaScript (GitHub, nbviewer), only the
non-widget parts of each output. Each view gives :func:`bundle` a few lines that are true of what it shows
(model, tokens, its key numbers); the page's live widget is still what JupyterLab draws (the widget's mime type
outranks HTML there). Model text is escaped: it is text, never markup.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

MAX_TOKENS = 24  # tokens listed in a summary before "… and N more"


def quote(token: str) -> str:
    r"""A token as Python writes a string (quotes, escapes): spaces and newlines stay visible.

    >>> quote(" Paris"), quote("a\nb")
    ("' Paris'", "'a\\nb'")
    """
    return repr(token)


def token_list(tokens: Sequence[str]) -> str:
    """The tokens, quoted and joined, cut after ``MAX_TOKENS``.

    >>> token_list(["The", " capital"])
    "'The' ' capital'"
    """
    shown = " ".join(quote(t) for t in tokens[:MAX_TOKENS])
    return shown + (f" … and {len(tokens) - MAX_TOKENS} more" if len(tokens) > MAX_TOKENS else "")


def number(x: float, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals and never a negative zero (a -0.001 prints as 0.00).

    >>> number(-0.001), number(3.14159, 3)
    ('0.00', '3.142')
    """
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def head_line(view: Any) -> str:
    """``TokensView · smollm2-135m · 5 tokens``: what the view is and of what."""
    parts = [type(view).__name__]
    if getattr(view, "model_name", ""):
        parts.append(view.model_name)
    if getattr(view, "tokens", None):
        parts.append(f"{len(view.tokens)} tokens")
    return " · ".join(parts)


def lines_of(view: Any) -> list[str]:
    """The summary's lines: the head line, the text's tokens, then the view's own lines (``_summary``)."""
    lines = [head_line(view)]
    if getattr(view, "tokens", None):
        lines.append("tokens: " + token_list(view.tokens))
    lines += view._summary()
    return lines


def to_html(view: Any, lines: list[str]) -> str:
    """A small static table of ``lines`` (escaped), with the tokens shaded by ``view._summary_scores()`` if any."""
    rows = [f"<tr><th style='text-align:left'>{html.escape(lines[0])}</th></tr>"]
    scores = view._summary_scores()
    tokens = getattr(view, "tokens", [])
    if scores is not None and tokens:
        top = max((abs(s) for s in scores), default=0.0) or 1.0
        cells = []
        for token, s in zip(tokens[:MAX_TOKENS], scores[:MAX_TOKENS], strict=False):
            rgb = "214,39,40" if s >= 0 else "31,119,180"
            alpha = number(abs(s) / top)
            cells.append(
                f"<span title='{number(s)}' style='background:rgba({rgb},{alpha});white-space:pre'>"
                f"{html.escape(token)}</span>"
            )
        rows.append(f"<tr><td style='text-align:left'>{''.join(cells)}</td></tr>")
        body = lines[2:]  # the shaded strip stands for the token line
    else:
        body = lines[1:]
    rows += [f"<tr><td style='text-align:left;white-space:pre-wrap'>{html.escape(line)}</td></tr>" for line in body]
    return "<table class='lw-static-summary'>" + "".join(rows) + "</table>"


def bundle(view: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (the widget's mime bundle) with a ``text/plain`` summary and a ``text/html`` table added."""
    lines = lines_of(view)
    return {**data, "text/plain": "\n".join(lines), "text/html": to_html(view, lines)}
