"""The SD-card image boots in QEMU and becomes a working box, provisioned as a user would.

The image is built once per run by image-build/build.sh into build/image (about 25 min from
scratch under qemu-user, about 2 min when the Debian base is cached). It boots once per
module: an `edgelive.toml` goes onto a copy's FAT partition with mtools, QEMU's virt machine
runs it (Debian's kernel, software emulation, user networking where the host is 10.0.2.2,
an i6300ESB watchdog), and the tests below check, in order, from the host what an operator
sees: the box online on the broker with its stream at the ingest, config and commands
answered (logs from the journal), health telemetry and the hardware watchdog, a reboot by
command (offline, back online, streaming again), and last the power button, after which the
FAT shows the boot file imported with its secrets taken out. All of it under the hardened
unit.
The Pi-only parts (camera, codec, LEDs, HDMI, throttling) are in docs/hardware-checklist.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edgelive.codes import Code
from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import SessionSettings
from tests.servers import Mosquitto, NginxRtmp
from tests.test_fleet_agent import Probe

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
IMAGE_DIR = REPO / "build" / "image"
FAT_OFFSET = "@@4M"  # image-build/genimage.cfg puts the FAT partition at 4 MiB
HOST = "10.0.2.2"  # the host as QEMU's user network shows it to the guest
BOX = "qemu-box"
STREAM_KEY = "qemu-secret-key"
BOOT_S = 420  # power-on to MQTT online: 60–200 s under software emulation, more on a busy machine


@pytest.fixture(scope="session")
def image() -> Path:
    """build/image/edgelive-arm64.img made from this checkout (its base cached)."""
    if os.geteuid() != 0:
        pytest.fail("building the image needs root (chroot); run make test as root")
    log = IMAGE_DIR.parent / "image-build.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run([str(REPO / "image-build" / "build.sh"), str(IMAGE_DIR)],
                              stdout=out, stderr=subprocess.STDOUT, timeout=45 * 60)
    if done.returncode != 0:
        pytest.fail("image-build/build.sh failed:\n" + log.read_text()[-4000:])
    return IMAGE_DIR / "edgelive-arm64.img"


class Machine:
    """The QEMU process, its serial console log and its monitor (for the power button)."""

    def __init__(self, disk: Path, workdir: Path) -> None:
        self.disk = disk
        self.console = workdir / "console.log"
        self.monitor = workdir / "monitor.sock"
        self.stderr = workdir / "qemu.stderr"  # where QEMU says why it would not start
        self.times: dict[str, float] = {}
        self.powered_on = time.monotonic()
        with self.stderr.open("w") as stderr:
            self.proc = subprocess.Popen([
                "qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on", "-smp", "2",
                "-m", "1024", "-display", "none", "-serial", f"file:{self.console}",
                "-monitor", f"unix:{self.monitor},server,nowait",
                "-kernel", str(IMAGE_DIR / "vmlinuz"), "-initrd", str(IMAGE_DIR / "initrd.img"),
                # fsck.mode=skip: checking two clean file systems takes a Pi a second and
                # emulation a minute, at each of the two boots
                "-append", "root=LABEL=RASPIROOT ro console=ttyAMA0 fsck.mode=skip "
                           "systemd.journald.forward_to_console=1",
                "-drive", f"file={disk},format=raw,if=virtio", "-nic", "user,model=virtio-net-pci",
                "-device", "i6300esb"],  # a hardware watchdog for systemd's RuntimeWatchdogSec
                stderr=stderr)

    def mark(self, name: str) -> None:
        self.times[name] = time.monotonic() - self.powered_on

    def log_tail(self, chars: int = 6000) -> str:
        if not self.console.exists():  # QEMU stopped before it opened the serial port
            return ""
        return self.console.read_text(errors="replace")[-chars:]

    def not_online(self) -> str:
        """Why the box is not online: QEMU's exit status and own words, or the console."""
        code = self.proc.poll()
        if code is not None:
            return (f"QEMU exited with code {code} before the box came online:\n"
                    + self.stderr.read_text(errors="replace")[-4000:] + self.log_tail())
        return "the box never came online:\n" + self.log_tail()

    def press_power_button(self) -> None:
        with socket.socket(socket.AF_UNIX) as monitor:
            monitor.connect(str(self.monitor))
            monitor.sendall(b"system_powerdown\n")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, NginxRtmp]]:
    """The broker and the ingest for the whole boot (the function-scoped ones would stop
    under a box that lives across tests)."""
    workdir = tmp_path_factory.mktemp("servers")
    broker, ingest = Mosquitto(workdir), NginxRtmp(workdir / "nginx")
    broker.start()
    ingest.start()
    yield broker, ingest
    ingest.stop()
    broker.stop()


@pytest.fixture(scope="module")
def machine(image: Path, tmp_path_factory: pytest.TempPathFactory,
            servers: tuple[Mosquitto, NginxRtmp]) -> Iterator[Machine]:
    """A copy of the image with a user's edgelive.toml on its FAT, running in QEMU."""
    mosquitto, nginx = servers
    workdir = tmp_path_factory.mktemp("qemu")
    disk = workdir / "sd.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    boot_file = workdir / "edgelive.toml"
    boot_file.write_text(f"""\
[device]
id = "{BOX}"
name = "Box in QEMU"
groups = ["qemu"]

[mqtt]
host = "{HOST}"
port = {mosquitto.port}
keepalive = 10

[pusher]
url = "rtmp://{HOST}:{nginx.port}/live/{STREAM_KEY}"
source = "testsrc"
resolution = "320x180"
fps = 10
audio-device = "none"
encoder = "software"
autopush = true

[health]
interval = 5
""")
    subprocess.run(["mcopy", "-i", f"{disk}{FAT_OFFSET}", str(boot_file), "::edgelive.toml"],
                   check=True)
    qemu = Machine(disk, workdir)
    try:
        yield qemu
    finally:
        qemu.proc.kill()
        qemu.proc.wait()
        print("seconds after power-on: " + ", ".join(f"{k} {v:.0f}"
                                                     for k, v in qemu.times.items()))


class Fleet:
    """An operator on the test's broker, with the box's events collected as they come."""

    def __init__(self, operator: FleetOperator) -> None:
        self.op = operator
        self.events: list[dict] = []

    def codes(self) -> list[int]:
        return [e["code"] for e in self.events]

    def state(self) -> dict:
        return self.op.boxes[BOX].state or {}

    async def wait_event(self, code: Code, timeout: float) -> dict:
        assert await self.op.wait_until(lambda: code in self.codes(), timeout), self.events
        return next(e for e in self.events if e["code"] == code)

    async def wait_pushing(self, timeout: float) -> bool:
        return await self.op.wait_until(
            lambda: self.state().get("pusher", {}).get("state") == "pushing", timeout)


@asynccontextmanager
async def fleet(mosquitto: Mosquitto, machine: Machine) -> AsyncIterator[Fleet]:
    settings = SessionSettings(host=mosquitto.host, port=mosquitto.port,
                               client_id=f"op-{time.monotonic_ns()}")
    async with FleetOperator(settings, "edgelive") as operator:
        view = Fleet(operator)

        async def collect() -> None:
            async for box, event in operator.events():
                if box == BOX:
                    view.events.append(event)

        collector = asyncio.create_task(collect())
        online, deadline = False, time.monotonic() + BOOT_S
        while not online and machine.proc.poll() is None and time.monotonic() < deadline:
            online = await operator.wait_online([BOX], timeout=2)
        assert online, machine.not_online()
        try:
            yield view
        finally:
            collector.cancel()


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
