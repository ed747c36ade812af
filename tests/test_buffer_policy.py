"""The latency controller, playout clock and lag monitor: pure, with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgelive.policy.buffer import (
    CATCH_UP_RATE,
    SLOW_RATE,
    LagMonitor,
    LatencyController,
    PlayoutClock,
    jump_target,
    targets_for,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_live_waits_for_min_cache_then_plays_at_real_time() -> None:
    c = LatencyController(targets_for("live", 1.0, 3.0))
    assert c.update(0.5, has_frames=True).rate == 0.0
    d = c.update(1.0, has_frames=True)
    assert d.rate == 1.0 and not d.stall_ended  # the first start is not a stall end
    assert c.update(2.0, has_frames=True).rate == 1.0


def test_live_catches_up_above_max_and_slows_below_min_with_hysteresis() -> None:
    c = LatencyController(targets_for("live", 1.0, 3.0))
    c.update(1.0, True)
    assert c.update(3.2, True).rate == CATCH_UP_RATE
    assert c.update(2.5, True).rate == CATCH_UP_RATE  # until back at the middle (2.0)
    assert c.update(1.9, True).rate == 1.0
    assert c.update(0.8, True).rate == SLOW_RATE
    assert c.update(1.5, True).rate == SLOW_RATE
    assert c.update(2.0, True).rate == 1.0


def test_far_behind_jumps_to_a_key_frame() -> None:
    c = LatencyController(targets_for("live", 1.0, 3.0))
    c.update(1.0, True)
    assert c.update(4.6, True).jump_to_key


def test_rtc_keeps_under_300_ms() -> None:
    t = targets_for("RTC", 1.0, 3.0)
    assert t.high <= 0.3 and t.resume == 0.0
    c = LatencyController(t)
    assert c.update(0.0, True).rate == 1.0  # starts at once
    assert c.update(0.2, True).rate > 1.0
    assert not c.update(0.29, True).jump_to_key  # caught up by playing faster
    assert c.update(0.35, True).jump_to_key  # past 0.3 s: jump (or decode through)


def test_stall_and_recovery_are_reported_once() -> None:
    c = LatencyController(targets_for("live", 1.0, 3.0))
    c.update(1.0, True)
    d = c.update(-0.3, has_frames=False)
    assert d.stall_began and d.rate == 0.0
    assert not c.update(0.5, True).stall_ended  # below min-cache: still loading
    assert c.update(1.1, True).stall_ended


def test_jump_target_keeps_min_cache_when_it_can() -> None:
    keys = [10.0, 11.0, 12.0, 13.0]
    assert jump_target(keys, newest=13.5, position=9.0, keep=1.0) == 12.0
    assert jump_target(keys, newest=13.5, position=9.0, keep=0.0) == 13.0
    assert jump_target([13.0], newest=13.2, position=9.0, keep=1.0) == 13.0
    assert jump_target([9.1], newest=13.2, position=9.0, keep=1.0) is None


def test_playout_clock_rate_and_freeze() -> None:
    clock = FakeClock()
    pc = PlayoutClock(clock)
    pc.start(5.0)
    clock.t += 1.0
    assert pc.position() == pytest.approx(6.0)
    pc.set_rate(1.1)
    clock.t += 1.0
    assert pc.position() == pytest.approx(7.1)
    assert pc.due_in(7.21) == pytest.approx(0.1)
    pc.set_rate(0.0)
    clock.t += 5.0
    assert pc.position() == pytest.approx(7.1) and pc.due_in(8) == float("inf")


def test_lag_monitor_reports_each_gap_and_stall_once() -> None:
    clock = FakeClock()
    lag = LagMonitor(clock)
    lag.packet_arrived()
    clock.t += 0.4
    assert lag.recv_lag() is None
    clock.t += 0.2
    assert lag.recv_lag() == pytest.approx(0.6)
    assert lag.recv_lag() is None
    lag.stall_began()
    clock.t += 0.7
    assert lag.play_lag() == pytest.approx(0.7)
    assert lag.play_lag() is None


@given(st.lists(st.floats(-1.0, 40.0), min_size=1, max_size=200),
       st.sampled_from(["live", "RTC"]))
def test_controller_never_speeds_up_an_underfull_buffer(levels: list[float], mode: str) -> None:
    targets = targets_for(mode, 1.0, 3.0)
    c = LatencyController(targets)
    for level in levels:
        d = c.update(level, has_frames=level > 0)
        assert 0.0 <= d.rate <= 1.25
        if level < targets.low:
            assert d.rate <= 1.0
