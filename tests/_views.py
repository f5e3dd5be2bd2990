"""Helpers for testing a view's request protocol without a front-end: capture what it sends."""

import threading
import time

from llmasos_widgets.views import wire


def capture(view):
    """Replace ``view.send`` so every (content, buffers) it sends lands in ``view.sent``."""
    view.sent = []
    view.lock = threading.Lock()  # streams send from a worker thread

    def send(content, buffers=None):
        with view.lock:
            view.sent.append((content, buffers))

    view.send = send
    return view


def ask(view, **content):
    """Send the view one request and return the last message it sent back."""
    view._on_custom_msg(view, {"type": "request", "id": 7, **content}, [])
    return view.sent[-1]


def arrays(content, buffers):
    """The arrays of a message, decoded by name."""
    return {d["name"]: wire.decode(d, buffers[d["buffer"]]) for d in content["arrays"]}


def wait_for(view, kind, timeout=60):
    """The (content, buffers) messages of ``kind`` the view sent, once there is at least one."""
    end = time.time() + timeout
    while time.time() < end:
        with view.lock:
            found = [(c, b) for c, b in view.sent if c["type"] == kind]
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"no {kind} message")


def track_threads(monkeypatch):
    """Every thread started from now on (a view's workers), in the list returned, to :func:`join_threads` later."""
    started = []

    class Tracked(threading.Thread):
        def start(self):
            started.append(self)
            super().start()

    monkeypatch.setattr(threading, "Thread", Tracked)
    return started


def join_threads(threads, timeout=60):
    """Wait until every thread in ``threads`` has finished: after that a view sends nothing more unasked."""
    end = time.time() + timeout
    while any(t.is_alive() for t in threads):
        assert time.time() < end, "a worker thread is still running"
        for t in list(threads):
            t.join(max(0.0, end - time.time()))
