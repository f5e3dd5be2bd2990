"""The request protocol between a view and its front-end: requests, replies, streams and interrupts.

A view answers the front-end's request ``what`` with a method marked :func:`request` (see DESIGN.md,
"Wire format and protocol"): a plain one returns JSON fields and encoded arrays and runs on the kernel's
thread; a streamed one takes a :class:`Reply` and runs on a worker thread, sending chunks and progress
before its one response. Nothing a front-end sends can raise in the kernel: an error is a message the
view shows in place. A kernel interrupt stops the requests running on worker threads.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from . import wire
from .wire import Arrays

if TYPE_CHECKING:
    from .base import ViewBase

log = logging.getLogger(__name__)
Handler = TypeVar("Handler", bound=Callable[..., Any])


@dataclass(frozen=True)
class RequestSpec:
    """What :func:`request` records on a method: the request it answers, and whether it streams."""

    what: str
    stream: bool


def request(what: str, *, stream: bool = False) -> Callable[[Handler], Handler]:
    """Mark a view method as the answer to the front-end's ``{"type": "request", "what": what, ...}``.

    The request's other fields are the method's keyword arguments. A plain request returns
    ``(fields, arrays)`` and runs on the kernel's thread (quick answers: a token's predictions); with
    ``stream=True`` the method takes a :class:`Reply` first and runs on a worker thread, where it may send
    chunks and progress before ``reply.done(...)`` (an attention overview, a patching sweep); a newer request
    of the same ``what`` cancels it. A view's requests are the methods so marked: read the class.

    Examples
    --------
    >>> class Demo:
    ...     @request("square")
    ...     def _square(self, x: int):
    ...         return {"value": x * x}, []
    >>> Demo._square.lw_request
    RequestSpec(what='square', stream=False)

    """

    def mark(method: Handler) -> Handler:
        method.lw_request = RequestSpec(what, stream)  # type: ignore[attr-defined]
        return method

    return mark


def requests_of(cls: type) -> dict[str, tuple[str, RequestSpec]]:
    """``{what: (method name, spec)}`` of the methods marked with :func:`request` on ``cls`` and its bases."""
    found: dict[str, tuple[str, RequestSpec]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            spec = getattr(value, "lw_request", None)
            if isinstance(spec, RequestSpec):
                found[spec.what] = (name, spec)
    return found


class StreamInterrupted(Exception):
    """Raised in a worker thread (by ``Reply.progress``) when a kernel interrupt stopped its request."""


class Reply:
    """The answer to one request: chunks, progress, then exactly one response or error."""

    def __init__(self, view: ViewBase, request_id: Any, what: str) -> None:
        self.view, self.id, self.what = view, request_id, what
        self.cancelled = False  # a newer request made this one stale, or the kernel was interrupted
        self.interrupted = False
        self.answered = False
        self.reached: tuple[int, int] | None = None  # the last progress reported: (done, total)

    def run(self, handler: Any, params: dict[str, Any]) -> None:
        _RUNNING.add(self)
        try:
            handler(self, **params)
        except StreamInterrupted:
            pass  # answered below
        except (ValueError, TypeError, KeyError) as e:
            self.error(str(e))
        except Exception as e:  # a bug must reach the view as a message, never kill the comm
            log.error("request %r failed:\n%s", self.what, traceback.format_exc())
            self.error(f"{type(e).__name__}: {e}")
        finally:
            _RUNNING.discard(self)
        if self.interrupted and not self.answered:
            at = f" at {self.reached[0]:,} of {self.reached[1]:,}" if self.reached else ""
            self.error(f"stopped by a kernel interrupt{at}; nothing of it was kept: run it again")

    def interrupt(self) -> None:
        """Stop this request at its next chunk or progress report (a kernel interrupt)."""
        self.interrupted = self.cancelled = True

    def _send(self, kind: str, fields: dict[str, Any], arrays: Arrays) -> None:
        descs, buffers = wire.pack(arrays)
        self.view.send({"type": kind, "id": self.id, "what": self.what, "arrays": descs, **fields}, buffers)

    def chunk(self, fields: dict[str, Any], arrays: Arrays) -> None:
        self._send("chunk", fields, arrays)

    def done(self, fields: dict[str, Any], arrays: Arrays) -> None:
        self.answered = True
        self._send("response", fields, arrays)

    def error(self, message: str) -> None:
        self.answered = True
        self.view.send({"type": "error", "id": self.id, "what": self.what, "message": message})

    def progress(self, done: int, total: int) -> None:
        """Report progress; raises StreamInterrupted once the kernel was interrupted (the work stops there)."""
        if self.interrupted:
            raise StreamInterrupted
        self.reached = (done, total)
        self.view.progress(self.id, done, total)


# -- kernel interrupts ---------------------------------------------------------------------------
# Requests running on worker threads now (Reply.run adds and removes itself).
_RUNNING: set[Reply] = set()


def interrupt_requests() -> int:
    """Stop every request running on a worker thread, as a kernel interrupt does; returns how many.

    Each stops at its next chunk or progress report and tells its view that it stopped.

    Examples
    --------
    >>> interrupt_requests()
    0

    """
    running = list(_RUNNING)
    for reply in running:
        reply.interrupt()
    return len(running)


def _chain(previous: Any) -> Any:
    """A SIGINT handler that stops the running requests, then does what ``previous`` did."""

    def on_interrupt(signum: int, frame: Any) -> None:
        interrupt_requests()
        if callable(previous):
            previous(signum, frame)  # e.g. raise KeyboardInterrupt in a running cell
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt

    on_interrupt.lw_interrupts = True  # type: ignore[attr-defined]
    return on_interrupt


def watch_interrupts() -> None:
    """Make a kernel interrupt stop the requests running on worker threads.

    An interrupt raises KeyboardInterrupt in the cell that runs, on the main thread; a request streamed
    from a worker thread (a patching sweep, an attribution) would run on. ipykernel ignores SIGINT while
    no cell runs (its idle handler is ``SIG_IGN``, restored after each message it handles, in
    ``post_handler_hook`` from ``saved_sigint_handler``): the idle handler becomes one that stops the
    running requests, and then does what the kernel's did. Outside a kernel the process's own handler is
    chained the same way. Signal handlers are set from the main thread only; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    kernel = _kernel()
    if kernel is not None and hasattr(kernel, "saved_sigint_handler"):
        idle = kernel.saved_sigint_handler
        if not getattr(idle, "lw_interrupts", False):
            kernel.saved_sigint_handler = _chain(idle)
        return
    current = signal.getsignal(signal.SIGINT)
    if not getattr(current, "lw_interrupts", False):
        signal.signal(signal.SIGINT, _chain(current))


def _kernel() -> Any:
    """The running ipykernel, if any (IPython is loaded wherever one runs: no import needed here)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None)
