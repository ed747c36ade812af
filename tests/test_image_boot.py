"""The SD-card image boots in QEMU and becomes a working box, provisioned as a user would.

The image is built once per run by image-build/build.sh into build/image (about 25 min from
scratch under qemu-user, about 2 min when the Debian base is cached there). The test writes
an `edgelive.toml` onto a copy's FAT partition with mtools, boots it on QEMU's virt machine
(Debian's kernel, software emulation, user networking where the host is 10.0.2.2), and
checks from the host what an operator sees: the box online on the broker, its stream at the
ingest, config and commands answered, and the boot file imported with its secrets taken out.
The Pi-only parts (camera, codec, LEDs, HDMI) are in docs/hardware-checklist.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import SessionSettings
from tests.servers import Mosquitto, NginxRtmp

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
IMAGE_DIR = REPO / "build" / "image"
FAT_OFFSET = "@@4M"  # image-build/genimage.cfg puts the FAT partition at 4 MiB
HOST = "10.0.2.2"  # the host as QEMU's user network shows it to the guest
BOX = "qemu-box"
STREAM_KEY = "qemu-secret-key"


@pytest.fixture(scope="session")
def image() -> Path:
    """build/image/edgelive-arm64.img made from this checkout (its base cached there)."""
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
        with self.stderr.open("w") as stderr:
            self.proc = subprocess.Popen([
                "qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on", "-smp", "2",
                "-m", "1024", "-display", "none", "-serial", f"file:{self.console}",
                "-monitor", f"unix:{self.monitor},server,nowait",
                "-kernel", str(IMAGE_DIR / "vmlinuz"), "-initrd", str(IMAGE_DIR / "initrd.img"),
                "-append", "root=LABEL=RASPIROOT ro console=ttyAMA0 "
                           "systemd.journald.forward_to_console=1",
                "-drive", f"file={disk},format=raw,if=virtio", "-nic", "user,model=virtio-net-pci"],
                stderr=stderr)

    def log_tail(self) -> str:
        if not self.console.exists():  # QEMU stopped before it opened the serial port
            return ""
        return self.console.read_text(errors="replace")[-6000:]

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


@pytest.fixture
def machine(image: Path, tmp_path: Path, mosquitto: Mosquitto,
            nginx: NginxRtmp) -> Iterator[Machine]:
    """A copy of the image with a user's edgelive.toml on its FAT, running in QEMU."""
    disk = tmp_path / "sd.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    boot_file = tmp_path / "edgelive.toml"
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
""")
    subprocess.run(["mcopy", "-i", f"{disk}{FAT_OFFSET}", str(boot_file), "::edgelive.toml"],
                   check=True)
    qemu = Machine(disk, tmp_path)
    try:
        yield qemu
    finally:
        qemu.proc.kill()
        qemu.proc.wait()


def fat_file(disk: Path, name: str) -> str | None:
    done = subprocess.run(["mtype", "-i", f"{disk}{FAT_OFFSET}", f"::{name}"],
                          capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


@pytest.mark.timeout(60 * 60)  # includes building the image (about 25 min from scratch)
def test_image_boots_provisions_from_the_boot_partition_and_joins_the_fleet(
        machine: Machine, mosquitto: Mosquitto, nginx: NginxRtmp) -> None:
    began = time.monotonic()

    async def scenario() -> dict[str, float]:
        settings = SessionSettings(host=mosquitto.host, port=mosquitto.port, client_id="op")
        async with FleetOperator(settings, "edgelive") as fleet:
            events: list[dict] = []

            async def collect() -> None:
                async for box, event in fleet.events():
                    if box == BOX:
                        events.append(event)

            collector = asyncio.create_task(collect())
            online, deadline = False, time.monotonic() + 240
            while not online and machine.proc.poll() is None and time.monotonic() < deadline:
                online = await fleet.wait_online([BOX], timeout=2)
            assert online, machine.not_online()
            times = {"online": time.monotonic() - began}
            pushing = await fleet.wait_until(
                lambda: (fleet.boxes[BOX].state or {}).get("pusher", {}).get("state")
                == "pushing", timeout=120)
            assert pushing, (fleet.boxes[BOX].state, events, machine.log_tail())
            times["pushing"] = time.monotonic() - began
            [outcome] = await fleet.set_config(BOX, {"pusher": {"max-bitrate": 300}},
                                               timeout=30)
            assert outcome.report["applied"] is True, outcome.report
            answer = await fleet.command(BOX, "device/identify", {}, timeout=30)
            assert answer.answers[BOX]["ok"] is True, answer.answers
            collector.cancel()

            assert nginx.publishers(STREAM_KEY) == 1
            probe = await asyncio.to_thread(subprocess.run, [
                "ffprobe", "-v", "error", "-rw_timeout", "20000000", "-show_entries",
                "stream=codec_name,width,height", "-of", "json", nginx.url(STREAM_KEY)],
                capture_output=True, text=True, timeout=60)
            streams = json.loads(probe.stdout)["streams"]
            assert {"codec_name": "h264", "width": 320, "height": 180} in streams, probe.stderr

            # The power button shuts the system down, and the box says so on the way.
            machine.press_power_button()
            offline = await fleet.wait_until(lambda: fleet.boxes[BOX].status == "offline",
                                             timeout=120)
            assert offline, machine.log_tail()
            times["offline"] = time.monotonic() - began
            return times

    times = asyncio.run(scenario())
    assert machine.proc.wait(timeout=120) == 0, machine.log_tail()
    disk = machine.disk

    # First boot imported the file and rewrote it without the stream key.
    assert fat_file(disk, "edgelive.toml") is None
    retired = fat_file(disk, "edgelive.imported.toml")
    assert retired is not None and f'id = "{BOX}"' in retired
    assert STREAM_KEY not in retired
    # What a Pi's boot loader reads from the same partition.
    config_txt = fat_file(disk, "config.txt") or ""
    assert "[pi4]" in config_txt and "gpu_mem=128" in config_txt
    assert "root=LABEL=RASPIROOT" in (fat_file(disk, "cmdline.txt") or "")
    print("seconds after power-on: online {online:.0f}, pushing {pushing:.0f}, offline after "
          "the power button {offline:.0f}".format(**times))

