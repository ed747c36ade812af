"""Health readings from sysfs and procfs: SoC temperature, throttling, disk, memory.

Every path hangs off `root` (default `/`), so tests point it at a fake tree with the same
layout. Readings that a machine does not have (no thermal zone in a container, no Pi
firmware under QEMU) are None, never an error. Reading is blocking file I/O: the
supervisor calls `read()` in a thread.

Sources, as the Raspberry Pi kernels expose them:
- `sys/class/thermal/thermal_zone0/temp`: the SoC temperature in millidegrees Celsius.
- `sys/devices/platform/soc/soc:firmware/get_throttled`: the firmware's throttle flags
  (raspberrypi/linux `drivers/firmware/raspberrypi.c`, `get_throttled_show` prints them
  with `"%x\\n"`: hexadecimal without `0x`). Bit layout as `vcgencmd get_throttled`
  documents it (https://www.raspberrypi.com/documentation/computers/os.html#get_throttled):
  bit 0 under-voltage detected, 1 arm frequency capped, 2 currently throttled, 3 soft
  temperature limit active; bits 16–19 the same conditions "has occurred" since boot.
- free space: `os.statvfs` of the state directory (what the box writes to).
- memory: `MemTotal` and `MemAvailable` of `proc/meminfo` (kB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntFlag
from pathlib import Path

from edgelive.policy.health import Sample

THERMAL_ZONE = "sys/class/thermal/thermal_zone0/temp"
GET_THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
# Wherever a board's device tree puts the firmware node, the driver ("raspberrypi-firmware"
# in the same source) links its device here.
GET_THROTTLED_ANY = "sys/bus/platform/drivers/raspberrypi-firmware/*/get_throttled"
MEMINFO = "proc/meminfo"


class Throttled(IntFlag):
    """The firmware's `get_throttled` bits (see the module docstring for the source)."""

    UNDER_VOLTAGE = 1 << 0
    ARM_FREQ_CAPPED = 1 << 1
    THROTTLED = 1 << 2
    SOFT_TEMP_LIMIT = 1 << 3
    UNDER_VOLTAGE_OCCURRED = 1 << 16
    ARM_FREQ_CAPPED_OCCURRED = 1 << 17
    THROTTLED_OCCURRED = 1 << 18
    SOFT_TEMP_LIMIT_OCCURRED = 1 << 19

    @classmethod
    def now_mask(cls) -> Throttled:
        """The conditions active now (bits 0–3)."""
        return cls.UNDER_VOLTAGE | cls.ARM_FREQ_CAPPED | cls.THROTTLED | cls.SOFT_TEMP_LIMIT


@dataclass(frozen=True)
class Reading:
    """One sample of the box's health; None where the machine has no such source."""

    soc_temp_c: float | None
    throttled: int | None
    disk_free_bytes: int | None
    disk_total_bytes: int | None
    mem_available_bytes: int | None
    mem_total_bytes: int | None

    @property
    def disk_free_pct(self) -> float | None:
        if not self.disk_total_bytes or self.disk_free_bytes is None:
            return None
        return 100.0 * self.disk_free_bytes / self.disk_total_bytes

    @property
    def firmware_throttling(self) -> bool:
        """Any condition of get_throttled bits 0–3 now (not the "has occurred" bits)."""
        return bool((self.throttled or 0) & Throttled.now_mask())

    def sample(self) -> Sample:
        """What the health policy decides on."""
        return Sample(soc_temp_c=self.soc_temp_c, firmware_throttling=self.firmware_throttling,
                      disk_free_pct=self.disk_free_pct,
                      disk_free_mb=None if self.disk_free_bytes is None
                      else self.disk_free_bytes / 2**20)

    def to_telemetry(self) -> dict[str, object]:
        """The `tele/device` document (rounded, flag names spelled out)."""
        flags = Throttled(self.throttled or 0)
        return {
            "socTemp": None if self.soc_temp_c is None else round(self.soc_temp_c, 1),
            "throttled": None if self.throttled is None else f"0x{self.throttled:x}",
            "underVoltage": bool(flags & Throttled.UNDER_VOLTAGE),
            "throttling": bool(flags & (Throttled.THROTTLED | Throttled.ARM_FREQ_CAPPED
                                        | Throttled.SOFT_TEMP_LIMIT)),
            "diskFreeMB": None if self.disk_free_bytes is None
            else self.disk_free_bytes // 2**20,
            "diskFreePct": None if self.disk_free_pct is None else round(self.disk_free_pct, 1),
            "memAvailableMB": None if self.mem_available_bytes is None
            else self.mem_available_bytes // 2**20,
            "memTotalMB": None if self.mem_total_bytes is None
            else self.mem_total_bytes // 2**20,
        }


class HealthReader:
    """Reads a `Reading` from the machine under `root`, disk space of `state_dir`."""

    def __init__(self, state_dir: Path, root: Path = Path("/")) -> None:
        self.state_dir = Path(state_dir)
        self.root = Path(root)

    def read(self) -> Reading:
        free, total = self._disk()
        available, mem_total = self._memory()
        return Reading(self._temperature(), self._throttled(), free, total, available,
                       mem_total)

    def _temperature(self) -> float | None:
        text = _read(self.root / THERMAL_ZONE)
        try:
            return int(text) / 1000.0 if text is not None else None
        except ValueError:
            return None

    def _throttled(self) -> int | None:
        paths = [self.root / GET_THROTTLED, *sorted(self.root.glob(GET_THROTTLED_ANY))]
        for path in paths:
            text = _read(path)
            if text is not None:
                try:
                    return int(text.removeprefix("0x"), 16)
                except ValueError:
                    return None
        return None

    def _disk(self) -> tuple[int | None, int | None]:
        try:
            st = os.statvfs(self.state_dir)
        except OSError:
            return None, None
        # f_bavail: what an unprivileged writer (the box) can still use
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def _memory(self) -> tuple[int | None, int | None]:
        text = _read(self.root / MEMINFO)
        if text is None:
            return None, None
        fields: dict[str, int] = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[name] = int(parts[0]) * 1024  # the kernel writes kB
        return fields.get("MemAvailable"), fields.get("MemTotal")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
