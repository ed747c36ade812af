"""The probation decision: commit only after every expected signal held `hold` s; roll back
at the timeout saying what is missing; what was not running before is not asked for."""

from __future__ import annotations

import pytest

from edgelive.policy.probation import Expect, Probation, Signals, Verdict

ALL = Signals(ready=True, mqtt_online=True, pusher_live=True, player_live=True)


def test_commits_after_the_hold_when_everything_expected_is_back() -> None:
    p = Probation(Expect(mqtt=True, pusher=True), timeout=60, started=0, hold=5)
    assert p.decide(Signals(ready=True, mqtt_online=True), 1).verdict is Verdict.WAIT
    assert p.decide(ALL, 2).verdict is Verdict.WAIT  # healthy, holding
    assert p.decide(ALL, 6.9).verdict is Verdict.WAIT
    decision = p.decide(ALL, 7)
    assert decision.verdict is Verdict.COMMIT
    assert decision.reason == "healthy for 5 s: ready, MQTT online, pusher live"


def test_a_dip_restarts_the_hold() -> None:
    p = Probation(Expect(pusher=True), timeout=60, started=0, hold=5)
    p.decide(ALL, 1)
    p.decide(Signals(ready=True), 4)  # the stream fell over
    assert p.decide(ALL, 6).verdict is Verdict.WAIT
    assert p.decide(ALL, 10.9).verdict is Verdict.WAIT
    assert p.decide(ALL, 11).verdict is Verdict.COMMIT


def test_rolls_back_at_the_timeout_with_what_is_missing() -> None:
    p = Probation(Expect(mqtt=True, pusher=True, player=True), timeout=30, started=100)
    signals = Signals(ready=True, mqtt_online=True)
    assert p.decide(signals, 129.9).verdict is Verdict.WAIT
    decision = p.decide(signals, 130)
    assert decision.verdict is Verdict.ROLL_BACK
    assert decision.reason == "not healthy within 30 s: pusher not live (no 1002), " \
        "player not playing (no 2004)"
    assert "supervisor not ready" in p.decide(Signals(), 131).reason


def test_healthy_too_briefly_at_the_timeout_rolls_back() -> None:
    p = Probation(Expect(), timeout=10, started=0, hold=5)
    p.decide(Signals(ready=True), 8)
    decision = p.decide(Signals(ready=True), 10)
    assert decision == decision.__class__(Verdict.ROLL_BACK,
                                          "not healthy within 10 s: healthy too briefly")


def test_only_what_ran_before_is_expected() -> None:
    # no broker configured and nothing streaming before: ready is enough
    p = Probation(Expect(), timeout=60, started=0, hold=0)
    assert p.decide(Signals(ready=True), 0).verdict is Verdict.COMMIT
    # a player that played before must play again; the idle pusher is not asked for
    p = Probation(Expect(player=True), timeout=60, started=0, hold=0)
    assert p.decide(Signals(ready=True, pusher_live=True), 1).reason == \
        "player not playing (no 2004)"
    assert p.decide(Signals(ready=True, player_live=True), 2).verdict is Verdict.COMMIT


def test_invalid_settings_refused() -> None:
    with pytest.raises(ValueError):
        Probation(Expect(), timeout=0, started=0)
