"""Health readers on fake sysfs/procfs trees, and the set/clear policy with hysteresis.

Values and layouts as a Raspberry Pi shows them: thermal_zone0/temp in millidegrees
("54768" = 54.8 °C); get_throttled printed by raspberrypi/linux drivers/firmware/raspberrypi.c
with "%x\\n" (hex, no 0x), bits per https://www.raspberrypi.com/documentation/computers/
os.html#get_throttled: 0 under-voltage, 1 arm frequency capped, 2 throttled, 3 soft
temperature limit; 16–19 the same "has occurred". 0x50005 = under-voltage and throttled now
(and since boot); 0x50000 = both happened since boot, nothing now.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgelive.hw.health import GET_THROTTLED, MEMINFO, THERMAL_ZONE, HealthReader, Throttled
from edgelive.policy.health import Condition, HealthPolicy, Limits, Sample

MEMINFO_PI4 = """\
MemTotal:        3884360 kB
MemFree:         2911228 kB
MemAvailable:    3345660 kB
Buffers:           36676 kB
Cached:           526044 kB
"""


def fake_pi(root: Path, temp: str | None = "54768", throttled: str | None = "0",
            meminfo: str | None = MEMINFO_PI4, throttled_path: str = GET_THROTTLED) -> Path:
    for relative, text in ((THERMAL_ZONE, temp), (throttled_path, throttled),
                           (MEMINFO, meminfo)):
        if text is not None:
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
    return root


def test_reads_a_healthy_pi(tmp_path: Path) -> None:
    reading = HealthReader(tmp_path, fake_pi(tmp_path / "root")).read()
    assert reading.soc_temp_c == pytest.approx(54.768)
    assert reading.throttled == 0 and not reading.firmware_throttling
    assert reading.mem_total_bytes == 3884360 * 1024
    assert reading.mem_available_bytes == 3345660 * 1024
    assert reading.disk_total_bytes and 0 < reading.disk_free_bytes <= reading.disk_total_bytes
    tele = reading.to_telemetry()
    assert tele["socTemp"] == 54.8 and tele["throttled"] == "0x0"
    assert tele["memAvailableMB"] == 3267 and tele["underVoltage"] is False


@pytest.mark.parametrize(("text", "now", "under_voltage", "throttling"), [
    ("50005", True, True, True),     # under-voltage and throttled now (bits 0, 2, 16, 18)
    ("50000", False, False, False),  # happened since boot, not now
    ("80008", True, False, True),    # soft temperature limit now (bits 3, 19)
    ("2", True, False, True),        # arm frequency capped (bit 1)
    ("0", False, False, False),
])
def test_throttle_bits(tmp_path: Path, text: str, now: bool, under_voltage: bool,
                       throttling: bool) -> None:
    reading = HealthReader(tmp_path, fake_pi(tmp_path / "root", throttled=text)).read()
    assert reading.throttled == int(text, 16)
    assert reading.firmware_throttling is now
    tele = reading.to_telemetry()
    assert tele["underVoltage"] is under_voltage and tele["throttling"] is throttling
    assert Throttled(0x50005) == (Throttled.UNDER_VOLTAGE | Throttled.THROTTLED
                                  | Throttled.UNDER_VOLTAGE_OCCURRED
                                  | Throttled.THROTTLED_OCCURRED)


def test_firmware_node_elsewhere_and_missing_sources(tmp_path: Path) -> None:
    # a device tree with the firmware node under another bus: found through its driver
    other = fake_pi(tmp_path / "other", throttled="8", throttled_path="sys/bus/platform/"
                    "drivers/raspberrypi-firmware/axi:firmware/get_throttled")
    assert HealthReader(tmp_path, other).read().throttled == Throttled.SOFT_TEMP_LIMIT
    # QEMU or a container: no thermal zone, no Pi firmware, no meminfo in the tree
    bare = HealthReader(tmp_path / "absent-state-dir", tmp_path / "empty").read()
    assert (bare.soc_temp_c, bare.throttled, bare.mem_available_bytes) == (None, None, None)
    assert bare.disk_free_bytes is None and bare.sample().disk_free_pct is None
    garbage = fake_pi(tmp_path / "garbage", temp="hot", throttled="zz")
    reading = HealthReader(tmp_path, garbage).read()
    assert reading.soc_temp_c is None and reading.throttled is None


# -- policy


def test_thermal_sets_at_once_and_clears_only_after_the_margin_held() -> None:
    policy = HealthPolicy(Limits(temp_high_c=80, temp_hysteresis_c=5, clear_after_s=60))
    assert policy.update(Sample(soc_temp_c=79.9), 0) == []
    [change] = policy.update(Sample(soc_temp_c=80.0), 10)
    assert change.condition == Condition.THERMAL and change.active and "80.0 °C" in change.why
    assert policy.update(Sample(soc_temp_c=81), 20) == []  # already set: no repeat
    assert policy.update(Sample(soc_temp_c=77), 30) == []  # below the limit, not the margin
    assert policy.update(Sample(soc_temp_c=75), 40) == []  # in the margin: clock starts
    assert policy.update(Sample(soc_temp_c=74), 99) == []  # 59 s
    assert policy.update(Sample(soc_temp_c=76), 100) == []  # out of the margin: clock reset
    assert policy.update(Sample(soc_temp_c=70), 110) == []
    [cleared] = policy.update(Sample(soc_temp_c=70), 170)
    assert cleared.condition == Condition.THERMAL and not cleared.active
    assert policy.active == set()


def test_firmware_throttling_sets_thermal_even_when_cool() -> None:
    """Under-voltage throttles a cold SoC: the firmware's bits decide too."""
    policy = HealthPolicy(Limits(clear_after_s=30))
    [change] = policy.update(Sample(soc_temp_c=45, firmware_throttling=True), 0)
    assert change.active and "throttling" in change.why
    assert policy.update(Sample(soc_temp_c=45, firmware_throttling=True), 40) == []
    assert policy.update(Sample(soc_temp_c=45), 50) == []
    [cleared] = policy.update(Sample(soc_temp_c=45), 80)
    assert not cleared.active


def test_hovering_at_the_limit_makes_one_event_pair() -> None:
    policy = HealthPolicy(Limits(temp_high_c=80, clear_after_s=60))
    changes = []
    for second in range(0, 600, 5):
        temp = 80.2 if second % 10 else 79.6  # a sensor dithering around the limit
        changes += policy.update(Sample(soc_temp_c=temp), second)
    assert [c.active for c in changes] == [True]


def test_disk_low_by_percent_or_megabytes_with_hysteresis() -> None:
    policy = HealthPolicy(Limits(disk_low_pct=10, disk_low_mb=200, disk_hysteresis_pct=5,
                                 clear_after_s=0))
    assert policy.update(Sample(disk_free_pct=50, disk_free_mb=150), 0)[0].active  # MB
    assert policy.update(Sample(disk_free_pct=50, disk_free_mb=205), 1) == []  # < 200 × 1.05
    assert not policy.update(Sample(disk_free_pct=50, disk_free_mb=300), 2)[0].active
    [low] = policy.update(Sample(disk_free_pct=9.9, disk_free_mb=3000), 3)
    assert low.condition == Condition.DISK_LOW and low.active and "9.9 %" in low.why
    assert policy.update(Sample(disk_free_pct=14.9, disk_free_mb=3000), 4) == []
    assert not policy.update(Sample(disk_free_pct=15, disk_free_mb=3000), 5)[0].active
    # no disk reading: nothing is decided about the disk
    assert policy.update(Sample(), 6) == []
