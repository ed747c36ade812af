"""BitrateController: down fast, up slowly, resolution steps, 1101 episodes; a fluid-link model."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgelive.policy.bitrate import (
    PROBE_FAILED_S,
    PROBE_INTERVAL_S,
    STEP_UP_AFTER_S,
    BitrateController,
    BitrateDecision,
    LinkSample,
    Rung,
    resolution_ladder,
)

WIDE = (Rung(640, 360, 100, 2000),)


def empty(encoder_kbps: float, send_kbps: float | None = None) -> LinkSample:
    return LinkSample(send_kbps if send_kbps is not None else encoder_kbps, encoder_kbps, 0, 0.0)


def congested(send_kbps: float, backlog_kbit: float = 0.0, backlog_s: float = 0.6) -> LinkSample:
    return LinkSample(send_kbps, send_kbps, int(backlog_kbit * 125), backlog_s, True)


def test_ladder_scales_sizes_and_floors_and_links_ceilings_to_the_upper_floor() -> None:
    ladder = resolution_ladder(1280, 720, 600, 1800)
    assert [(r.width, r.height) for r in ladder] == [(1280, 720), (960, 540), (640, 360)]
    assert ladder[0] == Rung(1280, 720, 600, 1800)
    assert ladder[1].min_kbps == pytest.approx(337.5)
    assert ladder[1].max_kbps == pytest.approx(780)  # 600 × 1.3
    assert ladder[2].min_kbps == pytest.approx(150)
    assert ladder[2].max_kbps == pytest.approx(337.5 * 1.3)
    with pytest.raises(ValueError):
        resolution_ladder(640, 360, 500, 400)
    with pytest.raises(ValueError):
        BitrateController(())


def test_starts_at_the_ceiling_or_the_clamped_start_rate() -> None:
    assert BitrateController(WIDE).target_kbps == 2000
    assert BitrateController(WIDE, start_kbps=50).target_kbps == 100
    assert BitrateController(WIDE, start_kbps=700).target_kbps == 700


def test_congestion_drops_to_a_share_of_the_send_rate_minus_the_backlog_to_drain() -> None:
    ctrl = BitrateController(WIDE, start_kbps=1000)
    assert ctrl.tick(0.0, congested(500)).target_kbps == 400  # 0.8 × 500
    ctrl = BitrateController(WIDE, start_kbps=1000)
    # 150 kbit (0.15 s at 1000) is allowed; the 300 kbit beyond it is drained over 3 s
    assert ctrl.tick(0.0, congested(500, backlog_kbit=450)).target_kbps == 300
    ctrl = BitrateController(WIDE, other_kbps=100, start_kbps=1000)
    assert ctrl.tick(0.0, congested(500)).target_kbps == 300  # audio shares the link


def test_congestion_never_raises_the_target() -> None:
    ctrl = BitrateController(WIDE, start_kbps=300)
    assert ctrl.tick(0.0, congested(2000)).target_kbps == 300


@pytest.mark.parametrize(
    ("backlog_s", "mux_blocked", "is_congested"),
    [(0.2, False, True), (0.19, False, False), (0.15, True, True), (0.14, True, False),
     (0.0, True, False)],
)
def test_congestion_signals(backlog_s: float, mux_blocked: bool, is_congested: bool) -> None:
    ctrl = BitrateController(WIDE, start_kbps=1000)
    decision = ctrl.tick(0.0, LinkSample(500, 1000, 0, backlog_s, mux_blocked))
    assert (decision.target_kbps == 400) is is_congested
    assert decision.link_short is is_congested


@pytest.mark.parametrize(
    ("rtt_ms", "unsent_bytes", "is_congested"),
    [(260, 0, True), (250, 0, False), (60, 10_500, True), (60, 9_000, False),
     (200, 4_000, True)],
)
def test_the_path_queue_and_unsent_bytes_are_early_signals(
        rtt_ms: float, unsent_bytes: int, is_congested: bool) -> None:
    """Nothing queued in the box, yet the RTT over its minimum (60 ms) is a modem's buffer
    filling, and unsent bytes at the 400 kbit/s the server acknowledges are delay too."""
    ctrl = BitrateController(WIDE, start_kbps=1000)
    sample = LinkSample(1000, 1000, 0, 0.0, rtt_ms=rtt_ms, min_rtt_ms=60,
                        unsent_bytes=unsent_bytes, wire_kbps=400)
    assert ctrl.tick(0.0, sample).link_short is is_congested


def test_stale_frames_dropped_between_ticks_are_congestion() -> None:
    ctrl = BitrateController(WIDE, start_kbps=1000)
    assert not ctrl.tick(0.0, LinkSample(500, 1000, 0, 0.0, wire_kbps=500)).link_short
    decision = ctrl.tick(1.0, LinkSample(500, 1000, 0, 0.0, wire_kbps=500, stale_frames=3))
    assert decision.link_short and decision.target_kbps == 400
    # late from the box itself (the link idled for want of data): no step down for it
    ctrl = BitrateController(WIDE, start_kbps=1000)
    assert not ctrl.tick(0.0, LinkSample(500, 1000, 0, 0.0, wire_kbps=500, stale_frames=3,
                                         app_limited=True)).link_short


def test_a_delay_that_peaked_between_two_ticks_is_congestion() -> None:
    """The sender's per-packet peak counts though the reading at the tick is clear (the
    stale drop cut the queue meanwhile)."""
    ctrl = BitrateController(WIDE, start_kbps=1000)
    assert not ctrl.tick(0.0, LinkSample(500, 1000, 0, 0.0, peak_delay_s=0.19)).link_short
    decision = ctrl.tick(0.5, LinkSample(500, 1000, 0, 0.0, peak_delay_s=0.25))
    assert decision.link_short_began and decision.target_kbps == 400


def test_a_probe_that_fills_the_link_is_taken_back_without_an_episode() -> None:
    """A probe past the link adds a little delay slowly: at PROBE_FAILED_S within
    PROBE_WINDOW_S the target goes back (no 1101), and the next probe waits longer."""
    ctrl = BitrateController(WIDE, start_kbps=1000)
    ctrl.tick(0.0, congested(500))  # target 400
    t, target = 0.5, ctrl.target_kbps
    while ctrl.target_kbps == target:  # quiet until the next probe
        ctrl.tick(t, LinkSample(420, target, 0, 0.0, wire_kbps=420))
        t += 0.5
    probed = ctrl.target_kbps
    assert probed > target
    late = LinkSample(420, probed, 0, 0.0, wire_kbps=420, peak_delay_s=PROBE_FAILED_S)
    back = ctrl.tick(t + 1.0, late)
    # where it was, or 0.8 × what the link carries if that is less
    assert back.target_kbps == min(target, round(0.8 * 420)) and not back.link_short_began
    base = back.target_kbps
    trace = [(s, ctrl.tick(s, LinkSample(420, ctrl.target_kbps, 0, 0.0, wire_kbps=420)))
             for s in (t + 1.5 + 0.5 * i for i in range(40))]
    probes = changes(trace)[1:]
    assert probes and probes[0][0] - (t + 1.0) >= 2 * PROBE_INTERVAL_S
    # what the link carried while full (420) is the limit now: probes near it are small
    assert [kbps for _, kbps in probes[:2]] == [round(base * 1.12), round(base * 1.12 * 1.05)]


def test_the_limit_is_what_the_link_carried_over_the_episode() -> None:
    """A bottleneck passes bursts: congested ticks read 650 and 250 kbit/s on a link of
    450. Probes slow down near what it carried over the episode, not near one reading."""
    ctrl = BitrateController(WIDE, start_kbps=1000)
    ctrl.tick(0.0, congested(650))
    ctrl.tick(0.5, congested(250))
    steps = changes(run_empty(ctrl, 1.0, 30.0))
    near = [a for (_, a), (_, b) in pairwise(steps) if round(b / a, 2) == 1.05]
    assert near and 0.95 * 450 / 1.25 <= min(near) < 0.95 * 450, steps


def test_a_probe_is_watched_from_when_the_encoder_fills_it() -> None:
    """An encoder that stays under a probe for longer than the window has not tried the
    link: the delay it builds once it fills the probe takes the probe back."""
    ctrl = BitrateController(WIDE, start_kbps=1000)
    ctrl.tick(0.0, congested(500))  # target 400
    t, target = 0.5, ctrl.target_kbps
    while ctrl.target_kbps == target:
        ctrl.tick(t, LinkSample(420, target, 0, 0.0, wire_kbps=420))
        t += 0.5
    probed = ctrl.target_kbps
    for _ in range(12):  # 6 s under 80 % of the probe: the window has not begun
        ctrl.tick(t, LinkSample(420, 0.7 * probed, 0, 0.0, wire_kbps=420))
        t += 0.5
    assert ctrl.target_kbps == probed
    filled = ctrl.tick(t, LinkSample(420, probed, 0, 0.0, wire_kbps=420,
                                     peak_delay_s=PROBE_FAILED_S))
    assert filled.target_kbps == min(target, round(0.8 * 420)) and not filled.link_short


def test_the_acknowledged_rate_is_the_ceiling_less_overhead_and_audio() -> None:
    ctrl = BitrateController(WIDE, other_kbps=32, start_kbps=1500)
    # the sender handed 1500 kbit/s to the socket, the server acknowledged 500 of which
    # 10 % is framing: 0.8 × 500 / 1.1 - 32 for the video, less what is queued in the path
    # past the allowance, drained over 3 s
    sample = LinkSample(1500, 1500, 0, 0.0, rtt_ms=1060, min_rtt_ms=60, wire_kbps=500,
                        overhead=1.1)
    drained = 1.0 * 500 - 0.15 * (1500 + 32)  # the path holds 1 s at 500 kbit/s
    assert ctrl.tick(0.0, sample).target_kbps == round(0.8 * 500 / 1.1 - 32 - drained / 3)


def run_empty(ctrl: BitrateController, start: float, end: float, step: float = 0.5,
              encoder_share: float = 1.0) -> list[tuple[float, BitrateDecision]]:
    out = []
    t = start
    while t <= end + 1e-9:
        out.append((t, ctrl.tick(t, empty(ctrl.target_kbps * encoder_share))))
        t += step
    return out


def changes(trace: list[tuple[float, BitrateDecision]]) -> list[tuple[float, int]]:
    seen: list[tuple[float, int]] = []
    for t, d in trace:
        if not seen or seen[-1][1] != d.target_kbps:
            seen.append((t, d.target_kbps))
    return seen


def test_probes_are_slow_near_the_last_limit_and_resume_pace_past_it() -> None:
    ctrl = BitrateController(WIDE, start_kbps=1000)
    ctrl.tick(0.0, congested(500))  # link carried 500: target 400
    trace = run_empty(ctrl, 0.5, 22.0)  # (probes start from what was carried: rounded)
    assert changes(trace) == [
        (0.5, 400),
        (2.0, 448),  # first probe after the 2 s hold, +12 %
        (3.5, 470),  # from 95 % of the 500 the link carried: +5 %, 1.5 s apart
        (5.0, 494),
        (6.5, 518),
        (8.0, 544),
        (9.5, 571),
        (11.0, 600),  # carried 3 s past 575 (1.15 × 500): that limit is forgotten...
        (12.5, 671),  # ...+12 %
        (13.5, 792),  # +18 % a second while the probes hold
        (14.5, 934),
        (15.5, 1102),
        (16.5, 1300),
        (17.5, 1534),
        (18.5, 1810),
        (19.5, 2000),
    ]


def test_probing_stops_at_the_ceiling_and_while_the_encoder_idles() -> None:
    ctrl = BitrateController(WIDE, start_kbps=1000)
    ctrl.tick(0.0, congested(1300))  # 1040 > 1000: no drop, but the link memory is 1300
    assert [d.target_kbps for _, d in run_empty(ctrl, 0.5, 30.0, encoder_share=0.5)] == [1000] * 60
    top = BitrateController(WIDE)
    assert {d.target_kbps for _, d in run_empty(top, 0.0, 30.0)} == {2000}


def test_a_queue_between_empty_and_congested_holds_the_target() -> None:
    ctrl = BitrateController(WIDE, start_kbps=1000)
    decisions = [ctrl.tick(t * 0.5, LinkSample(1000, 1000, 20_000, 0.17)) for t in range(40)]
    assert {d.target_kbps for d in decisions} == {1000}
    assert not any(d.link_short for d in decisions)


def test_link_short_is_one_episode_until_five_quiet_seconds() -> None:
    ctrl = BitrateController(WIDE, start_kbps=1000)
    flags = [(ctrl.tick(0.0, congested(500)).link_short_began, ctrl.link_short)]
    flags.append((ctrl.tick(0.5, congested(500)).link_short_began, ctrl.link_short))
    quiet = run_empty(ctrl, 1.0, 6.0)
    assert flags == [(True, True), (False, True)]
    assert [(t, d.link_short) for t, d in quiet if not d.link_short] == [(5.5, False), (6.0, False)]
    assert not any(d.link_short_began for _, d in quiet)
    assert ctrl.tick(6.5, congested(500)).link_short_began  # a new episode


def test_floor_that_the_link_cannot_carry_steps_resolution_down_after_one_second() -> None:
    ladder = resolution_ladder(960, 540, 600, 1200)
    ctrl = BitrateController(ladder)
    steps = [ctrl.tick(t, congested(400)) for t in (0.0, 0.5, 1.0, 1.5)]
    assert [d.resolution_step for d in steps] == [0, 0, -1, 0]
    assert [d.rung.width for d in steps] == [960, 960, 720, 720]
    assert [d.target_kbps for d in steps] == [600, 600, 338, 338]


def test_resolution_jumps_to_the_largest_rung_the_link_carries() -> None:
    ctrl = BitrateController(resolution_ladder(960, 540, 600, 1200))
    steps = [ctrl.tick(t, congested(200)) for t in (0.0, 0.5, 1.0)]
    assert [d.resolution_step for d in steps] == [0, 0, -2]
    assert steps[-1].rung.width == 480


@pytest.mark.parametrize(("link", "steps_down"), [(650, True), (700, False)])
def test_a_floor_carried_with_less_than_15_percent_headroom_steps_down(
    link: float, steps_down: bool,
) -> None:
    ctrl = BitrateController(resolution_ladder(960, 540, 600, 1200))
    decisions = [ctrl.tick(t * 0.5, congested(link)) for t in range(6)]
    assert any(d.resolution_step for d in decisions) is steps_down


def step_up_time(ctrl: BitrateController, start: float) -> tuple[float, float]:
    """Ticks with an empty queue from `start`: (time the rung ceiling was reached, time of the
    step up)."""
    t, reached = start, None
    while t < start + 600:
        decision = ctrl.tick(t, empty(ctrl.target_kbps))
        if decision.resolution_step:
            assert decision.resolution_step == 1 and reached is not None
            return reached, t
        if reached is None and decision.target_kbps >= round(decision.rung.max_kbps):
            reached = t
        t += 0.5
    raise AssertionError("no step up")


def test_step_up_after_carrying_the_lower_ceiling_and_backoff_when_it_fails() -> None:
    ctrl = BitrateController(resolution_ladder(960, 540, 600, 1200))
    for t in (0.0, 0.5, 1.0):
        ctrl.tick(t, congested(450))
    assert ctrl.rung.width == 720
    waits = []
    start = 1.5
    for _ in range(3):
        reached, stepped = step_up_time(ctrl, start)
        waits.append(stepped - reached)
        assert ctrl.rung.width == 960 and ctrl.target_kbps == 780  # what the link carried
        # the link has not improved: the upper floor fails again within the probation time
        for t in (stepped + 1.0, stepped + 1.5, stepped + 2.0):
            ctrl.tick(t, congested(450))
        assert ctrl.rung.width == 720
        start = stepped + 2.5
    assert waits == pytest.approx([STEP_UP_AFTER_S, 2 * STEP_UP_AFTER_S, 4 * STEP_UP_AFTER_S],
                                  abs=0.6)


def test_a_step_down_long_after_a_step_up_resets_the_wait() -> None:
    ctrl = BitrateController(resolution_ladder(960, 540, 600, 1200))
    for t in (0.0, 0.5, 1.0):
        ctrl.tick(t, congested(450))
    _, stepped = step_up_time(ctrl, 1.5)
    run_empty(ctrl, stepped + 0.5, stepped + 60.0)
    late = stepped + 60.5
    for t in (late, late + 0.5, late + 1.0):
        ctrl.tick(t, congested(450))
    reached, again = step_up_time(ctrl, late + 1.5)
    assert again - reached == pytest.approx(STEP_UP_AFTER_S, abs=0.6)


samples = st.builds(
    LinkSample,
    send_kbps=st.floats(0, 3000),
    encoder_kbps=st.floats(0, 3000),
    backlog_bytes=st.integers(0, 2_000_000),
    backlog_s=st.floats(0, 10),
    mux_blocked=st.booleans(),
)


@given(st.lists(st.tuples(st.floats(0.1, 3.0), samples), min_size=1, max_size=80))
def test_any_input_keeps_the_target_inside_the_current_rung(
    ticks: list[tuple[float, LinkSample]],
) -> None:
    ladder = resolution_ladder(1280, 720, 600, 1800)
    ctrl = BitrateController(ladder, other_kbps=64)
    now, rung, short = 0.0, 0, False
    for gap, sample in ticks:
        now += gap
        d = ctrl.tick(now, sample)
        assert round(d.rung.min_kbps) <= d.target_kbps <= round(d.rung.max_kbps)
        rung -= d.resolution_step
        assert d.rung == ladder[rung]
        assert d.link_short_began == (d.link_short and not short)
        short = d.link_short


# -- a fluid model of the uplink: the sender queue is a FIFO of frames, the link drains it


@dataclass
class Trace:
    t: float
    target: int
    width: int
    backlog_s: float
    began: bool
    step: int


def simulate(ladder: tuple[Rung, ...], link_kbps: Callable[[float], float], duration: float,
             audio_kbps: float = 32.0, seed: int = 1) -> list[Trace]:
    """20 fps with a key frame (4× an average frame) every 2 s and ±20 % noise; the encoder
    follows a new target within ~0.5 s (VBV); the controller ticks every 0.5 s."""
    dt, fps, gop = 0.05, 20, 40
    rng = random.Random(seed)
    ctrl = BitrateController(ladder, other_kbps=audio_kbps)
    queue: deque[list[float]] = deque()  # [time queued, kbit left]
    encoder = float(ctrl.target_kbps)
    sent = produced = 0.0
    blocked = False
    trace = []
    for i in range(round(duration / dt)):
        t = i * dt
        encoder += (ctrl.target_kbps - encoder) * dt / 0.5
        share = 4.0 if i % gop == 0 else (gop - 4) / (gop - 1)
        frame = encoder / fps * share * (1 + rng.uniform(-0.2, 0.2))
        produced += frame
        queue.append([t, frame + audio_kbps * dt])
        budget = link_kbps(t) * dt
        while queue and budget > 0:
            take = min(budget, queue[0][1])
            queue[0][1] -= take
            budget -= take
            sent += take
            if queue[0][1] <= 1e-9:
                queue.popleft()
        blocked = blocked or bool(queue)
        if (i + 1) % 10 == 0:
            now = (i + 1) * dt
            backlog_s = now - queue[0][0] if queue else 0.0
            backlog_kbit = sum(chunk[1] for chunk in queue)
            d = ctrl.tick(now, LinkSample(sent / 0.5, produced / 0.5, int(backlog_kbit * 125),
                                          backlog_s, blocked))
            trace.append(Trace(now, d.target_kbps, d.rung.width, backlog_s,
                               d.link_short_began, d.resolution_step))
            sent = produced = 0.0
            blocked = False
    return trace


def step_link(t: float) -> float:
    return 400.0 if 20 <= t < 60 else 1500.0


@pytest.mark.parametrize(
    ("width", "height", "min_kbps", "max_kbps", "recover_s"),
    [(640, 360, 300, 800, 40), (640, 360, 200, 1000, 40), (960, 540, 600, 1200, 75)],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_follows_a_1500_400_1500_link_and_climbs_back(
    width: int, height: int, min_kbps: int, max_kbps: int, recover_s: float, seed: int,
) -> None:
    trace = simulate(resolution_ladder(width, height, min_kbps, max_kbps), step_link, 180,
                     seed=seed)
    audio = 32
    before = [r for r in trace if r.t < 20]
    assert all(r.target == max_kbps and r.backlog_s < 0.3 for r in before)
    # below the link within 10 s of the drop, and it stays there but for brief probes
    first_below = next(r.t for r in trace if r.t > 20 and r.target + audio <= 400)
    assert first_below - 20 <= 2.0
    assert all(r.target + audio <= 400 for r in trace if first_below <= r.t < 30)
    settled = [r for r in trace if 30 <= r.t < 60]
    # A probe past the link shows here only once the box queues (the model has no RTT
    # and no unsent bytes, the pusher's earlier signals), and a queue under LOW_BACKLOG_S
    # counts as empty: one or two probes past it.
    assert all(r.target + audio <= 400 * 1.45 for r in settled)
    mean = sum(r.target for r in settled) / len(settled)
    assert 0.7 * (400 - audio) <= mean <= 400 - audio
    # the queue is bounded: a transient at the drop, then well under a second
    assert max(r.backlog_s for r in trace) < 3.5
    assert max(r.backlog_s for r in trace if r.t >= 30) < 0.8  # a probe past it: see below
    # 1101 once for the drop, and then rarely (probes finding the limit again)
    began = [r.t for r in trace if r.began]
    assert began[0] == pytest.approx(20.5, abs=0.6)
    assert len(began) <= 4
    # back to the ceiling at full size after the link returns, and it stays there
    back = next(r.t for r in trace if r.t > 60 and r.target == max_kbps and r.width == width)
    assert back - 60 <= recover_s
    assert all(r.target == max_kbps and r.width == width for r in trace if r.t >= back)


def test_a_steady_link_between_two_rungs_does_not_flip_resolution() -> None:
    trace = simulate(resolution_ladder(960, 540, 600, 1200), lambda t: 650.0, 300)
    assert [(r.t, r.step) for r in trace if r.step] == [(1.5, -1)]
    late = [r for r in trace if r.t >= 30]
    assert max(r.backlog_s for r in late) < 0.6
    assert 0.7 * 618 <= sum(r.target for r in late) / len(late) <= 618


def test_a_simple_scene_at_a_lower_rung_steps_up_although_it_never_fills_the_ceiling() -> None:
    ctrl = BitrateController(resolution_ladder(960, 540, 400, 900))
    for t in (0.0, 0.5, 1.0):
        ctrl.tick(t, congested(350))
    assert ctrl.rung.width == 720
    # the link is back; the scene needs 150 kbit/s at 720x405, under 60 % of any target
    steps = [(t / 2, ctrl.tick(t / 2, empty(150)).resolution_step) for t in range(3, 40)]
    up = [t for t, step in steps if step]
    assert len(up) == 1 and up[0] - 1.5 == pytest.approx(STEP_UP_AFTER_S, abs=0.6)
    assert ctrl.rung.width == 960 and ctrl.target_kbps == 400


def test_encoder_load_fires_with_ticks_a_little_over_a_second_apart() -> None:
    """A loaded box ticks late (1.05 s apart): overload must still be seen within ~4 s."""
    from edgelive.policy.bitrate import OVERLOAD_AFTER_S, EncoderLoad

    slow, fine = EncoderLoad(), EncoderLoad()
    fired_at = None
    for n in range(12):
        now = n * 1.05
        if slow.overloaded(now, frames=25, busy_s=25 * 0.060, fps=25) and fired_at is None:
            fired_at = now
        assert not fine.overloaded(now, frames=25, busy_s=25 * 0.020, fps=25)
    assert fired_at is not None and OVERLOAD_AFTER_S * 0.8 <= fired_at <= OVERLOAD_AFTER_S + 1.1
