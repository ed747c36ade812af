"""Status LEDs: which state the box is in and how the green and red LEDs show it (SPEC §5).

Pure: events and flags in, with `now` passed in; the highest-priority active state wins.
`hw/gpio.py` plays the patterns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from edgelive.codes import Code, Source

IDENTIFY_S = 10.0
"""How long the identify command (and the factory-reset confirmation) blinks."""
LINK_SHORT_QUIET_S = 5.0
"""A link-short warning shows until this long passes without a new one (the bitrate
controller emits 1101 once per episode, the player its lag warnings as they happen)."""


@dataclass(frozen=True)
class Pattern:
    """A repeating light sequence: `durations` alternate on, off, on, off… seconds.

    Empty `durations` means steady: lit when `steady_on`.
    """

    durations: tuple[float, ...] = ()
    steady_on: bool = False

    def __post_init__(self) -> None:
        if len(self.durations) % 2 or any(d <= 0 for d in self.durations):
            raise ValueError("durations must be positive on/off pairs")

    @property
    def period(self) -> float:
        return sum(self.durations)

    def is_on(self, elapsed: float) -> bool:
        """Level `elapsed` seconds after the pattern started."""
        return self.segment(elapsed)[0]

    def segment(self, elapsed: float) -> tuple[bool, float]:
        """Level `elapsed` seconds after the start, and seconds until it changes (inf when
        steady): what a player needs to sleep exactly until the next edge."""
        if not self.durations:
            return self.steady_on, math.inf
        phase = elapsed % self.period
        for index, duration in enumerate(self.durations):
            if phase < duration:
                return index % 2 == 0, duration - phase
            phase -= duration
        return True, self.durations[0]  # phase == period after rounding: the next cycle


OFF = Pattern()
ON = Pattern(steady_on=True)


def blink(hz: float) -> Pattern:
    half = 0.5 / hz
    return Pattern((half, half))


def flashes(count: int, every_s: float, on_s: float = 0.15, gap_s: float = 0.15) -> Pattern:
    """`count` flashes of `on_s` at the start of every `every_s` seconds."""
    head = (on_s, gap_s) * (count - 1) + (on_s,)
    return Pattern((*head, every_s - sum(head)))


class LedState(StrEnum):
    """Highest priority first."""

    IDENTIFY = "identify"
    FATAL = "fatal"
    GAVE_UP = "gave_up"
    RECONNECTING = "reconnecting"
    LINK_SHORT = "link_short"
    MQTT_LOST = "mqtt_lost"
    HEALTH = "health"
    PRIVACY = "privacy"
    STREAMING = "streaming"
    IDLE = "idle"


PATTERNS: dict[LedState, tuple[Pattern, Pattern]] = {
    # state: (green = stream, red = fault)
    LedState.IDENTIFY: (blink(5), blink(5)),
    LedState.FATAL: (OFF, ON),
    LedState.GAVE_UP: (OFF, blink(1)),
    LedState.RECONNECTING: (blink(4), OFF),
    LedState.LINK_SHORT: (ON, flashes(1, 2.0)),
    LedState.MQTT_LOST: (ON, flashes(2, 2.0)),
    LedState.HEALTH: (ON, flashes(3, 2.0)),
    LedState.PRIVACY: (blink(0.5), OFF),
    LedState.STREAMING: (ON, OFF),
    LedState.IDLE: (flashes(1, 3.0, on_s=0.1), OFF),
}

FATAL_CODES = frozenset({Code.PUSH_ERR_OPEN_CAMERA_FAIL, Code.PUSH_ERR_VIDEO_ENCODE_FAIL,
                         Code.PUSH_ERR_UNSUPPORTED_RESOLUTION,
                         Code.PUSH_ERR_UNSUPPORTED_SAMPLERATE})
GAVE_UP_CODES = frozenset({Code.PUSH_ERR_NET_DISCONNECT, Code.PLAY_ERR_NET_DISCONNECT})
RECONNECTING_CODES = frozenset({
    Code.PUSH_WARNING_RECONNECT, Code.PLAY_WARNING_RECONNECT, Code.WARNING_DNS_FAIL,
    Code.WARNING_SERVER_CONN_FAIL, Code.WARNING_SHAKE_FAIL, Code.PUSH_WARNING_SERVER_DISCONNECT,
    Code.PUSH_WARNING_SOCKET_BROKEN})
LINK_SHORT_CODES = frozenset({Code.PUSH_WARNING_NET_BUSY, Code.PLAY_WARNING_RECV_DATA_LAG,
                              Code.PLAY_WARNING_VIDEO_PLAY_LAG})
STREAMING_CODES = frozenset({Code.PUSH_EVT_PUSH_BEGIN, Code.PLAY_EVT_PLAY_BEGIN})
"""Media flows again: ends reconnecting and gave-up for that source."""
STOPPED_CODES = frozenset({Code.PUSH_STOPPED, Code.PLAY_STOPPED})
"""A stopped session no longer reconnects or lags (gave-up and faults stay until it works)."""
WAITING_ON_CODES = frozenset({Code.PUSH_WARNING_HANDUP_STOP, Code.WAITING_IMAGE_ON})
WAITING_OFF_CODES = frozenset({Code.WAITING_IMAGE_OFF, Code.PUSH_EVT_PUSH_BEGIN})


@dataclass(frozen=True)
class LedFlags:
    """What the supervisor knows besides events."""

    identify_until: float = float("-inf")
    """Identify blinks while `now` is before this (see IDENTIFY_S)."""
    mqtt_lost: bool = False
    """A broker is configured and the session is down (False when no broker is configured)."""
    privacy: bool = False
    pusher_on: bool = False
    """A push session runs (started and not stopped), connected or not."""
    player_on: bool = False
    health_warning: bool = False
    """THERMAL_THROTTLED (heat, under-voltage) or DISK_LOW is active (policy/health.py)."""
    boot_config_rejected: bool = False
    """The configuration was rejected at boot: the box runs on defaults it was not set up for."""


@dataclass(frozen=True)
class LedDecision:
    state: LedState
    green: Pattern
    red: Pattern
    until: float | None
    """When this decision expires without new input (identify or link short ends)."""


@dataclass
class _SourceState:
    fatal: set[int] = field(default_factory=set)
    gave_up: bool = False
    reconnecting: bool = False
    waiting: bool = False
    link_short_at: float = float("-inf")


class LedPolicy:
    """Folds events into per-source state; `decide()` picks the state to show."""

    def __init__(self, link_short_quiet_s: float = LINK_SHORT_QUIET_S) -> None:
        self.link_short_quiet_s = link_short_quiet_s
        self._sources = {Source.PUSHER.value: _SourceState(), Source.PLAYER.value: _SourceState()}

    def observe(self, code: int, src: str, now: float) -> None:
        state = self._sources.get(src)
        if state is None:  # device events: their state comes in through LedFlags
            return
        if code in FATAL_CODES:
            state.fatal.add(code)
        elif code == Code.PUSH_EVT_OPEN_CAMERA_SUCC:
            state.fatal.discard(Code.PUSH_ERR_OPEN_CAMERA_FAIL)
        elif code == Code.PUSH_EVT_CONNECT_SUCC:
            # a new session got as far as the server: its encoder and format were accepted
            state.fatal -= {Code.PUSH_ERR_VIDEO_ENCODE_FAIL, Code.PUSH_ERR_UNSUPPORTED_RESOLUTION,
                            Code.PUSH_ERR_UNSUPPORTED_SAMPLERATE}
        if code in GAVE_UP_CODES:
            state.gave_up = True
        if code in RECONNECTING_CODES:
            state.reconnecting = True
        if code in LINK_SHORT_CODES:
            state.link_short_at = now
        if code in WAITING_ON_CODES:
            state.waiting = True
        if code in WAITING_OFF_CODES:
            state.waiting = False
        if code in STREAMING_CODES:
            state.gave_up = state.reconnecting = False
        if code in STOPPED_CODES:
            state.reconnecting = False
            state.link_short_at = float("-inf")

    def decide(self, flags: LedFlags, now: float) -> LedDecision:
        states = self._sources.values()
        link_short_ends = max(s.link_short_at for s in states) + self.link_short_quiet_s
        streaming = flags.pusher_on or flags.player_on
        active = [
            (LedState.IDENTIFY, now < flags.identify_until),
            (LedState.FATAL, flags.boot_config_rejected or any(s.fatal for s in states)),
            (LedState.GAVE_UP, any(s.gave_up for s in states)),
            (LedState.RECONNECTING, any(s.reconnecting for s in states)),
            (LedState.LINK_SHORT, now < link_short_ends),
            (LedState.MQTT_LOST, flags.mqtt_lost and streaming),
            (LedState.HEALTH, flags.health_warning),
            (LedState.PRIVACY, flags.privacy or any(s.waiting for s in states)),
            (LedState.STREAMING, streaming),
        ]
        state = next((name for name, on in active if on), LedState.IDLE)
        timers = [t for t in (flags.identify_until, link_short_ends) if t > now]
        green, red = PATTERNS[state]
        return LedDecision(state, green, red, min(timers) if timers else None)
