"""Probation of a new release (docs/updates.md). Pure: signals and the time come in.

A release switched to by an update commits only once the box does again what it did
before the update: the supervisor is ready, MQTT is online (when a broker is configured),
and the pusher is live (1002) / the player plays (2004) when they were running before. All
of it must hold for `hold` seconds together, so a stream that comes up and falls over at
once does not commit. If that has not happened `timeout` seconds after the release started,
the release is rolled back with the reason: the signals still missing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

HOLD_S = 5.0


class Verdict(enum.Enum):
    WAIT = "wait"
    COMMIT = "commit"
    ROLL_BACK = "roll back"


@dataclass(frozen=True)
class Expect:
    """What the box did before the update, so must do again."""

    mqtt: bool = False
    pusher: bool = False
    player: bool = False


@dataclass(frozen=True)
class Signals:
    ready: bool = False
    mqtt_online: bool = False
    pusher_live: bool = False  # 1002 seen and no pusher error since
    player_live: bool = False  # 2004 seen and no player error since


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str


class Probation:
    def __init__(self, expect: Expect, timeout: float, started: float,
                 hold: float = HOLD_S) -> None:
        if timeout <= 0 or hold < 0:
            raise ValueError("invalid probation")
        self.expect = expect
        self.timeout = timeout
        self.started = started
        self.hold = hold
        self._healthy_since: float | None = None

    def missing(self, signals: Signals) -> list[str]:
        """The expected signals not there now, in words."""
        out = [] if signals.ready else ["supervisor not ready"]
        if self.expect.mqtt and not signals.mqtt_online:
            out.append("MQTT offline")
        if self.expect.pusher and not signals.pusher_live:
            out.append("pusher not live (no 1002)")
        if self.expect.player and not signals.player_live:
            out.append("player not playing (no 2004)")
        return out

    def decide(self, signals: Signals, now: float) -> Decision:
        missing = self.missing(signals)
        if missing:
            self._healthy_since = None
        elif self._healthy_since is None:
            self._healthy_since = now
        if self._healthy_since is not None and now - self._healthy_since >= self.hold:
            return Decision(Verdict.COMMIT, "healthy for "
                            f"{now - self._healthy_since:.0f} s: " + self._what())
        if now - self.started >= self.timeout:
            return Decision(Verdict.ROLL_BACK, f"not healthy within {self.timeout:.0f} s: "
                            + (", ".join(missing) or "healthy too briefly"))
        return Decision(Verdict.WAIT, ", ".join(missing) or "healthy, holding")

    def _what(self) -> str:
        parts = ["ready"]
        if self.expect.mqtt:
            parts.append("MQTT online")
        if self.expect.pusher:
            parts.append("pusher live")
        if self.expect.player:
            parts.append("player playing")
        return ", ".join(parts)
