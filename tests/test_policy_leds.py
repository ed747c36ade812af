"""LED policy: the SPEC §5 table, its priorities, and how codes set and clear each state."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from edgelive.codes import Code
from edgelive.policy.leds import (
    OFF,
    ON,
    PATTERNS,
    LedFlags,
    LedPolicy,
    LedState,
    Pattern,
    blink,
    flashes,
)

PUSHER, PLAYER, DEVICE = "pusher", "player", "device"


def levels(pattern: Pattern, seconds: float, step: float = 0.01) -> list[bool]:
    return [pattern.is_on(i * step) for i in range(round(seconds / step))]


def on_time(pattern: Pattern, seconds: float) -> float:
    return sum(levels(pattern, seconds)) * 0.01


def rising_edges(pattern: Pattern, seconds: float) -> int:
    lv = levels(pattern, seconds)
    return sum(1 for a, b in itertools.pairwise([False, *lv]) if b and not a)


# -- the table, row by row: (green, red) as blink rate or flashes


@pytest.mark.parametrize(
    ("state", "green", "red"),
    [
        (LedState.IDENTIFY, (0.1, 0.1), (0.1, 0.1)),
        (LedState.FATAL, "off", "on"),
        (LedState.GAVE_UP, "off", (0.5, 0.5)),
        (LedState.RECONNECTING, (0.125, 0.125), "off"),
        (LedState.LINK_SHORT, "on", (0.15, 1.85)),
        (LedState.MQTT_LOST, "on", (0.15, 0.15, 0.15, 1.55)),
        (LedState.HEALTH, "on", (0.15, 0.15, 0.15, 0.15, 0.15, 1.25)),
        (LedState.PRIVACY, (1.0, 1.0), "off"),
        (LedState.STREAMING, "on", "off"),
        (LedState.IDLE, (0.1, 2.9), "off"),
    ],
)
def test_table_patterns(state: LedState, green: object, red: object) -> None:
    expected = {"on": ON, "off": OFF}
    for actual, want in zip(PATTERNS[state], (green, red), strict=True):
        if isinstance(want, str):
            assert actual == expected[want]
        else:
            assert actual.durations == pytest.approx(want)


def test_pattern_levels_over_time() -> None:
    assert rising_edges(blink(5), 2.0) == 10
    assert on_time(blink(5), 2.0) == pytest.approx(1.0, abs=0.03)
    assert rising_edges(blink(4), 2.0) == 8
    assert rising_edges(blink(0.5), 4.0) == 2
    double = flashes(2, 2.0)
    assert rising_edges(double, 6.0) == 6
    assert on_time(double, 6.0) == pytest.approx(0.9, abs=0.02)
    idle = flashes(1, 3.0, on_s=0.1)
    assert rising_edges(idle, 9.0) == 3 and on_time(idle, 9.0) == pytest.approx(0.3, abs=0.02)
    assert not any(levels(OFF, 1.0)) and all(levels(ON, 1.0))
    with pytest.raises(ValueError):
        Pattern((0.1,))
    with pytest.raises(ValueError):
        Pattern((0.1, 0.0))


# -- priorities: every combination of active states shows the highest one

ORDER = list(LedState)[:-1]  # IDLE is what remains


def activate(policy: LedPolicy, flags: LedFlags, state: LedState, now: float) -> LedFlags:
    match state:
        case LedState.IDENTIFY:
            return replace(flags, identify_until=now + 10)
        case LedState.FATAL:
            policy.observe(Code.PUSH_ERR_OPEN_CAMERA_FAIL, PUSHER, now)
        case LedState.GAVE_UP:
            policy.observe(Code.PLAY_ERR_NET_DISCONNECT, PLAYER, now)
        case LedState.RECONNECTING:
            policy.observe(Code.WARNING_SERVER_CONN_FAIL, PUSHER, now)
        case LedState.LINK_SHORT:
            policy.observe(Code.PLAY_WARNING_RECV_DATA_LAG, PLAYER, now)
        case LedState.MQTT_LOST:
            return replace(flags, mqtt_lost=True, player_on=True)
        case LedState.HEALTH:
            return replace(flags, health_warning=True)
        case LedState.PRIVACY:
            return replace(flags, privacy=True)
        case LedState.STREAMING:
            return replace(flags, pusher_on=True)
    return flags


@pytest.mark.parametrize("mask", range(2 ** len(ORDER)))
def test_highest_priority_active_state_wins(mask: int) -> None:
    chosen = [s for i, s in enumerate(ORDER) if mask >> i & 1]
    policy, flags = LedPolicy(), LedFlags()
    for state in chosen:
        flags = activate(policy, flags, state, 100.0)
    decision = policy.decide(flags, 100.5)
    assert decision.state == (chosen[0] if chosen else LedState.IDLE)
    assert (decision.green, decision.red) == PATTERNS[decision.state]


def test_reconnecting_while_mqtt_lost_shows_reconnecting() -> None:
    policy = LedPolicy()
    policy.observe(Code.PUSH_WARNING_RECONNECT, PUSHER, 0.0)
    flags = LedFlags(mqtt_lost=True, pusher_on=True)
    assert policy.decide(flags, 1.0).state == LedState.RECONNECTING
    policy.observe(Code.PUSH_EVT_PUSH_BEGIN, PUSHER, 2.0)
    assert policy.decide(flags, 2.0).state == LedState.MQTT_LOST


# -- each state: which codes set it and which clear it


def test_idle_and_streaming_follow_the_session_flags() -> None:
    policy = LedPolicy()
    assert policy.decide(LedFlags(), 0.0).state == LedState.IDLE
    assert policy.decide(LedFlags(pusher_on=True), 0.0).state == LedState.STREAMING
    assert policy.decide(LedFlags(player_on=True), 0.0).state == LedState.STREAMING
    assert policy.decide(LedFlags(mqtt_lost=True), 0.0).state == LedState.IDLE  # not streaming


def test_identify_lasts_until_its_deadline() -> None:
    policy = LedPolicy()
    flags = LedFlags(identify_until=10.0, pusher_on=True)
    decision = policy.decide(flags, 0.0)
    assert decision.state == LedState.IDENTIFY and decision.until == 10.0
    assert policy.decide(flags, 9.99).state == LedState.IDENTIFY
    assert policy.decide(flags, 10.0).state == LedState.STREAMING


@pytest.mark.parametrize("code", [-1301, -1303, -1305, -1306])
def test_fatal_codes(code: int) -> None:
    policy = LedPolicy()
    policy.observe(code, PUSHER, 0.0)
    assert policy.decide(LedFlags(pusher_on=True), 1.0).state == LedState.FATAL
    policy.observe(Code.PUSH_STOPPED, PUSHER, 2.0)
    assert policy.decide(LedFlags(), 2.0).state == LedState.FATAL  # stopping fixes nothing


def test_camera_fault_clears_when_the_camera_opens_not_when_the_slate_streams() -> None:
    policy = LedPolicy()
    flags = LedFlags(pusher_on=True)
    policy.observe(Code.PUSH_ERR_OPEN_CAMERA_FAIL, PUSHER, 0.0)
    for code in (Code.PUSH_EVT_CONNECT_SUCC, Code.PUSH_EVT_PUSH_BEGIN):
        policy.observe(code, PUSHER, 1.0)
    assert policy.decide(flags, 1.0).state == LedState.FATAL
    policy.observe(Code.PUSH_EVT_OPEN_CAMERA_SUCC, PUSHER, 2.0)
    assert policy.decide(flags, 2.0).state == LedState.STREAMING


@pytest.mark.parametrize("code", [-1303, -1305, -1306])
def test_encoder_faults_clear_when_a_new_session_connects(code: int) -> None:
    policy = LedPolicy()
    flags = LedFlags(pusher_on=True)
    policy.observe(code, PUSHER, 0.0)
    policy.observe(Code.PUSH_EVT_OPEN_CAMERA_SUCC, PUSHER, 1.0)
    assert policy.decide(flags, 1.0).state == LedState.FATAL
    policy.observe(Code.PUSH_EVT_CONNECT_SUCC, PUSHER, 2.0)
    assert policy.decide(flags, 2.0).state == LedState.STREAMING


def test_config_rejected_at_boot_is_fatal() -> None:
    assert LedPolicy().decide(LedFlags(boot_config_rejected=True), 0.0).state == LedState.FATAL
    policy = LedPolicy()
    policy.observe(Code.CONFIG_REJECTED, DEVICE, 0.0)  # at run time: the old config keeps going
    assert policy.decide(LedFlags(), 0.0).state == LedState.IDLE


@pytest.mark.parametrize(("code", "src", "begin"), [(-1307, PUSHER, 1002), (-2301, PLAYER, 2004)])
def test_gave_up_until_streaming_again(code: int, src: str, begin: int) -> None:
    policy = LedPolicy()
    flags = LedFlags(pusher_on=True, player_on=True)
    policy.observe(code, src, 0.0)
    for later in (Code.PUSH_RETRY_SCHEDULED, Code.WARNING_SERVER_CONN_FAIL, Code.PUSH_STOPPED,
                  Code.PLAY_STOPPED):
        policy.observe(later, src, 1.0)
        assert policy.decide(flags, 1.0).state == LedState.GAVE_UP
    other_begin = 2004 if begin == 1002 else 1002
    policy.observe(other_begin, PLAYER if src == PUSHER else PUSHER, 2.0)
    assert policy.decide(flags, 2.0).state == LedState.GAVE_UP  # the other source is no cure
    policy.observe(begin, src, 3.0)
    assert policy.decide(flags, 3.0).state == LedState.STREAMING


RECONNECT_CASES = [(c, PUSHER, 1002) for c in (1102, 3001, 3002, 3003, 3004, 3005)] + [
    (c, PLAYER, 2004) for c in (2103, 3001, 3002, 3003)]


@pytest.mark.parametrize(("code", "src", "begin"), RECONNECT_CASES)
def test_reconnecting_until_media_flows(code: int, src: str, begin: int) -> None:
    policy = LedPolicy()
    flags = LedFlags(pusher_on=True)
    policy.observe(code, src, 0.0)
    assert policy.decide(flags, 60.0).state == LedState.RECONNECTING  # no timeout
    policy.observe(begin, src, 61.0)
    assert policy.decide(flags, 61.0).state == LedState.STREAMING


def test_reconnecting_ends_when_the_session_stops() -> None:
    policy = LedPolicy()
    policy.observe(Code.PLAY_WARNING_RECONNECT, PLAYER, 0.0)
    policy.observe(Code.PLAY_STOPPED, PLAYER, 1.0)
    assert policy.decide(LedFlags(), 1.0).state == LedState.IDLE


@pytest.mark.parametrize(("code", "src"), [(1101, PUSHER), (2104, PLAYER), (2105, PLAYER)])
def test_link_short_clears_after_five_quiet_seconds(code: int, src: str) -> None:
    policy = LedPolicy()
    flags = LedFlags(pusher_on=True)
    policy.observe(code, src, 10.0)
    first = policy.decide(flags, 10.0)
    assert first.state == LedState.LINK_SHORT and first.until == 15.0
    policy.observe(code, src, 13.0)  # a new one restarts the quiet period
    assert policy.decide(flags, 17.9).state == LedState.LINK_SHORT
    later = policy.decide(flags, 18.0)
    assert later.state == LedState.STREAMING and later.until is None


def test_mqtt_lost_only_while_streaming() -> None:
    policy = LedPolicy()
    assert policy.decide(LedFlags(mqtt_lost=True, pusher_on=True), 0).state == LedState.MQTT_LOST
    assert policy.decide(LedFlags(mqtt_lost=True, privacy=True), 0).state == LedState.PRIVACY


@pytest.mark.parametrize(("on", "off"), [(5000, 6024), (6023, 6024), (5000, 1002)])
def test_waiting_image_shows_as_privacy(on: int, off: int) -> None:
    policy = LedPolicy()
    flags = LedFlags(pusher_on=True)
    policy.observe(on, PUSHER, 0.0)
    assert policy.decide(flags, 1.0).state == LedState.PRIVACY
    policy.observe(Code.PUSH_STOPPED, PUSHER, 2.0)  # after waiting-timeout 5000 stays the state
    assert policy.decide(LedFlags(), 2.0).state == LedState.PRIVACY
    policy.observe(off, PUSHER, 3.0)
    assert policy.decide(flags, 3.0).state == LedState.STREAMING


def test_privacy_flag() -> None:
    decision = LedPolicy().decide(LedFlags(privacy=True), 0.0)
    assert (decision.state, decision.green, decision.red) == (LedState.PRIVACY, blink(0.5), OFF)


def test_until_is_the_nearest_timer() -> None:
    policy = LedPolicy()
    policy.observe(Code.PUSH_WARNING_NET_BUSY, PUSHER, 0.0)
    assert policy.decide(LedFlags(identify_until=3.0), 1.0).until == 3.0
    assert policy.decide(LedFlags(identify_until=30.0), 1.0).until == 5.0


def test_the_user_docs_list_every_state_in_priority_order() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "leds.md").read_text()
    rows = [line.split("|")[1].strip().strip("`") for line in doc.splitlines()
            if line.startswith("| `")]
    assert rows == [state.value for state in LedState]
