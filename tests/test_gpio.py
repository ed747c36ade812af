"""StatusLeds, ActLed and PushButton on gpiozero's MockFactory: pin histories and timings."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import LED, GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPin

from edgelive.hw.gpio import ActLed, PushButton, StatusLeds
from edgelive.policy.leds import OFF, ON, PATTERNS, Pattern, blink

TOLERANCE_S = 0.08  # thread wake-ups on a loaded two-core machine


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    mock = MockFactory()
    yield mock
    mock.reset()


def edges(pin: MockPin) -> list[tuple[float, bool]]:
    """(seconds since clear_states, level) of every change the pin went through."""
    times = itertools.accumulate(state.timestamp for state in pin.states[1:])
    return [(t, bool(state.state)) for t, state in zip(times, pin.states[1:], strict=True)]


def expected_edges(pattern: Pattern, window: float, active_high: bool = True) -> list[
        tuple[float, bool]]:
    """Pin changes a pattern makes in `window` seconds, starting from an unlit LED."""
    if not pattern.durations:
        return [(0.0, active_high)] if pattern.steady_on else []
    out, t = [], 0.0
    for index, duration in zip(itertools.count(), itertools.cycle(pattern.durations)):
        if t >= window:
            return out
        out.append((t, (index % 2 == 0) == active_high))
        t += duration
    raise AssertionError("unreachable")


def assert_edges_match(actual: list[tuple[float, bool]], expected: list[tuple[float, bool]],
                       window: float, label: str) -> None:
    actual = [e for e in actual if e[0] < window - TOLERANCE_S]
    expected = [e for e in expected if e[0] < window - TOLERANCE_S]
    assert [s for _, s in actual] == [s for _, s in expected], label
    for (got, _), (want, _) in zip(actual, expected, strict=True):
        assert got == pytest.approx(want, abs=TOLERANCE_S), label


def start(pins: list[MockPin]) -> None:
    for pin in pins:
        pin.clear_states()


@pytest.mark.slow
def test_every_table_state_plays_on_the_pins(factory: MockFactory) -> None:
    """All nine states at once (one LED pair each), watched for 3.6 s: enough for the idle
    flash every 3 s to come round twice."""
    window = 3.6
    pairs = []
    for index, state in enumerate(PATTERNS):
        green, red = factory.pin(4 + 2 * index), factory.pin(5 + 2 * index)
        leds = StatusLeds(4 + 2 * index, 5 + 2 * index, pin_factory=factory)
        pairs.append((state, leds, green, red))
    start([pin for _, _, g, r in pairs for pin in (g, r)])
    for state, leds, _, _ in pairs:
        leds.show(*PATTERNS[state])
    time.sleep(window)
    for state, leds, green, red in pairs:
        leds.close()
        for pin, pattern, colour in ((green, PATTERNS[state][0], "green"),
                                     (red, PATTERNS[state][1], "red")):
            assert_edges_match(edges(pin), expected_edges(pattern, window), window,
                               f"{state} {colour}")


def test_active_low_leds_drive_the_pin_low_to_light(factory: MockFactory) -> None:
    with StatusLeds(17, 27, active_high=False, pin_factory=factory) as leds:
        green, red = factory.pin(17), factory.pin(27)
        assert green.state and red.state  # both unlit = high
        start([green, red])
        leds.show(blink(4), ON)
        time.sleep(1.0)
    assert_edges_match(edges(green)[:8], expected_edges(blink(4), 1.0, active_high=False), 1.0,
                       "green")
    assert edges(red)[0] == (pytest.approx(0, abs=TOLERANCE_S), False)


def test_showing_the_same_patterns_again_keeps_the_phase(factory: MockFactory) -> None:
    with StatusLeds(17, 27, pin_factory=factory) as leds:
        green = factory.pin(17)
        start([green])
        leds.show(blink(1), OFF)
        time.sleep(0.25)
        leds.show(blink(1), OFF)
        time.sleep(1.3)
    assert_edges_match(edges(green), expected_edges(blink(1), 1.55), 1.55, "green")


def test_a_new_pattern_takes_over_at_once(factory: MockFactory) -> None:
    with StatusLeds(17, 27, pin_factory=factory) as leds:
        green, red = factory.pin(17), factory.pin(27)
        leds.show(ON, OFF)
        time.sleep(0.2)
        start([green, red])
        leds.show(OFF, Pattern((0.2, 0.2)))
        time.sleep(0.5)
    assert edges(green) == [(pytest.approx(0, abs=TOLERANCE_S), False)]
    assert [s for _, s in edges(red)][:2] == [True, False]
    assert edges(red)[1][0] == pytest.approx(0.2, abs=TOLERANCE_S)


def test_close_twice_turns_off_and_frees_the_pins(factory: MockFactory) -> None:
    leds = StatusLeds(17, 27, pin_factory=factory)
    leds.show(ON, ON)
    time.sleep(0.05)
    assert factory.pin(17).state and factory.pin(27).state
    leds.close()
    leds.close()
    assert not factory.pin(17).state and not factory.pin(27).state
    LED(17, pin_factory=factory).close()  # the pin is free again
    assert not [t for t in threading.enumerate() if t.name == "status-leds" and t.is_alive()]


def test_a_pin_in_use_fails_without_leaking_the_other(factory: MockFactory) -> None:
    busy = LED(27, pin_factory=factory)
    with pytest.raises(GPIOPinInUse):
        StatusLeds(17, 27, pin_factory=factory)
    busy.close()
    LED(17, pin_factory=factory).close()


@pytest.fixture
def act_dir(tmp_path: Path) -> Path:
    (tmp_path / "trigger").write_text("none rc-feedback [mmc0] timer heartbeat\n")
    (tmp_path / "brightness").write_text("0\n")
    return tmp_path


def test_act_led_mirrors_green_and_gives_the_trigger_back(factory: MockFactory,
                                                         act_dir: Path) -> None:
    leds = StatusLeds(17, 27, pin_factory=factory, act_led=ActLed(act_dir))
    assert (act_dir / "trigger").read_text() == "none"
    leds.show(ON, OFF)
    time.sleep(0.05)
    assert (act_dir / "brightness").read_text() == "1"
    leds.show(OFF, ON)
    time.sleep(0.05)
    assert (act_dir / "brightness").read_text() == "0"
    leds.close()
    leds.close()
    assert (act_dir / "trigger").read_text() == "mmc0"


def test_act_led_alone(act_dir: Path) -> None:
    with ActLed(act_dir) as act:
        act.set(True)
        assert (act_dir / "brightness").read_text() == "1"
    act.set(False)  # closed: the kernel owns it again
    assert (act_dir / "brightness").read_text() == "1"
    assert (act_dir / "trigger").read_text() == "mmc0"


class Presses:
    def __init__(self) -> None:
        self.short: list[float] = []
        self.hold: list[float] = []

    def button(self, factory: MockFactory, hold_s: float = 0.3) -> PushButton:
        return PushButton(22, hold_s, lambda: self.short.append(time.monotonic()),
                          lambda: self.hold.append(time.monotonic()), pin_factory=factory)


def test_short_press_toggles_and_hold_does_not(factory: MockFactory) -> None:
    presses = Presses()
    with presses.button(factory):
        pin = factory.pin(22)
        assert pin.state  # pulled up: not pressed
        for _ in range(2):
            pin.drive_low()
            time.sleep(0.05)
            pin.drive_high()
            time.sleep(0.05)
        assert (len(presses.short), len(presses.hold)) == (2, 0)
        pressed = time.monotonic()
        pin.drive_low()
        time.sleep(0.6)
        pin.drive_high()
        time.sleep(0.05)
    assert (len(presses.short), len(presses.hold)) == (2, 1)
    assert presses.hold[0] - pressed == pytest.approx(0.3, abs=TOLERANCE_S)


def test_a_press_after_a_hold_is_short_again(factory: MockFactory) -> None:
    presses = Presses()
    with presses.button(factory):
        pin = factory.pin(22)
        pin.drive_low()
        time.sleep(0.45)
        pin.drive_high()
        pin.drive_low()
        time.sleep(0.05)
        pin.drive_high()
        time.sleep(0.05)
    assert (len(presses.short), len(presses.hold)) == (1, 1)


def test_button_close_twice_frees_the_pin(factory: MockFactory) -> None:
    button = Presses().button(factory)
    button.close()
    button.close()
    led = LED(22, pin_factory=factory)  # raises GPIOPinInUse while the button holds the pin
    assert not led.closed
    led.close()
