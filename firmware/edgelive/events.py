"""The event record every part of the box emits (SPEC §1), numbered per boot.

An event is a plain JSON object: `{"ts", "seq", "code", "name", "src", "msg", "detail"}`.
Workers write them as JSON lines, numbered by their own `EventLog`; the supervisor's log
renumbers each one it relays (`EventLog.relay`), so the box's one stream has one `seq` that
increases across worker restarts, which restart a worker's own count from 1.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgelive.codes import Code, Source, code_name
from edgelive.redact import redact_text


@dataclass(frozen=True)
class Event:
    ts: int
    seq: int
    code: int
    name: str
    src: str
    msg: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), default=str)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(
            ts=int(d["ts"]),
            seq=int(d["seq"]),
            code=int(d["code"]),
            name=str(d.get("name") or code_name(int(d["code"]))),
            src=str(d["src"]),
            msg=str(d.get("msg", "")),
            detail=dict(d.get("detail") or {}),
        )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class EventLog:
    """Creates numbered events for one source, relays other sources' in the same numbering,
    and hands them to listeners (thread-safe).

    Messages are redacted here, once, so no stream key or password reaches a log,
    a topic or a terminal whatever the caller put in the text.
    """

    def __init__(self, src: Source, clock: Callable[[], int] = now_ms) -> None:
        self.src = src
        self._clock = clock
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Event], None]] = []

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def emit(self, code: Code | int, msg: str = "", **detail: Any) -> Event:
        with self._lock:
            event = Event(
                ts=self._clock(),
                seq=next(self._seq),
                code=int(code),
                name=code_name(int(code)),
                src=self.src.value,
                msg=redact_text(msg),
                detail=detail,
            )
        self._notify(event)
        return event

    def relay(self, event: Event) -> Event:
        """Take an event made by another process into this log: numbered here, src kept.

        The message is redacted again: it arrived as a line from another process.
        """
        with self._lock:
            event = replace(event, seq=next(self._seq), msg=redact_text(event.msg))
        self._notify(event)
        return event

    def _notify(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)
