"""`edgelive run` as systemd runs it, against a real mosquitto (and nginx for the workers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import tomli_w

from edgelive.codes import Code
from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import SessionSettings
from tests.servers import Mosquitto, NginxRtmp, free_port

BOX = "box1"


def write_config(state_dir: Path, doc: dict) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "config.toml").write_text(tomli_w.dumps(doc))


def box_config(broker: Mosquitto, **sections: dict) -> dict:
    return {"mqtt": {"host": broker.host, "port": broker.port, "keepalive": 5},
            "device": {"id": BOX, "name": "Test box", "groups": ["lab"]}, **sections}


@pytest.fixture
def run_box(tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen] = []

    def start(doc: dict, **env_extra: str) -> subprocess.Popen:
        state = tmp_path / "state"
        write_config(state, doc)
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "SDL_VIDEODRIVER": "offscreen",
               "SDL_AUDIODRIVER": "dummy", **env_extra}
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgelive", "run", "--state-dir", str(state),
             "--boot-file", str(tmp_path / "absent.toml")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def operator(broker: Mosquitto) -> FleetOperator:
    return FleetOperator(SessionSettings(host=broker.host, port=broker.port,
                                         client_id=f"op-{os.getpid()}"), "edgelive")


class EventLog:
    """Every event the fleet sees, collected from the moment it is created."""

    def __init__(self, fleet: FleetOperator) -> None:
        self.seen: list[dict] = []
        self._fleet = fleet
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for box, event in self._fleet.events():
            if box == BOX:
                self.seen.append(event)

    def codes(self) -> list[int]:
        return [e["code"] for e in self.seen]

    async def wait_for(self, code: Code, timeout: float = 10.0) -> dict:
        async with asyncio.timeout(timeout):
            while code not in self.codes():
                await asyncio.sleep(0.05)
        return next(e for e in self.seen if e["code"] == code)

    def close(self) -> None:
        self._task.cancel()


def test_box_comes_online_takes_commands_and_config_and_says_offline_on_sigterm(
        mosquitto: Mosquitto, run_box, tmp_path: Path) -> None:
    proc = run_box(box_config(mosquitto))

    async def scenario() -> None:
        async with operator(mosquitto) as fleet:
            assert await fleet.wait_online([BOX], timeout=15), "box never said online"
            assert await fleet.wait_until(lambda: fleet.boxes[BOX].state is not None)
            state = fleet.boxes[BOX].state
            assert state["pusher"]["state"] == "off" and state["privacy"] is False
            events = EventLog(fleet)
            await asyncio.sleep(0.3)  # the event subscription is in place

            answer = await fleet.command(BOX, "device/identify", {})
            assert answer.answers[BOX]["ok"] is True
            await events.wait_for(Code.IDENTIFY)

            answer = await fleet.command("lab", "device/privacy", {"on": True})
            assert answer.answers[BOX]["result"] == {"privacy": True}
            await events.wait_for(Code.PRIVACY_ON)
            assert await fleet.wait_until(lambda: fleet.boxes[BOX].state["privacy"] is True)

            # a worker command for an unconfigured pusher is refused with a reason
            answer = await fleet.command(BOX, "pusher/start", {})
            assert answer.answers[BOX]["ok"] is False
            assert "pusher.url" in answer.answers[BOX]["error"]

            [outcome] = await fleet.set_config(BOX, {"player": {"muted": True}})
            assert outcome.report["applied"] is True
            [outcome] = await fleet.set_config(BOX, {"player": {"min-cache": "x"}})
            assert outcome.report["applied"] is False
            assert outcome.report["errors"][0]["loc"] == "player.min-cache"
            assert outcome.report["config"]["player"]["muted"] is True

            await events.wait_for(Code.CONFIG_REJECTED)
            assert Code.CONFIG_APPLIED in events.codes()
            events.close()
            proc.send_signal(signal.SIGTERM)
            assert await fleet.wait_until(lambda: fleet.boxes[BOX].status == "offline", 10)

    asyncio.run(scenario())
    assert proc.wait(timeout=10) == 0
    stored = (tmp_path / "state" / "config.toml").read_text()
    assert "muted = true" in stored and "min-cache" not in stored


def test_edgelive_status_reads_the_running_box(mosquitto: Mosquitto, run_box,
                                               tmp_path: Path) -> None:
    proc = run_box(box_config(mosquitto))

    async def online() -> None:
        async with operator(mosquitto) as fleet:
            assert await fleet.wait_online([BOX], timeout=15)

    asyncio.run(online())
    out = subprocess.run([sys.executable, "-m", "edgelive", "status", "--state-dir",
                          str(tmp_path / "state")], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert "mqtt: connected" in out.stdout
    assert "pusher: off" in out.stdout
    assert "READY" in out.stdout
    health = next(line for line in out.stdout.splitlines() if line.startswith("health: "))
    assert "MB free" in health and "PROBLEM" not in health, health  # this PC's disk and RAM
    proc.terminate()
    proc.wait(timeout=10)
    out = subprocess.run([sys.executable, "-m", "edgelive", "status", "--state-dir",
                          str(tmp_path / "state")], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1 and "no running box" in out.stderr


def box_status(tmp_path: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "edgelive", "status", "--json", "--state-dir",
                          str(tmp_path / "state")], capture_output=True, text=True, timeout=10)
    return json.loads(out.stdout)


def test_box_that_cannot_reach_its_broker_streams_and_says_so(
        nginx: NginxRtmp, run_box, tmp_path: Path) -> None:
    """Nothing listens on the configured broker port: the stream goes out all the same,
    -6027 says why MQTT is down, and the LEDs show the MQTT-lost state."""
    port = free_port()
    url = nginx.url("lonely")
    run_box({"mqtt": {"host": "127.0.0.1", "port": port, "keepalive": 5},
             "device": {"id": BOX}, "pusher": {
                 "url": url, "source": "testsrc", "resolution": "320x180", "fps": 15,
                 "audio-device": "none", "autopush": True}})
    deadline = time.monotonic() + 20
    status: dict = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(json.JSONDecodeError):
            status = box_status(tmp_path)
        if status.get("pusher", {}).get("state") == "pushing" and status["leds"] == "mqtt_lost":
            break
        time.sleep(0.3)
    assert status["mqtt"] == "offline" and status["leds"] == "mqtt_lost", status
    failed = [e for e in status["events"] if e["code"] == Code.MQTT_CONNECT_FAILED]
    assert len(failed) == 1 and f"127.0.0.1:{port}" in failed[0]["msg"], status["events"]
    assert nginx.publishers("lonely") == 1


def test_streaming_box_survives_broker_restart_and_worker_crash(
        mosquitto: Mosquitto, nginx: NginxRtmp, run_box, tmp_path: Path) -> None:
    """The stream never stops while the broker is away; a killed worker is restarted."""
    url = nginx.url("box")
    box = run_box(box_config(mosquitto, pusher={
        "url": url, "source": "testsrc", "resolution": "320x180", "fps": 15,
        "audio-device": "tone", "autopush": True}))

    def wait(condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.1)

    async def online_and_pushing() -> None:
        async with operator(mosquitto) as fleet:
            assert await fleet.wait_online([BOX], timeout=15)
            assert await fleet.wait_until(
                lambda: (fleet.boxes[BOX].state or {}).get("pusher", {}).get("state")
                == "pushing", timeout=20)

    asyncio.run(online_and_pushing())
    wait(lambda: nginx.publishers("box") == 1, 10)
    sessions = len(nginx.recordings("box"))

    mosquitto.kill()
    for _ in range(10):  # 3 s without a broker: the publish never drops
        time.sleep(0.3)
        assert nginx.publishers("box") == 1
    mosquitto.start()
    asyncio.run(online_and_pushing())  # status and state republished
    assert len(nginx.recordings("box")) == sessions  # same RTMP session all along

    async def reconfigure(partial: dict) -> None:
        async with operator(mosquitto) as fleet:
            [outcome] = await fleet.set_config(BOX, {"pusher": partial}, timeout=10)
            assert outcome.report and outcome.report["applied"] is True

    # a live key reaches the running pusher: same RTMP session, new bitrate ceiling
    asyncio.run(reconfigure({"max-bitrate": 150}))
    wait(lambda: 0 < box_status(tmp_path)["pusher"]["netstatus"].get("targetBitrate", 0) <= 150,
         10)
    assert len(nginx.recordings("box")) == sessions and nginx.publishers("box") == 1
    # a key the pusher cannot take live restarts that worker alone: a new publish
    asyncio.run(reconfigure({"fps": 10}))
    wait(lambda: len(nginx.recordings("box")) == sessions + 1, 15)
    wait(lambda: nginx.publishers("box") == 1, 10)

    async def restarted() -> None:
        async with operator(mosquitto) as fleet:
            events = EventLog(fleet)
            await asyncio.sleep(0.3)  # the event subscription is in place
            pusher = next(p for p in psutil.Process(box.pid).children()
                          if "push" in p.cmdline() and "--worker" in p.cmdline())
            pusher.kill()
            await events.wait_for(Code.WORKER_RESTARTED, timeout=10)
            await events.wait_for(Code.PUSH_EVT_PUSH_BEGIN, timeout=15)
            events.close()

    asyncio.run(restarted())
    wait(lambda: nginx.publishers("box") == 1, 10)
