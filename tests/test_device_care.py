"""Remote care against a real broker: health codes from a fake sysfs tree (set, cleared with
hysteresis, in tele/device, state and Home Assistant), device/logs, factory-reset, reboot.

The supervisor runs in this process on a real mosquitto; only the sysfs tree is fake (see
tests/test_health.py for the values and their sources).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from edgelive.codes import Code
from edgelive.config.store import ConfigStore
from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import SessionSettings
from edgelive.hw.board import detect_board
from edgelive.hw.health import GET_THROTTLED
from edgelive.supervisor import Supervisor, care
from tests.servers import Mosquitto
from tests.test_fleet_agent import Probe
from tests.test_health import fake_pi

BOX = "carebox"


@pytest.fixture(autouse=True)
def _box_env(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.delenv("EDGELIVE_REBOOT_REQUEST", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)  # not under systemd: the log ring
    caplog.set_level(logging.INFO, logger="edgelive")  # as `edgelive run` logs


@asynccontextmanager
async def running_box(broker: Mosquitto, state: Path, extra: dict[str, Any] | None = None,
                      **kwargs: Any) -> AsyncIterator[Supervisor]:
    state.mkdir(parents=True, exist_ok=True)
    doc = {"mqtt": {"host": broker.host, "port": broker.port, "keepalive": 5},
           "device": {"id": BOX}, **(extra or {})}
    (state / "config.toml").write_text(tomli_w.dumps(doc))
    supervisor = Supervisor(ConfigStore(state, state / "absent.toml"), detect_board(),
                            **kwargs)
    task = asyncio.create_task(supervisor.run())
    try:
        yield supervisor
    finally:
        supervisor.request_stop()
        await asyncio.wait_for(task, 15)


@asynccontextmanager
async def fleet_of(broker: Mosquitto) -> AsyncIterator[tuple[FleetOperator, list[dict]]]:
    settings = SessionSettings(host=broker.host, port=broker.port, client_id="care-op")
    async with FleetOperator(settings, "edgelive") as fleet:
        events: list[dict] = []

        async def collect() -> None:
            async for box, event in fleet.events():
                if box == BOX:
                    events.append(event)

        collector = asyncio.create_task(collect())
        assert await fleet.wait_online([BOX], timeout=15)
        try:
            yield fleet, events
        finally:
            collector.cancel()


async def wait_event(events: list[dict], match: Callable[[dict], bool],
                     timeout: float = 15) -> dict:
    async with asyncio.timeout(timeout):
        while not any(match(e) for e in events):
            await asyncio.sleep(0.05)
    return next(e for e in events if match(e))


def test_health_codes_set_and_clear_with_telemetry_state_leds_and_ha(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    root = fake_pi(tmp_path / "sysfs", temp="52500", throttled="0")
    throttled = root / GET_THROTTLED

    async def scenario() -> None:
        health = {"health": {"interval": 1, "clear-after": 2}}
        async with Probe(mosquitto) as probe, \
                running_box(mosquitto, tmp_path / "state", health, health_root=root) as box, \
                fleet_of(mosquitto) as (fleet, events):
            await probe.session.subscribe(f"edgelive/{BOX}/tele/device", 0)
            await probe.session.subscribe(f"homeassistant/device/{BOX}/config", 0)
            seen: dict[str, Any] = {}
            while "tele" not in seen or "ha" not in seen:
                msg = await probe.next(10)
                seen["tele" if msg.topic.endswith("tele/device") else "ha"] = \
                    json.loads(msg.payload)
            assert seen["tele"]["socTemp"] == 52.5 and seen["tele"]["throttled"] == "0x0"
            assert seen["tele"]["diskFreeMB"] > 0 and seen["tele"]["memTotalMB"] > 0
            cmps = seen["ha"]["cmps"]
            assert cmps[f"edgelive_{BOX}_soc_temp"]["stat_t"] == f"edgelive/{BOX}/tele/device"
            assert cmps[f"edgelive_{BOX}_throttled"]["p"] == "binary_sensor"
            assert fleet.boxes[BOX].state["health"] == {"thermal": False, "disk_low": False}

            # under-voltage and throttled now (0x50005): set at the next reading
            throttled.write_text("50005\n")
            on = await wait_event(events, lambda e: e["code"] == Code.THERMAL_THROTTLED)
            assert on["detail"]["active"] is True and on["detail"]["underVoltage"] is True
            assert await fleet.wait_until(
                lambda: fleet.boxes[BOX].state["health"]["thermal"] is True, 5)
            assert fleet.boxes[BOX].state["leds"] == "health"
            # only "has occurred" bits left (0x50000): cleared after clear-after (2 s)
            throttled.write_text("50000\n")
            off = await wait_event(events, lambda e: e["code"] == Code.THERMAL_THROTTLED
                                   and e["detail"]["active"] is False)
            assert off["ts"] - on["ts"] >= 2000 and "cleared" in off["msg"]
            assert await fleet.wait_until(
                lambda: fleet.boxes[BOX].state["health"]["thermal"] is False, 5)
            assert fleet.boxes[BOX].state["leds"] == "idle"

            # a disk limit above what this disk has free: DISK_LOW, live reconfigured
            [outcome] = await fleet.set_config(BOX, {"health": {"disk-low-pct": 50,
                                                                "disk-low-mb": 100000}})
            assert outcome.report["applied"] is True
            low = await wait_event(events, lambda e: e["code"] == Code.DISK_LOW)
            assert low["detail"]["active"] is True and "MB" in low["msg"]
            assert box.indicators.state == "health"

    asyncio.run(scenario())


def test_logs_come_from_the_ring_redacted_filtered_and_bounded(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_box(mosquitto, tmp_path / "state"), \
                fleet_of(mosquitto) as (fleet, events):
            logging.getLogger("edgelive.test").warning(
                "cannot reach rtmp://ingest.example/live/s3cr3t-key?token=abc")
            answer = await fleet.command(BOX, "device/logs", {"lines": 50}, timeout=10)
            result = answer.answers[BOX]["result"]
            assert result["source"] == "ring"
            text = json.dumps(result)
            assert "s3cr3t-key" not in text and "abc" not in text
            assert "rtmp://ingest.example/live/***?token=***" in text
            assert any("6000 READY" in line["msg"] for line in result["lines"])
            assert all(set(line) == {"ts", "level", "msg"} for line in result["lines"])
            await wait_event(events, lambda e: e["code"] == Code.LOGS_SENT)

            answer = await fleet.command(BOX, "device/logs", {"lines": 1,
                                                              "level": "warning"})
            [line] = answer.answers[BOX]["result"]["lines"]
            assert line["level"] == "warning"
            answer = await fleet.command(BOX, "device/logs", {"lines": 100000})
            assert answer.answers[BOX]["ok"] is False  # over the bound: refused

            # since (whole seconds): only the lines from that second on
            cut = math.floor(time.time()) + 1
            await asyncio.sleep(cut - time.time())
            log = logging.getLogger("edgelive.test")
            log.warning("after the cut")
            answer = await fleet.command(BOX, "device/logs", {"since": cut, "lines": 500,
                                                              "level": "warning"})
            [line] = answer.answers[BOX]["result"]["lines"]  # not the earlier warning
            assert line["msg"] == "edgelive.test: after the cut" and line["ts"] >= cut * 1000
            for n in range(300):
                log.warning("filler %03d %s", n, "y" * 400)
            log.warning("the newest %s", "x" * 2000)
            answer = await fleet.command(BOX, "device/logs", {"since": cut, "lines": 500,
                                                              "level": "warning"})
            result = answer.answers[BOX]["result"]
            # bounded: the newest lines kept, each cut at 500 characters, the answer < 48 KB
            assert result["truncated"] is True and 0 < len(result["lines"]) < 300
            newest = result["lines"][-1]["msg"]
            assert newest.startswith("edgelive.test: the newest")
            assert len(newest) == care.MAX_LINE_CHARS + 1 and newest.endswith("…")
            assert len(json.dumps(result)) < care.MAX_ANSWER_CHARS
            answer = await fleet.command(BOX, "device/logs", {"since": cut, "level": "error"})
            assert answer.answers[BOX]["result"]["lines"] == []

    asyncio.run(scenario())


def test_factory_reset_needs_the_box_id_then_resets_like_the_button(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    state = tmp_path / "state"

    async def scenario() -> None:
        # [health] set, so the reset changes it too: the health watch restarts, the reset goes on
        health = {"health": {"interval": 2}}
        async with running_box(mosquitto, state, health), \
                fleet_of(mosquitto) as (fleet, events):
            answer = await fleet.command(BOX, "device/factory-reset", {"confirm": "other"})
            assert answer.answers[BOX]["ok"] is False
            assert BOX in answer.answers[BOX]["error"]
            assert (state / "config.toml").exists()
            answer = await fleet.command(BOX, "device/factory-reset", {"confirm": BOX})
            assert answer.answers[BOX]["ok"] is True
            reset = await wait_event(events, lambda e: e["code"] == Code.FACTORY_RESET)
            assert "factory-reset command" in reset["msg"]
            # factory defaults have no broker: the box leaves the fleet, as after a hold
            assert await fleet.wait_until(lambda: fleet.boxes[BOX].status == "offline", 10)
        assert not (state / "config.toml").exists()

    asyncio.run(scenario())


def test_reboot_writes_the_request_only_where_the_helper_exists(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    request = tmp_path / "run" / "reboot"
    request.parent.mkdir()

    async def scenario() -> None:
        async with running_box(mosquitto, tmp_path / "a"), fleet_of(mosquitto) as (fleet, _):
            answer = await fleet.command(BOX, "device/reboot", {})
            assert answer.answers[BOX]["ok"] is False
            assert "cannot reboot" in answer.answers[BOX]["error"]
        async with running_box(mosquitto, tmp_path / "b", reboot_request=request), \
                fleet_of(mosquitto) as (fleet, events):
            answer = await fleet.command(BOX, "device/reboot", {})
            assert answer.answers[BOX]["ok"] is True
            assert not request.exists()  # the answer goes out before the request
            await wait_event(events, lambda e: e["code"] == Code.REBOOTING)
            async with asyncio.timeout(5):
                while not request.exists():
                    await asyncio.sleep(0.05)
            assert "device/reboot" in request.read_text()

    asyncio.run(scenario())
