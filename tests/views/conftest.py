"""Fixtures shared by the views' tests."""

from __future__ import annotations

import threading

import pytest

import llmasos_widgets as lw


@pytest.fixture
def sent(monkeypatch):
    """Messages an Explorer sends to its page (from any thread: its worker answers too), as (content, buffers)."""
    out: list[tuple[dict, list]] = []
    lock = threading.Lock()

    def send(self, content, buffers=None):
        with lock:
            out.append((content, list(buffers or [])))

    monkeypatch.setattr(lw.Explorer, "send", send)
    return out
