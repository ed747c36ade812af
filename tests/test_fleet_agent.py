"""The fleet agent against a real mosquitto: config by rev, commands, retained topics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from edgelive.codes import Code
from edgelive.config.schema import MqttConfig
from edgelive.events import now_ms
from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import Message, MqttSession, SessionSettings
from edgelive.fleet.simulated import running, simulated_box
from edgelive.fleet.topics import BoxTopics
from tests.servers import Mosquitto

PREFIX = "edgelive"


def box_mqtt(broker: Mosquitto, **extra: object) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, keepalive=5, **extra)


def client_settings(broker: Mosquitto, protocol: str = "auto") -> SessionSettings:
    return SessionSettings(host=broker.host, port=broker.port,
                           client_id=f"test-{uuid.uuid4().hex[:8]}", protocol=protocol)


@asynccontextmanager
async def operator(broker: Mosquitto) -> AsyncIterator[FleetOperator]:
    async with FleetOperator(client_settings(broker), PREFIX) as fleet:
        yield fleet


class Probe:
    """A plain MQTT client collecting what arrives on its subscriptions."""

    def __init__(self, broker: Mosquitto, protocol: str = "auto") -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.session = MqttSession(client_settings(broker, protocol),
                                   on_message=self.messages.put_nowait)

    async def __aenter__(self) -> Probe:
        self._task = asyncio.create_task(self.session.run())
        await self.session.wait_connected(5)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.session.close()
        await self._task

    async def next(self, timeout: float = 5.0) -> Message:
        return await asyncio.wait_for(self.messages.get(), timeout)


def test_config_round_trip_by_rev_with_errors_and_redaction(mosquitto: Mosquitto,
                                                            tmp_path: Path) -> None:
    async def scenario() -> None:
        agent, host = simulated_box("b1", box_mqtt(mosquitto), tmp_path / "b1")
        async with running(agent), operator(mosquitto) as fleet:
            assert await fleet.wait_online(["b1"])
            await fleet.sync()
            assert fleet.boxes["b1"].reported["rev"] == 0

            key = "s3cr3tkey"
            [ok] = await fleet.set_config("b1", {"pusher": {"max-bitrate": 900,
                                                            "url": f"rtmp://h/live/{key}"}})
            assert (ok.rev, ok.report["applied"], ok.report["errors"]) == (1, True, [])
            assert ok.report["config"]["pusher"]["max-bitrate"] == 900
            assert key not in json.dumps(ok.report)
            assert host.store.rev == 1 and host.store.current.pusher.max_bitrate == 900
            assert "max-bitrate = 900" in (tmp_path / "b1" / "config.toml").read_text()

            [bad] = await fleet.set_config("b1", {"pusher": {"fps": 500, "nope": 1}})
            assert (bad.rev, bad.report["applied"]) == (2, False)
            assert {e["loc"] for e in bad.report["errors"]} == {"pusher.fps", "pusher.nope"}
            assert host.store.rev == 1 and host.store.current.pusher.fps == 30
            assert bad.report["config"]["pusher"]["max-bitrate"] == 900  # still in force

            # rev+1 merges onto the retained desired minus the refused keys
            [again] = await fleet.set_config("b1", {"pusher": {"fps": 25}})
            assert again.rev == 3 and again.report["applied"]
            assert host.store.current.pusher.max_bitrate == 900
            await fleet.sync()
            assert fleet.boxes["b1"].state["rev"] == 3

    asyncio.run(scenario())


def test_desired_retained_while_offline_is_applied_once_on_connect(mosquitto: Mosquitto,
                                                                   tmp_path: Path) -> None:
    async def scenario() -> None:
        topics = BoxTopics(PREFIX, "b2")
        async with Probe(mosquitto) as probe:
            probe.session.publish(topics.desired, json.dumps(
                {"rev": 4, "config": {"player": {"max-cache": 5.0}}}), 1, retain=True)
            await probe.session.subscribe(topics.reported, 1)
            agent, host = simulated_box("b2", box_mqtt(mosquitto), tmp_path / "b2")
            async with running(agent):
                reports = []
                while not reports or reports[-1]["rev"] != 4:
                    reports.append(json.loads((await probe.next()).payload))
                assert reports[-1]["applied"] and host.store.current.player.max_cache == 5.0
                # an older rev is refused and changes nothing
                probe.session.publish(topics.desired, json.dumps(
                    {"rev": 3, "config": {"player": {"max-cache": 9.0}}}), 1, retain=True)
                await asyncio.sleep(0.3)
                assert host.store.rev == 4 and host.store.current.player.max_cache == 5.0
                assert probe.messages.empty()

    asyncio.run(scenario())


def test_broker_restart_republishes_status_state_and_reported(mosquitto: Mosquitto,
                                                              tmp_path: Path) -> None:
    async def scenario() -> None:
        agent, host = simulated_box("b3", box_mqtt(mosquitto), tmp_path / "b3")
        codes: list[int] = []
        host.events.subscribe(lambda e: codes.append(e.code))
        async with running(agent):
            async with operator(mosquitto) as fleet:
                assert await fleet.wait_online(["b3"])
                await fleet.set_config("b3", {"pusher": {"fps": 20}})
            mosquitto.kill()  # persistence is off: every retained message is gone
            await asyncio.sleep(0.5)
            assert not agent.connected
            mosquitto.start()
            started = time.monotonic()
            async with operator(mosquitto) as fleet:
                assert await fleet.wait_online(["b3"], timeout=15)
                await fleet.sync()
                box = fleet.boxes["b3"]
                assert box.state["rev"] == 1 and box.state["pusher"]["state"] == "idle"
                assert box.reported["rev"] == 1 and box.reported["applied"]
            assert time.monotonic() - started < 15
        assert host.store.rev == 1
        # the broker's death is a loss; the box's own clean disconnect at the end is not
        assert codes.count(Code.MQTT_LOST) == 1, codes
        assert codes.count(Code.MQTT_CONNECTED) == 2, codes

    asyncio.run(scenario())


def test_expired_and_duplicate_commands_are_refused(mosquitto: Mosquitto,
                                                    tmp_path: Path) -> None:
    async def scenario() -> None:
        agent, host = simulated_box("b4", box_mqtt(mosquitto), tmp_path / "b4")
        topics = BoxTopics(PREFIX, "b4")
        async with running(agent), Probe(mosquitto) as probe:
            await probe.session.subscribe("answers/#", 1)

            async def send(body: dict) -> dict:
                probe.session.publish(topics.cmd("pusher", "start"), json.dumps(body), 1,
                                      response_topic="answers/1", correlation=b"c-42")
                msg = await probe.next()
                assert (msg.topic, msg.correlation) == ("answers/1", b"c-42")
                return json.loads(msg.payload)

            expired = await send({"id": "x1", "args": {}, "expires": now_ms() - 1000})
            assert (expired["ok"], expired["code"]) == (False, Code.COMMAND_REJECTED)
            assert "expired" in expired["error"] and host.pusher == "idle"

            first = await send({"id": "x2", "expires": now_ms() + 5000})
            assert first["ok"] and first["code"] == 0 and host.pusher == "pushing"
            host.pusher = "idle"
            repeat = await send({"id": "x2", "expires": now_ms() + 5000})
            assert (repeat["ok"], repeat["error"]) == (False, "duplicate command id")
            assert host.pusher == "idle" and len(host.commands) == 1

    asyncio.run(scenario())


def test_group_and_broadcast_commands_are_answered_by_every_member(mosquitto: Mosquitto,
                                                                   tmp_path: Path) -> None:
    async def scenario() -> None:
        boxes = {name: simulated_box(name, box_mqtt(mosquitto), tmp_path / name, groups)
                 for name, groups in (("g1", ("lobby",)), ("g2", ("lobby", "hall")),
                                      ("g3", ("hall",)))}
        async with running(boxes["g1"][0]), running(boxes["g2"][0]), \
                running(boxes["g3"][0]), operator(mosquitto) as fleet:
            assert await fleet.wait_online(list(boxes))
            await fleet.sync()
            lobby = await fleet.command("lobby", "device/identify", {}, timeout=3)
            assert sorted(lobby.answers) == ["g1", "g2"] and lobby.missing == []
            assert all(a["ok"] for a in lobby.answers.values())
            assert boxes["g3"][1].commands == []
            everyone = await fleet.command("all", "player/mute", {"on": True}, timeout=3)
            assert sorted(everyone.answers) == ["g1", "g2", "g3"]
            assert all(host.muted for _, host in boxes.values())

    asyncio.run(scenario())


def test_mqtt_311_box_answers_on_res_topic(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        agent, host = simulated_box("b5", box_mqtt(mosquitto, protocol="3.1.1"),
                                    tmp_path / "b5")
        topics = BoxTopics(PREFIX, "b5")
        async with running(agent), Probe(mosquitto, protocol="3.1.1") as probe:
            assert not agent.session.is_v5 and not probe.session.is_v5
            await probe.session.subscribe(f"{topics.res_root}#", 1)
            probe.session.publish(topics.cmd("device", "privacy"),
                                  json.dumps({"id": "p1", "args": {"on": True}}), 1)
            msg = await probe.next()
            assert msg.topic == f"{topics.res_root}device/privacy"
            assert json.loads(msg.payload) == {
                "id": "p1", "box": "b5", "ok": True, "code": 0,
                "result": {"pusher": "idle", "player": "idle", "privacy": True}}
            assert host.privacy

    asyncio.run(scenario())


def test_snapshot_and_home_assistant_discovery(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        agent, _ = simulated_box("b6", box_mqtt(mosquitto), tmp_path / "b6",
                                 home_assistant=True)
        topics = BoxTopics(PREFIX, "b6")
        async with running(agent), Probe(mosquitto) as probe:
            await probe.session.subscribe("homeassistant/device/b6/config", 1)
            first = await probe.next()
            doc = json.loads(first.payload)
            assert first.retain and doc["avty_t"] == topics.status
            kinds = sorted(c["p"] for c in doc["cmps"].values())
            assert kinds == (["binary_sensor"] * 2 + ["button"] * 3 + ["camera"] + ["sensor"] * 7
                             + ["switch"] * 2 + ["update"])
            probe.session.publish("homeassistant/status", b"online", 1)
            again = await probe.next()
            assert again.topic == first.topic and json.loads(again.payload) == doc

            await probe.session.subscribe(topics.snapshot("pusher"), 0)
            await probe.session.subscribe(f"{topics.res_root}#", 1)
            probe.session.publish(topics.cmd("pusher", "snapshot"), b'{"id": "s1"}', 1)
            got = {m.topic: m for m in [await probe.next(), await probe.next()]}
            jpeg = got[topics.snapshot("pusher")].payload
            assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
            answer = json.loads(got[topics.res("pusher/snapshot")].payload)
            assert answer["ok"] and answer["result"]["bytes"] == len(jpeg)

    asyncio.run(scenario())


def test_simulated_box_takes_home_assistant_switch_payloads_as_the_box_does(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The fleet tests' simulated box reads `on` from the verb table, like the supervisor:
    the Mute switch's ON mutes and OFF unmutes; a bad value is refused with its location."""
    from tests.test_verbs import ha_render

    async def scenario() -> None:
        agent, host = simulated_box("b7", box_mqtt(mosquitto), tmp_path / "b7",
                                    home_assistant=True)
        topics = BoxTopics(PREFIX, "b7")
        async with running(agent), Probe(mosquitto) as probe:
            await probe.session.subscribe("homeassistant/device/b7/config", 1)
            doc = json.loads((await probe.next()).payload)
            [mute] = [c for c in doc["cmps"].values() if c.get("name") == "Mute"]
            await probe.session.subscribe(f"{topics.res_root}#", 1)
            for value, muted in (("ON", True), ("OFF", False), ("ON", True)):
                probe.session.publish(mute["cmd_t"], ha_render(mute["cmd_tpl"], value=value),
                                      1)
                assert json.loads((await probe.next()).payload)["ok"]
                assert host.muted is muted
                await asyncio.sleep(0.002)  # HA's ids are its clock in ms: one per press
            probe.session.publish(mute["cmd_t"], b'{"id": "m9", "args": {"on": "off"}}', 1)
            answer = json.loads((await probe.next()).payload)
            assert not answer["ok"] and "args.on" in answer["error"] and host.muted

    asyncio.run(scenario())
