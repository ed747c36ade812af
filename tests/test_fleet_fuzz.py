"""Generated payloads on every topic the agent subscribes to: never a crash, never a change.

One box and one probe run on an event loop in a thread for the whole run; each example is
published through the real broker and waits for the answer (commands) or the event
(desired config) it must cause, then for the answer to a command sent after it, so the box
has taken in every example before its config and state are checked.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgelive.codes import Code
from edgelive.config.schema import EdgeliveConfig
from edgelive.events import now_ms
from edgelive.fleet.messages import MAX_DESIRED_BYTES
from edgelive.fleet.simulated import SimulatedHost, running, simulated_box
from edgelive.fleet.topics import HA_STATUS, BoxTopics
from tests.servers import Mosquitto
from tests.test_fleet_agent import Probe, box_mqtt

TOPICS = BoxTopics("edgelive", "fz")
GOOD_PATHS = ["pusher/start", "player/mute", "device/privacy", "device/identify"]
BAD_PATHS = ["pusher/fly", "nope/start", "pusher", "device/privacy/now", "", "player/"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
# Neither a command nor a desired document can be made of these by chance.
stray_json = json_values.filter(
    lambda v: not (isinstance(v, dict) and ("id" in v or "rev" in v)))
raw = st.binary(max_size=300) | stray_json.map(lambda v: json.dumps(v).encode())
# Over the command and desired limits, under the box's Maximum-Packet-Size (anything bigger
# never reaches the box: test_mqtt_security.py).
oversized = st.integers(5_000, MAX_DESIRED_BYTES + 2_000).map(
    lambda n: b'{"id": "big", "args": {"x": "' + b"a" * n + b'"}}')
bad_field = st.sampled_from(["id", "args", "expires", "extra"])


@st.composite
def bad_commands(draw: st.DrawFn) -> bytes:
    """Well-formed-looking commands with exactly one field wrong."""
    doc: dict[str, Any] = {"id": draw(st.text(min_size=1, max_size=20)),
                           "args": draw(st.dictionaries(st.text(max_size=5), json_values,
                                                        max_size=3))}
    wrong = draw(bad_field)
    if wrong == "id":
        doc["id"] = draw(st.one_of(st.just(""), st.text(min_size=65), json_values.filter(
            lambda v: not isinstance(v, str))))
    elif wrong == "args":
        doc["args"] = draw(json_values.filter(lambda v: not isinstance(v, dict | None)))
    elif wrong == "expires":
        doc["expires"] = draw(st.one_of(st.integers(max_value=now_ms() - 60_000),
                                        json_values.filter(lambda v: not isinstance(v, int))))
    else:
        doc[draw(st.text(min_size=1).filter(lambda k: k not in doc))] = 1
    return json.dumps(doc).encode()


@st.composite
def bad_desired(draw: st.DrawFn) -> bytes:
    """Desired documents that must be refused: bad rev, bad shape or an invalid config."""
    rev = draw(st.one_of(st.integers(1, 10**6),
                         json_values.filter(lambda v: not (type(v) is int and v >= 0))))
    config = draw(st.one_of(
        json_values.filter(lambda v: not isinstance(v, dict)),
        st.fixed_dictionaries({"pusher": st.fixed_dictionaries(
            {"fps": st.one_of(st.integers(61, 10**9), st.text(), st.booleans())})}),
        st.dictionaries(st.sampled_from(["nonsense", "pusher2", "Pusher"]), json_values,
                        min_size=1)))
    return json.dumps({"rev": rev, "config": config}).encode()


class Harness:
    """A box and a probe on a private event loop in a thread."""

    def __init__(self, broker: Mosquitto, state_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.agent, self.host = simulated_box("fz", box_mqtt(broker), state_dir)
        self.broker = broker
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.main = asyncio.run_coroutine_threadsafe(self._main(), self.loop)
        self.ready.wait(15)
        self.last_desired = b""
        self.barriers = itertools.count()

    async def _main(self) -> None:
        self.stop = asyncio.Event()
        async with running(self.agent), Probe(self.broker) as self.probe:
            await self.probe.session.subscribe("fuzz/#", 1)
            await self.probe.session.subscribe(TOPICS.event, 1)
            self.ready.set()
            await self.stop.wait()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    async def command(self, path: str, payload: bytes) -> dict[str, Any]:
        self._drain()
        self.probe.session.publish(TOPICS.cmd_root + path, payload, 1,
                                   response_topic="fuzz/answer", correlation=b"fz")
        while True:
            msg = await self.probe.next()
            if msg.topic == "fuzz/answer":
                assert msg.correlation == b"fz"
                return json.loads(msg.payload)

    async def desired(self, payload: bytes) -> dict[str, Any] | None:
        self._drain()
        self.probe.session.publish(TOPICS.desired, payload, 1)
        if not payload or payload == self.last_desired:
            await self.settled()
            return None  # an empty message clears; a repeat was answered already
        self.last_desired = payload
        while True:
            msg = await self.probe.next()
            if msg.topic == TOPICS.event:
                event = json.loads(msg.payload)
                if event["code"] == Code.CONFIG_REJECTED:
                    await self.settled()
                    return event

    async def ha_status(self, payload: bytes) -> None:
        self.probe.session.publish(HA_STATUS, payload, 1)
        await self.settled()

    async def settled(self) -> None:
        """Sent after an example on the same connection, a command the box refuses at once:
        its answer means the box has taken the example in."""
        token = f"barrier-{next(self.barriers)}"
        answer = await self.command("device/nope", json.dumps({"id": token}).encode())
        assert answer["id"] == token and answer["ok"] is False

    def _drain(self) -> None:
        while not self.probe.messages.empty():
            self.probe.messages.get_nowait()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.main.result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def harness(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(mosquitto, tmp_path / "fz")
    yield h
    h.close()


def _unchanged(host: SimulatedHost) -> None:
    assert host.commands == [] and host.store.rev == 0
    assert host.store.current == EdgeliveConfig()
    assert (host.pusher, host.player, host.privacy, host.muted) == ("idle", "idle", False, False)


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.slow
def test_fuzzed_commands_are_refused_and_change_nothing(harness: Harness) -> None:
    @FUZZ
    @given(path=st.sampled_from(GOOD_PATHS + BAD_PATHS), payload=raw | bad_commands(),
           bad_path_payload=st.booleans())
    def check(path: str, payload: bytes, bad_path_payload: bool) -> None:
        if bad_path_payload:  # a valid command on a topic that names no command
            path, payload = BAD_PATHS[len(payload) % len(BAD_PATHS)], b'{"id": "ok-1"}'
        answer = harness.call(harness.command(path, payload))
        assert (answer["ok"], answer["code"]) == (False, Code.COMMAND_REJECTED)
        assert answer["box"] == "fz" and answer["error"]
        _unchanged(harness.host)

    check()
    big = harness.call(harness.command("pusher/start", b"x" * 5000))
    assert "exceeds" in big["error"]
    alive = harness.call(harness.command("device/identify", b'{"id": "alive"}'))
    assert alive["ok"]


@pytest.mark.slow
def test_fuzzed_desired_config_is_refused_and_changes_nothing(harness: Harness) -> None:
    @FUZZ
    @given(payload=raw | bad_desired() | oversized, ha=st.binary(max_size=40))
    def check(payload: bytes, ha: bytes) -> None:
        harness.call(harness.ha_status(ha))
        event = harness.call(harness.desired(payload))
        if event is not None:
            assert event["name"] == "CONFIG_REJECTED" and event["src"] == "device"
        _unchanged(harness.host)

    check()
    alive = harness.call(harness.command("device/identify", b'{"id": "alive"}'))
    assert alive["ok"]
