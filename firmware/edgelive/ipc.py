"""JSON-lines protocol between the supervisor and its worker processes.

A worker (`edgelive push`/`play`) writes one JSON object per line on stdout:
`{"type": "event", ...Event}`, `{"type": "netstatus", "src", "ts", ...keys}`,
`{"type": "response", "id", "ok", "code", "result"|"error"}` or `{"type": "state", ...}`;
and reads commands on stdin: `{"type": "cmd", "id", "verb", "args"}` and
`{"type": "config", "config": {...section...}}` for a live change.
The same lines, printed to a terminal, are what `edgelive push` shows a user.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO


class LineWriter:
    """Thread-safe writer of JSON lines (capture, sender and control threads all report)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def write(self, kind: str, payload: dict[str, Any]) -> None:
        line = json.dumps({"type": kind, **payload}, separators=(",", ":"), default=str)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # the reader (supervisor or terminal) is gone; keep streaming


def parse_line(line: str) -> dict[str, Any]:
    """Decode one protocol line; raises ValueError with a readable reason."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ValueError("expected a JSON object with a string 'type'")
    return obj
