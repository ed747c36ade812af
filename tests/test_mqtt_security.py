"""The fleet's security as docs/mosquitto-acl.md documents it, against a real mosquitto.

The broker runs the doc's settings and ACL file verbatim (its TLS listener aside: TLS is
test_fleet_tls.py's) with one user per box, an operator and Home Assistant. A box that is
taken over (its credentials in someone else's hands) can still only write under its own
prefix and read nothing of another box; the operator reads and writes every box. A box also
tells the broker the largest packet it takes, so a bigger message never reaches it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edgelive.codes import Code
from edgelive.config.schema import MqttConfig
from edgelive.events import Event
from edgelive.fleet.messages import MAX_DESIRED_BYTES
from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import Message, MqttSession, SessionSettings
from edgelive.fleet.simulated import running, simulated_box
from edgelive.fleet.topics import BoxTopics
from tests.servers import Mosquitto, documented_mosquitto
from tests.test_fleet_agent import PREFIX, box_mqtt

USERS = {"box1": "Pa55-box1", "box2": "Pa55-box2", "operator": "Pa55-operator",
         "homeassistant": "Pa55-ha"}
STREAM_KEY = "box2-stream-key"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = documented_mosquitto(tmp_path / "broker", USERS)
    server.start()
    yield server
    server.stop()


def box_login(broker: Mosquitto, user: str) -> MqttConfig:
    return box_mqtt(broker, username=user, password=USERS[user])


def login(broker: Mosquitto, user: str, client_id: str) -> SessionSettings:
    return SessionSettings(host=broker.host, port=broker.port, client_id=client_id,
                           username=user, password=USERS[user])


def fleet_operator(broker: Mosquitto) -> FleetOperator:
    """The fleet CLI as it connects: the operator account, client id `edgelive-op-…`."""
    return FleetOperator(login(broker, "operator", f"edgelive-op-{uuid.uuid4().hex[:8]}"),
                         PREFIX)


@asynccontextmanager
async def client(settings: SessionSettings, *filters: str,
                 ) -> AsyncIterator[tuple[MqttSession, list[Message]]]:
    """A plain MQTT client subscribed to `filters`; what it receives lands in the list."""
    received: list[Message] = []
    session = MqttSession(settings, on_message=received.append)
    task = asyncio.create_task(session.run())
    try:
        await session.wait_connected(5)
        for topic_filter in filters:
            await session.subscribe(topic_filter, 1)
        yield session, received
    finally:
        await session.close()
        await task


async def eventually(condition: Callable[[], object], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def arrived(received: list[Message], topic: str) -> Message:
    await eventually(lambda: any(m.topic == topic for m in received))
    return next(m for m in received if m.topic == topic)


def test_the_documented_acl_lets_boxes_and_the_operator_run_the_fleet(
        broker: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        box1, host1 = simulated_box("box1", box_login(broker, "box1"), tmp_path / "b1",
                                    groups=("lab",), home_assistant=True)
        box2, host2 = simulated_box("box2", box_login(broker, "box2"), tmp_path / "b2",
                                    groups=("lab",))
        async with running(box1), running(box2), fleet_operator(broker) as fleet:
            assert await fleet.wait_online(["box1", "box2"])
            events: list[tuple[str, dict]] = []

            async def collect() -> None:
                async for box, event in fleet.events():
                    events.append((box, event))

            collector = asyncio.create_task(collect())
            [outcome] = await fleet.set_config("box2", {"pusher": {
                "url": f"rtmp://ingest/live/{STREAM_KEY}", "max-bitrate": 900}})
            assert outcome.report and outcome.report["applied"] is True, outcome.report
            assert host2.store.current.pusher.max_bitrate == 900
            # a group command reaches both boxes; each answers on the operator's reply topic
            answer = await fleet.command("lab", "device/identify", {})
            assert {box: a["ok"] for box, a in answer.answers.items()} == {
                "box1": True, "box2": True}, answer.answers
            await eventually(lambda: {b for b, e in events if e["code"] == Code.IDENTIFY}
                             == {"box1", "box2"})
            collector.cancel()
            # the operator reads every box's desired (stream key and all) and reported config
            async with client(login(broker, "operator", "edgelive-op-reader"),
                              f"{PREFIX}/+/config/#") as (_, received):
                desired = await arrived(received, BoxTopics(PREFIX, "box2").desired)
                assert STREAM_KEY in desired.payload.decode()
                await arrived(received, BoxTopics(PREFIX, "box1").reported)
            # Home Assistant reads the discovery a box writes outside its prefix, and switches
            async with client(login(broker, "homeassistant", "homeassistant"),
                              "homeassistant/device/+/config") as (ha, received):
                await arrived(received, "homeassistant/device/box1/config")
                ha.publish(BoxTopics(PREFIX, "box1").cmd("device", "privacy"),
                           json.dumps({"id": "ha-1", "args": {"on": True}}), 1)
                await eventually(lambda: host1.privacy)
            assert host1.store.rev == 0

    asyncio.run(scenario())


def test_a_box_writes_only_under_its_own_prefix_and_reads_no_other_box(
        broker: Mosquitto, tmp_path: Path) -> None:
    """box1's credentials in an attacker's hands, with box1's client id."""
    box1, box2 = BoxTopics(PREFIX, "box1"), BoxTopics(PREFIX, "box2")

    async def scenario() -> None:
        agent, host = simulated_box("box2", box_login(broker, "box2"), tmp_path / "b2",
                                    groups=("lab",))
        async with running(agent), fleet_operator(broker) as fleet:
            [outcome] = await fleet.set_config("box2", {"pusher": {
                "url": f"rtmp://ingest/live/{STREAM_KEY}"}})
            assert outcome.report and outcome.report["applied"] is True
            watcher = login(broker, "operator", "edgelive-op-watcher")
            async with client(watcher, f"{PREFIX}/#") as (_, seen), \
                    client(login(broker, "box1", "edgelive-box1"), box2.desired,
                           box2.reported, f"{PREFIX}/+/config/#", f"{box2.root}/#", "#",
                           f"{box1.root}/#") as (rogue, stolen):
                def privacy(command_id: str) -> bytes:
                    return json.dumps({"id": command_id, "args": {"on": True}}).encode()

                writes = {
                    box2.desired: json.dumps({"rev": 99, "config": {"pusher": {
                        "max-bitrate": 111}}}).encode(),
                    box2.status: b"offline",
                    box2.cmd("device", "privacy"): privacy("forged-1"),
                    f"{PREFIX}/grp/lab/cmd/device/privacy": privacy("forged-2"),
                    f"{PREFIX}/all/cmd/device/privacy": privacy("forged-3"),
                }
                for topic, payload in writes.items():
                    rogue.publish(topic, payload, 1, retain=topic in (box2.desired, box2.status))
                # Its own prefix is open to it; published last on the same connection, its
                # arrival means the broker has dealt with every write above.
                rogue.publish(box1.state, b"{}", 1)
                await arrived(seen, box1.state)
                await arrived(stolen, box1.state)
                await asyncio.sleep(0.5)  # time for box2 to act, were anything delivered

            assert not set(writes.items()) & {(m.topic, m.payload) for m in seen}
            assert (host.store.rev, host.privacy, host.commands) == (1, False, [])
            assert fleet.boxes["box2"].status == "online"
            assert not [m.topic for m in stolen if not m.topic.startswith(box1.root + "/")]
            assert not [m for m in stolen if STREAM_KEY.encode() in m.payload]

    asyncio.run(scenario())


def test_a_box_is_not_sent_a_message_bigger_than_it_accepts(broker: Mosquitto,
                                                             tmp_path: Path) -> None:
    """The broker drops a desired config over the box's Maximum-Packet-Size (the broker's
    own max_packet_size, 1 MiB, lets it in); the largest the box accepts still arrives."""
    topics = BoxTopics(PREFIX, "box1")

    def desired(rev: int, name: str, size: int = 0) -> bytes:
        doc = json.dumps({"rev": rev, "config": {"device": {"name": name}}}).encode()
        return doc.ljust(size)  # JSON allows the trailing blanks

    async def scenario() -> None:
        agent, host = simulated_box("box1", box_login(broker, "box1"), tmp_path / "b1")
        events: list[Event] = []
        host.events.subscribe(events.append)
        operator = login(broker, "operator", "edgelive-op-big")
        async with running(agent), client(operator) as (fleet, _):
            fleet.publish(topics.desired, desired(1, "huge", 4 * MAX_DESIRED_BYTES), 1,
                          retain=True)
            fleet.publish(topics.desired, desired(2, "largest", MAX_DESIRED_BYTES), 1,
                          retain=True)
            async with asyncio.timeout(10):
                while host.store.rev != 2:
                    await asyncio.sleep(0.05)
            assert host.store.current.device.name == "largest"
            assert agent.connected
        assert [e.code for e in events].count(Code.MQTT_CONNECTED) == 1
        assert not [e for e in events if e.code == Code.CONFIG_REJECTED], events

    asyncio.run(scenario())
