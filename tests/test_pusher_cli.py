"""`edgelive push` as a subprocess against real nginx-rtmp, checked with ffprobe."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgelive.testbed import NginxRtmp, free_port
from tests.flvprobe import probe


def push(*args: str, timeout: float = 60) -> tuple[int, list[dict], str]:
    proc = subprocess.run([sys.executable, "-m", "edgelive", "push", *args],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, lines, proc.stderr


def codes(lines: list[dict]) -> list[int]:
    return [line["code"] for line in lines if line["type"] == "event"]


@pytest.mark.slow
@pytest.mark.parametrize(("toml", "size", "rate", "gop_s"), [
    ('mode = "RTC"\naudio-quality = "low"', (640, 360), 16000, 1.0),
    ('mode = "SD"\norientation = "vertical"\naudio-quality = "high"', (360, 640), 48000, 2.0),
])
def test_push_follows_the_mode(nginx: NginxRtmp, tmp_path: Path, toml: str,
                               size: tuple[int, int], rate: int, gop_s: float) -> None:
    config = tmp_path / "edgelive.toml"
    config.write_text('[pusher]\nsource = "testsrc"\naudio-device = "tone"\nfps = 15\n'
                      f"{toml}\n")
    rc, lines, stderr = push(nginx.url("mode"), "--config", str(config), "--duration", "4.5")
    assert rc == 0, stderr
    assert codes(lines)[:3] == [1003, 1001, 1002]
    status = [line for line in lines if line["type"] == "netstatus"]
    assert status and status[-1]["videoWidth"] == size[0] and status[-1]["encoder"] == "libx264"
    assert status[-1]["videoGOP"] == gop_s and 10 <= status[-1]["videoFPS"] <= 16
    assert "Traceback" not in stderr
    result = probe(nginx.recordings("mode")[-1])
    video, audio = result.stream("video"), result.stream("audio")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", *size)
    assert (audio["codec_name"], int(audio["sample_rate"])) == ("aac", rate)
    keys = result.packet_times("video", key_only=True)
    # the first key is forced when the link comes up; from the next one on, every GOP
    gaps = [b - a for a, b in itertools.pairwise(keys[1:])]
    assert gaps and all(abs(g - gop_s) < 0.15 for g in gaps), keys
    for kind in ("video", "audio"):  # decode timestamps strictly increase
        times = result.packet_times(kind, field="dts_time")
        assert times == sorted(times) and len(set(times)) == len(times)
    frames = result.packet_times("video")
    assert 10 <= (len(frames) - 1) / (frames[-1] - frames[0]) <= 16


@pytest.mark.parametrize(("url", "extra", "code", "words"), [
    ("rtmp://nonexistent.invalid/live/x", [], 3001, "resolve"),
    ("rtmp://127.0.0.1:{closed}/live/x", [], 3002, "refused"),
    ("rtmp://127.0.0.1:{http}/live/x", [], 3003, "handshake"),
    ("rtmp://127.0.0.1:{closed}/live/x", ["--resolution", "16x16"], -1305, "16x16"),
    ("rtmp://127.0.0.1:{closed}/live/x", ["--resolution", "321x181"], -1305, "even"),
])
def test_failures_are_reported_with_a_code_and_no_traceback(url: str, extra: list[str],
                                                            code: int, words: str,
                                                            tmp_path: Path) -> None:
    """With reconnect give-up, a server that never works ends the push (-1307, 6021)."""
    config = tmp_path / "edgelive.toml"
    config.write_text("[pusher.reconnect]\ngive-up = true\nfirst-delay = 0.1\n")
    http_port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "-b", "127.0.0.1",
                               str(http_port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        target = url.format(closed=free_port(), http=http_port)
        rc, lines, stderr = push(target, "--source", "testsrc", "--resolution", "320x180",
                                 "--audio-device", "none", "--config", str(config), *extra,
                                 "--duration", "8")
    finally:
        server.kill()
        server.wait()
    events = [line for line in lines if line["type"] == "event"]
    assert code in codes(lines), lines
    failure = next(e for e in events if e["code"] == code)
    assert words.lower() in failure["msg"].lower()
    assert rc == 1 and "Traceback" not in stderr
    if code > 3000:
        assert codes(lines).count(1102) == 3 and codes(lines)[-2:] == [-1307, 6021]
