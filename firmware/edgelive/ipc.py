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
from collections.abc import Callable, Iterator
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


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


def reject(writer: LineWriter, message_id: Any, error: str) -> None:
    """Answer a line the worker cannot take (malformed, unknown, invalid)."""
    from edgelive.codes import Code

    writer.write("response", {"id": message_id, "ok": False,
                              "code": int(Code.COMMAND_REJECTED), "error": error})


def read_messages(stdin: TextIO, writer: LineWriter) -> Iterator[dict[str, Any]]:
    """Protocol lines from stdin until it closes; a malformed one is answered and skipped."""
    for line in stdin:
        if not line.strip():
            continue
        try:
            yield parse_line(line)
        except ValueError as exc:
            reject(writer, None, str(exc))


def first_config(messages: Iterator[dict[str, Any]], writer: LineWriter,
                 validate: Callable[[Any], T]) -> T | None:
    """A worker's start: the first config line that `validate` accepts (it raises ValueError
    saying why not); None when stdin closed first."""
    for message in messages:
        if message["type"] != "config":
            reject(writer, message.get("id"),
                   'the first line must be {"type": "config", "config": {…}}')
            continue
        try:
            return validate(message.get("config"))
        except ValueError as exc:
            reject(writer, None, str(exc))
    return None
