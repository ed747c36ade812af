"""The supervisor's LED/button glue on gpiozero's mock pins: events in, pin levels out."""

from __future__ import annotations

import asyncio

from gpiozero.pins.mock import MockFactory

from edgelive.codes import Code
from edgelive.config.schema import ButtonConfig, LedsConfig
from edgelive.hw.board import BoardProfile
from edgelive.policy.leds import LedState
from edgelive.supervisor.indicators import Indicators

BOARD = BoardProfile(green_led="GPIO17", red_led="GPIO27", button="GPIO22")


def edges_during(seconds: float, *pins) -> list[int]:
    """Level changes each pin goes through in the next `seconds`."""
    for pin in pins:
        pin.clear_states()

    async def wait() -> list[int]:
        await asyncio.sleep(seconds)
        return [len(pin.states) - 1 for pin in pins]

    return wait()


def test_events_drive_the_pins_and_identify_expires_by_itself() -> None:
    factory = MockFactory()
    presses: list[str] = []

    async def scenario() -> None:
        ind = Indicators(LedsConfig(), ButtonConfig(hold_seconds=2), BOARD,
                         on_short_press=lambda: presses.append("short"),
                         on_hold=lambda: presses.append("hold"), pin_factory=factory)
        ind.attach(asyncio.get_running_loop())
        green, red = factory.pin(17), factory.pin(27)
        try:
            ind.set_flags(pusher_on=True)
            await asyncio.sleep(0.2)
            assert ind.state is LedState.STREAMING
            assert green.state is True and red.state is False

            ind.set_flags(mqtt_lost=True)
            ind.observe(Code.PUSH_WARNING_RECONNECT, "pusher")
            assert ind.state is LedState.RECONNECTING  # outranks MQTT lost
            [changes] = await edges_during(1.0, green)
            assert 6 <= changes <= 10  # 4 Hz blink: 8 edges a second
            assert red.state is False

            ind.observe(Code.PUSH_EVT_PUSH_BEGIN, "pusher")
            assert ind.state is LedState.MQTT_LOST

            ind.identify()
            assert ind.state is LedState.IDENTIFY
            changes = await edges_during(1.0, green, red)
            assert min(changes) >= 8  # 5 Hz on both: 10 edges a second

            factory.pin(22).drive_low()
            await asyncio.sleep(0.05)
            factory.pin(22).drive_high()
            await asyncio.sleep(0.05)
            assert presses == ["short"]
        finally:
            ind.close()
            ind.close()

    asyncio.run(scenario())


def test_identify_times_out_and_the_state_below_shows_again(monkeypatch) -> None:
    monkeypatch.setattr("edgelive.supervisor.indicators.IDENTIFY_S", 0.3)
    factory = MockFactory()

    async def scenario() -> None:
        ind = Indicators(LedsConfig(), ButtonConfig(enabled=False), BOARD,
                         on_short_press=lambda: None, on_hold=lambda: None,
                         pin_factory=factory)
        ind.attach(asyncio.get_running_loop())
        try:
            ind.identify()
            assert ind.state is LedState.IDENTIFY
            await asyncio.sleep(0.5)  # nothing else happens: the timer re-decides
            assert ind.state is LedState.IDLE
        finally:
            ind.close()

    asyncio.run(scenario())


def test_no_pins_on_this_board_means_no_leds_but_state_is_still_known() -> None:
    ind = Indicators(LedsConfig(), ButtonConfig(), BoardProfile(),
                     on_short_press=lambda: None, on_hold=lambda: None)
    ind.observe(Code.PUSH_ERR_OPEN_CAMERA_FAIL, "pusher")
    assert ind.state is LedState.FATAL
    ind.close()
