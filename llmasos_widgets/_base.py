"""What every view shares: the selection traits and the request/response protocol with its front-end.

A view subclass serves a request ``what`` by defining ``_serve_<what>(**params)`` returning JSON
fields and encoded arrays; this base turns that into a response message, or an error message the
front-end shows in place. Nothing a front-end sends can raise in the kernel.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from . import _checks, _wire
from .trace import Trace

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)

Arrays = list[tuple[dict[str, Any], bytes]]


def bundle(view: str) -> Path | str:
    """A view's built front-end module; if the npm build has not run, a module that says so in the cell."""
    path = STATIC / f"{view}.js"
    if path.is_file():
        return path
    message = (
        f"llmasos_widgets: the front-end bundle {path.name} is missing. Install the package with "
        "`pip install .` (it runs the npm build) or run `npm install && npm run build` in the repository."
    )
    return f"export default {{ render({{ el }}) {{ el.textContent = {json.dumps(message)}; }} }};"


def stylesheet(view: str) -> Path | str:
    """A view's built stylesheet (static/<view>.css), or "" when the build has not made one."""
    path = STATIC / f"{view}.css"
    return path if path.is_file() else ""


# The synced traits that describe a trace's text (an Explorer's panels share them with it).
TEXT_TRAITS = ("tokens", "token_ids", "offsets", "token_bytes", "generated", "model_name")


def text_traits(trace: Trace) -> dict[str, Any]:
    """The synced traits that describe a trace's text (``TEXT_TRAITS``)."""
    return {
        "tokens": trace.tokens,
        "token_ids": trace.token_ids,
        "offsets": [list(o) for o in trace.offsets],
        "token_bytes": [_hex(trace.model.token_bytes(i)) for i in trace.token_ids],
        "generated": trace.generated,
        "model_name": trace.model.name,
    }


def _hex(raw: bytes | None) -> str:
    return "" if raw is None else raw.hex(" ")


class ViewBase(anywidget.AnyWidget):
    """Selection traits shared (same names) by every view, and the request protocol."""

    tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    token_ids = traitlets.List(traitlets.Int()).tag(sync=True)
    offsets = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
    token_bytes = traitlets.List(traitlets.Unicode()).tag(sync=True)  # hex, where the vocabulary is byte-level
    generated = traitlets.List(traitlets.Bool()).tag(sync=True)
    model_name = traitlets.Unicode("").tag(sync=True)
    selected_token = traitlets.Int(-1).tag(sync=True)
    selected_layer = traitlets.Int(-1).tag(sync=True)
    selected_head = traitlets.Int(-1).tag(sync=True)

    text_optional = False  # True for a view that can be built before it has a text to show
    # The view's front-end folder js/<front_end>/, built to static/<front_end>.js (_esm) and .css (_css).
    front_end = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        name = cls.__dict__.get("front_end")
        if name:  # before anywidget's own hook, which reads the files
            cls._esm = bundle(name)
            cls._css = stylesheet(name)
        super().__init_subclass__(**kwargs)

    _host: Any = None  # (explorer, panel name) for a panel of an Explorer: it speaks through the host's comm

    @classmethod
    def _as_panel(cls, host: Any, name: str, *args: Any, **kwargs: Any) -> ViewBase:
        """Build this view as a panel of ``host``: no comm of its own, its messages travel through the host's."""
        view = cls.__new__(cls)
        view._host = (host, name)
        view.__init__(*args, **kwargs)
        return view

    def open(self) -> None:
        if self._host is None:  # a panel never opens a comm (ipywidgets' Widget.__init__ calls this)
            super().open()

    def send(self, content: Any, buffers: Any = None) -> None:
        if self._host is None:
            super().send(content, buffers)
        else:
            host, name = self._host
            host.send({**content, "panel": name}, buffers)

    def __init__(self, trace: Trace | None, **kwargs: Any) -> None:
        self._check_trace(trace)
        # traitlets only warns (DeprecationWarning) about a keyword that is no trait: a typo such as
        # layr=3 must fail, naming itself.
        unknown = sorted(set(kwargs) - set(self.trait_names()))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s): {', '.join(unknown)}")
        self.trace = trace  # before the traits: their validators check against it
        super().__init__(**{**(text_traits(trace) if trace is not None else {}), **kwargs})
        self._streams: dict[str, Reply] = {}
        self.on_msg(self._on_custom_msg)

    @classmethod
    def _check_trace(cls, trace: Any) -> None:
        """Raise a ValueError unless ``trace`` is a Trace (or None for a view with ``text_optional``)."""
        if not (isinstance(trace, Trace) or (trace is None and cls.text_optional)):
            raise ValueError(f"{cls.__name__} needs a Trace (from model.trace(text)), not {type(trace).__name__}")

    def _show_text(self, trace: Trace) -> None:
        """Show another text (views with ``text_optional``): the selection is cleared."""
        self.trace = trace
        with self.hold_trait_notifications():
            self.selected_token = -1
            for name, value in text_traits(trace).items():
                setattr(self, name, value)

    # -- selection -----------------------------------------------------------------------------
    @traitlets.validate("selected_token")
    def _check_token(self, proposal: Any) -> int:
        value = proposal["value"]
        if value != -1:
            self.trace.check_position(value)
            value %= len(self.trace)
        return int(value)

    @traitlets.validate("selected_layer")
    def _check_layer(self, proposal: Any) -> int:
        value = proposal["value"]
        return int(value) if value == -1 else self.trace.check_layer(value)

    @traitlets.validate("selected_head")
    def _check_head(self, proposal: Any) -> int:
        value = proposal["value"]  # -1: none selected
        return int(value) if value == -1 else _checks.head(value, self.trace.n_heads, self.trace.model.name)

    # -- protocol ------------------------------------------------------------------------------
    def _on_custom_msg(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "snapshot":
            self._on_snapshot(content, buffers)
            return
        if content.get("type") != "request":
            return
        reply = Reply(self, content.get("id"), str(content.get("what", "")))
        params = {k: v for k, v in content.items() if k not in ("type", "id", "what")}
        handler = self._handler(reply.what)
        if handler is None:
            reply.error(f"{type(self).__name__} cannot answer {reply.what!r}")
        elif getattr(self, f"_stream_{reply.what}", None) is not None:
            # Long answers run on a worker thread so the view's other requests are answered
            # meanwhile; a newer request of the same kind cancels the older one.
            previous = self._streams.get(reply.what)
            if previous is not None:
                previous.cancelled = True
            self._streams[reply.what] = reply
            watch_interrupts()
            threading.Thread(target=reply.run, args=(handler, params), daemon=True).start()
        else:
            reply.run(handler, params)

    def _handler(self, what: str) -> Any:
        """The callable ``handler(reply, **params)`` that answers ``what``, or None."""
        stream = getattr(self, f"_stream_{what}", None)
        if stream is not None:
            return stream
        serve = getattr(self, f"_serve_{what}", None)
        return None if serve is None else (lambda reply, **p: reply.done(*serve(**p)))

    # -- export --------------------------------------------------------------------------------
    def _export_requests(self) -> tuple[list[dict[str, Any]], str]:
        """The requests an exported file answers, and a sentence on what they cover and leave out.

        Each request is ``{"what": ..., **params}`` exactly as the front-end sends it.
        """
        return [], "nothing is recorded: clicks that ask the kernel show a message"

    def save_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write this view to one self-contained HTML file that opens offline in any browser.

        The file holds the view's front-end and the answers to the requests it records (see the
        note at the top of the page): clicks that need only those still work, with no kernel and
        no network. Returns the path; the size is printed.

        Examples
        --------
        >>> import tempfile, llmasos_widgets as lw
        >>> view = lw.TokensView(lw.load_model("tiny-llama").trace("The capital of France is"))
        >>> path = view.save_html(tempfile.mkdtemp() + "/france.html")  # doctest: +ELLIPSIS
        wrote .../france.html (... kB): TokensView: ...
        >>> "lw-export" in path.read_text()
        True

        """
        from ._export import save_html

        return save_html([self], path, title=title)

    def _on_snapshot(self, content: dict[str, Any], buffers: Any) -> None:
        """Views that export PNGs override this."""

    def progress(self, request_id: Any, done: int, total: int) -> None:
        """Tell the front-end how far a long request has got."""
        self.send({"type": "progress", "id": request_id, "done": done, "total": total})


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
        descs, buffers = _wire.pack(arrays)
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
