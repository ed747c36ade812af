"""`tele/pusher` and `tele/player` from `edgelive run` with both workers streaming: exactly
the keys docs/mqtt-api.md lists, and one message per `telemetry-interval` (counted over a
window, so the margins hold on a loaded machine)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import statistics
import time
from pathlib import Path

from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.topics import BoxTopics
from tests.servers import Mosquitto, NginxRtmp
from tests.test_fleet_agent import Probe
from tests.test_mute_e2e import player_state
from tests.test_supervisor import BOX, box_config, operator, run_box  # noqa: F401

DOC = Path(__file__).resolve().parents[1] / "docs" / "mqtt-api.md"


def documented_keys(src: str) -> set[str]:
    """The keys docs/mqtt-api.md's row for `tele/<src>` lists (after its "every … s:")."""
    [row] = [line for line in DOC.read_text().splitlines()
             if line.startswith(f"| `tele/{src}` |")]
    return set(re.findall(r"`([A-Za-z]+)`", row.split(" s: ", 1)[1]))


WINDOW = 10.0


async def collect(probe: Probe, seconds: float) -> dict[str, list[tuple[float, dict]]]:
    """Every tele message for the next `seconds`: {src: [(arrival, payload), …]}."""
    while not probe.messages.empty():  # what arrived before the window
        probe.messages.get_nowait()
    got: dict[str, list[tuple[float, dict]]] = {"pusher": [], "player": []}
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            msg = await probe.next(left)
        except TimeoutError:
            break
        src = msg.topic.rsplit("/", 1)[1]  # pusher, player (others are not counted here)
        got.setdefault(src, []).append((time.monotonic(), json.loads(msg.payload)))
    return got


def check_rate(arrivals: list[tuple[float, dict]], interval: float) -> None:
    expected = WINDOW / interval
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    print(f"interval {interval} s: {len(arrivals)} messages in {WINDOW} s, median gap "
          f"{statistics.median(gaps):.2f} s")
    assert 0.7 * expected <= len(arrivals) <= expected + 1
    assert 0.8 * interval <= statistics.median(gaps) <= 1.25 * interval


def test_tele_messages_carry_netstatus_keys_every_interval(
        mosquitto: Mosquitto, nginx: NginxRtmp, run_box) -> None:  # noqa: F811
    url = nginx.url("tele")
    run_box(box_config(
        mosquitto,
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "keepalive": 5,
              "telemetry-interval": 2},
        pusher={"url": url, "source": "testsrc", "resolution": "320x180", "fps": 15,
                "audio-device": "tone", "autopush": True},
        player={"src": url, "sink": "offscreen", "screen-size": "320x180",
                "auto-pause-if-open-native": False}))
    topics = BoxTopics("edgelive", BOX)

    async def streaming(fleet: FleetOperator) -> None:
        assert await fleet.wait_online([BOX], timeout=20), "box never said online"
        assert await fleet.wait_until(lambda: (fleet.boxes[BOX].state or {}).get(
            "pusher", {}).get("state") == "pushing", 30), fleet.boxes[BOX].state
        # played once the stream is up: a player that opens it before the pusher's first
        # audio packet plays it without sound
        answer = await fleet.command(BOX, "player/play", {})
        assert answer.answers[BOX]["ok"], answer.answers
        assert await fleet.wait_until(
            lambda: (fleet.boxes[BOX].state or {}).get("pusher", {}).get("state") == "pushing"
            and player_state(fleet).get("state") == "playing", 30), fleet.boxes[BOX].state

    async def scenario() -> None:
        async with operator(mosquitto) as fleet, Probe(mosquitto) as probe:
            await streaming(fleet)
            await probe.session.subscribe(topics.tele("+"), 0)
            await asyncio.sleep(3)  # the stream settles: bitrate and fps over full seconds
            slow = await collect(probe, WINDOW)

            [outcome] = await fleet.set_config(BOX, {"mqtt": {"telemetry-interval": 1}})
            assert outcome.report["applied"]
            await streaming(fleet)  # the agent reconnected with the new interval
            fast = await collect(probe, WINDOW)

        # `pip` is there only with picture-in-picture, which this box does not show
        keys = {"pusher": documented_keys("pusher"), "player": documented_keys("player") - {"pip"}}
        assert {"videoBitrate", "rttMs"} <= keys["pusher"]
        assert {"videoBitrate", "audioVolume"} <= keys["player"]
        for src in ("pusher", "player"):
            check_rate(slow[src], 2.0)
            check_rate(fast[src], 1.0)
            ratio = len(fast[src]) / len(slow[src])
            print(f"{src}: {ratio:.2f}x the messages at half the interval")
            assert 1.5 <= ratio <= 2.6
            for _, doc in slow[src] + fast[src]:
                assert set(doc) == keys[src], \
                    f"{src}: undocumented {set(doc) - keys[src]}, missing {keys[src] - set(doc)}"
                assert (doc["videoWidth"], doc["videoHeight"]) == (320, 180)
                assert doc["videoBitrate"] > 0 and doc["audioBitrate"] > 0, doc
                assert 10 <= doc["videoFPS"] <= 20
        assert all(doc["state"] == "playing" for _, doc in slow["player"] + fast["player"])

    asyncio.run(asyncio.wait_for(scenario(), 150))
