"""Status LEDs and the push button over gpiozero; the Pi's ACT LED over sysfs (SPEC §5).

Every device takes `pin_factory` (tests pass gpiozero's MockFactory; None = gpiozero's
choice on the board). Patterns come from `policy/leds.py`; one thread per LED pair plays
both, sleeping until the next edge, so a double flash costs no more than a steady light.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from gpiozero import LED, Button

from edgelive.policy.leds import OFF, Pattern

ACT_LED_PATH = Path("/sys/class/leds/ACT")
LOOKAHEAD_S = 0.0005
"""Levels are read this far past the wake-up, so a wait that returns a hair early still
lands in the next segment instead of scheduling a zero-length sleep."""


class ActLed:
    """The board's activity LED: takes it from its kernel trigger, gives it back on close."""

    def __init__(self, path: Path = ACT_LED_PATH) -> None:
        self._path = path
        self._saved_trigger = _current_trigger((path / "trigger").read_text())
        (path / "trigger").write_text("none")
        self._on: bool | None = None
        self._closed = False

    def set(self, on: bool) -> None:
        if on != self._on and not self._closed:
            (self._path / "brightness").write_text("1" if on else "0")
            self._on = on

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        (self._path / "trigger").write_text(self._saved_trigger)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _current_trigger(listing: str) -> str:
    """sysfs lists every trigger and brackets the active one: `none [mmc0] timer`."""
    for word in listing.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return "none"


class StatusLeds:
    """The green (stream) and red (fault) LEDs, optionally mirroring green on the ACT LED."""

    def __init__(self, green_pin: int | str, red_pin: int | str, active_high: bool = True,
                 pin_factory: Any = None, act_led: ActLed | None = None) -> None:
        self._green = LED(green_pin, active_high=active_high, pin_factory=pin_factory)
        try:
            self._red = LED(red_pin, active_high=active_high, pin_factory=pin_factory)
        except Exception:
            self._green.close()
            raise
        self._act = act_led
        self._patterns: tuple[Pattern, Pattern] = (OFF, OFF)
        self._started = time.monotonic()
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._play, name="status-leds", daemon=True)
        self._thread.start()

    def show(self, green: Pattern, red: Pattern) -> None:
        """Play these patterns from their start; showing the current ones again changes nothing
        (a periodic refresh must not restart a blink)."""
        with self._changed:
            if (green, red) == self._patterns:
                return
            self._patterns = (green, red)
            self._started = time.monotonic()
            self._changed.notify()

    def _play(self) -> None:
        with self._changed:
            while not self._closed:
                elapsed = time.monotonic() - self._started + LOOKAHEAD_S
                green_on, green_left = self._patterns[0].segment(elapsed)
                red_on, red_left = self._patterns[1].segment(elapsed)
                self._set(self._green, green_on)
                self._set(self._red, red_on)
                if self._act is not None:
                    self._act.set(green_on)
                wait = min(green_left, red_left)
                self._changed.wait(None if wait == float("inf") else wait)

    @staticmethod
    def _set(led: LED, on: bool) -> None:
        if led.is_lit != on:
            led.value = on

    def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify()
        self._thread.join()
        for led in (self._green, self._red):
            led.off()
            led.close()
        if self._act is not None:
            self._act.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PushButton:
    """A short press and a long hold as two separate actions: a press that lasts until the
    hold fires is a hold only (a factory reset must not also toggle privacy)."""

    def __init__(self, pin: int | str, hold_seconds: float, on_short_press: Callable[[], None],
                 on_hold: Callable[[], None], pin_factory: Any = None,
                 bounce_s: float | None = None) -> None:
        self._on_short_press = on_short_press
        self._on_hold = on_hold
        self._held = False
        self._button = Button(pin, pull_up=True, bounce_time=bounce_s, hold_time=hold_seconds,
                              pin_factory=pin_factory)
        self._button.when_pressed = self._pressed
        self._button.when_held = self._hold
        self._button.when_released = self._released

    def _pressed(self) -> None:
        self._held = False

    def _hold(self) -> None:
        self._held = True
        self._on_hold()

    def _released(self) -> None:
        if not self._held:
            self._on_short_press()
        self._held = False

    def close(self) -> None:
        self._button.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
