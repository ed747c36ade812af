"""Video bitrate controller for the pusher (SPEC §3). Pure: measurements and `now` in, decisions
out.

The congestion signal is the delay the box adds to the picture, measured where it builds:
media queued in the sender, bytes muxed but not on the wire yet (the pusher's own socket has
TCP_NOTSENT_LOWAT, so the kernel holds little), and the queue in the path, seen as the RTT
above the connection's smallest RTT (a modem's buffer fills long before a socket refuses
data). The ceiling is what the server acknowledged over the tick (the link's real delivery
rate when the link is the limit), of which the video gets what is left after the container's
measured overhead and the audio. The controller steps down fast and multiplicatively to
below that delivery rate, probes up in small multiplicative steps while nothing is queued,
and only changes resolution when the floor of the current resolution cannot be carried. It
never asks for a reconnect or a restart. docs/bitrate-control.md has the law and its
constants.

Tick it every 0.5–1 s while the stream is connected; timers use the `now` passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

# -- congestion detection
HIGH_BACKLOG_S = 0.2
"""Delay added past this is a short link. It is the peak a video packet met during the tick
(`LinkSample.peak_delay_s`), so a link that drops shows within a tick; a key frame on a
healthy link adds far less (the encoder's VBV buffer is half a second of the target, and a
key frame uses a part of it), and every queued second is a second of viewer latency."""
LOW_BACKLOG_S = 0.15
"""At or below this nothing counts as queued (a key frame in flight: at 1.5 Mbit/s a 30 KB
key frame alone raises the RTT by 160 ms while it crosses the link)."""
MUX_BLOCK_BACKLOG_S = 0.15
"""`mux()` blocks for a moment on key frames even on a good link, so blocking counts as
congestion only once this much media is queued behind it."""

# -- stepping down
DECREASE_FACTOR = 0.8
"""On congestion the target drops to this share of the measured send rate: 20 % headroom
drains the queue and absorbs the noise of a one-tick rate estimate."""
DRAIN_S = 3.0
"""Queued media beyond LOW_BACKLOG_S is paid back over this many seconds on top of the
headroom, so latency recovers in seconds instead of the tens a 20 % margin alone needs."""

# -- probing up
PROBE_STEP = 0.12
"""Each probe adds 12 % of the target: an overshoot of the link shows as RTT within a tick
(caught at a few hundred ms of delay), and 300 → 700 kbit/s takes ~8 probes."""
PROBE_CLEAR_S = 0.06
"""A probe only on a clear path: a healthy link reads 0–30 ms of delay; at 0.12 s, under
LOW_BACKLOG_S, a queue was building (the encoder had spent its VBV buffer on the last
probe) and the probe on top of it turned a failed probe into a short link."""
PROBE_INTERVAL_S = 1.0
"""Time between probes away from the last limit: the RTT and the unsent bytes show a queue
within one tick, so a probe a second gets the picture back within ~15 s of the link."""
PROBE_STEP_MAX = 0.18
"""Away from any known limit the probe that follows a held one is larger (12 %, then 18 %):
a link that came back is found in fewer probes (at 720p, 300 → 700 kbit/s in 6 instead of
8). Not more: at 720p 25 % steps overran a link whose limit the noise had hidden by
enough to build 400 ms of delay before the probe could be taken back."""
PROBE_STEP_NEAR = 0.05
"""Close to the rate that last congested the link probes add 5 %: the link is probably
still there, and a small overshoot drains quickly."""
PROBE_INTERVAL_NEAR_S = 1.5
"""Probe interval close to the rate that last congested the link: the hysteresis that keeps
the target from sawing in and out of congestion."""
NEAR_CONGESTION = 0.95
"""'Close' means from 95 % of the rate the link carried when it last congested or a probe
failed: a probe just past the limit builds a queue slowly, so the next one waits to see it.
The limit is forgotten once the link carries (acknowledges) more than LIMIT_PASSED times it
over CARRIED_WINDOW_S: the link came back."""
LIMIT_PASSED = 1.15
"""At 720p a key frame a second is ~40 % of the bits, so what the link carried over 3 s
still reads ±13 % by where the window cuts the key frames: 15 % more is a link that has
grown (a 5 % margin let the noise forget a limit that held, and the probes that followed
overran it; 20 % kept the picture at 40 % of its rate for 20 s after the link returned)."""
CARRIED_WINDOW_S = 3.0
"""What the link carried is averaged over this long where it is compared with a limit: a
bottleneck passes a burst at once (tbf's bucket, a modem's aggregation), so one half-second
tick read 490 kbit/s acknowledged on a 400 kbit/s link and forgot a limit that held. A
probe starts from the most carried over this long (three key frames in RTC mode)."""
PROBE_FAILED_S = 0.12
"""A probe failed when the delay reaches this within PROBE_WINDOW_S of it: well below
HIGH_BACKLOG_S, because a probe overshoots the link by a few % and the queue builds
slowly, so waiting for the congestion threshold would cost seconds of latency. The target
goes back to where it was before the probe, without a short-link episode."""
PROBE_WINDOW_S = 4.0
"""How long the last probe is watched once the encoder fills it (PROBE_FILLED_RATIO of the
new target): a 12 % overshoot of the link adds 0.1 s of queue per second."""
PROBE_FILLED_RATIO = 0.95
"""A probe the encoder has not filled has proved nothing, so its window starts only then.
x264 comes up to a raised target over seconds (at 640x360, 80 % of it 2.5 s later) and
keeps creeping towards it: a probe that passed as held while the encoder made 85 % of it
overran the link 10 s later, as a short link (0.2 s) instead of a failed probe."""
PROBE_BACKOFF_MAX_S = 8.0
"""Each failed probe doubles the wait before the next one (from 2 s), up to this, and a
probe that holds resets it: a link that stays where it is costs a bump of latency of about
PROBE_FAILED_S every 10 s at most, and a link that comes back is found within 10 s (a wait
of 24 s left a 720p picture at 45 % of its rate for 14 s after the link returned)."""
HOLD_AFTER_CONGESTION_S = 2.0
"""No probing this long after the last congested tick: the encoder's rate control and the
queue need a moment to settle before the next measurement means anything."""
APP_LIMITED_RATIO = 0.8
"""A target the encoder does not use (a still scene) proves nothing about the link, so the
target is not raised while the encoder produces less than this share of it. At a lower rung
such a scene counts as carried at the ceiling (a step up is due): it may never fill it."""

# -- link short episodes (1101)
LINK_OK_AFTER_S = 5.0
"""A short-link episode ends this long after the last congested tick; the next one emits 1101
again. (Not "queue empty for 5 s": key frames keep a small queue on healthy links too.)"""

# -- resolution steps
STEP_DOWN_MARGIN = 1.15
"""Step a resolution down when the link carries less than the current floor plus 15 %: at
the floor with less headroom the queue drains too slowly or not at all."""
STEP_DOWN_AFTER_S = 1.0
"""...and that has held this long (one noisy tick never changes resolution). The step goes
straight to the largest rung whose floor the link carries: one encoder restart, not two."""
STEP_UP_MARGIN = 1.3
"""A lower rung's ceiling is the upper rung's floor times this: carrying it proves the upper
resolution fits with more margin than STEP_DOWN_MARGIN asks, so a step up is not undone."""
STEP_UP_AFTER_S = 6.0
"""The lower rung's ceiling must be carried cleanly this long before stepping up."""
STEP_UP_PROBATION_S = 30.0
"""A step down this soon after a step up doubles the wait before the next step up..."""
STEP_UP_AFTER_MAX_S = 240.0
"""...up to this, so a link just at the boundary flips resolution at most every few minutes."""

# -- encoder load (1107)
OVERLOAD_SHARE = 0.9
"""An encoder that spends more than 90 % of each frame interval encoding cannot keep up:
capture, audio and muxing share the same cores, so frames start to queue and drop."""
OVERLOAD_AFTER_S = 3.0
"""...measured over this long, so a burst (a key frame, another process) is not a switch."""
MIN_FPS = 10
"""The cheapest path never goes below this frame rate: motion stops reading as video."""

LADDER_SCALES = (1.0, 0.75, 0.5)
"""Sizes of the resolution ladder relative to the configured one (1280x720 → 960x540 →
640x360); floors scale with the pixel count."""


@dataclass(frozen=True)
class Rung:
    """One resolution and the video bitrate range it is encoded with."""

    width: int
    height: int
    min_kbps: float
    max_kbps: float


def _even(x: float) -> int:
    return max(2, round(x / 2) * 2)


def resolution_ladder(width: int, height: int, min_kbps: float, max_kbps: float,
                      scales: Sequence[float] = LADDER_SCALES) -> tuple[Rung, ...]:
    """The configured size and range first, then smaller sizes. A lower rung's floor is the
    configured floor scaled by area; its ceiling is the upper floor times STEP_UP_MARGIN, the
    rate that must be carried to step back up."""
    if min_kbps <= 0 or max_kbps < min_kbps:
        raise ValueError("invalid bitrate range")
    rungs = [Rung(width, height, min_kbps, max_kbps)]
    for scale in scales[1:]:
        floor = min_kbps * scale * scale
        rungs.append(Rung(_even(width * scale), _even(height * scale), floor,
                          max(floor, rungs[-1].min_kbps * STEP_UP_MARGIN)))
    return tuple(rungs)


@dataclass(frozen=True)
class LinkSample:
    """What the sender measured over the last tick."""

    send_kbps: float
    """Rate that actually left through the socket (all of it: video, audio, FLV)."""
    encoder_kbps: float
    """Video rate the encoder produced."""
    backlog_bytes: int
    """Bytes queued in the box, not yet handed to the socket."""
    backlog_s: float
    """Seconds of media those bytes hold (newest minus oldest timestamp)."""
    mux_blocked: bool = False
    """`mux()` blocked waiting for the socket during the tick."""
    rtt_ms: float = 0.0
    """The connection's smoothed RTT (TCP_INFO)..."""
    min_rtt_ms: float = 0.0
    """...and the smallest it has been: the difference is the queue in the path."""
    unsent_bytes: int = 0
    """Bytes muxed and not on the wire yet (socket, relay, loopback)."""
    wire_kbps: float | None = None
    """What the server acknowledged over the tick, everything counted (the delivery rate);
    None without TCP readings: `send_kbps` stands for it."""
    overhead: float = 1.0
    """Bytes on the wire per media byte (FLV and RTMP framing)."""
    stale_frames: int = 0
    """Video frames the sender dropped as stale during the tick: the delay passed its bound
    between two ticks (the drop keeps the queue short, so a tick may not see it)."""
    app_limited: bool = False
    """The kernel found the link idle for want of data at the last ACK: frames that went
    stale then were late from the box (a CPU stall), not from the link."""
    peak_delay_s: float = 0.0
    """The largest delay a video packet met during the tick (the sender measures it per
    packet): the reading at the tick misses one that built and was cut between ticks."""

    @property
    def delivered_kbps(self) -> float:
        return self.send_kbps if self.wire_kbps is None else self.wire_kbps

    @property
    def path_s(self) -> float:
        """Delay in the path's queue."""
        return max(0.0, self.rtt_ms - self.min_rtt_ms) / 1000

    @property
    def delay_s(self) -> float:
        """Delay the box and the path add to the picture now: sender queue, unsent bytes at
        the delivery rate, the path's queue."""
        rate = self.delivered_kbps
        socket_s = self.unsent_bytes * 8 / 1000 / rate if rate > 0 else 0.0
        return self.backlog_s + socket_s + self.path_s

    @property
    def worst_delay_s(self) -> float:
        """The delay now or, if larger, the peak during the tick: what congestion is
        judged by."""
        return max(self.delay_s, self.peak_delay_s)

    @property
    def queued_kbit(self) -> float:
        """Everything queued between the encoder and the receiver, in kbit."""
        in_box = (self.backlog_bytes + self.unsent_bytes) * 8 / 1000
        return in_box + self.path_s * self.delivered_kbps


@dataclass(frozen=True)
class BitrateDecision:
    target_kbps: int
    """Video bitrate to set on the encoder."""
    rung: Rung
    """Resolution to encode at."""
    resolution_step: int
    """Rungs moved on this tick (negative = smaller picture; apply at the next key frame)."""
    link_short: bool
    """A short-link episode is going on (the NET_BUSY state)."""
    link_short_began: bool
    """The episode began on this tick: emit 1101 NET_BUSY once."""


class BitrateController:
    """Keeps the video bitrate under what the uplink carries, between the ladder's bounds."""

    def __init__(self, ladder: Sequence[Rung], other_kbps: float = 0.0,
                 start_kbps: float | None = None) -> None:
        """`ladder` comes from `resolution_ladder` (index 0 = configured size); `other_kbps`
        is what else shares the link (audio, container) and is taken off the send rate."""
        if not ladder:
            raise ValueError("empty resolution ladder")
        self.ladder = tuple(ladder)
        self.other_kbps = other_kbps
        self._rung = 0
        top = self.ladder[0]
        self._target = min(top.max_kbps, max(top.min_kbps, start_kbps or top.max_kbps))
        self._link_short = False
        self._last_change = float("-inf")
        self._last_congested = float("-inf")
        self._link_kbps: float | None = None
        """Video rate the link carried when it last congested; probes near it go slower."""
        self._episode: list[tuple[float, bool]] = []
        """Video rates the link carried at the congested ticks of this short-link episode,
        and whether it was fed (no frame dropped as stale)."""
        self._probe_backoff = 0.0
        """Extra wait before the next probe, doubled by each failed one."""
        self._before_probe: float | None = None
        """The target before the probe being watched, None when none is."""
        self._probed_at = float("-inf")
        self._probe_streak = 0
        """Probes in a row that were not taken back, away from any known limit."""
        self._carried: deque[tuple[float, float]] = deque()
        """(time, video kbit/s the link carried) of the ticks in CARRIED_WINDOW_S."""
        self._recovery_kbps = 0.0
        self._floor_short_since: float | None = None
        self._at_ceiling_since: float | None = None
        self._last_step_up = float("-inf")
        self._step_up_after = STEP_UP_AFTER_S
        self._top = 0
        """Largest rung allowed: raised past 0 when the encoder could not keep up there."""

    @property
    def target_kbps(self) -> int:
        return round(self._target)

    @property
    def rung(self) -> Rung:
        return self.ladder[self._rung]

    @property
    def link_short(self) -> bool:
        return self._link_short

    def tick(self, now: float, sample: LinkSample) -> BitrateDecision:
        delay = sample.worst_delay_s
        stale = sample.stale_frames > 0 and not sample.app_limited
        congested = delay >= HIGH_BACKLOG_S or stale or (
            sample.mux_blocked and delay >= MUX_BLOCK_BACKLOG_S)
        began = congested and not self._link_short
        step = self._step_down(now, sample) if congested else self._step_up(now, sample)
        return BitrateDecision(self.target_kbps, self.rung, step, self._link_short, began)

    # -- congestion: down fast

    def _step_down(self, now: float, sample: LinkSample) -> int:
        self._last_congested = now
        self._at_ceiling_since = None
        media_kbps = sample.delivered_kbps / max(1.0, sample.overhead)
        link_kbps = max(0.0, media_kbps - self.other_kbps)
        allowance_kbit = LOW_BACKLOG_S * (self._target + self.other_kbps)
        excess_kbit = max(0.0, sample.queued_kbit - allowance_kbit)
        carried = DECREASE_FACTOR * media_kbps - self.other_kbps
        desired = carried - excess_kbit / DRAIN_S
        # While the queue is full the link is busy: its capacity is what it carried over
        # the episode's ticks (one tick reads a burst, 525 kbit/s on a 400 kbit/s link;
        # the next reads the gap after it). Not while frames were dropped as stale: the
        # link then idles for want of them (at 720p such ticks read 220 of 350 kbit/s).
        if not self._link_short:
            self._episode = []
        self._episode.append((link_kbps, sample.stale_frames == 0))
        fed = [kbps for kbps, full in self._episode if full] or [
            kbps for kbps, _ in self._episode]
        self._link_kbps = sum(fed) / len(fed)
        self._link_short = True
        self._before_probe = None
        self._probe_streak = 0
        # Once the queue has drained the drain term goes (never above the congested target).
        self._recovery_kbps = min(self._target, carried)
        if desired < self._target:
            self._set_target(now, desired)
        fitting = self._fitting_rung(link_kbps)
        if self._target > self.rung.min_kbps or fitting == self._rung:
            self._floor_short_since = None
            return 0
        if self._floor_short_since is None:
            self._floor_short_since = now
        if now - self._floor_short_since < STEP_DOWN_AFTER_S:
            return 0
        failed_step_up = now - self._last_step_up < STEP_UP_PROBATION_S
        self._step_up_after = (min(STEP_UP_AFTER_MAX_S, self._step_up_after * 2)
                               if failed_step_up else STEP_UP_AFTER_S)
        step = self._rung - fitting
        self._change_rung(now, fitting, desired)
        return step

    def _fitting_rung(self, link_kbps: float) -> int:
        """The largest rung at or below the current one whose floor the link carries."""
        for index in range(self._rung, len(self.ladder)):
            if link_kbps >= self.ladder[index].min_kbps * STEP_DOWN_MARGIN:
                return index
        return len(self.ladder) - 1

    # -- clear link: up slowly

    def _step_up(self, now: float, sample: LinkSample) -> int:
        self._floor_short_since = None
        if self._link_short and now - self._last_congested >= LINK_OK_AFTER_S:
            self._link_short = False
        delay = sample.worst_delay_s
        self._carried.append(
            (now, sample.delivered_kbps / max(1.0, sample.overhead) - self.other_kbps))
        while now - self._carried[0][0] > CARRIED_WINDOW_S:
            self._carried.popleft()
        carried = sum(kbps for _, kbps in self._carried) / len(self._carried)
        if self._probe_failed(now, delay, carried, sample.encoder_kbps):
            return 0
        empty = delay <= LOW_BACKLOG_S
        if empty:
            if self._recovery_kbps > self._target:
                # The queue drained: drop the drain term, back to what the link carried.
                self._set_target(now, self._recovery_kbps)
            self._recovery_kbps = 0.0
        app_limited = sample.encoder_kbps < APP_LIMITED_RATIO * self._target
        if self._target >= self.rung.max_kbps or (app_limited and empty):
            # At a lower rung a simple scene may never fill the ceiling: all it needs is
            # carried, so it has earned the larger picture (undone, with a growing wait,
            # if the larger one does not fit).
            return self._maybe_step_resolution_up(now)
        if app_limited:
            self._at_ceiling_since = None
            return 0
        self._at_ceiling_since = None
        limit = self._link_kbps
        if limit is not None and carried > limit * LIMIT_PASSED:
            self._link_kbps = limit = None  # carried well past it: that limit is gone
        step = PROBE_STEP_MAX if self._probe_streak else PROBE_STEP
        near = limit is not None and self._target * (1 + step) >= NEAR_CONGESTION * limit
        interval = (PROBE_INTERVAL_NEAR_S if near else PROBE_INTERVAL_S) + self._probe_backoff
        if near:
            step = PROBE_STEP_NEAR
        # A probe goes one step past the most the link carried lately, not past a target
        # the encoder has not reached: near its content's own rate x264 makes 75–90 % of
        # the target, and a target raised above that is an overshoot waiting for a busier
        # scene.
        reached = max(kbps for _, kbps in self._carried)
        raised = min(self._target, reached) * (1 + step)
        if (delay <= PROBE_CLEAR_S and raised > self._target
                and now - self._last_congested >= HOLD_AFTER_CONGESTION_S
                and now - self._last_change >= interval):
            if self._before_probe is not None:
                self._probe_backoff = 0.0  # the last probe was not taken back: it held
            self._before_probe, self._probed_at = self._target, now
            self._probe_streak = 0 if near else self._probe_streak + 1
            self._set_target(now, raised)
        return 0


    def _probe_failed(self, now: float, delay: float, carried: float,
                      encoder_kbps: float) -> bool:
        """Whether the probe being watched just failed: the target goes back to where it
        was, or below what the link carries now if that is less."""
        if self._before_probe is None:
            return False
        if encoder_kbps < PROBE_FILLED_RATIO * self._target:
            self._probed_at = now  # not filled yet: its window has not begun
        if now - self._probed_at > PROBE_WINDOW_S:
            self._before_probe = None  # it held
            self._probe_backoff = 0.0
            return False
        if delay < PROBE_FAILED_S:
            return False
        self._probe_backoff = min(PROBE_BACKOFF_MAX_S,
                                  max(2 * PROBE_INTERVAL_S, 2 * self._probe_backoff))
        self._set_target(now, min(self._before_probe, DECREASE_FACTOR * carried
                                  if carried > 0 else self._before_probe))
        if carried > 0:
            self._link_kbps = carried  # what the link carried while it was full
        self._before_probe = None
        self._probe_streak = 0
        return True

    def _maybe_step_resolution_up(self, now: float) -> int:
        if self._rung == self._top:
            return 0
        if self._at_ceiling_since is None:
            self._at_ceiling_since = now
        if now - self._at_ceiling_since < self._step_up_after:
            return 0
        self._last_step_up = now
        self._change_rung(now, self._rung - 1, self._target)
        return +1

    # -- encoder too slow: a smaller picture for good

    def step_down_for_encoder(self, now: float) -> int:
        """The encoder cannot keep up at this rung: go one rung down (-1) and never back up
        in this stream; 0 when already at the smallest."""
        if self._rung == len(self.ladder) - 1:
            return 0
        self._top = self._rung + 1
        self._change_rung(now, self._top, self._target)
        return -1

    # -- helpers

    def _change_rung(self, now: float, index: int, desired: float) -> None:
        self._rung = index
        self._floor_short_since = None
        self._at_ceiling_since = None
        self._set_target(now, desired)

    def _set_target(self, now: float, kbps: float) -> None:
        rung = self.rung
        self._target = min(rung.max_kbps, max(rung.min_kbps, kbps))
        self._last_change = now


class EncoderLoad:
    """Tells when the encoder has spent more than OVERLOAD_SHARE of the frame interval per
    frame for OVERLOAD_AFTER_S; pure, fed once per tick with what the encoder measured."""

    def __init__(self) -> None:
        self._window: list[tuple[float, int, float]] = []

    def overloaded(self, now: float, frames: int, busy_s: float, fps: int) -> bool:
        """`frames` encoded in `busy_s` seconds since the previous call, at `fps`."""
        self._window.append((now, frames, busy_s))
        # Drop the oldest entry only while the rest still spans the whole window: trimming to
        # "younger than OVERLOAD_AFTER_S" would leave ~2 s when ticks come a hair over 1 s apart
        # (a loaded box), and the check below would then never have enough history.
        while len(self._window) > 2 and now - self._window[1][0] >= OVERLOAD_AFTER_S:
            self._window.pop(0)
        # Each entry covers the time since the one before it: the first only marks the start.
        covered = self._window[1:]
        frames_in = sum(w[1] for w in covered)
        if now - self._window[0][0] < OVERLOAD_AFTER_S * 0.8 or frames_in == 0:
            return False
        return sum(w[2] for w in covered) / frames_in > OVERLOAD_SHARE / fps

    def reset(self) -> None:
        """Forget the history: the encoder changed, its old timings say nothing now."""
        self._window = []
