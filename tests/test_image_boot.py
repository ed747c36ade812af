"""The SD-card image boots in QEMU and becomes a working box, provisioned as a user would.

On the one machine of the session (tests/image_machine.py), the tests below check, in
order, from the host what an operator sees: the box online on the broker with its stream at
the ingest, config and commands answered (logs from the journal), health telemetry and the
hardware watchdog, a reboot by command (offline, back online, streaming again), and last
the power button, after which the FAT shows the boot file imported with its secrets taken
out. All of it under the hardened unit.
The Pi-only parts (camera, codec, LEDs, HDMI, throttling) are in docs/hardware-checklist.md.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest

from edgelive.codes import Code
from tests.image_machine import BOOT_S, BOX, FAT_OFFSET, STREAM_KEY, Machine, fleet
from tests.servers import Mosquitto, NginxRtmp
from tests.test_fleet_agent import Probe

pytestmark = pytest.mark.slow


def fat_file(disk: Path, name: str) -> str | None:
    done = subprocess.run(["mtype", "-i", f"{disk}{FAT_OFFSET}", f"::{name}"],
                          capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


@pytest.mark.timeout(60 * 60)  # includes building the image (about 25 min from scratch)
def test_boots_joins_the_fleet_and_streams(machine: Machine,
                                           servers: tuple[Mosquitto, NginxRtmp]) -> None:
    mosquitto, nginx = servers

    async def scenario() -> None:
        async with fleet(mosquitto, machine) as view:
            machine.mark("online")
            assert await view.wait_pushing(120), (view.state(), machine.log_tail())
            machine.mark("pushing")

    asyncio.run(scenario())
    assert nginx.publishers(STREAM_KEY) == 1
    probe = subprocess.run([
        "ffprobe", "-v", "error", "-rw_timeout", "20000000", "-show_entries",
        "stream=codec_name,width,height", "-of", "json", nginx.url(STREAM_KEY)],
        capture_output=True, text=True, timeout=60)
    streams = json.loads(probe.stdout)["streams"]
    assert {"codec_name": "h264", "width": 320, "height": 180} in streams, probe.stderr


@pytest.mark.timeout(300)
def test_config_commands_and_logs_from_the_journal(
        machine: Machine, servers: tuple[Mosquitto, NginxRtmp]) -> None:
    async def scenario() -> None:
        async with fleet(servers[0], machine) as view:
            [outcome] = await view.op.set_config(BOX, {"pusher": {"max-bitrate": 300}},
                                                 timeout=30)
            assert outcome.report["applied"] is True, outcome.report
            answer = await view.op.command(BOX, "device/identify", {}, timeout=30)
            assert answer.answers[BOX]["ok"] is True, answer.answers
            answer = await view.op.command(BOX, "device/logs", {"lines": 300}, timeout=30)
            reply = answer.answers[BOX]
            assert reply["ok"] is True, reply
            result = reply["result"]
            # systemd started it: the journal, readable through the systemd-journal group
            assert result["source"] == "journal", result
            assert any("READY" in line["msg"] for line in result["lines"]), result
            assert STREAM_KEY not in json.dumps(result)
            await view.wait_event(Code.LOGS_SENT, 30)

    asyncio.run(scenario())


@pytest.mark.timeout(300)
def test_health_telemetry_and_the_hardware_watchdog(
        machine: Machine, servers: tuple[Mosquitto, NginxRtmp]) -> None:
    mosquitto = servers[0]

    async def scenario() -> dict:
        async with Probe(mosquitto) as probe, fleet(mosquitto, machine) as view:
            await probe.session.subscribe(f"edgelive/{BOX}/tele/device", 0)
            reading = json.loads((await probe.next(60)).payload)
            assert view.state()["health"] == {"thermal": False, "disk_low": False}
            return reading

    reading = asyncio.run(scenario())
    # QEMU's virt machine has no thermal zone and no Pi firmware; disk and memory are real
    assert reading["socTemp"] is None and reading["throttled"] is None, reading
    assert 700 < reading["memTotalMB"] < 1024 and reading["diskFreeMB"] > 50, reading
    # systemd says so once the i6300ESB driver has loaded, which can come after the stream
    deadline = time.monotonic() + 90
    while not ("watchdog0" in (console := machine.console.read_text(errors="replace"))
               and "i6300ESB" in console) and time.monotonic() < deadline:
        time.sleep(1)
    assert "watchdog0" in console and "i6300ESB" in console, machine.log_tail()


@pytest.mark.timeout(900)
def test_reboot_by_command_goes_offline_and_comes_back_streaming(
        machine: Machine, servers: tuple[Mosquitto, NginxRtmp]) -> None:
    mosquitto, nginx = servers

    async def scenario() -> None:
        async with fleet(mosquitto, machine) as view:
            answer = await view.op.command(BOX, "device/reboot", {}, timeout=30)
            assert answer.answers[BOX]["ok"] is True, answer.answers
            began = time.monotonic()
            await view.wait_event(Code.REBOOTING, 30)
            assert await view.op.wait_until(lambda: view.op.boxes[BOX].status == "offline",
                                            120), machine.log_tail()
            machine.mark("offline for the reboot")
            assert await view.op.wait_until(lambda: view.op.boxes[BOX].online, BOOT_S), \
                machine.not_online()
            machine.mark("online again")
            await view.wait_event(Code.READY, 60)  # a new boot, not a reconnect
            await view.wait_event(Code.PUSH_EVT_PUSH_BEGIN, 120)
            machine.mark("pushing again")
            print(f"reboot: back online and pushing {time.monotonic() - began:.0f} s after "
                  "the command")

    asyncio.run(scenario())
    assert machine.proc.poll() is None  # the guest rebooted; QEMU did not exit
    assert nginx.publishers(STREAM_KEY) == 1


@pytest.mark.powers_off
@pytest.mark.timeout(300)
def test_power_button_shuts_down_and_the_box_says_offline(
        machine: Machine, servers: tuple[Mosquitto, NginxRtmp]) -> None:
    async def scenario() -> None:
        async with fleet(servers[0], machine) as view:
            machine.press_power_button()
            assert await view.op.wait_until(lambda: view.op.boxes[BOX].status == "offline",
                                            120), machine.log_tail()
            machine.mark("offline after the power button")

    asyncio.run(scenario())
    assert machine.proc.wait(timeout=120) == 0, machine.log_tail()
    # Read once QEMU has stopped: the guest's FAT is only consistent on the host after that.
    # First boot imported the file and rewrote it without the stream key (the hardened unit
    # may write there: ReadWritePaths=/boot/firmware).
    assert fat_file(machine.disk, "edgelive.toml") is None
    retired = fat_file(machine.disk, "edgelive.imported.toml")
    assert retired is not None and f'id = "{BOX}"' in retired, retired
    assert STREAM_KEY not in retired
    # What a Pi's boot loader reads from the same partition.
    config_txt = fat_file(machine.disk, "config.txt") or ""
    assert "[pi4]" in config_txt and "gpu_mem=128" in config_txt
    assert "root=LABEL=RASPIROOT" in (fat_file(machine.disk, "cmdline.txt") or "")
