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


def test_the_supervisors_button_toggles_privacy_and_a_hold_resets_to_the_boot_file(
        tmp_path) -> None:
    """The whole path: mock button pin → gpiozero thread → supervisor loop → store."""
    from edgelive.config.store import ConfigStore
    from edgelive.supervisor.box import Supervisor

    factory = MockFactory()
    store = ConfigStore(tmp_path / "state", tmp_path / "edgelive.toml")
    store.apply({"device": {"name": "configured over MQTT"}, "button": {"hold-seconds": 2}})

    async def scenario() -> None:
        box = Supervisor(store, BOARD, pin_factory=factory)
        seen: list[int] = []
        box.events.subscribe(lambda event: seen.append(event.code))
        running = asyncio.create_task(box.run())
        button = factory.pin(22)
        try:
            await asyncio.sleep(0.3)
            button.drive_low()
            await asyncio.sleep(0.1)
            button.drive_high()
            await asyncio.sleep(0.3)
            assert box.privacy is True and Code.PRIVACY_ON in seen

            # A new card file, then the 2 s hold: the box forgets its state and imports it.
            (tmp_path / "edgelive.toml").write_text('[device]\nname = "reprovisioned"\n')
            button.drive_low()
            await asyncio.sleep(1.0)
            assert Code.FACTORY_RESET not in seen  # not yet: a hold is 2 s
            await asyncio.sleep(1.5)
            button.drive_high()
            await asyncio.sleep(0.5)
            assert Code.FACTORY_RESET in seen
            assert box.config.device.name == "reprovisioned"
            assert box.config.button.hold_seconds == 10  # the default again
            assert (tmp_path / "edgelive.imported.toml").exists()
        finally:
            box.request_stop()
            await running

    asyncio.run(scenario())
