"""The service unit stays hardened: systemd's own measure, and what the box needs kept open;
the image's journal stays bounded for the SD card and systemd keeps the hardware watchdog."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "systemd"
ROOTFS = Path(__file__).resolve().parents[1] / "image-build" / "rootfs"
MAX_EXPOSURE = 2.0


def unit_settings(name: str, where: Path = UNITS) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (where / name).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_exposure_is_at_most_two() -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                           str(UNITS / "edgelive.service")],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for edgelive\.service: ([0-9.]+)",
                      done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    exposure = float(found.group(1))
    print(f"systemd-analyze security --offline=yes: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, done.stdout


def test_the_box_keeps_what_it_needs() -> None:
    """Hardening must not take away the devices, directories and sockets the box uses."""
    unit = unit_settings("edgelive.service")
    allowed = {value.split()[0] for value in unit["DeviceAllow"]}
    assert {"char-video4linux", "char-media", "char-drm", "char-gpiochip",
            "char-alsa"} <= allowed
    assert unit["DevicePolicy"] == ["closed"]
    groups = set(unit["SupplementaryGroups"][0].split())
    assert {"video", "render", "gpio", "audio", "systemd-journal"} <= groups
    assert "-/boot/firmware" in unit["ReadWritePaths"]  # first-boot import rewrites the file
    assert unit["StateDirectory"] == ["edgelive"]
    assert set(unit["RestrictAddressFamilies"][0].split()) >= {"AF_UNIX", "AF_INET",
                                                              "AF_INET6"}
    assert unit["Type"] == ["notify"] and unit["WatchdogSec"]
    request = next(v for v in unit["Environment"] if v.startswith("EDGELIVE_REBOOT_REQUEST="))
    path_unit = unit_settings("edgelive-reboot.path")
    request_file = request.partition("=")[2]
    assert request_file.startswith("/var/lib/edgelive/")  # the one directory it may write
    assert path_unit["PathExists"] == [request_file]
    assert path_unit["Unit"] == ["edgelive-reboot.service"]
    helper = unit_settings("edgelive-reboot.service")
    assert helper["ExecStart"] == [f"/bin/rm -f {request_file}",
                                   "/bin/systemctl --no-block reboot"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_units_verify() -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(UNITS / "edgelive-reboot.path"),
                           str(UNITS / "edgelive-reboot.service")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def size_bytes(value: str) -> int:
    """systemd's size notation (K, M, G: powers of 1024)."""
    unit = "BKMG".find(value[-1].upper())
    return int(value[:-1]) * 1024**unit if unit > 0 else int(value)


def test_the_image_bounds_the_journal_and_keeps_the_hardware_watchdog() -> None:
    """docs/install-pi.md's figures: a persistent journal (device/logs tells why a box
    rebooted) of at most 48 MB, 256 MB left free, no debug lines, written rarely; PID 1
    pinging the board's watchdog within what a BCM2835 can count."""
    journal = unit_settings("60-edgelive.conf", ROOTFS / "etc/systemd/journald.conf.d")
    assert journal["Storage"] == ["persistent"] and journal["Compress"] == ["yes"]
    assert size_bytes(journal["SystemMaxUse"][0]) <= 48 * 2**20
    assert size_bytes(journal["SystemKeepFree"][0]) >= 256 * 2**20
    assert size_bytes(journal["SystemMaxFileSize"][0]) <= 8 * 2**20
    assert journal["MaxLevelStore"] == ["info"] and journal["SyncIntervalSec"] == ["5min"]
    manager = unit_settings("60-edgelive-watchdog.conf", ROOTFS / "etc/systemd/system.conf.d")
    # drivers/watchdog/bcm2835_wdt.c counts at most 0xfffff ticks of 2^-16 s: 15 s
    assert 0 < int(manager["RuntimeWatchdogSec"][0]) <= 15
    assert manager["RebootWatchdogSec"] == ["2min"]
