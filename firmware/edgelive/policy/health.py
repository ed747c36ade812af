"""Health limits with hysteresis: when THERMAL_THROTTLED and DISK_LOW are set and cleared.

Pure: a sample of plain numbers and `now` in, decisions out. A condition is set on the
first sample past its limit (a throttling SoC or a filling card needs attention now) and
cleared only after it has stayed on the good side of a wider margin for `clear_after_s`,
so a temperature hovering at the limit or a log file rotating near it makes one event
pair, not one per sample.

- thermal: the firmware reports under-voltage, throttling, frequency capping or the soft
  temperature limit *now* (get_throttled bits 0–3), or the SoC is at `temp_high_c` or
  above. Clear: no such bit and the SoC at or below `temp_high_c - temp_hysteresis_c`.
- disk: free space on the state partition under `disk_low_pct` percent or `disk_low_mb`.
  Clear: at least `disk_low_pct + disk_hysteresis_pct` percent and `disk_low_mb` ×
  (1 + hysteresis/100) free.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Condition(StrEnum):
    THERMAL = "thermal"
    DISK_LOW = "disk_low"


@dataclass(frozen=True)
class Limits:
    temp_high_c: float = 80.0
    """A Pi 4 starts throttling its ARM cores at 80 °C (85 °C on a Pi 3B+ for the hard limit)."""
    temp_hysteresis_c: float = 5.0
    disk_low_pct: float = 10.0
    disk_low_mb: float = 200.0
    disk_hysteresis_pct: float = 5.0
    clear_after_s: float = 60.0


@dataclass(frozen=True)
class Sample:
    """What the policy needs of a reading (hw/health.py makes it)."""

    soc_temp_c: float | None = None
    firmware_throttling: bool = False
    """Any of get_throttled bits 0–3 (under-voltage, capped, throttled, soft limit) now."""
    disk_free_pct: float | None = None
    disk_free_mb: float | None = None


@dataclass(frozen=True)
class Change:
    """A condition set (`active`) or cleared, with the sample values that decided it."""

    condition: Condition
    active: bool
    why: str


class HealthPolicy:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.active: set[Condition] = set()
        self._good_since: dict[Condition, float] = {}

    def update(self, sample: Sample, now: float) -> list[Change]:
        """Fold one sample in; return the conditions that were set or cleared by it."""
        changes = []
        for condition, (bad, good, why) in self._judge(sample).items():
            if condition not in self.active:
                if bad:
                    self.active.add(condition)
                    self._good_since.pop(condition, None)
                    changes.append(Change(condition, True, why))
                continue
            if not good:
                self._good_since.pop(condition, None)
                continue
            since = self._good_since.setdefault(condition, now)
            if now - since >= self.limits.clear_after_s:
                self.active.discard(condition)
                del self._good_since[condition]
                changes.append(Change(condition, False, why))
        return changes

    def _judge(self, s: Sample) -> dict[Condition, tuple[bool, bool, str]]:
        """Per condition: (past the limit, inside the clear margin, a human reason)."""
        lim = self.limits
        temp = s.soc_temp_c
        hot = temp is not None and temp >= lim.temp_high_c
        cool = temp is None or temp <= lim.temp_high_c - lim.temp_hysteresis_c
        temp_text = "no sensor" if temp is None else f"{temp:.1f} °C"
        thermal_why = (f"SoC {temp_text}, firmware "
                       + ("throttling" if s.firmware_throttling else "not throttling"))
        out = {Condition.THERMAL: (s.firmware_throttling or hot,
                                   not s.firmware_throttling and cool, thermal_why)}
        pct, mb = s.disk_free_pct, s.disk_free_mb
        if pct is not None and mb is not None:
            low = pct < lim.disk_low_pct or mb < lim.disk_low_mb
            margin = 1 + lim.disk_hysteresis_pct / 100
            roomy = (pct >= lim.disk_low_pct + lim.disk_hysteresis_pct
                     and mb >= lim.disk_low_mb * margin)
            out[Condition.DISK_LOW] = (low, roomy, f"{mb:.0f} MB ({pct:.1f} %) free")
        return out
