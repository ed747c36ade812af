"""The operator's side of the fleet API, used by `edgelive fleet` (and by the bench).

It keeps a live mirror of every box's retained topics (status, state, reported and desired
config). Right after subscribing it publishes a token to its own reply topic and waits for
it: the broker delivers in order, so once the token is back every retained message is in.
Commands carry an MQTT 5 response topic under `<prefix>/reply/<client id>/`; boxes on 3.1.1
answer on their own `res/…` topics, which the operator also listens to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from edgelive.codes import Code
from edgelive.config.store import deep_merge
from edgelive.events import now_ms
from edgelive.fleet.session import Message, MqttSession, SessionSettings
from edgelive.fleet.topics import (
    BoxTopics,
    all_cmd_root,
    fleet_filter,
    group_cmd_root,
    reply_root,
    split_box_topic,
)

MIRRORED = {"status": "status", "state": "state", "config/reported": "reported",
            "config/desired": "desired"}


@dataclass
class BoxView:
    id: str
    status: str = ""
    state: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None
    desired: dict[str, Any] | None = None

    @property
    def online(self) -> bool:
        return self.status == "online"

    @property
    def groups(self) -> list[str]:
        groups = (self.state or {}).get("groups")
        return [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []

    def rev(self, leaf: str) -> int:
        doc = getattr(self, leaf) or {}
        rev = doc.get("rev") if isinstance(doc, dict) else None
        return rev if isinstance(rev, int) else 0


@dataclass
class CommandOutcome:
    topic: str
    expected: list[str]
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return sorted(set(self.expected) - set(self.answers))


@dataclass
class ConfigOutcome:
    box: str
    rev: int
    report: dict[str, Any] | None  # None: no report of this rev in time


@dataclass
class UpdateOutcome:
    box: str
    ok: bool  # committed (UPDATE_DONE)
    reason: str  # the box's words: what it committed on, or why it rolled back


def rollout_plan(boxes: list[str], canary: int, batch: int) -> list[list[str]]:
    """`canary` boxes first (each batch waits for the one before), then `batch` at a time."""
    if canary < 0 or batch < 1:
        raise ValueError("canary must be ≥ 0 and batch ≥ 1")
    plan = [boxes[i:i + 1] for i in range(min(canary, len(boxes)))]
    rest = boxes[len(plan):]
    return plan + [rest[i:i + batch] for i in range(0, len(rest), batch)]


class FleetOperator:
    """Connect with `async with FleetOperator(settings, prefix) as fleet:`."""

    def __init__(self, settings: SessionSettings, prefix: str) -> None:
        self.prefix = prefix.strip("/")
        self.boxes: dict[str, BoxView] = {}
        self._settings = settings
        self._reply = reply_root(self.prefix, settings.client_id)
        self._session: MqttSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._sync: dict[bytes, asyncio.Future[None]] = {}
        self._collectors: dict[str, tuple[CommandOutcome, asyncio.Event]] = {}
        self._watchers: list[Callable[[str, str], None]] = []
        self._event_queues: list[asyncio.Queue[tuple[str, dict[str, Any]]]] = []

    async def __aenter__(self) -> FleetOperator:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(self, timeout: float = 5.0) -> None:
        session = MqttSession(self._settings, on_message=self._on_message)
        self._session = session
        self._runner = asyncio.create_task(session.run())
        await session.wait_connected(timeout)
        await session.subscribe(f"{self._reply}#", 0)
        # QoS 0 like the token, so the broker cannot reorder them behind in-flight QoS 1.
        for leaf in MIRRORED:
            await session.subscribe(fleet_filter(self.prefix, leaf), 0)
        await session.subscribe(fleet_filter(self.prefix, "res/#"), 1)
        await self.sync(timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def sync(self, timeout: float = 5.0) -> None:
        """Return once every message the broker queued for us before now has arrived."""
        token = uuid.uuid4().hex.encode()
        future = asyncio.get_running_loop().create_future()
        self._sync[token] = future
        self._session_or_fail().publish(f"{self._reply}sync", token, 0)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self._sync.pop(token, None)

    # -- queries

    def members(self, target: str) -> list[str]:
        """The box `target`, or every known member of the group `target`."""
        if target in self.boxes:
            return [target]
        return sorted(b.id for b in self.boxes.values() if target in b.groups)

    async def wait_online(self, box_ids: list[str], timeout: float = 5.0) -> bool:
        """Wait until every box in `box_ids` says online; False on timeout."""
        return await self.wait_until(
            lambda: all(b in self.boxes and self.boxes[b].online for b in box_ids), timeout)

    # -- config

    async def set_config(self, target: str, partial: dict[str, Any],
                         timeout: float = 5.0) -> list[ConfigOutcome]:
        """Merge `partial` onto each box's desired config as rev+1; wait for its report."""
        boxes = self.members(target)
        if not boxes:
            raise LookupError(f"no box or group named {target!r}")
        revs: dict[str, int] = {}
        for box_id in boxes:
            box = self.boxes[box_id]
            rev = max(box.rev("desired"), box.rev("reported"), box.rev("state")) + 1
            config = deep_merge(self._desired_base(box), partial)
            revs[box_id] = rev
            body = json.dumps({"rev": rev, "config": config}).encode()
            self._session_or_fail().publish(BoxTopics(self.prefix, box_id).desired, body, 1,
                                            retain=True)

        def reported() -> bool:
            return all(self.boxes[b].rev("reported") >= r for b, r in revs.items())

        await self.wait_until(reported, timeout)
        return [ConfigOutcome(b, r, self._report_of(b, r)) for b, r in revs.items()]

    @staticmethod
    def _desired_base(box: BoxView) -> dict[str, Any]:
        """The retained desired config, minus the keys the box refused in that rev."""
        base = (box.desired or {}).get("config")
        if not isinstance(base, dict):
            return {}
        report = box.reported or {}
        if report.get("rev") != box.rev("desired") or report.get("applied", True):
            return base
        for error in report.get("errors") or []:
            *path, key = str(error.get("loc", "")).split(".")
            table: Any = base
            for part in path:
                table = table.get(part) if isinstance(table, dict) else None
            if not isinstance(table, dict) or key not in table:
                return {}  # an error we cannot locate: start again from the box's config
            del table[key]
        return base

    def _report_of(self, box_id: str, rev: int) -> dict[str, Any] | None:
        report = self.boxes[box_id].reported
        return report if report is not None and report.get("rev") == rev else None

    # -- updates (docs/updates.md)

    async def update(self, boxes: list[str], args: dict[str, Any],
                     timeout: float) -> list[UpdateOutcome]:
        """`device/update` to each box; waits until each has committed (UPDATE_DONE) or
        rolled back (UPDATE_ROLLED_BACK) this version, at most `timeout` s."""
        version = args["version"]
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._event_queues.append(queue)  # before the commands: no event can slip by
        try:
            await self._session_or_fail().subscribe(fleet_filter(self.prefix, "event"), 1)
            answers = await asyncio.gather(*(self.command(box, "device/update", args)
                                             for box in boxes))
            done: dict[str, UpdateOutcome] = {}
            for box, outcome in zip(boxes, answers, strict=True):
                answer = outcome.answers.get(box)
                if answer is None or not answer.get("ok"):
                    done[box] = UpdateOutcome(box, False, "refused the command: " + (
                        str(answer.get("error")) if answer else "no answer"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while len(done) < len(boxes):
                        box, event = await queue.get()
                        detail = event.get("detail") or {}
                        if box not in boxes or box in done or detail.get("version") != version:
                            continue
                        if event.get("code") == Code.UPDATE_DONE:
                            done[box] = UpdateOutcome(box, True, str(event.get("msg", "")))
                        elif event.get("code") == Code.UPDATE_ROLLED_BACK:
                            done[box] = UpdateOutcome(box, False, str(
                                detail.get("reason") or event.get("msg", "")))
        finally:
            self._event_queues.remove(queue)
        return [done.get(box) or UpdateOutcome(
            box, False, f"neither committed nor rolled back within {timeout:.0f} s")
            for box in boxes]

    # -- commands

    async def command(self, target: str, path: str, args: dict[str, Any],
                      timeout: float = 5.0) -> CommandOutcome:
        """Send `<target>/<verb>` to a box, a group or `all`; collect answers until timeout."""
        if target == "all":
            topic = all_cmd_root(self.prefix) + path
            expected = sorted(b.id for b in self.boxes.values() if b.online)
        elif target in self.boxes:
            topic, expected = BoxTopics(self.prefix, target).cmd_root + path, [target]
        else:
            expected = [b for b in self.members(target) if self.boxes[b].online]
            topic = group_cmd_root(self.prefix, target) + path
        command_id = f"op-{uuid.uuid4().hex[:16]}"
        outcome = CommandOutcome(topic, expected)
        done = asyncio.Event()
        self._collectors[command_id] = (outcome, done)
        body = {"id": command_id, "args": args, "expires": now_ms() + int(timeout * 1000)}
        try:
            self._session_or_fail().publish(topic, json.dumps(body).encode(), 1,
                                            response_topic=f"{self._reply}res",
                                            correlation=command_id.encode())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)
        finally:
            self._collectors.pop(command_id, None)
        return outcome

    # -- events

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Every box's events as `(box id, event)`, live, until the caller stops."""
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._event_queues.append(queue)
        try:
            await self._session_or_fail().subscribe(fleet_filter(self.prefix, "event"), 1)
            while True:
                yield await queue.get()
        finally:
            self._event_queues.remove(queue)

    # -- incoming

    def _on_message(self, msg: Message) -> None:
        if msg.topic.startswith(self._reply):
            future = self._sync.get(msg.payload)
            if future is not None and not future.done():
                future.set_result(None)
            elif msg.topic == f"{self._reply}res":
                self._on_answer(None, msg.payload)
            return
        located = split_box_topic(self.prefix, msg.topic)
        if located is None:
            return
        box_id, leaf = located
        if leaf in MIRRORED:
            self._mirror(box_id, leaf, msg.payload)
        elif leaf.startswith("res/"):
            self._on_answer(box_id, msg.payload)
        elif leaf == "event":
            doc = _json(msg.payload)
            if doc is not None:
                for queue in self._event_queues:
                    queue.put_nowait((box_id, doc))

    def _mirror(self, box_id: str, leaf: str, payload: bytes) -> None:
        box = self.boxes.setdefault(box_id, BoxView(box_id))
        if leaf == "status":
            box.status = payload.decode(errors="replace")
        else:
            setattr(box, MIRRORED[leaf], _json(payload))
        for watcher in list(self._watchers):
            watcher(box_id, leaf)

    def _on_answer(self, box_id: str | None, payload: bytes) -> None:
        doc = _json(payload)
        if doc is None or doc.get("id") not in self._collectors:
            return
        outcome, done = self._collectors[doc["id"]]
        box = box_id or doc.get("box")
        if isinstance(box, str):
            outcome.answers[box] = doc
        if outcome.expected and not outcome.missing:
            done.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until `condition()` holds, re-checked on each mirrored change; its last value."""
        changed = asyncio.Event()

        def watcher(_box: str, _leaf: str) -> None:
            changed.set()

        self._watchers.append(watcher)
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            pass
        finally:
            self._watchers.remove(watcher)
        return condition()

    def _session_or_fail(self) -> MqttSession:
        if self._session is None:
            raise RuntimeError("operator not started")
        return self._session


def _json(payload: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
