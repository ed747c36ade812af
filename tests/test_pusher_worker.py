"""`edgelive push --worker` driven over stdin/stdout as the supervisor does, and the
pusher's operations (switchCamera, snapshot) against a real nginx-rtmp."""

from __future__ import annotations

import base64
import io
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from edgelive.codes import Code
from edgelive.media.jpeg import encode_jpeg
from edgelive.pusher import CommandError
from tests.flvprobe import probe
from tests.servers import NginxRtmp
from tests.test_pusher_reconnect import in_order, make_pusher
from tests.test_pusher_waiting import received, runs


class Worker:
    """A `edgelive push --worker` process; every stdout line is kept with its arrival time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edgelive", "push", "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._arrived:
                self.lines.append((time.monotonic(), json.loads(line)))
                self._arrived.notify_all()

    def mark(self) -> int:
        return len(self.lines)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def expect(self, match: Any, since: int = 0, timeout: float = 10.0) -> dict[str, Any]:
        """The first line at index >= since for which match(line) is true."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = next((m for _, m in self.lines[since:] if match(m)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"no matching line within {timeout} s"
                self._arrived.wait(left)

    def request(self, verb: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = f"{verb}-{self.mark()}"
        self.send({"type": "cmd", "id": request_id, "verb": verb, "args": args or {}})
        return self.expect(lambda m: m["type"] == "response" and m["id"] == request_id)

    def event(self, code: int, since: int = 0) -> dict[str, Any]:
        return self.expect(lambda m: m["type"] == "event" and m["code"] == code, since)

    def state(self, state: str, since: int = 0) -> dict[str, Any]:
        return self.expect(lambda m: m["type"] == "state" and m["state"] == state, since)

    def of_type(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.lines if m["type"] == kind]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def worker() -> Any:
    process = Worker()
    yield process
    process.close()


def test_worker_is_driven_over_stdin(nginx: NginxRtmp, worker: Worker) -> None:
    worker.send({"type": "config", "config": {
        "url": nginx.url("wk"), "source": "testsrc", "resolution": "320x180", "fps": 15,
        "audio-device": "tone", "autopush": True}})
    worker.state("idle")
    time.sleep(2.2)  # autopush is the supervisor's business: nothing starts by itself
    assert not worker.of_type("event") and nginx.publishers("wk") == 0
    assert worker.request("start")["ok"]
    worker.event(1002)
    codes = [m["code"] for _, m in worker.of_type("event")]
    assert codes[:3] == [1003, 1001, 1002]
    worker.state("pushing")
    time.sleep(1.0)
    worker.send({"type": "config", "config": {
        "url": nginx.url("wk"), "source": "testsrc", "resolution": "320x180", "fps": 15,
        "audio-device": "tone", "muted": True}})
    muted_at = time.monotonic()
    time.sleep(1.5)
    mark = worker.mark()
    reply = worker.request("pause")
    assert reply["ok"] and reply["result"]["waiting"] == ["paused"]
    worker.event(Code.WAITING_IMAGE_ON, mark)
    worker.state("waiting", mark)
    mark = worker.mark()
    assert worker.request("resume")["ok"]
    worker.event(Code.WAITING_IMAGE_OFF, mark)
    worker.state("pushing", mark)
    snapshot = worker.request("snapshot")
    assert snapshot["ok"], snapshot
    jpeg = base64.b64decode(snapshot["result"]["jpeg"])
    assert jpeg[:2] == b"\xff\xd8"
    assert abs(snapshot["result"]["ts"] / 1000 - time.time()) < 2
    bad = worker.request("fly")
    assert not bad["ok"] and bad["code"] == Code.COMMAND_REJECTED
    mark = worker.mark()
    worker.send({"type": "config", "config": {"mode": "nope"}})
    rejected = worker.expect(lambda m: m["type"] == "response" and not m["ok"], mark)
    assert "mode" in rejected["error"]

    assert worker.proc.stdin is not None
    worker.proc.stdin.close()  # the supervisor is gone: the worker quits
    assert worker.proc.wait(timeout=10) == 0
    states = worker.of_type("state")
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(states)]
    assert max(gaps) <= 1.5, gaps  # heartbeat at least once a second
    assert {m["src"] for _, m in states} == {"pusher"}
    assert states[-1][1]["state"] == "stopped"
    # the live `muted` reached the microphone: the tone stops in the recording
    video, audio = received(nginx.recordings("wk")[0])
    start = next(t for t, m in worker.lines if m["type"] == "event" and m["code"] == 1002)
    cut = video[0].t + (muted_at - start) + 0.5
    before = [rms for t, rms in audio if video[0].t + 0.2 < t < cut - 1.0]
    after = [rms for t, rms in audio if cut < t < cut + 1.0]
    assert np.median(before) > 0.05 and max(after) < 0.01


def test_worker_exits_on_sigterm(worker: Worker) -> None:
    worker.send({"type": "config", "config": {"url": "rtmp://127.0.0.1:9/live/x"}})
    worker.state("idle")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=10) == 0


@pytest.fixture
def black_jpeg(tmp_path: Path) -> Path:
    frame = av.VideoFrame.from_ndarray(np.zeros((180, 320, 3), np.uint8), format="rgb24")
    path = tmp_path / "back.jpg"
    path.write_bytes(encode_jpeg(frame))
    return path


def test_switch_camera_on_the_same_session(nginx: NginxRtmp, black_jpeg: Path) -> None:
    pusher, rec = make_pusher(nginx.url("sw"), **{"back-source": str(black_jpeg)})
    pusher.start()
    try:
        rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
        time.sleep(1.0)
        assert pusher.handle_command("switchCamera", {})["position"] == "back"
        time.sleep(1.0)
        assert pusher.handle_command("switchCamera", {"position": "front"})["position"] == \
            "front"
        time.sleep(1.0)
    finally:
        pusher.stop()
    opened = [e.detail["position"] for e in rec.events if e.code == 1003]
    assert opened == ["front", "back", "front"]
    assert rec.codes().count(1001) == 1 and Code.WAITING_IMAGE_ON not in rec.codes()
    video, _ = received(nginx.recordings("sw")[0])
    _, back, front_again = runs(video)
    assert back[0].key and front_again[0].key
    assert 0.7 <= back[-1].t - back[0].t <= 1.4


def test_switch_to_a_failing_camera_stays_on_the_current_one(nginx: NginxRtmp) -> None:
    pusher, rec = make_pusher(nginx.url("swf"), **{"back-source": "/dev/video99"})
    pusher.start()
    try:
        rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
        with pytest.raises(CommandError) as failed:
            pusher.handle_command("switchCamera", {"position": "back"})
        assert failed.value.code == Code.PUSH_ERR_OPEN_CAMERA_FAIL
        time.sleep(0.5)
        assert pusher.state == "pushing" and pusher.config.device_position == "front"
        jpeg, _ = pusher.snapshot()
    finally:
        pusher.stop()
    assert "/dev/video99" in rec.wait_for(Code.PUSH_ERR_OPEN_CAMERA_FAIL).msg
    assert Code.WAITING_IMAGE_ON not in rec.codes()
    with av.open(io.BytesIO(jpeg)) as container:  # still the bright front camera
        picture = next(container.decode(video=0))
    assert picture.to_ndarray()[:picture.height].mean() > 60


def test_snapshot_is_a_jpeg_of_the_current_picture_with_its_time(nginx: NginxRtmp) -> None:
    pusher, rec = make_pusher(nginx.url("snap"))
    with pytest.raises(CommandError):
        pusher.snapshot()  # nothing captured before the start
    pusher.start()
    try:
        rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
        asked = time.time()
        result = pusher.handle_command("snapshot", {})
    finally:
        pusher.stop()
    with av.open(io.BytesIO(result["jpeg"])) as container:
        picture = next(container.decode(video=0))
    assert (picture.width, picture.height) == (320, 180)
    # the next picture sent: captured at most a frame interval before the ask
    assert -0.1 <= result["ts"] / 1000 - asked < 0.5
    assert in_order(rec.codes(), [{1002}, {Code.SNAPSHOT_TAKEN}])


def test_debug_burns_the_stats_into_the_video_and_turns_off_live(nginx: NginxRtmp) -> None:
    """`debug` draws the netstatus lines on a dark box at the bottom left of each picture
    (once the first netstatus exists); turned off live, the pictures are clean again."""
    pusher, rec = make_pusher(nginx.url("dbg"), debug=True)
    pusher.start()
    try:
        rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
        time.sleep(3.0)
        pusher.configure(pusher.config.model_copy(update={"debug": False}))
        time.sleep(2.0)
    finally:
        pusher.stop()
    marked: list[bool] = []
    with av.open(str(nginx.recordings("dbg")[-1])) as container:
        for frame in container.decode(video=0):
            luma = frame.to_ndarray()[:frame.height]
            box = luma[frame.height - 30:frame.height - 5, 5:100]  # 3 lines at scale 1
            dark, ink = (box < 50).mean(), (box > 200).mean()
            marked.append(bool(dark > 0.5 and ink > 0.05))
    phases = [k for k, _ in itertools.groupby(marked)]
    assert phases == [False, True, False], phases
    assert marked.count(True) >= 15 * 2 and marked[-15:] == [False] * 15


@pytest.mark.parametrize(("orientation", "size"), [("horizontal", (640, 480)),
                                                     ("vertical", (480, 640))])
def test_aspect_3_4_pushes_a_4_by_3_picture(nginx: NginxRtmp, orientation: str,
                                            size: tuple[int, int]) -> None:
    """The seed's other aspect: SD's 640 px long side with a 3:4 short side (not 9:16's
    360), turned by orientation; the size comes from the preset, not `resolution`."""
    pusher, rec = make_pusher(nginx.url("aspect"), mode="SD", resolution="", aspect="3:4",
                              orientation=orientation)
    pusher.start()
    try:
        begin = rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
        time.sleep(1.5)
    finally:
        pusher.stop()
    assert (begin.detail["width"], begin.detail["height"]) == size
    result = probe(nginx.recordings("aspect")[-1])
    video = result.stream("video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", *size)
