"""`edgelive demo` (what `make demo` runs) as a new user first sees it on a machine without a
sound card: its own broker and RTMP server, the box pushing and playing back, and one line
saying there is no sound, not alsa-lib's errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgelive.codes import Code
from edgelive.hw.audio import sound_cards

EVENT_LINE = re.compile(r" edgelive: \[(pusher|player|device)\] (-?\d+) ")


def test_demo_without_a_sound_card_says_so_once_and_plays_its_stream(tmp_path: Path) -> None:
    if sound_cards():
        pytest.skip("this machine has a sound card")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_AUDIODRIVER")}  # as on a server
    run = subprocess.run(
        [str(Path(sys.executable).parent / "edgelive"), "demo", "--dir", str(tmp_path),
         "--duration", "12"], capture_output=True, text=True, timeout=90, env=env)
    assert run.returncode == 0, run.stderr
    assert "RTMP server   rtmp://127.0.0.1:" in run.stdout and "(offscreen display)" in run.stdout
    assert "ALSA lib" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    events = [(m[1], int(m[2])) for line in lines if (m := EVENT_LINE.search(line))]
    assert events[0] == ("device", Code.READY), run.stderr
    for event in (("pusher", Code.PUSH_EVT_PUSH_BEGIN), ("player", Code.PLAY_EVT_PLAY_BEGIN)):
        assert event in events, run.stderr
    assert events.count(("player", Code.AUDIO_DEVICE_FAIL)) == 1, run.stderr
    # every line is the box's own log: nothing from a library in between
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line)
               for line in lines), run.stderr
