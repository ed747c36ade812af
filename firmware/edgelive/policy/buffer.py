"""Player latency control (SPEC §4). Pure: the clock is injected, nothing here does I/O.

The buffer is what arrived but was not shown yet, in stream seconds: newest received
timestamp minus the playout position. live mode holds it between min-cache and max-cache:
below the band playback runs slightly slow, above it slightly fast, and far above it the
player drops to the newest key frame, so it never grows without bound. RTC mode keeps it
under 0.3 s. An empty buffer is a stall (loading): the position freezes until enough data
is back (min-cache in live mode, any frame in RTC mode).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

RTC_MAX_CACHE = 0.3
RTC_HIGH = 0.06
"""RTC mode plays off more than this (two frames at 30 fps) at RTC_CATCH_UP_RATE."""
CATCH_UP_RATE = 1.1
RTC_CATCH_UP_RATE = 1.25
SLOW_RATE = 0.92
RECV_GAP_LAG = 0.5
"""No packet for this long while streaming is a RECV_DATA_LAG (2104)."""
PLAY_STALL_LAG = 0.5
"""A stall this long, or a frame shown this late, is a VIDEO_PLAY_LAG (2105)."""


@dataclass(frozen=True)
class BufferTargets:
    low: float
    """Below this the buffer is refilled (slow playback)."""
    high: float
    """Above this playback catches up (fast playback)."""
    resume: float
    """Buffer needed to start or leave a stall."""
    jump: float
    """Above this the player drops to the newest key frame."""
    catch_up_rate: float

    @property
    def middle(self) -> float:
        return (self.low + self.high) / 2


def targets_for(mode: str, min_cache: float, max_cache: float) -> BufferTargets:
    """Buffer band of a player mode (`live` or `RTC`)."""
    if mode == "RTC":
        # A picture is shown as it arrives, so the playout position normally sits just
        # past the newest one: only running 0.15 s past it (the sender is late) slows
        # playback down, and more than RTC_HIGH buffered is played off faster. (With
        # low = 0 and high = 0.15 it kept up to 0.15 s buffered: 2-4 frames of latency.)
        return BufferTargets(low=-RTC_MAX_CACHE / 2, high=RTC_HIGH, resume=0.0,
                             jump=RTC_MAX_CACHE, catch_up_rate=RTC_CATCH_UP_RATE)
    return BufferTargets(low=min_cache, high=max_cache, resume=min_cache,
                         jump=max_cache + max(1.0, max_cache / 2), catch_up_rate=CATCH_UP_RATE)


@dataclass(frozen=True)
class Decision:
    rate: float
    """Playout speed (1.0 = real time; 0 = stalled, position frozen)."""
    jump_to_key: bool = False
    stall_began: bool = False
    stall_ended: bool = False


class LatencyController:
    """Turns buffer levels into playout speed, key-frame jumps and stall transitions."""

    def __init__(self, targets: BufferTargets) -> None:
        self.targets = targets
        self._rate = 1.0
        self.stalled = True  # nothing buffered before the first frame
        self._started = False

    def update(self, buffered: float, has_frames: bool) -> Decision:
        """`buffered`: seconds ahead of the position; `has_frames`: a frame is still queued."""
        t = self.targets
        if self.stalled:
            if has_frames and buffered >= t.resume:
                self.stalled = False
                first = not self._started
                self._started = True
                self._rate = 1.0
                return Decision(1.0, stall_ended=not first)
            return Decision(0.0)
        if not has_frames:
            self.stalled = True
            return Decision(0.0, stall_began=True)
        if buffered > t.jump:
            self._rate = 1.0
            return Decision(1.0, jump_to_key=True)
        if buffered > t.high:
            self._rate = t.catch_up_rate
        elif buffered < t.low:
            self._rate = SLOW_RATE
        elif (self._rate > 1 and buffered <= t.middle) or (self._rate < 1 and buffered >= t.middle):
            self._rate = 1.0
        return Decision(self._rate)


def jump_target(key_pts: Sequence[float], newest: float, position: float,
                keep: float) -> float | None:
    """The key frame to drop to: the newest one leaving at least `keep` s buffered.

    None when no key frame is far enough ahead of `position` to be worth the jump.
    """
    ahead = [pts for pts in key_pts if pts > position + 0.2]
    if not ahead:
        return None
    enough = [pts for pts in ahead if newest - pts >= keep]
    return enough[-1] if enough else ahead[0]


class PlayoutClock:
    """Maps stream timestamps to a monotonic clock at a variable rate, with freezing."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._anchor_pts = 0.0
        self._anchor_t = 0.0
        self.rate = 0.0
        self.started = False

    def start(self, pts: float, rate: float = 1.0) -> None:
        self._anchor_pts, self._anchor_t = pts, self._now()
        self.rate = rate
        self.started = True

    def position(self) -> float:
        if not self.started:
            return 0.0
        return self._anchor_pts + (self._now() - self._anchor_t) * self.rate

    def set_rate(self, rate: float) -> None:
        if rate != self.rate:
            self._anchor_pts, self._anchor_t = self.position(), self._now()
            self.rate = rate

    def due_in(self, pts: float) -> float:
        """Seconds until `pts` is due (negative = late); infinite while frozen."""
        if self.rate <= 0:
            return float("inf")
        return (pts - self.position()) / self.rate


class LagMonitor:
    """Detects RECV_DATA_LAG (arrival gaps) and VIDEO_PLAY_LAG (stalls, late frames)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._last_arrival: float | None = None
        self._recv_reported = False
        self._stall_since: float | None = None
        self._stall_reported = False

    def packet_arrived(self) -> None:
        self._last_arrival = self._now()
        self._recv_reported = False

    def reset(self) -> None:
        self._last_arrival = None
        self._stall_since = None

    def recv_lag(self, threshold: float = RECV_GAP_LAG) -> float | None:
        """The current arrival gap in s, once per gap, when it exceeds `threshold`."""
        if self._last_arrival is None or self._recv_reported:
            return None
        gap = self._now() - self._last_arrival
        if gap > threshold:
            self._recv_reported = True
            return gap
        return None

    def stall_began(self) -> None:
        self._stall_since = self._now()
        self._stall_reported = False

    def stall_ended(self) -> None:
        self._stall_since = None

    def play_lag(self, late_by: float = 0.0) -> float | None:
        """Stall duration (once per stall) or a frame's lateness beyond PLAY_STALL_LAG."""
        if self._stall_since is not None and not self._stall_reported:
            stalled = self._now() - self._stall_since
            if stalled > PLAY_STALL_LAG:
                self._stall_reported = True
                return stalled
        return late_by if late_by > PLAY_STALL_LAG else None
