"""Read an exported file (save_html) back, independently of _export.unpack: what each view recorded.

The format (DESIGN.md, "Offline files"): each view's part is a ``<script type="application/octet-stream"
class="lw-export">`` holding base64 of one gzip stream: a little-endian uint32 length, that many bytes of
JSON (``esm``, ``css``, ``state``, ``recorded``: {request key: {"messages": [...]}}), then the binary
buffers, which each message names by ``[offset, length]`` into that tail.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmasos_widgets.views import wire

_PART = re.compile(
    r'<script type="application/octet-stream" class="lw-export" data-host="([^"]+)">(.*?)</script>', re.S
)


@dataclass
class Part:
    """One view of an exported file: its synced traits and its recorded answers, buffers as bytes."""

    host: str
    state: dict[str, Any]
    recorded: dict[str, list[dict[str, Any]]]  # request key -> messages {"content", "buffers"}

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every recorded request, as the page sends it (``{"what": ..., **params}``)."""
        return [json.loads(key) for key in self.recorded]

    def answer(self, **request: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The final message recorded for ``request`` (its content) and its arrays, decoded by name."""
        key = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert key in self.recorded, f"{key} is not recorded; recorded: {sorted(self.recorded)[:5]}..."
        last = self.recorded[key][-1]
        arrays = {d["name"]: wire.decode(d, last["buffers"][d["buffer"]]) for d in last["content"].get("arrays", [])}
        return last["content"], arrays


def read_export(path: str | Path) -> list[Part]:
    """Every view's part of the exported file at ``path``, in page order."""
    parts = []
    for host, payload in _PART.findall(Path(path).read_text(encoding="utf-8")):
        raw = gzip.decompress(base64.b64decode(payload))
        (n,) = struct.unpack("<I", raw[:4])
        data = json.loads(raw[4 : 4 + n].decode("utf-8"))
        tail = raw[4 + n :]
        recorded = {}
        for key, answer in data["recorded"].items():
            recorded[key] = [
                {"content": m["content"], "buffers": [tail[o : o + size] for o, size in m["buffers"]]}
                for m in answer["messages"]
            ]
        parts.append(Part(host, data["state"], recorded))
    return parts
