"""Generated payloads on every topic the real `edgelive run` subscribes to.

The box runs as its own process for the whole module; each example is published through
the real broker. Afterwards the process is alive, still answers, and its config is the one
it started with.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgelive.config.store import ConfigStore
from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import SessionSettings
from tests.servers import Mosquitto
from tests.test_fleet_fuzz import bad_commands, bad_desired, raw

BOX = "fuzzbox"
LEAVES = ["cmd/pusher/start", "cmd/pusher/snapshot", "cmd/player/play", "cmd/device/privacy",
          "cmd/device/reboot", "cmd/device/nope", "config/desired"]
BROADCAST = ["edgelive/grp/lab/cmd/device/identify", "edgelive/all/cmd/pusher/stop",
             "homeassistant/status"]


@dataclass
class FuzzBox:
    broker: Mosquitto
    state: Path
    client: mqtt.Client
    proc: subprocess.Popen


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzBox]:
    work = tmp_path_factory.mktemp("fuzzbox")
    broker = Mosquitto(work)
    broker.start()
    state = work / "state"
    state.mkdir()
    (state / "config.toml").write_text(tomli_w.dumps({
        "mqtt": {"host": broker.host, "port": broker.port},
        "device": {"id": BOX, "groups": ["lab"]},
        "player": {"muted": True}}))
    proc = subprocess.Popen([sys.executable, "-m", "edgelive", "run", "--state-dir",
                             str(state), "--boot-file", str(work / "none.toml"),
                             "--log-level", "WARNING"],
                            env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    yield FuzzBox(broker, state, client, proc)
    client.loop_stop()
    client.disconnect()
    proc.terminate()
    proc.wait(10)
    broker.stop()


topics = st.sampled_from([f"edgelive/{BOX}/{leaf}" for leaf in LEAVES] + BROADCAST)
payloads = st.one_of(raw, bad_commands(), bad_desired())


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(topic=topics, payload=payloads)
def test_garbage_never_kills_or_changes_the_box(box: FuzzBox, topic: str, payload: bytes) -> None:
    box.client.publish(topic, payload, qos=1).wait_for_publish(5)
    assert box.proc.poll() is None, "the box died"


def test_after_the_fuzzing_the_box_answers_and_kept_its_config(box: FuzzBox) -> None:
    time.sleep(1.0)
    assert box.proc.poll() is None

    async def check() -> None:
        settings_ = SessionSettings(host=box.broker.host, port=box.broker.port,
                                    client_id="fz-check")
        async with FleetOperator(settings_, "edgelive") as fleet:
            assert await fleet.wait_online([BOX], timeout=10)
            answer = await fleet.command(BOX, "device/identify", {})
            assert answer.answers[BOX]["ok"] is True
            reported = fleet.boxes[BOX].reported
            assert reported is None or reported["config"]["player"]["muted"] is True

    asyncio.run(check())
    store = ConfigStore(box.state)
    config = store.load(provision=False)
    assert config.player.muted is True and store.rev == 0 and not store.load_errors
