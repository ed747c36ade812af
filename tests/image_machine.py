"""The SD-card image booted once per test session in QEMU, for every in-image check.

The image is built once per run by image-build/build.sh into build/image (about 25 min from
scratch under qemu-user, about 2 min when the Debian base is cached). A copy gets a user's
`edgelive.toml` on its FAT partition (mtools) and boots on QEMU's virt machine: Debian's
kernel, software emulation, user networking where the host is 10.0.2.2, an i6300ESB
watchdog, and vivid, the kernel's virtual V4L2 camera, standing in for the USB camera.

What a box has no way to do by itself, unplugging its camera, the tests do through a root
shell on a virtio-serial port (`Machine.sh`). Its unit is written into the test's copy of
the root file system only (debugfs), never into the image a user flashes.

tests/conftest.py registers the fixtures here as a plugin. A test that turns the box off for good is
marked `powers_off`; tests/conftest.py runs those last.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edgelive.codes import Code
from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import SessionSettings
from tests.servers import Mosquitto, NginxRtmp

REPO = Path(__file__).resolve().parents[1]
IMAGE_DIR = REPO / "build" / "image"
FAT_OFFSET = "@@4M"  # image-build/genimage.cfg puts the FAT partition at 4 MiB
HOST = "10.0.2.2"  # the host as QEMU's user network shows it to the guest
BOX = "qemu-box"
STREAM_KEY = "qemu-secret-key"
BOOT_S = 420  # power-on to MQTT online: 60–200 s under software emulation, more on a busy machine

HARNESS_UNIT = "edgelive-test-harness.service"
HARNESS_PORT = "harness"
"""The virtio-serial port's name: /dev/virtio-ports/harness in the guest."""
_HARNESS = f"""\
[Unit]
Description=Test harness: a root shell on QEMU's virtio-serial port (test copies only)
StartLimitIntervalSec=0

[Service]
# A port opens once: read-write on stdin, shared by stdout and stderr.
ExecStart=/bin/sh -c 'until [ -e /dev/virtio-ports/{HARNESS_PORT} ]; do sleep 1; done; \
exec /bin/sh <>/dev/virtio-ports/{HARNESS_PORT} >&0 2>&0'
Restart=always
RestartSec=1
"""

VIVID = "modules-load=vivid vivid.n_devs=1 vivid.node_types=0x1"
"""One vivid instance with a video capture node only (/dev/video0), loaded at boot."""


@pytest.fixture(scope="session")
def image() -> Path:
    """build/image/edgelive-arm64.img made from this checkout (its base cached), or the
    image built earlier that $EDGELIVE_TEST_IMAGE names (its kernel and initrd beside it)."""
    if prebuilt := os.environ.get("EDGELIVE_TEST_IMAGE"):
        return Path(prebuilt)
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


def root_partition(disk: Path) -> str:
    """`disk?offset=N`: how e2fsprogs opens the image's ext4 root partition in place."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True,
                                      capture_output=True, text=True).stdout)
    root = table["partitiontable"]["partitions"][1]
    return f"{disk}?offset={root['start'] * 512}"


def add_harness(disk: Path, workdir: Path) -> None:
    """Write the harness unit into the copy's root file system."""
    unit = workdir / HARNESS_UNIT
    unit.write_text(_HARNESS)
    subprocess.run(["debugfs", "-w", "-R", f"write {unit} /etc/systemd/system/{HARNESS_UNIT}",
                    root_partition(disk)], check=True, capture_output=True)


class Machine:
    """The QEMU process, its serial console log, its monitor (for the power button) and
    the harness shell."""

    def __init__(self, image: Path, disk: Path, workdir: Path) -> None:
        self.image = image
        self.disk = disk
        self.console = workdir / "console.log"
        self.monitor = workdir / "monitor.sock"
        self.harness_path = workdir / "harness.sock"
        self.stderr = workdir / "qemu.stderr"  # where QEMU says why it would not start
        self.times: dict[str, float] = {}
        self.powered_on = time.monotonic()
        self.power_cuts = 0
        self._harness: socket.socket | None = None
        self.proc = self._power_on()

    def _power_on(self) -> subprocess.Popen[bytes]:
        with self.stderr.open("w") as stderr:
            return subprocess.Popen([
                "qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on", "-smp", "2",
                "-m", "1024", "-display", "none", "-serial", f"file:{self.console}",
                "-monitor", f"unix:{self.monitor},server,nowait",
                "-kernel", str(self.image.parent / "vmlinuz"),
                "-initrd", str(self.image.parent / "initrd.img"),
                # fsck.mode=skip: checking two clean file systems takes a Pi a second and
                # emulation a minute, at each boot (ext4's journal is replayed all the same)
                "-append", "root=LABEL=RASPIROOT ro console=ttyAMA0 fsck.mode=skip "
                           f"systemd.journald.forward_to_console=1 {VIVID} "
                           f"systemd.wants={HARNESS_UNIT}",
                "-drive", f"file={self.disk},format=raw,if=virtio",
                "-nic", "user,model=virtio-net-pci",
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=harness,path={self.harness_path},server=on,wait=off",
                "-device", f"virtserialport,chardev=harness,name={HARNESS_PORT}",
                "-device", "i6300esb"],  # a hardware watchdog for systemd's RuntimeWatchdogSec
                stderr=stderr)

    def power_cut(self) -> None:
        """Pull the plug (QEMU killed: nothing is flushed or unmounted) and power on again
        from the same disk. The previous boot's console stays as console.<n>.log."""
        self.proc.kill()
        self.proc.wait()
        self.power_cuts += 1
        self.console.rename(self.console.with_suffix(f".{self.power_cuts}.log"))
        if self._harness is not None:
            self._harness.close()
            self._harness = None
        self.proc = self._power_on()

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

    def sh(self, command: str, timeout: float = 60) -> str:
        """Run `command` in the guest's root shell; its output. Raises AssertionError with
        the output when it exits non-zero."""
        if self._harness is None:
            self._harness = socket.socket(socket.AF_UNIX)
            self._harness.connect(str(self.harness_path))
        marker = f"__done_{time.monotonic_ns()}"
        self._harness.sendall(f"{command}\necho {marker} $?\n".encode())
        self._harness.settimeout(timeout)
        output = b""
        while marker.encode() not in output:
            chunk = self._harness.recv(4096)
            assert chunk, f"the harness shell went away; so far: {output!r}"
            output += chunk
        text, _, status = output.decode(errors="replace").partition(marker)
        assert status.split()[0] == "0", f"{command!r} failed ({status.strip()}): {text}"
        return text


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
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
    add_harness(disk, workdir)
    qemu = Machine(image, disk, workdir)
    try:
        yield qemu
    finally:
        qemu.proc.kill()
        qemu.proc.wait()
        print("seconds after power-on: " + ", ".join(f"{k} {v:.0f}"
                                                     for k, v in qemu.times.items()))


class Fleet:
    """An operator on the test's broker, with the box's events collected as they come."""

    def __init__(self, operator: FleetOperator, machine: Machine) -> None:
        self.op = operator
        self.machine = machine
        self.events: list[dict] = []
        self.arrived = asyncio.Event()
        """Set by the collector at each event (the operator's wait_until wakes on state)."""

    def codes(self) -> list[int]:
        return [e["code"] for e in self.events]

    def state(self) -> dict:
        return self.op.boxes[BOX].state or {}

    async def wait_for(self, find: Callable[[list[dict]], dict | None], timeout: float,
                       after: int = 0, what: str = "the event") -> dict:
        """What `find` picks among the events after the first `after` ones, re-asked at each
        new event (`find` may also raise to fail early)."""
        try:
            async with asyncio.timeout(timeout):
                while (found := find(self.events[after:])) is None:
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout} s: {self.events[after:]}\n"
                                 + self.machine.log_tail()) from None
        return found

    async def wait_event(self, code: Code, timeout: float, after: int = 0) -> dict:
        """The first event `code` among those after the first `after` ones, as it comes."""
        return await self.wait_for(
            lambda events: next((e for e in events if e["code"] == code), None),
            timeout, after, repr(code))

    async def wait_pushing(self, timeout: float) -> bool:
        return await self.op.wait_until(
            lambda: self.state().get("pusher", {}).get("state") == "pushing", timeout)


@asynccontextmanager
async def fleet(mosquitto: Mosquitto, machine: Machine) -> AsyncIterator[Fleet]:
    """An operator's view of the box, once the box is online (waits for a boot)."""
    settings = SessionSettings(host=mosquitto.host, port=mosquitto.port,
                               client_id=f"op-{time.monotonic_ns()}")
    async with FleetOperator(settings, "edgelive") as operator:
        view = Fleet(operator, machine)

        async def collect() -> None:
            async for box, event in operator.events():
                if box == BOX:
                    view.events.append(event)
                    view.arrived.set()

        collector = asyncio.create_task(collect())
        online, deadline = False, time.monotonic() + BOOT_S
        while not online and machine.proc.poll() is None and time.monotonic() < deadline:
            online = await operator.wait_online([BOX], timeout=2)
        assert online, machine.not_online()
        try:
            yield view
        finally:
            collector.cancel()
