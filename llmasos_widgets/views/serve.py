"""How an Explorer answers its page: one message per click, in on-screen order; the page's cache filled ahead.

The page keeps the answers it is likely to need (``js/explorer/store.ts``): a click whose answers are there
sends nothing. A click that misses sends one ``batch`` message with a request for every panel that needs
the kernel, in the order the panels are on screen, and the ids it made stale (``drop``); the Explorer acks
the batch at once and queues the requests on one worker thread, which answers each (a plain ``response``,
tagged with its panel, as ever) before it starts anything prefetched, and skips a request whose id was
dropped: a stale request is never computed. Streamed requests (an attention overview, a lens block, the
saliency scores) keep their own threads, as in a single view, but compute one at a time in the order they came
(:class:`Turns`); a dropped one is cancelled.

After the first draw the page sends ``prefetch`` with the selected position, its open panels in order and its
cache's budget in bytes; a batch carries the same, re-centred on its click. The Explorer asks each panel what it
would be asked around that position (``ViewBase._prefetch``) and orders it by :func:`tier`: every token's cheap
answers first (top predictions, the selected layer's neurons), then what is near the selection (lens columns and
pooled attention rows of the ``NEAR`` nearest tokens), then the rest, outwards. The worker answers one request at a
time, and only when the kernel is quiet: no click's request queued, no streamed answer running (a panel's first
draw), and ``QUIET_S`` since the last of them, so a click waits for one prefetched request at most; what it computed
leaves in groups of ``stored`` messages the page files by request key, the key an exported file replays by
(:func:`~.export.request_key`). A newer ``prefetch`` replaces what is left of the older; a batch's is listed by the
worker after the click's answers.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .export import Recording, request_key
from .protocol import Reply

if TYPE_CHECKING:
    from .explorer import Explorer

GROUP_BYTES = 2**20  # a "stored" message holds about this much, or what GROUP_SECONDS computed
GROUP_SECONDS = 0.05
QUIET_S = 0.4  # the prefetch waits this long after a click's last answer (the page draws it meanwhile)
NEAR = 8  # the lens columns and attention rows of the selection and its NEAR nearest positions (4 a side) come early
CHEAP = frozenset({"predictions", "layer"})  # a few bytes and milliseconds each: the whole text first
LOG_LENGTH = 4096


class Turns:
    """The panels' streamed answers of one Explorer compute one at a time, in the order they were asked.

    Three first draws computing at once on a 2-core machine (the attention overview, the saliency's backward
    pass, the lens blocks) each ask torch for both cores: the overview's 0.13 s of work at 256 tokens took
    2.8 s beside the others. In turn, in on-screen order, each is drawn as soon as its own work is done.

    Examples
    --------
    >>> turns = Turns()
    >>> first, second = turns.ticket(), turns.ticket()
    >>> with turns.turn(first):
    ...     print("first computes; second waits")
    first computes; second waits

    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()

    def ticket(self) -> object:
        """A place in the line (taken on the kernel's thread, in the order the requests came)."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
        return ticket

    @contextlib.contextmanager
    def turn(self, ticket: object) -> Iterator[None]:
        """Wait until every earlier ticket's work is done, then do this one's."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue[0] is ticket)
        try:
            yield
        finally:
            with self._cond:
                self._queue.remove(ticket)
                self._cond.notify_all()


def order_around(position: int, n: int) -> list[int]:
    """Positions of an ``n``-token text in the order the strip's keys reach them from ``position``.

    The position itself, then one to the right (→), one to the left (←), two to the right, ...

    Examples
    --------
    >>> order_around(2, 5)
    [2, 3, 1, 4, 0]
    >>> order_around(-1, 3)
    [0, 1, 2]

    """
    position = min(max(position, 0), max(n - 1, 0))
    out = [position] if n else []
    for step in range(1, n):
        out += [p for p in (position + step, position - step) if 0 <= p < n]
    return out


def tier(what: str, distance: int) -> int:
    """When a prefetched request comes: 0 the cheap (every token's), 1 what is near, 2 the rest.

    ``distance`` is the position's rank in :func:`order_around` (0 the selection, 1 the next, 2 the one before).

    Examples
    --------
    >>> [tier("predictions", 900), tier("token", 3), tier("column", 40)]
    [0, 1, 2]

    """
    if what in CHEAP:
        return 0
    if distance <= NEAR:
        return 1
    return 2


class Server:
    """An Explorer's worker: clicks' requests first, in order, stale ones skipped; then the prefetch."""

    def __init__(self, host: Explorer) -> None:
        self.host = host
        self._cond = threading.Condition()  # an RLock: a test may hold it to pause the worker
        self._urgent: collections.deque[dict[str, Any]] = collections.deque()
        self._dropped: set[Any] = set()
        self._ahead: collections.deque[dict[str, Any]] = collections.deque()
        self._held: set[str] = set()  # keys of what the page holds, as far as the kernel knows
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._quiet_at = 0.0  # perf_counter time before which nothing prefetched starts (a click is drawn)
        self._recentre: dict[str, Any] | None = None  # a batch's prefetch, listed by the worker once quiet
        self.log: collections.deque[tuple[str, str]] = collections.deque(maxlen=LOG_LENGTH)  # ("urgent"|"ahead", key)

    # -- from the page (the kernel's main thread) -------------------------------------------------------
    def batch(self, content: dict[str, Any]) -> None:
        """A click's requests (``requests``, in on-screen order) and the ids it made stale (``drop``)."""
        self.host.send({"type": "ack", "batch": content.get("batch")})
        dropped = set(content.get("drop") or [])
        for view in self.host._views.values():  # a streamed request made stale stops at its next check
            for reply in view._streams.values():
                if reply.id in dropped:
                    reply.cancelled = True
        with self._cond:
            self._quiet_at = time.perf_counter() + QUIET_S
            self._dropped |= dropped
            self._urgent = collections.deque(r for r in self._urgent if r.get("id") not in self._dropped)
            for request in content.get("requests") or []:
                if not isinstance(request, dict):
                    continue
                view = self.host._views.get(str(request.get("panel")))
                what = str(request.get("what", ""))
                if view is not None and view._handler(what) is not None and view._spec(what).stream:
                    # Long answers keep their own thread, as in a single view.
                    view._on_custom_msg(view, {k: v for k, v in request.items() if k != "panel"}, [])
                else:
                    self._urgent.append(request)
            if isinstance(content.get("prefetch"), dict):  # re-centred on the click: listed once it is answered
                self._recentre = content["prefetch"]
                self._ahead.clear()
            self._cond.notify()
        self._start()

    def prefetch(self, content: dict[str, Any]) -> None:
        """Fill the page's cache around ``position`` for ``panels`` within ``budget`` bytes (replaces the last)."""
        for key in content.get("forget") or []:
            self._held.discard(key)
        budget = int(content.get("budget") or 0)
        position = int(content.get("position", -1))
        panels = [p for p in content.get("panels") or [] if p in self.host._views]
        wanted: list[tuple[int, int, dict[str, Any]]] = []
        if budget > 0:
            order = order_around(position, len(self.host.trace))
            for rank, name in enumerate(panels):  # each panel keeps its share of the budget (attention: half)
                for distance, request in self.host._views[name]._prefetch(order, budget):
                    wanted.append((distance, rank, {**request, "panel": name}))
        wanted.sort(key=lambda w: (tier(w[2]["what"], w[0]), w[0], w[1]))
        with self._cond:
            self._ahead = collections.deque(r for _, _, r in wanted if request_key(r) not in self._held)
            if not self._ahead:
                self.host.send({"type": "stored", "entries": [], "done": True})
            self._cond.notify()
        self._start()

    # -- the worker thread ------------------------------------------------------------------------------
    def stop(self) -> None:
        """End the worker (the Explorer was closed): what is queued is dropped."""
        with self._cond:
            self._stopped = True
            self._urgent.clear()
            self._ahead.clear()
            self._cond.notify()

    def _start(self) -> None:
        if self._stopped:
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, daemon=True, name="llmasos-explorer")
            self._thread.start()

    def _streaming(self) -> bool:
        """Whether a streamed answer (an overview, a lens block, saliency) is still being computed."""
        return any(
            not (r.answered or r.cancelled)
            for view in list(self.host._views.values())
            for r in list(view._streams.values())
        )

    def _next(self, holding: bool) -> tuple[str, dict[str, Any] | None] | None:
        """The next thing to do: a click's request; else, once quiet, a prefetched one or ``holding``'s send."""
        with self._cond:
            while not self._stopped:
                if self._urgent:
                    return "urgent", self._urgent.popleft()
                if self._ahead or holding or self._recentre is not None:
                    now = time.perf_counter()
                    if self._streaming():  # a panel's first draw, or a click's stream: it goes first
                        self._quiet_at = now + QUIET_S
                    if now >= self._quiet_at:
                        if self._recentre is not None:
                            recentre, self._recentre = self._recentre, None
                            return "recentre", recentre
                        return ("ahead", self._ahead.popleft()) if self._ahead else ("send", None)
                    self._cond.wait(timeout=max(self._quiet_at - now, 0.01))
                else:
                    self._cond.wait()
            return None

    def _work(self) -> None:
        group: list[tuple[str, list[dict[str, Any]]]] = []
        size, started = 0, time.perf_counter()
        while True:
            found = self._next(bool(group))
            if found is None:
                return
            kind, request = found
            if kind == "urgent":
                assert request is not None
                self._answer(request)  # what was grouped waits: the click's answers leave first
                with self._cond:
                    self._quiet_at = time.perf_counter() + QUIET_S
                continue
            if kind == "recentre":
                assert request is not None
                self.prefetch(request)  # listing a few thousand requests: off the kernel's thread, after the click
                continue
            if kind == "ahead":
                assert request is not None
                key = request_key(request)
                messages = None if key in self._held else self._record(request)
                if messages is not None:
                    self._held.add(key)
                    self.log.append(("ahead", key))
                    group.append((key, messages))
                    size += sum(len(b) for m in messages for b in m["buffers"])
            with self._cond:
                last = not self._ahead
                waiting = bool(self._urgent)
            if not waiting and (
                last or kind == "send" or size >= GROUP_BYTES or time.perf_counter() - started >= GROUP_SECONDS
            ):
                self._send_group(group, done=last)
                group, size, started = [], 0, time.perf_counter()

    def _answer(self, request: dict[str, Any]) -> None:
        """A click's request, unless a newer click dropped it meanwhile; answered as a single view would."""
        with self._cond:
            if request.get("id") in self._dropped:
                return
        name, what = str(request.get("panel")), str(request.get("what", ""))
        view = self.host._views.get(name)
        if view is None:
            self.host.send(
                {"type": "error", "id": request.get("id"), "what": what, "panel": name, "message": f"no panel {name!r}"}
            )
            return
        reply = Reply(view, request.get("id"), what)
        handler = view._handler(what)
        if handler is None:
            reply.error(f"{type(view).__name__} cannot answer {what!r}")
            return
        self.log.append(("urgent", request_key({k: v for k, v in request.items() if k not in ("type", "id")})))
        reply.run(handler, {k: v for k, v in request.items() if k not in ("type", "id", "what", "panel")})

    def _record(self, request: dict[str, Any]) -> list[dict[str, Any]] | None:
        view = self.host._views.get(request["panel"])
        handler = view._handler(request["what"]) if view is not None else None
        if handler is None:
            return None
        reply = Recording(view, request["what"])
        reply.run(handler, {k: v for k, v in request.items() if k not in ("what", "panel")})
        if any(m["content"]["type"] == "error" for m in reply.messages):
            return None  # the page asks for it again if it needs it, and shows the error then
        for message in reply.messages:
            message["content"]["panel"] = request["panel"]
        return reply.messages

    def _send_group(self, group: list[tuple[str, list[dict[str, Any]]]], done: bool) -> None:
        buffers: list[bytes] = []
        entries = []
        for key, messages in group:
            out = []
            for m in messages:
                out.append(
                    {"content": m["content"], "buffers": list(range(len(buffers), len(buffers) + len(m["buffers"])))}
                )
                buffers += m["buffers"]
            entries.append({"key": key, "messages": out})
        self.host.send({"type": "stored", "entries": entries, "done": done}, buffers)
