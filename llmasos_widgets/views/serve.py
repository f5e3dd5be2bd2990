"""How an Explorer answers its page: one message per click, in on-screen order; the page's cache filled ahead.

The page keeps the answers it is likely to need (``js/explorer/store.ts``): a click whose answers are there
sends nothing. A click that misses sends one ``batch`` message with a request for every panel that needs
the kernel, in the order the panels are on screen, and the ids it made stale (``drop``); the Explorer acks
the batch at once and queues the requests on one worker thread, which answers each (a plain ``response``,
tagged with its panel, as ever) before it starts anything prefetched, and skips a request whose id was
dropped: a stale request is never computed. Streamed requests (an attention overview, a lens block, the
saliency scores) keep their own threads, as in a single view; a dropped one is cancelled.

After the first draw the page sends ``prefetch`` with the selected position, its open panels in order and
its cache's budget in bytes; a batch carries the same, re-centred on its click. The Explorer asks each panel
what it would be asked around that position (``ViewBase._prefetch``), nearest first, and the worker answers
them when nothing else waits, in groups of ``stored`` messages the page files by request key, the key an
exported file replays by (:func:`~.export.request_key`). A newer ``prefetch`` replaces what is left of the
older.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Any

from .export import Recording, request_key
from .protocol import Reply

if TYPE_CHECKING:
    from .explorer import Explorer

GROUP_BYTES = 2**20  # a "stored" message holds about this much, or what GROUP_SECONDS computed
GROUP_SECONDS = 0.05
LOG_LENGTH = 4096


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
            self._cond.notify()
        self._start()
        if isinstance(content.get("prefetch"), dict):  # re-centred on the click, served after it
            self.prefetch(content["prefetch"])

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
            for rank, name in enumerate(panels):  # the small answers take little; the attention rows half at most
                for distance, request in self.host._views[name]._prefetch(order, budget):
                    wanted.append((distance, rank, {**request, "panel": name}))
        wanted.sort(key=lambda w: (w[0], w[1]))
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

    def _next(self) -> tuple[str, dict[str, Any]] | None:
        with self._cond:
            while not self._urgent and not self._ahead and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            if self._urgent:
                return "urgent", self._urgent.popleft()
            return "ahead", self._ahead.popleft()

    def _work(self) -> None:
        group: list[tuple[str, list[dict[str, Any]]]] = []
        size, started = 0, time.perf_counter()
        while True:
            found = self._next()
            if found is None:
                return
            kind, request = found
            if kind == "urgent":
                self._answer(request)
                continue
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
            if last or (group and (waiting or size >= GROUP_BYTES or time.perf_counter() - started >= GROUP_SECONDS)):
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
