"""`edgelive fleet` against boxes running as their own processes on a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgelive.cli import main
from edgelive.cli.fleet_cmd import parse_assignments
from tests.servers import Mosquitto


@pytest.fixture
def boxes(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-m", "edgelive.fleet.simulated",
                               "--port", str(mosquitto.port), "--id", box,
                               "--state-dir", str(tmp_path / box), *group])
             for box, group in (("cam1", ["--group", "lobby"]), ("cam2", []))]
    yield
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def fleet(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str], *argv: str,
          ) -> tuple[int, str]:
    code = main(["fleet", "--port", str(mosquitto.port), "--timeout", "3", *argv])
    return code, capsys.readouterr().out


def wait_listed(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str], n: int) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, out = fleet(mosquitto, capsys, "ls")
        if len(out.splitlines()) == n + 1:
            return out
        time.sleep(0.2)
    raise AssertionError(f"boxes not online: {out}")


def test_parse_assignments_nests_and_types_values() -> None:
    assert parse_assignments(["pusher.max-bitrate=900", "pusher.url=rtmp://h/a",
                              "device.groups=[\"a\"]", "player.muted=true"]) == {
        "pusher": {"max-bitrate": 900, "url": "rtmp://h/a"}, "device": {"groups": ["a"]},
        "player": {"muted": True}}
    with pytest.raises(ValueError):
        parse_assignments(["novalue"])


def test_ls_get_set_cmd(mosquitto: Mosquitto, boxes: None,
                        capsys: pytest.CaptureFixture[str]) -> None:
    out = wait_listed(mosquitto, capsys, 2)
    header, cam1, cam2 = (line.split() for line in out.splitlines())
    assert header[:3] == ["ID", "STATUS", "PUSHER"]
    assert cam1[:3] == ["cam1", "online", "idle"] and cam1[-1] == "lobby"
    assert cam2[:3] == ["cam2", "online", "idle"]

    code, out = fleet(mosquitto, capsys, "set", "lobby", "pusher.max-bitrate=900")
    assert (code, out) == (0, "cam1: rev 1 applied\n")
    code, out = fleet(mosquitto, capsys, "set", "cam2", "pusher.fps=99")
    assert code == 1 and out.splitlines()[0] == "cam2: rev 1 rejected"
    assert out.splitlines()[1].startswith("  pusher.fps: ")

    code, out = fleet(mosquitto, capsys, "get", "cam1")
    doc = json.loads(out)
    assert doc["reported"]["config"]["pusher"]["max-bitrate"] == 900
    assert doc["desired"] == {"rev": 1, "config": {"pusher": {"max-bitrate": 900}}}

    code, out = fleet(mosquitto, capsys, "cmd", "all", "start")
    assert code == 0 and sorted(line.split(":")[0] for line in out.splitlines()) == [
        "cam1", "cam2"]
    code, out = fleet(mosquitto, capsys, "cmd", "cam1", "stop")
    assert code == 2  # ambiguous verb: pusher or player
    code, out = fleet(mosquitto, capsys, "cmd", "lobby", "device/privacy", "on=maybe")
    assert code == 1 and out.startswith(
        "cam1: failed -6018 device/privacy: args.on: Input should be a valid boolean")


def test_watch_prints_events(mosquitto: Mosquitto, boxes: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    wait_listed(mosquitto, capsys, 2)
    watcher = subprocess.Popen([sys.executable, "-m", "edgelive", "fleet", "--port",
                                str(mosquitto.port), "watch"], stdout=subprocess.PIPE,
                               text=True)
    try:
        time.sleep(1.5)  # the watcher subscribes
        code, out = fleet(mosquitto, capsys, "cmd", "cam2", "identify")
        assert code == 0 and out.startswith("cam2: ok")
        line = watcher.stdout.readline().split()
        assert line[1:5] == ["cam2", "device", "6017", "IDENTIFY"]
    finally:
        watcher.terminate()
        watcher.wait(10)
