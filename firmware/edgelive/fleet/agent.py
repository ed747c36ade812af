"""The fleet agent: the box's side of the MQTT API (SPEC §5).

It keeps the box's retained topics true (status with the will, state, reported config, Home
Assistant discovery), applies desired config by revision, runs commands and answers each one
exactly once, and forwards events and telemetry. It knows nothing of workers or files: the
supervisor hands it an `AgentHost`, so the agent is tested with a small real host.

All methods run on the event loop; `publish_event` and `state_changed` may also be called
from other threads (event listeners). Nothing here blocks: config is applied by the host,
which does its fsync in a thread.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgelive import __version__
from edgelive.codes import Code
from edgelive.config.schema import MqttConfig
from edgelive.events import Event, now_ms
from edgelive.fleet import homeassistant, messages
from edgelive.fleet.messages import Rejected
from edgelive.fleet.session import Message, MqttSession, SessionSettings, Will
from edgelive.fleet.topics import HA_STATUS, BoxTopics, ha_discovery
from edgelive.verbs import CommandError

log = logging.getLogger(__name__)

PENDING_EVENTS = 256
CONNECT_FAILURES_REPORTED = 8  # distinct reasons per outage; more are only logged
DOCUMENT_LOC = "(document)"


class ConfigOutcome(Protocol):
    applied: bool
    errors: list[dict[str, str]]


class AgentHost(Protocol):
    """What the agent needs from the box (the supervisor implements it)."""

    async def apply_config(self, rev: int, partial: dict[str, Any]) -> ConfigOutcome:
        """Merge, validate and persist a desired partial config as revision `rev`."""

    def config_rev(self) -> int:
        """Revision of the config in force."""

    def reported_config(self) -> dict[str, Any]:
        """The effective config with secrets redacted."""

    def state(self) -> dict[str, Any]:
        """`{"pusher": {"state": …}, "player": {"state": …, "muted": …}, "privacy": …}`;
        `player.muted` is what the player does (Home Assistant's Mute switch reads it)."""

    async def handle_command(self, target: str, verb: str,
                             args: dict[str, Any]) -> dict[str, Any] | None:
        """Run a checked command; raise CommandError to refuse it. Returns the result."""

    async def snapshot(self, target: str) -> tuple[bytes, int]:
        """JPEG of the pusher's camera or the player's screen, and its wall-clock ms."""

    def emit(self, code: Code, msg: str, **detail: Any) -> None:
        """Emit a device event (the agent's MQTT and config events go through here)."""


@dataclass(frozen=True)
class AgentIdentity:
    box_id: str
    name: str = ""
    groups: tuple[str, ...] = field(default_factory=tuple)
    version: str = __version__


class FleetAgent:
    def __init__(self, host: AgentHost, mqtt: MqttConfig, identity: AgentIdentity, *,
                 home_assistant: bool = True) -> None:
        self._host = host
        self._mqtt = mqtt
        self.identity = identity
        self.topics = BoxTopics(mqtt.prefix, identity.box_id)
        self._home_assistant = home_assistant
        self._settings = SessionSettings.from_config(
            mqtt, client_id=f"edgelive-{identity.box_id}",
            will=Will(self.topics.status, b"offline"))
        self._session: MqttSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recent = messages.RecentIds()
        self._config_lock = asyncio.Lock()
        self._last_desired: bytes | None = None
        self._reported: dict[str, Any] | None = None
        self._pending: collections.deque[Event] = collections.deque(maxlen=PENDING_EVENTS)
        self._telemetry: dict[str, dict[str, Any]] = {}
        self._state_queued = False
        self._started = time.monotonic()
        self._failures_reported: set[str] = set()  # since the last successful connect

    @property
    def session(self) -> MqttSession | None:
        return self._session

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.connected.is_set()

    # -- lifecycle

    async def run(self) -> None:
        """Stay connected to the broker until close(); never raises for network trouble."""
        self._loop = asyncio.get_running_loop()
        session = MqttSession(self._settings, on_message=self._on_message,
                              on_connect=self._on_connect, on_disconnect=self._on_disconnect,
                              on_connect_failed=self._on_connect_failed)
        self._session = session
        for topic_filter in self.topics.command_filters(list(self.identity.groups)):
            await session.subscribe(topic_filter, 1)
        await session.subscribe(self.topics.desired, 1)
        if self._home_assistant:
            await session.subscribe(HA_STATUS, 1)
        telemetry = asyncio.create_task(self._telemetry_loop())
        try:
            await session.run()
        finally:
            telemetry.cancel()

    async def close(self) -> None:
        """Say offline (a clean disconnect fires no will) and disconnect; safe twice."""
        session = self._session
        if session is None:
            return
        session.publish(self.topics.status, b"offline", 1, retain=True)
        for task in list(self._tasks):
            task.cancel()
        await session.close()

    # -- inputs from the box

    def publish_event(self, event: Event) -> None:
        """Send an event (QoS 1); kept in a bounded queue while the broker is away."""
        if self._loop is None:
            self._pending.append(event)
        else:
            self._loop.call_soon_threadsafe(self._send_event, event)

    def update_telemetry(self, src: str, netstatus: dict[str, Any]) -> None:
        """Latest netstatus of `src` (pusher|player), sent every telemetry interval."""
        self._telemetry[src] = netstatus

    def config_applied(self, rev: int) -> None:
        """The host applied revision `rev` itself (the local web console): report it, so the
        fleet sees the new rev and config (kept for the next connect while offline)."""
        if self._loop is None:
            return
        self._reported = self._report_doc(rev, True, [])
        session = self._session
        if session is not None:
            session.publish(self.topics.reported, _dumps(self._reported), 1, retain=True)
        self._queue_state()

    def state_changed(self) -> None:
        """The host's state changed: republish `state` (coalesced)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue_state)

    # -- session callbacks

    def _on_connect(self) -> None:
        self._failures_reported.clear()
        session = self._require_session()
        session.publish(self.topics.status, b"online", 1, retain=True)
        self._publish_state()
        if self._reported is None:
            self._reported = self._report_doc(self._host.config_rev(), True, [])
        session.publish(self.topics.reported, _dumps(self._reported), 1, retain=True)
        self._publish_discovery()
        while self._pending:
            self._send_event(self._pending.popleft())
        self._host.emit(Code.MQTT_CONNECTED, f"connected to {self._mqtt.host}:{self._mqtt.port}",
                        protocol="5" if session.is_v5 else "3.1.1")

    def _on_disconnect(self) -> None:
        self._host.emit(Code.MQTT_LOST, "broker connection lost")

    def _on_connect_failed(self, reason: str) -> None:
        """One event per distinct reason while disconnected: a broker down for an hour
        is one event, not one per retry. The reason never holds the password."""
        reported = self._failures_reported
        if reason in reported or len(reported) >= CONNECT_FAILURES_REPORTED:
            return
        reported.add(reason)
        host, port = self._mqtt.host, self._mqtt.port
        self._host.emit(Code.MQTT_CONNECT_FAILED, f"cannot connect to {host}:{port}: {reason}",
                        host=host, port=port, reason=reason)

    def _on_message(self, msg: Message) -> None:
        if msg.topic == self.topics.desired:
            if msg.payload:  # an empty retained message only clears the topic
                self._spawn(self._apply_desired(msg.payload))
        elif msg.topic == HA_STATUS:
            if msg.payload.strip() == b"online":
                self._publish_discovery()
        else:
            path = self.topics.command_path(msg.topic, list(self.identity.groups))
            if path is not None:
                self._on_command(path, msg)

    # -- config

    async def _apply_desired(self, payload: bytes) -> None:
        async with self._config_lock:
            if payload == self._last_desired:
                return  # the same retained document again (reconnect): already answered
            self._last_desired = payload
            applied_rev = self._host.config_rev()
            try:
                rev, partial = messages.parse_desired(payload)
            except Rejected as exc:
                self._host.emit(Code.CONFIG_REJECTED, f"desired config refused: {exc.reason}")
                if exc.rev is not None and exc.rev > applied_rev:
                    self._report(exc.rev, False, [{"loc": DOCUMENT_LOC, "msg": exc.reason}])
                return
            if rev <= applied_rev:
                if rev < applied_rev:
                    self._host.emit(Code.CONFIG_REJECTED, f"desired rev {rev} is older than "
                                    f"the applied rev {applied_rev}")
                return
            outcome = await self._host.apply_config(rev, partial)
            if outcome.applied:
                self._host.emit(Code.CONFIG_APPLIED, f"config rev {rev} applied", rev=rev)
            else:
                self._host.emit(Code.CONFIG_REJECTED, f"config rev {rev} rejected", rev=rev,
                                errors=outcome.errors)
            self._report(rev, outcome.applied, list(outcome.errors))
            self._publish_state()

    def _report_doc(self, rev: int, applied: bool, errors: list[dict[str, str]],
                    ) -> dict[str, Any]:
        return {"rev": rev, "applied": applied, "errors": errors,
                "config": self._host.reported_config()}

    def _report(self, rev: int, applied: bool, errors: list[dict[str, str]]) -> None:
        self._reported = self._report_doc(rev, applied, errors)
        self._require_session().publish(self.topics.reported, _dumps(self._reported), 1,
                                        retain=True)

    # -- commands

    def _on_command(self, path: str, msg: Message) -> None:
        try:
            command = messages.parse_command(path, msg.payload, now_ms())
            if self._recent.seen(command.id):
                raise Rejected("duplicate command id", command.id)
        except Rejected as exc:
            self._answer(path, msg, exc.command_id, False, Code.COMMAND_REJECTED,
                         error=exc.reason)
            return
        self._spawn(self._run_command(path, msg, command))

    async def _run_command(self, path: str, msg: Message, command: messages.Command) -> None:
        try:
            if command.verb == "snapshot":
                result = await self._snapshot(command.target)
            else:
                result = await self._host.handle_command(command.target, command.verb,
                                                         command.args) or {}
        except CommandError as exc:
            self._answer(path, msg, command.id, False, exc.code, error=str(exc))
        except Exception as exc:
            log.exception("command %s failed", path)
            self._answer(path, msg, command.id, False, Code.COMMAND_REJECTED,
                         error=f"failed: {exc}")
        else:
            self._answer(path, msg, command.id, True, 0, result=result)

    async def _snapshot(self, target: str) -> dict[str, Any]:
        jpeg, taken_ms = await self._host.snapshot(target)
        topic = self.topics.snapshot(target)
        self._require_session().publish(topic, jpeg, 0)
        return {"topic": topic, "bytes": len(jpeg), "ts": taken_ms}

    def _answer(self, path: str, msg: Message, command_id: str | None, ok: bool, code: int,
                **outcome: Any) -> None:
        body = {"id": command_id, "box": self.identity.box_id, "ok": ok, "code": int(code),
                **outcome}
        topic = msg.response_topic or self.topics.res(path)
        self._require_session().publish(topic, _dumps(body), 1, correlation=msg.correlation)

    # -- outputs

    def _send_event(self, event: Event) -> None:
        session = self._session
        if session is None or not session.publish(self.topics.event, event.to_json(), 1):
            self._pending.append(event)

    def _queue_state(self) -> None:
        if not self._state_queued:
            self._state_queued = True
            self._require_loop().call_soon(self._publish_state)

    def _publish_state(self) -> None:
        self._state_queued = False
        state = {**self._host.state(), "rev": self._host.config_rev(),
                 "version": self.identity.version, "name": self.identity.name,
                 "groups": list(self.identity.groups),
                 "uptime": round(time.monotonic() - self._started, 1), "ts": now_ms()}
        self._require_session().publish(self.topics.state, _dumps(state), 1, retain=True)

    def _publish_discovery(self) -> None:
        if self._home_assistant:
            doc = homeassistant.discovery_payload(self.topics, self.identity.name,
                                                  self.identity.version)
            self._require_session().publish(ha_discovery(self.identity.box_id), _dumps(doc),
                                            1, retain=True)

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self._mqtt.telemetry_interval)
            session = self._require_session()
            for src, netstatus in list(self._telemetry.items()):
                session.publish(self.topics.tele(src), _dumps(netstatus), 0)
            self._telemetry.clear()

    # -- helpers

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._require_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _require_session(self) -> MqttSession:
        assert self._session is not None, "run() has not started"
        return self._session

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "run() has not started"
        return self._loop


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), default=str).encode()
