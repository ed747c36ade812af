"""Generated payloads on every topic the real `edgelive run` subscribes to.

The box runs as its own process for the whole module, pushing a stream to nginx-rtmp; each
example is published through the real broker. After every example, once the box has dealt
with it, the process is alive, its stored config and its state are the ones it started with,
and its stream is the same RTMP session (no new publish at nginx).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgelive.codes import Code
from edgelive.config.schema import EdgeliveConfig
from edgelive.config.store import ConfigStore
from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import SessionSettings
from tests.servers import Mosquitto, NginxRtmp
from tests.test_fleet_fuzz import bad_commands, bad_desired, raw

BOX = "fuzzbox"
STREAM = "fuzz"
LEAVES = ["cmd/pusher/start", "cmd/pusher/snapshot", "cmd/player/play", "cmd/device/privacy",
          "cmd/device/reboot", "cmd/device/nope", "config/desired"]
BROADCAST = ["edgelive/grp/lab/cmd/device/identify", "edgelive/all/cmd/pusher/stop",
             "homeassistant/status"]
DESIRED = f"edgelive/{BOX}/config/desired"
ANSWERS = "fuzz/answer"


@dataclass
class FuzzBox:
    broker: Mosquitto
    nginx: NginxRtmp
    state: Path
    client: mqtt.Client
    proc: subprocess.Popen
    config: EdgeliveConfig  # what the box started with
    sessions: int = 0  # RTMP sessions nginx has recorded once the box was pushing
    inbox: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)
    box_state: dict[str, Any] = field(default_factory=dict)  # its retained `state`
    last_desired: bytes = b""
    barriers: Iterator[int] = field(default_factory=count)

    def on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == f"edgelive/{BOX}/state":
            self.box_state = json.loads(msg.payload)
        else:
            self.inbox.put(msg)

    def wait_for(self, accept: Callable[[mqtt.MQTTMessage], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not accept(self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))):
            pass

    def settle(self, topic: str, payload: bytes) -> None:
        """Publish an example and return once the box has answered it."""
        while not self.inbox.empty():
            self.inbox.get_nowait()
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)
        if topic == DESIRED and payload and payload != self.last_desired:
            # every such payload ends in a refusal (empty: cleared; a repeat: answered before)
            self.last_desired = payload
            self.wait_for(lambda m: m.topic == f"edgelive/{BOX}/event"
                          and json.loads(m.payload)["code"] == Code.CONFIG_REJECTED)
        # A command the box refuses at once, sent after the example on the same connection:
        # its answer means the box has taken the example in.
        token = f"barrier-{next(self.barriers)}"
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic, properties.CorrelationData = ANSWERS, token.encode()
        self.client.publish(f"edgelive/{BOX}/cmd/device/nope", json.dumps({"id": token}),
                            qos=1, properties=properties)
        self.wait_for(lambda m: m.topic == ANSWERS and json.loads(m.payload)["id"] == token)

    def assert_unchanged(self) -> None:
        assert self.proc.poll() is None, "the box died"
        store = ConfigStore(self.state)
        assert store.load(provision=False) == self.config and store.rev == 0
        assert (self.box_state["pusher"]["state"], self.box_state["privacy"],
                self.box_state["player"]["muted"]) == ("pushing", False, True), self.box_state
        assert self.nginx.publishers(STREAM) == 1, "the stream stopped"
        assert len(self.nginx.recordings(STREAM)) == self.sessions, "the stream restarted"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzBox]:
    work = tmp_path_factory.mktemp("fuzzbox")
    broker, nginx = Mosquitto(work), NginxRtmp(work / "nginx")
    broker.start()
    nginx.start()
    state = work / "state"
    state.mkdir()
    (state / "config.toml").write_text(tomli_w.dumps({
        "mqtt": {"host": broker.host, "port": broker.port},
        "device": {"id": BOX, "groups": ["lab"]},
        "player": {"muted": True},
        "pusher": {"url": nginx.url(STREAM), "source": "testsrc", "resolution": "320x180",
                   "fps": 10, "audio-device": "none", "autopush": True}}))
    config = ConfigStore(state).load(provision=False)
    proc = subprocess.Popen([sys.executable, "-m", "edgelive", "run", "--state-dir",
                             str(state), "--boot-file", str(work / "none.toml"),
                             "--log-level", "WARNING"],
                            env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    fuzz = FuzzBox(broker, nginx, state, client, proc, config)
    client.on_message = fuzz.on_message
    client.connect(broker.host, broker.port)
    client.loop_start()
    for topic in (f"edgelive/{BOX}/state", f"edgelive/{BOX}/event", ANSWERS):
        client.subscribe(topic, qos=1)
    deadline = time.monotonic() + 30
    while fuzz.box_state.get("pusher", {}).get("state") != "pushing" \
            or nginx.publishers(STREAM) != 1:
        assert time.monotonic() < deadline, f"the box never pushed: {fuzz.box_state}"
        time.sleep(0.2)
    fuzz.sessions = len(nginx.recordings(STREAM))
    yield fuzz
    client.loop_stop()
    client.disconnect()
    proc.terminate()
    proc.wait(10)
    nginx.stop()
    broker.stop()


topics = st.sampled_from([f"edgelive/{BOX}/{leaf}" for leaf in LEAVES] + BROADCAST)
payloads = st.one_of(raw, bad_commands(), bad_desired())


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(topic=topics, payload=payloads)
def test_garbage_never_kills_or_changes_the_box(box: FuzzBox, topic: str, payload: bytes) -> None:
    box.settle(topic, payload)
    box.assert_unchanged()


def test_after_the_fuzzing_the_box_answers_and_kept_its_config(box: FuzzBox) -> None:
    time.sleep(1.0)
    box.assert_unchanged()

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
