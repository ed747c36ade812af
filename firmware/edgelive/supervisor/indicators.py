"""LEDs and button glue: events and flags in, patterns out to the pins (SPEC §5).

The decision is `policy/leds.py`; the pins are `hw/gpio.py`. This module only keeps the
flags the supervisor knows, re-decides on every event and when a timed state expires, and
degrades to "no LEDs" on a machine without GPIO instead of failing the box.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgelive.config.schema import ButtonConfig, LedsConfig
from edgelive.hw.board import BoardProfile
from edgelive.policy.leds import IDENTIFY_S, LedFlags, LedPolicy, LedState

log = logging.getLogger(__name__)


class Indicators:
    def __init__(self, leds: LedsConfig, button: ButtonConfig, board: BoardProfile, *,
                 on_short_press: Callable[[], None], on_hold: Callable[[], None],
                 pin_factory: Any = None) -> None:
        self.policy = LedPolicy()
        self.flags = LedFlags()
        self.state = LedState.IDLE
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._leds = self._open_leds(leds, board, pin_factory)
        self._button = self._open_button(button, board, on_short_press, on_hold, pin_factory)

    @staticmethod
    def _open_leds(cfg: LedsConfig, board: BoardProfile, pin_factory: Any) -> Any:
        green, red = cfg.green_pin or board.green_led, cfg.red_pin or board.red_led
        if not (cfg.enabled and green and red):
            return None
        from edgelive.hw.gpio import ActLed, StatusLeds

        try:
            act = ActLed(Path(board.act_led)) if cfg.act_led and board.act_led else None
            return StatusLeds(green, red, cfg.active_high, pin_factory=pin_factory, act_led=act)
        except Exception as exc:  # no GPIO on this machine, pin busy, no permission
            log.warning("status LEDs disabled: %s", exc)
            return None

    @staticmethod
    def _open_button(cfg: ButtonConfig, board: BoardProfile, on_short_press: Callable[[], None],
                     on_hold: Callable[[], None], pin_factory: Any) -> Any:
        pin = cfg.pin or board.button
        if not (cfg.enabled and pin):
            return None
        from edgelive.hw.gpio import PushButton

        try:
            return PushButton(pin, cfg.hold_seconds, on_short_press, on_hold,
                              pin_factory=pin_factory)
        except Exception as exc:
            log.warning("button disabled: %s", exc)
            return None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.refresh()

    def observe(self, code: int, src: str) -> None:
        self.policy.observe(code, src, time.monotonic())
        self.refresh()

    def set_flags(self, **changes: Any) -> None:
        self.flags = replace(self.flags, **changes)
        self.refresh()

    def identify(self) -> None:
        self.set_flags(identify_until=time.monotonic() + IDENTIFY_S)

    def refresh(self) -> None:
        """Decide now, show it, and wake up again when a timed state ends."""
        now = time.monotonic()
        decision = self.policy.decide(self.flags, now)
        if decision.state != self.state:
            log.info("LEDs: %s", decision.state.value)
        self.state = decision.state
        if self._leds is not None:
            self._leds.show(decision.green, decision.red)
        if self._loop is not None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = (None if decision.until is None else
                           self._loop.call_later(decision.until - now + 0.01, self.refresh))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for device in (self._leds, self._button):
            if device is not None:
                device.close()
        self._leds = self._button = None
