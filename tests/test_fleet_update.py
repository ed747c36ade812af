"""`edgelive fleet update --group` across simulated boxes (each its own process) on a real
broker: canaries first, then batches; the rollout stops at the first rollback and says
which box and why; `--offer` and Home Assistant's Install."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgelive import __version__
from edgelive.cli import main
from edgelive.fleet.homeassistant import UPDATE_INSTALL
from edgelive.fleet.operator import rollout_plan
from edgelive.fleet.topics import BoxTopics
from tests.servers import Mosquitto
from tests.test_fleet_agent import Probe
from tests.test_fleet_cli import wait_listed

SHA = "ab" * 32
REASON = "not healthy within 120 s: pusher not live (no 1002)"


@pytest.fixture
def lab(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[None]:
    """cam1…cam5 in group lab; cam3 rolls every update back."""
    procs = [subprocess.Popen([sys.executable, "-m", "edgelive.fleet.simulated", "--port",
                               str(mosquitto.port), "--id", box, "--group", "lab",
                               "--state-dir", str(tmp_path / box),
                               *(["--fail-update", REASON] if box == "cam3" else [])])
             for box in ("cam1", "cam2", "cam3", "cam4", "cam5")]
    yield
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def fleet(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str], *argv: str,
          ) -> tuple[int, list[str]]:
    code = main(["fleet", "--port", str(mosquitto.port), "--timeout", "3", *argv])
    return code, capsys.readouterr().out.splitlines()


def versions(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    _, lines = fleet(mosquitto, capsys, "ls")
    header = lines[0].split()
    col = header.index("VERSION")
    return {row.split()[0]: row.split()[col] for row in lines[1:]}


def test_rollout_plan() -> None:
    boxes = [f"b{i}" for i in range(7)]
    assert rollout_plan(boxes, 2, 3) == [["b0"], ["b1"], ["b2", "b3", "b4"], ["b5", "b6"]]
    assert rollout_plan(boxes[:1], 3, 5) == [["b0"]]
    assert rollout_plan(boxes[:3], 0, 5) == [["b0", "b1", "b2"]]
    with pytest.raises(ValueError):
        rollout_plan(boxes, 1, 0)


def test_rollout_stops_at_the_first_rollback_and_says_which_box_and_why(
        mosquitto: Mosquitto, lab: None, capsys: pytest.CaptureFixture[str]) -> None:
    wait_listed(mosquitto, capsys, 5)
    code, out = fleet(mosquitto, capsys, "update", "--group", "lab", "--url",
                      "http://releases.example/edgelive-9.9.bundle", "--version", "9.9",
                      "--sha256", SHA, "--canary", "1", "--batch", "2", "--wait", "20")
    assert code == 1
    assert out == [
        "cam1: updated: updated to 9.9 (from " + __version__ + ")",
        "cam2: updated: updated to 9.9 (from " + __version__ + ")",
        f"cam3: ROLLED BACK: {REASON}",
        f"rollout of 9.9 stopped: cam3 rolled back ({REASON}); not updated: cam4, cam5"]
    assert versions(mosquitto, capsys) == {"cam1": "9.9", "cam2": "9.9", "cam3": __version__,
                                           "cam4": __version__, "cam5": __version__}
    # again, without the failing box's group mates done: cam1 and cam2 are skipped
    code, out = fleet(mosquitto, capsys, "update", "--group", "lab", "--url",
                      "http://releases.example/edgelive-9.9.bundle", "--version", "9.9",
                      "--sha256", SHA, "--canary", "0", "--batch", "5", "--wait", "20")
    assert code == 1 and out[:2] == ["cam1: already on 9.9", "cam2: already on 9.9"]
    assert sorted(out[2:5]) == ["cam3: ROLLED BACK: " + REASON,
                                "cam4: updated: updated to 9.9 (from " + __version__ + ")",
                                "cam5: updated: updated to 9.9 (from " + __version__ + ")"]


def test_offer_then_home_assistant_install(mosquitto: Mosquitto, lab: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    wait_listed(mosquitto, capsys, 5)
    code, out = fleet(mosquitto, capsys, "update", "--group", "lab", "--url",
                      "http://releases.example/edgelive-9.8.bundle", "--version", "9.8",
                      "--sha256", SHA, "--offer")
    assert code == 0 and sorted(out) == [f"cam{i}: offered 9.8" for i in range(1, 6)]

    async def install() -> dict:
        topics = BoxTopics("edgelive", "cam2")
        async with Probe(mosquitto) as probe:
            await probe.session.subscribe(topics.state, 1)
            await probe.session.subscribe(topics.event, 1)
            probe.session.publish(topics.cmd("device", "update"), UPDATE_INSTALL.encode(), 1)
            while True:
                msg = await probe.next(10)
                doc = json.loads(msg.payload)
                if msg.topic == topics.state and doc.get("version") == "9.8":
                    return doc

    state = asyncio.run(install())
    assert state["update"]["offered"] == "9.8" and state["update"]["busy"] is False
    assert versions(mosquitto, capsys)["cam2"] == "9.8"
