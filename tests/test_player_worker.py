"""`edgelive play --worker` as the supervisor runs it: config on the first stdin line,
commands and live config after it, state lines every second, exit on EOF and SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import NginxRtmp
from tests.test_player_e2e import ffmpeg_push


class WorkerProc:
    """The player worker as a subprocess; every stdout line is parsed and kept."""

    def __init__(self, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy",
               **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "edgelive", "play", "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.lines: list[dict[str, Any]] = []
        self._new: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send({"type": "config", "config": config})

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            self.lines.append(message)
            self._new.put(message)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def wait_line(self, match: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for line in list(self.lines):
            if match.items() <= line.items():
                return line
        while time.monotonic() < deadline:
            try:
                line = self._new.get(timeout=0.1)
            except queue.Empty:
                continue
            if match.items() <= line.items():
                return line
        raise AssertionError(f"no line like {match} in {timeout} s")

    def command(self, verb: str, **args: Any) -> dict[str, Any]:
        cmd_id = f"{verb}-{time.monotonic_ns()}"
        self.send({"type": "cmd", "id": cmd_id, "verb": verb, "args": args})
        return self.wait_line({"type": "response", "id": cmd_id})

    def codes(self) -> list[int]:
        return [line["code"] for line in self.lines if line["type"] == "event"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def workers() -> Iterator[list[WorkerProc]]:
    made: list[WorkerProc] = []
    yield made
    for w in made:
        w.close()


def test_idle_worker_heartbeats_and_exits_when_stdin_closes(workers) -> None:
    w = WorkerProc({"sink": "offscreen", "screen-size": "320x180"})
    workers.append(w)
    w.wait_line({"type": "state", "state": "idle"}, timeout=20)
    start = len(w.lines)
    time.sleep(3.2)
    states = [line for line in w.lines[start:] if line["type"] == "state"]
    assert len(states) >= 3 and all(s["state"] == "idle" and s["src"] == "player"
                                    for s in states)
    assert w.command("pause")["ok"]  # nothing to pause: accepted, still idle
    assert w.command("fly")["ok"] is False
    assert w.proc.stdin is not None
    w.proc.stdin.close()
    assert w.proc.wait(10) == 0


@pytest.mark.slow
def test_worker_autoplays_answers_commands_and_applies_live_config(
        nginx: NginxRtmp, workers) -> None:
    pusher = ffmpeg_push(nginx.url("cam"))
    try:
        w = WorkerProc({"src": nginx.url("cam"), "autoplay": True, "mode": "RTC",
                        "sink": "offscreen", "screen-size": "320x180", "muted": True})
        workers.append(w)
        w.wait_line({"type": "event", "code": 2004}, timeout=20)
        w.wait_line({"type": "state", "state": "playing"})
        assert [c for c in w.codes() if c in (2001, 2002, 2003, 2004)] == \
            [2001, 2002, 2003, 2004]
        w.wait_line({"type": "netstatus", "videoWidth": 320})

        snap = w.command("snapshot")
        assert snap["ok"] and base64.b64decode(snap["result"]["jpeg"])[:2] == b"\xff\xd8"
        assert abs(snap["result"]["ts"] - time.time() * 1000) < 3000

        w.send({"type": "config", "config": {"muted": False, "object-fit": "fillCrop"}})
        paused = w.command("pause")
        assert paused["ok"] and paused["result"]["state"] == "paused"
        assert paused["result"]["muted"] is False  # the live config line was applied
        w.wait_line({"type": "state", "state": "paused"})
        time.sleep(1.5)
        resumed = w.command("resume")
        assert resumed["ok"] and resumed["result"]["state"] == "playing"
        time.sleep(1.0)
        assert w.codes().count(2001) == 1, "pause/resume must not reconnect"

        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(10) == 0
        last_state = [line for line in w.lines if line["type"] == "state"][-1]
        assert last_state["state"] == "stopped"
    finally:
        pusher.kill()
