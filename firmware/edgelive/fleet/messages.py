"""Checking what arrives from the fleet: commands and desired config. Pure: no I/O.

Everything on a subscribed topic is untrusted input. A message is accepted only when it is
small enough, valid JSON of the right shape, addressed to a known target and verb, not
expired and not a repeat, and its arguments fit the verb's schema in edgelive.verbs; anything
else is refused with a reason and changes nothing.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from edgelive import verbs

MAX_COMMAND_BYTES = 4 * 1024
MAX_DESIRED_BYTES = 64 * 1024
MAX_ID_CHARS = 64
RECENT_IDS = 1024


@dataclass(frozen=True)
class Command:
    id: str
    target: str
    verb: str
    args: dict[str, Any]
    """Checked against the verb's schema and normalized (absent optional keys left out)."""
    expires: int | None


class Rejected(Exception):
    """Refused input; `command_id` is echoed in the answer when it could be read."""

    def __init__(self, reason: str, command_id: str | None = None,
                 rev: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_id = command_id
        self.rev = rev


def _json_object(payload: bytes, limit: int) -> dict[str, Any]:
    if len(payload) > limit:
        raise Rejected(f"payload of {len(payload)} bytes exceeds {limit}")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Rejected("payload is not valid JSON") from None
    if not isinstance(doc, dict):
        raise Rejected("payload must be a JSON object")
    return doc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_command(path: str, payload: bytes, now_ms: int) -> Command:
    """Check a command sent on `…/cmd/<path>`; raise Rejected with the reason."""
    doc = _json_object(payload, MAX_COMMAND_BYTES)
    command_id = doc.get("id")
    if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_ID_CHARS:
        raise Rejected(f"id must be a string of 1–{MAX_ID_CHARS} characters")
    unknown = set(doc) - {"id", "args", "expires"}
    if unknown:
        raise Rejected(f"unknown field(s): {', '.join(sorted(unknown))}", command_id)
    target, _, name = path.partition("/")
    verb = verbs.find(target, name)
    if verb is None:
        raise Rejected(f"unknown command {path!r}", command_id)
    args = doc.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise Rejected("args must be a JSON object", command_id)
    try:
        args = verb.parse(args)
    except ValueError as exc:
        raise Rejected(f"{path}: {exc}", command_id) from None
    expires = doc.get("expires")
    if expires is not None:
        if not _is_int(expires):
            raise Rejected("expires must be unix time in ms", command_id)
        if expires < now_ms:
            raise Rejected(f"expired {now_ms - expires} ms ago", command_id)
    return Command(command_id, target, name, args, expires)


def parse_desired(payload: bytes) -> tuple[int, dict[str, Any]]:
    """`(rev, partial config)` of a `config/desired` message; raise Rejected."""
    doc = _json_object(payload, MAX_DESIRED_BYTES)
    rev = doc.get("rev")
    if not _is_int(rev) or rev < 0:
        raise Rejected("rev must be a non-negative integer")
    unknown = set(doc) - {"rev", "config"}
    if unknown:
        raise Rejected(f"unknown field(s): {', '.join(sorted(unknown))}", rev=rev)
    partial = doc.get("config")
    if not isinstance(partial, dict):
        raise Rejected("config must be a JSON object of sections", rev=rev)
    return rev, partial


class RecentIds:
    """The last `size` command ids seen: a repeat within that window is a duplicate."""

    def __init__(self, size: int = RECENT_IDS) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, command_id: str) -> bool:
        """True if `command_id` was seen before; records it either way."""
        if command_id in self._ids:
            self._ids.move_to_end(command_id)
            return True
        self._ids[command_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return False


def resolve_verb(spec: str) -> str:
    """`target/verb` from `target/verb`, `target.verb` or a verb only one target has."""
    target, sep, verb = spec.replace(".", "/").partition("/")
    if sep:
        if verbs.find(target, verb) is not None:
            return f"{target}/{verb}"
        raise ValueError(f"unknown command {spec!r}")
    owners = [v.target for v in verbs.VERBS if v.name == spec]
    if len(owners) == 1:
        return f"{owners[0]}/{spec}"
    if owners:
        raise ValueError(f"{spec!r} is ambiguous: say {' or '.join(f'{t}/{spec}' for t in owners)}")
    raise ValueError(f"unknown command {spec!r}")
