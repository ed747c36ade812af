"""ReconnectPolicy: the seed's three fast attempts, then NET_DISCONNECT, then capped backoff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgelive.policy.reconnect import ReconnectPolicy, RetryDecision


def run(policy: ReconnectPolicy, failures: int) -> list[RetryDecision]:
    return [policy.failure() for _ in range(failures)]


def test_default_three_fast_attempts_then_disconnect_then_scheduled() -> None:
    decisions = run(ReconnectPolicy(), 7)
    assert [d.attempt for d in decisions] == [1, 2, 3, 4, 5, 6, 7]
    assert [d.delay for d in decisions] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert [d.gave_up_now for d in decisions] == [False, False, False, True, False, False, False]
    assert [d.scheduled for d in decisions] == [False, False, False, True, True, True, True]


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 20])
def test_exactly_attempts_fast_attempts(attempts: int) -> None:
    policy = ReconnectPolicy(attempts=attempts)
    decisions = run(policy, attempts + 5)
    fast = [d for d in decisions if not d.scheduled and d.delay is not None]
    assert len(fast) == attempts
    assert decisions[:attempts] == fast
    assert policy.exhausted
    assert sum(d.gave_up_now for d in decisions) == 1
    assert decisions[attempts].gave_up_now


def test_first_delay_at_most_one_second_and_growing() -> None:
    decisions = run(ReconnectPolicy(attempts=3, first_delay=1.0), 3)
    delays = [d.delay for d in decisions]
    assert delays[0] is not None and delays[0] <= 1.0
    assert delays == sorted(delays) and len(set(delays)) == 3


def test_scheduled_delays_are_capped_exponential() -> None:
    policy = ReconnectPolicy(attempts=3, first_delay=0.5, max_delay=60.0)
    delays = [d.delay for d in run(policy, 12)[3:]]
    assert delays == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0, 60.0]


def test_growth_one_keeps_a_constant_delay() -> None:
    delays = [d.delay for d in run(ReconnectPolicy(first_delay=0.7, growth=1.0), 8)]
    assert delays == [0.7] * 8


def test_a_day_of_retries_stays_at_the_cap() -> None:
    """Thousands of failures (a server down for days) neither overflow nor leave the cap."""
    policy = ReconnectPolicy(max_delay=60.0)
    decisions = run(policy, 5000)
    assert decisions[-1].delay == 60.0
    assert policy.failures == 5000


def test_give_up_stops_after_the_fast_attempts() -> None:
    policy = ReconnectPolicy(attempts=3, give_up=True)
    decisions = run(policy, 6)
    assert [d.delay for d in decisions[:3]] == [0.5, 1.0, 2.0]
    assert all(d.delay is None and not d.scheduled for d in decisions[3:])
    assert [d.gave_up_now for d in decisions] == [False, False, False, True, False, False]
    assert policy.exhausted


def test_success_resets_the_sequence() -> None:
    policy = ReconnectPolicy(attempts=3)
    first_round = run(policy, 6)
    assert policy.exhausted
    policy.success()
    assert policy.failures == 0 and not policy.exhausted
    second_round = run(policy, 6)
    assert second_round == first_round


def test_success_mid_sequence_restarts_fast_attempts() -> None:
    policy = ReconnectPolicy(attempts=3)
    run(policy, 2)
    policy.success()
    again = run(policy, 4)
    assert [d.delay for d in again] == [0.5, 1.0, 2.0, 4.0]
    assert [d.gave_up_now for d in again] == [False, False, False, True]


def test_exhausted_follows_failures() -> None:
    policy = ReconnectPolicy(attempts=2)
    states = []
    for _ in range(4):
        states.append(policy.exhausted)
        policy.failure()
    assert states == [False, False, False, True]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"first_delay": 0},
        {"first_delay": -1},
        {"first_delay": 2.0, "max_delay": 1.0},
        {"growth": 0.5},
    ],
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(**kwargs)  # type: ignore[arg-type]


@given(
    attempts=st.integers(1, 20),
    first_delay=st.floats(0.01, 1.0),
    max_delay=st.floats(1.0, 3600.0),
    growth=st.floats(1.0, 4.0),
    give_up=st.booleans(),
    failures=st.integers(1, 200),
)
def test_properties_hold_for_any_valid_policy(
    attempts: int, first_delay: float, max_delay: float, growth: float, give_up: bool,
    failures: int,
) -> None:
    policy = ReconnectPolicy(attempts, first_delay, max_delay, give_up, growth)
    decisions = run(policy, failures)
    assert sum(d.gave_up_now for d in decisions) == (1 if failures > attempts else 0)
    delays = [d.delay for d in decisions if d.delay is not None]
    assert all(first_delay <= d <= max_delay for d in delays)
    assert delays == sorted(delays)
    assert decisions[0].delay == first_delay
    if give_up:
        assert len(delays) == min(failures, attempts)
        assert not any(d.scheduled for d in decisions)
    else:
        assert len(delays) == failures
        assert [d.scheduled for d in decisions] == [i >= attempts for i in range(failures)]
