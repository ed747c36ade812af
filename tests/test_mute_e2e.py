"""The Home Assistant "Mute" switch against `edgelive run`: its exact payloads, the state it
reads back, and the sound on the player's audio output (SDL's disk driver writes the samples
the device would play)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.topics import BoxTopics, ha_discovery
from tests.servers import Mosquitto, NginxRtmp
from tests.test_fleet_agent import Probe
from tests.test_player_e2e import ffmpeg_push, stop
from tests.test_supervisor import BOX, box_config, operator, run_box  # noqa: F401
from tests.test_verbs import ha_render

DRAIN = 0.6  # sound queued before a switch plays out first (the player keeps < 0.5 s queued)


def player_state(fleet: FleetOperator) -> dict:
    """The box's retained `state.player` as the fleet sees it ({} before it arrived)."""
    return (fleet.boxes[BOX].state or {}).get("player", {})


class AudioOut:
    """The float32 samples the player's speaker writes to the disk driver's file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def rms(self, seconds: float = 1.0) -> tuple[float, int]:
        """RMS and sample count of what is played over the next `seconds`."""
        mark = self.path.stat().st_size
        await asyncio.sleep(seconds)
        data = self.path.read_bytes()[mark - mark % 4:]
        samples = np.frombuffer(data[:len(data) - len(data) % 4], dtype=np.float32)
        return float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0, \
            samples.size


@pytest.fixture
def speaker(mosquitto: Mosquitto, nginx: NginxRtmp, run_box,  # noqa: F811
            tmp_path: Path) -> Iterator[AudioOut]:
    """A box playing a 440 Hz tone that ffmpeg publishes, its speaker on SDL's disk driver."""
    sound = tmp_path / "speaker.raw"
    publisher = ffmpeg_push(nginx.url("tone"))
    try:
        run_box(box_config(mosquitto, player={
            "src": nginx.url("tone"), "autoplay": True, "sink": "offscreen",
            "screen-size": "320x180", "auto-pause-if-open-native": False}),
            SDL_AUDIODRIVER="disk", SDL_DISKAUDIOFILE=str(sound))
        yield AudioOut(sound)
    finally:
        stop(publisher)


def test_home_assistant_mute_switch_mutes_on_on_and_unmutes_on_off(
        mosquitto: Mosquitto, speaker: AudioOut) -> None:
    topics = BoxTopics("edgelive", BOX)

    async def scenario() -> None:
        async with operator(mosquitto) as fleet, Probe(mosquitto) as ha:
            assert await fleet.wait_online([BOX], timeout=20), "box never said online"
            await ha.session.subscribe(ha_discovery(BOX), 1)
            discovery = json.loads((await ha.next(10)).payload)
            [switch] = [c for c in discovery["cmps"].values() if c.get("name") == "Mute"]
            assert switch["p"] == "switch" and switch["cmd_t"] == topics.cmd("player", "mute")
            await ha.session.subscribe(topics.res("player/mute"), 1)

            def shown() -> str:  # what HA's switch shows, from the retained state
                return ha_render(switch["val_tpl"], value_json=fleet.boxes[BOX].state)

            async def turn(value: str) -> dict:
                ha.session.publish(switch["cmd_t"], ha_render(switch["cmd_tpl"], value=value),
                                   1)
                answer = json.loads((await ha.next(10)).payload)
                assert answer["ok"], answer
                assert await fleet.wait_until(lambda: shown() == value, 5), \
                    fleet.boxes[BOX].state
                await asyncio.sleep(DRAIN)
                return answer

            assert await fleet.wait_until(
                lambda: player_state(fleet).get("state") == "playing", 30), \
                fleet.boxes[BOX].state
            await asyncio.sleep(1.0)  # the speaker is open and the tone flows
            assert shown() == "OFF"
            before, count = await speaker.rms()
            print(f"unmuted RMS {before:.4f} over {count} samples")
            assert count > 24000 and before > 0.05  # ffmpeg's sine is 1/8 full scale

            answer = await turn("ON")
            assert answer["result"]["muted"] is True
            on, count = await speaker.rms()
            print(f"switch ON (muted) RMS {on:.6f} over {count} samples")
            assert count > 24000 and on < 1e-4

            answer = await turn("OFF")
            assert answer["result"]["muted"] is False
            off, count = await speaker.rms()
            print(f"switch OFF (sound on) RMS {off:.4f} over {count} samples")
            assert count > 24000 and off > 0.05

            # the box's own config is not what the switch changed: state follows the player
            assert fleet.boxes[BOX].reported["config"]["player"]["muted"] is False

    asyncio.run(scenario())


def test_commanded_mute_survives_a_worker_restart_and_a_live_config_change(
        mosquitto: Mosquitto, speaker: AudioOut) -> None:
    """The player is told again what it was commanded: device/restart and a config line for
    another key do not unmute it; a change of `player.muted` in the config wins over it."""

    async def scenario() -> None:
        async with operator(mosquitto) as fleet:
            assert await fleet.wait_online([BOX], timeout=20), "box never said online"
            def player() -> dict:
                return player_state(fleet)

            assert await fleet.wait_until(lambda: player().get("state") == "playing", 30)
            answer = await fleet.command(BOX, "player/mute", {"on": True})
            assert answer.answers[BOX]["ok"] and answer.answers[BOX]["result"]["muted"]

            [outcome] = await fleet.set_config(BOX, {"player": {"object-fit": "fillCrop"}})
            assert outcome.report["applied"]
            answer = await fleet.command(BOX, "device/restart", {})
            assert answer.answers[BOX]["ok"], answer.answers
            await asyncio.sleep(1.0)
            assert await fleet.wait_until(lambda: player().get("state") == "playing", 30)
            assert player()["muted"] is True
            await asyncio.sleep(1.0)  # the restarted player's speaker is open (new file)
            level, count = await speaker.rms()
            print(f"restarted, still muted: RMS {level:.6f} over {count} samples")
            assert count > 24000 and level < 1e-4

            answer = await fleet.command(BOX, "player/mute", {})  # a toggle: sound on
            assert answer.answers[BOX]["result"]["muted"] is False
            await asyncio.sleep(DRAIN)
            level, count = await speaker.rms()
            print(f"toggled back on: RMS {level:.4f} over {count} samples")
            assert level > 0.05

            [outcome] = await fleet.set_config(BOX, {"player": {"muted": True}})
            assert outcome.report["applied"]
            assert await fleet.wait_until(lambda: player().get("muted") is True, 5)
            await asyncio.sleep(DRAIN)
            level, count = await speaker.rms()
            print(f"player.muted = true: RMS {level:.6f} over {count} samples")
            assert count > 24000 and level < 1e-4

    asyncio.run(asyncio.wait_for(scenario(), 120))
