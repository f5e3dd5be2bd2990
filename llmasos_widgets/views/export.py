"""Views as one offline HTML file, answered from recorded responses instead of a kernel.

The file holds each view's own front-end bundle, its stylesheet, its synced traits, and the answers to the
requests it records, replayed in the page by ``static/standalone.js``. Each view's part is one gzip
stream, in base64 inside a ``<script type="application/octet-stream">``: a little-endian uint32 length,
that many bytes of JSON, then the answers' binary buffers (the JSON names each by offset and length).
The page unzips it with the browser's own DecompressionStream. Attention rows shrink about 2.3x that way,
and 3x against base64 buffers inside JSON.

Model text is inert in the file: it is base64 text until the views render it as text. Nothing is loaded
from a network. The file is written to a temporary name, then renamed.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import wire
from .assets import STATIC
from .protocol import Reply
from .wire import Arrays

if TYPE_CHECKING:
    from .base import ViewBase

HTML_SUFFIXES = (".html", ".htm")  # what an exported file may be called (any case)
MAX_BYTES = 64 * 2**20  # an exported file larger than this is refused: record less
# No network at all: scripts only inline or from the page's own blob URLs (the views' bundles).
_POLICY = "default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; img-src data: blob:"
_ABOUT = "Exported by llmasos_widgets: works offline, with no kernel. Clicks are answered from what was recorded."


class Recording(Reply):
    """A Reply that keeps the messages it would send (for replay) instead of sending them."""

    def __init__(self, view: ViewBase, what: str) -> None:
        super().__init__(view, None, what)
        self.messages: list[dict[str, Any]] = []

    def _send(self, kind: str, fields: dict[str, Any], arrays: Arrays) -> None:
        descs, buffers = wire.pack(arrays)
        content = {"type": kind, "what": self.what, "arrays": descs, **fields}
        self.messages.append({"content": content, "buffers": [bytes(b) for b in buffers]})

    def error(self, message: str) -> None:
        self.messages.append({"content": {"type": "error", "what": self.what, "message": message}, "buffers": []})

    def progress(self, done: int, total: int) -> None:
        """Progress is for a live kernel; a replayed answer is immediate."""


def request_key(request: dict[str, Any]) -> str:
    """The key the page's replay looks a request up by (js/standalone/replay.ts, replayKey).

    Examples
    --------
    >>> request_key({"what": "predictions", "position": 3, "k": 5})
    '{"k":5,"position":3,"what":"predictions"}'

    """
    return json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record(view: ViewBase) -> tuple[dict[str, Any], str]:
    """Answer the view's export requests now, as its kernel would: {key: {"messages": [...]}}, and its note."""
    requests, note = view._export_requests()
    recorded = {}
    for request in requests:
        what = request["what"]
        params = {k: v for k, v in request.items() if k != "what"}
        reply = Recording(view, what)
        handler = view._handler(what)
        if handler is None:
            raise ValueError(f"{type(view).__name__} cannot answer {what!r}")
        reply.run(handler, params)
        if "panel" in request:  # an Explorer's panel: the page hands each answer to the panel that asked
            for message in reply.messages:
                message["content"]["panel"] = request["panel"]
        recorded[request_key(request)] = {"messages": reply.messages}
    return recorded, note


def _state(view: ViewBase) -> dict[str, Any]:
    # The synced traits the front-end reads; anywidget's and ipywidgets' own (_esm, layout...) stay out.
    return {
        k: v
        for k, v in view.get_state().items()
        if not k.startswith("_") and k not in ("layout", "tabbable", "tooltip")
    }


def _source(value: Any) -> str:
    # anywidget holds a bundle's or stylesheet's text (read from static/; a module that says the build
    # is missing when it is), or a path to it while it watches the file.
    return Path(value).read_text(encoding="utf-8") if isinstance(value, Path) else str(value or "")


def pack(data: dict[str, Any]) -> str:
    """One view's part of the page: its data with every buffer moved to a binary tail, gzipped, in base64."""
    blobs: list[bytes] = []
    offset = 0
    for answer in data["recorded"].values():
        for message in answer["messages"]:
            spans = []
            for buffer in message["buffers"]:
                spans.append([offset, len(buffer)])
                blobs.append(buffer)
                offset += len(buffer)
            message["buffers"] = spans
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw = struct.pack("<I", len(body)) + body + b"".join(blobs)
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def unpack(text: str) -> dict[str, Any]:
    """The inverse of :func:`pack`, buffers as bytes again (for tests and tools reading a file).

    Examples
    --------
    >>> data = {"recorded": {"k": {"messages": [{"content": {"type": "response"}, "buffers": [b"abc"]}]}}}
    >>> unpack(pack(data))["recorded"]["k"]["messages"][0]["buffers"]
    [b'abc']

    """
    raw = gzip.decompress(base64.b64decode(text))
    (n,) = struct.unpack("<I", raw[:4])
    data = json.loads(raw[4 : 4 + n].decode("utf-8"))
    tail = raw[4 + n :]
    for answer in data["recorded"].values():
        for message in answer["messages"]:
            message["buffers"] = [tail[o : o + length] for o, length in message["buffers"]]
    return data


def check_path(path: str | os.PathLike[str]) -> Path:
    """The file an export will be written to, checked before anything is computed; a ValueError says why not.

    It must be a file name ending in ``.html`` or ``.htm`` (any case) in a folder that exists and can be
    written to (checked by creating and removing a temporary file there).

    Examples
    --------
    >>> import tempfile
    >>> check_path(tempfile.mkdtemp() + "/view.html").name
    'view.html'
    >>> check_path("/tmp/view.txt")
    Traceback (most recent call last):
    ...
    ValueError: /tmp/view.txt does not end in .html or .htm: an export is an HTML page; name it e.g. /tmp/view.html

    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a directory: give a file name, e.g. {path / 'view.html'}")
    if path.suffix.lower() not in HTML_SUFFIXES:
        base = path.with_suffix("") if path.suffix else path
        named = base if base.suffix.lower() in HTML_SUFFIXES else base.with_name(base.name + ".html")
        raise ValueError(
            f"{path} does not end in {' or '.join(HTML_SUFFIXES)}: an export is an HTML page; name it e.g. {named}"
        )
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: the folder {path.parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ValueError(f"cannot write {path}: {e.strerror or e} (choose a folder you can write to)") from e
    os.close(fd)
    os.unlink(probe)
    return path


def check_bundles(views: list[ViewBase]) -> str:
    """The export runtime's source, once every view's front-end bundle and the runtime are known to be there."""
    runtime_path = STATIC / "standalone.js"
    if not runtime_path.is_file():
        raise ValueError("the export runtime static/standalone.js is missing: run `npm run build` or reinstall")
    for view in views:
        if not (STATIC / f"{view.front_end}.js").is_file():
            raise ValueError(
                f"the front-end bundle static/{view.front_end}.js is missing: run `npm run build` or reinstall"
            )
    runtime = runtime_path.read_text(encoding="utf-8")
    if "</script" in runtime.lower():
        raise ValueError("the export runtime holds '</script' and cannot be inlined")
    return runtime


def view_part(view: ViewBase, host: str) -> tuple[str, str]:
    """One view's part of a page (its note, its host element ``host`` and its packed data) and its note.

    A page may hold any number of parts, each with its own ``host`` id, anywhere in its body; the runtime
    (:func:`page`) finds them all.
    """
    recorded, note = record(view)
    note = f"{type(view).__name__}: {note}"
    data = {
        "esm": base64.b64encode(_source(view._esm).encode()).decode(),
        "css": _source(view._css),
        "state": _state(view),
        "recorded": recorded,
    }
    part = (
        f'<p class="lw-export-note">{html.escape(note)}</p>\n'
        f'<div id="{html.escape(host)}" data-state="loading"></div>\n'
        f'<script type="application/octet-stream" class="lw-export" data-host="{html.escape(host)}">'
        f"{pack(data)}</script>"
    )
    return part, note


def page(title: str, body: str, runtime: str, *, style: str = "") -> str:
    """A whole offline page: no network (content policy), ``body`` (trusted HTML), then the export runtime."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<title>{html.escape(title)}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 16px; }} .lw-export-note {{ color: #666; }}{style}</style>
</head>
<body>
{body}
<script type="module">{runtime}</script>
</body>
</html>
"""


def write_page(path: Path, text: str) -> int:
    """Write ``text`` to ``path`` through a temporary name (refused over ``MAX_BYTES``); returns its size in bytes."""
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_BYTES:
        raise ValueError(
            f"the export would be {len(encoded) / 2**20:.0f} MB, over {MAX_BYTES / 2**20:.0f} MB: record less"
        )
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ValueError(f"cannot write {path}: {e.strerror or e} (choose a folder you can write to)") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(encoded)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a file to share should not be
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(encoded)


def save_html(views: list[ViewBase], path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Write ``views`` to one self-contained HTML file (see ``ViewBase.save_html``); returns the path.

    The path is checked first (:func:`check_path`: an ``.html`` or ``.htm`` name in a folder one can write
    to), before any answer is recorded.
    """
    path = check_path(path)
    runtime = check_bundles(views)
    title = title or " · ".join(type(v).__name__ for v in views)
    parts, notes = [], []
    for i, view in enumerate(views):
        part, note = view_part(view, f"lw-view-{i}")
        parts.append(part)
        notes.append(note)
    body = f"""<h1 style="font-size: 16px">{html.escape(title)}</h1>
<p class="lw-export-note">{_ABOUT}</p>
{chr(10).join(parts)}"""
    size = write_page(path, page(title, body, runtime))
    print(f"wrote {path} ({size / 1024:.0f} kB): {'; '.join(notes)}")
    return path
