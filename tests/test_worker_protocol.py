"""The JSON-lines start of a worker, and a player that has no display to show on."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from edgelive.codes import Code
from edgelive.ipc import LineWriter, first_config, read_messages


def _validate(section: object) -> dict:
    if not isinstance(section, dict) or "src" not in section:
        raise ValueError("src is required")
    return section


def test_first_config_answers_every_line_it_cannot_take() -> None:
    stdin = io.StringIO("\n".join([
        "not json",
        '{"type": "cmd", "id": "c1", "verb": "play"}',
        '{"type": "config", "config": {"muted": true}}',
        '{"type": "config", "config": {"src": "rtmp://h/live/x"}}',
        '{"type": "cmd", "id": "c2", "verb": "stop"}',
    ]) + "\n")
    out = io.StringIO()
    writer = LineWriter(out)
    messages = read_messages(stdin, writer)
    assert first_config(messages, writer, _validate) == {"src": "rtmp://h/live/x"}
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [a["id"] for a in answers] == [None, "c1", None]
    assert all(a["ok"] is False and a["code"] == Code.COMMAND_REJECTED for a in answers)
    assert "src is required" in answers[2]["error"]
    assert next(messages)["id"] == "c2"  # the rest is left for the worker's command loop


def test_first_config_is_none_when_stdin_closes_first() -> None:
    writer = LineWriter(io.StringIO())
    assert first_config(read_messages(io.StringIO(""), writer), writer, _validate) is None


def test_player_without_a_display_says_so_and_keeps_running() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["SDL_AUDIODRIVER"] = "dummy"
    run = subprocess.run([sys.executable, "-m", "edgelive", "play", "rtmp://127.0.0.1:9/live/x",
                          "--sink", "kms", "--duration", "2"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    events = [line for line in lines if line["type"] == "event"]
    assert events[0]["code"] == Code.DISPLAY_UNAVAILABLE
    assert any(line["type"] == "netstatus" for line in lines)  # the player ran on
