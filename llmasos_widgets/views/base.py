"""What every view shares: the selection traits, the front-end it names, and how it answers requests.

A view answers its front-end's requests with methods marked :func:`~.protocol.request` (protocol.py);
this base finds them, runs them (streamed ones on a worker thread) and turns what they return into a
response message, or an error message the front-end shows in place.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..core import checks
from ..core.trace import Trace
from . import export, summary
from .assets import bundle, stylesheet
from .protocol import Reply, RequestSpec, requests_of, watch_interrupts

if TYPE_CHECKING:
    from .serve import Turns

# The synced traits that describe a trace's text (an Explorer's panels share them with it).
# A chat's (trace.chat) travel too: each token's message, role, template flag and offsets into its message's
# content; empty lists for a plain text.
TEXT_TRAITS = (
    "tokens",
    "token_ids",
    "offsets",
    "token_bytes",
    "generated",
    "model_name",
    "token_messages",
    "token_roles",
    "template",
    "message_offsets",
)


def text_traits(trace: Trace) -> dict[str, Any]:
    """The synced traits that describe a trace's text (``TEXT_TRAITS``)."""
    chat = trace.chat
    return {
        "tokens": trace.tokens,
        "token_ids": trace.token_ids,
        "offsets": [list(o) for o in trace.offsets],
        "token_bytes": [_hex(trace.model.token_bytes(i)) for i in trace.token_ids],
        "generated": trace.generated,
        "model_name": trace.model.name,
        "token_messages": [] if chat is None else chat.token_messages,
        "token_roles": [] if chat is None else chat.token_roles,
        "template": [] if chat is None else chat.template,
        "message_offsets": [] if chat is None else [list(o) for o in chat.message_offsets],
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
    # A chat transcript's tokens (empty for a plain text): the message each belongs to, its role, whether the
    # chat template wrote it, and its [start, end) in its message's own content ([0, 0] for the template's).
    token_messages = traitlets.List(traitlets.Int()).tag(sync=True)
    token_roles = traitlets.List(traitlets.Unicode()).tag(sync=True)
    template = traitlets.List(traitlets.Bool()).tag(sync=True)
    message_offsets = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
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
    _turns: Turns | None = None  # an Explorer's panels share one: their streamed answers compute in turn

    @classmethod
    def for_explorer(cls, host: Any, name: str, trace: Trace, **inputs: Any) -> ViewBase:
        """Build the view as the Explorer's panel ``name`` of ``trace``, reading the ``inputs`` it registered.

        A view whose panel needs more than the trace (an index, an attribution, an SAE) overrides this;
        a ValueError says why the panel does not apply, and the Explorer shows that instead.
        """
        return cls._as_panel(host, name, trace)

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
        return int(value) if value == -1 else checks.head(value, self.trace.n_heads, self.trace.model.name)

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
        elif self._spec(reply.what).stream:
            # Long answers run on a worker thread so the view's other requests are answered
            # meanwhile; a newer request of the same kind cancels the older one.
            previous = self._streams.get(reply.what)
            if previous is not None:
                previous.cancelled = True
            self._streams[reply.what] = reply
            watch_interrupts()
            ticket = self._turns.ticket() if self._turns is not None else None  # in the order they came
            threading.Thread(target=self._run_stream, args=(reply, handler, params, ticket), daemon=True).start()
        else:
            reply.run(handler, params)

    def _run_stream(self, reply: Reply, handler: Any, params: dict[str, Any], ticket: object | None) -> None:
        if self._turns is None or ticket is None:  # a view alone (an Explorer's panels have a ticket)
            reply.run(handler, params)
            return
        with self._turns.turn(ticket):  # an Explorer's panels: one stream computes at a time (serve.Turns)
            if not reply.cancelled:  # a newer request of its kind came while it waited
                reply.run(handler, params)

    def _spec(self, what: str) -> RequestSpec:
        return requests_of(type(self))[what][1]

    def _handler(self, what: str) -> Any:
        """The callable ``handler(reply, **params)`` that answers ``what``, or None."""
        found = requests_of(type(self)).get(what)
        if found is None:
            return None
        method = getattr(self, found[0])
        if found[1].stream:
            return method
        return lambda reply, **params: reply.done(*method(**params))

    # -- what a host without widgets shows (summary.py) --------------------------------------------
    def __repr__(self) -> str:
        return f"<{summary.head_line(self)}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget, with a text summary and a static table beside it for hosts that cannot run widgets."""
        found = super()._repr_mimebundle_(**kwargs)
        if found is None:
            return None
        data, metadata = found if isinstance(found, tuple) else (found, {})
        return summary.bundle(self, data), metadata

    def _summary(self) -> list[str]:
        """Lines that state what the view shows beyond its model and tokens (its key numbers)."""
        return []

    def _summary_scores(self) -> list[float] | None:
        """One number per token to shade the static summary's tokens by (None: no shading)."""
        return None

    # -- an Explorer's page cache (views/serve.py) ----------------------------------------------------
    def _prefetch(self, order: list[int], budget: int) -> list[tuple[int, dict[str, Any]]]:
        """What the page will likely ask next, as ``(distance, request)``, nearest first.

        ``order`` lists the positions nearest the selection first; ``budget`` is the page's cache in bytes.
        Each request is ``{"what": ..., **params}`` exactly as the front-end sends it; the Explorer
        answers them nearest first when its page is idle. A view that asks nothing per click lists nothing.
        """
        return []

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
        return export.save_html([self], path, title=title)

    def _on_snapshot(self, content: dict[str, Any], buffers: Any) -> None:
        """Views that export PNGs override this."""

    def progress(self, request_id: Any, done: int, total: int) -> None:
        """Tell the front-end how far a long request has got."""
        self.send({"type": "progress", "id": request_id, "done": done, "total": total})
