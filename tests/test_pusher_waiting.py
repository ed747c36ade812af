"""The waiting image on the same RTMP session: pause/resume, camera off or failing, timeout.

What the receiver got is read back from nginx's recording with PyAV: the pictures (the
built-in slate is dark grey, testsrc's bars and the test image are bright), their packet
sizes and key flags, and the audio level.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from edgelive.codes import Code, Source
from edgelive.config.schema import PusherConfig
from edgelive.events import EventLog
from edgelive.hw.camera import CameraError, FrameSource, TestSource
from edgelive.media.jpeg import encode_jpeg
from edgelive.pusher import Pusher
from edgelive.pusher.scene import WAITING_FPS
from tests.servers import NginxRtmp
from tests.test_pusher_reconnect import Recorder, in_order, make_pusher

DARK = 60  # mean luma below this: the slate (Y=32 with a little white text)


@dataclass
class VideoPacket:
    t: float
    size: int
    key: bool
    luma: float


def received(path: Path) -> tuple[list[VideoPacket], list[tuple[float, float]]]:
    """Video packets with their decoded picture's mean luma; audio (time, RMS) per frame."""
    video: list[VideoPacket] = []
    audio: list[tuple[float, float]] = []
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base)
            frames = packet.decode()
            if packet.stream.type == "video":
                luma = frames[0].to_ndarray()[:frames[0].height].mean() if frames else -1.0
                video.append(VideoPacket(t, packet.size, packet.is_keyframe, float(luma)))
            else:
                for frame in frames:
                    audio.append((t, float(np.sqrt(np.mean(frame.to_ndarray() ** 2)))))
    return video, audio


def runs(video: list[VideoPacket]) -> list[list[VideoPacket]]:
    """Consecutive packets grouped by picture kind (slate or not); undecoded ones skipped."""
    groups: list[list[VideoPacket]] = []
    for packet in (p for p in video if p.luma >= 0):
        if groups and (groups[-1][0].luma < DARK) == (packet.luma < DARK):
            groups[-1].append(packet)
        else:
            groups.append([packet])
    return groups


def kbps(packets: list[VideoPacket], until: float) -> float:
    return sum(p.size for p in packets) * 8 / (until - packets[0].t) / 1000


@pytest.fixture
def stopping() -> Any:
    made: list[Pusher] = []
    yield made.append
    for pusher in made:
        pusher.stop()


def test_pause_sends_the_slate_at_a_low_rate_then_resume_on_one_session(
        nginx: NginxRtmp, stopping: Any) -> None:
    pusher, rec = make_pusher(nginx.url("w"), **{"background-mute": True})
    stopping(pusher)
    pusher.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    time.sleep(1.5)
    assert pusher.handle_command("pause", {})["waiting"] == ["paused"]
    rec.wait_for(Code.WAITING_IMAGE_ON)
    assert pusher.state == "waiting"
    time.sleep(4.0)
    assert nginx.publishers("w") == 1
    pusher.handle_command("resume", {})
    rec.wait_for(Code.WAITING_IMAGE_OFF)
    assert pusher.state == "pushing"
    time.sleep(1.5)
    pusher.stop()

    codes = rec.codes()
    assert codes.count(1001) == 1 and codes.count(1002) == 1 and 1102 not in codes
    assert in_order(codes, [{1002}, {6023}, {6024}, {6021}])
    assert len(nginx.recordings("w")) == 1  # one publish: no reconnect at the switches
    video, audio = received(nginx.recordings("w")[0])
    camera, slate, back = runs(video)
    assert slate[0].key and back[0].key  # every switch starts at a key frame
    assert 3.5 <= back[0].t - slate[0].t <= 5.0
    fps = (len(slate) - 1) / (slate[-1].t - slate[0].t)
    assert WAITING_FPS * 0.7 <= fps <= WAITING_FPS * 1.3, fps
    print(f"slate {fps:.1f} fps {kbps(slate, back[0].t):.0f} kbit/s, camera "
          f"{kbps(camera, slate[0].t):.0f} kbit/s")
    assert kbps(slate, back[0].t) <= 100, kbps(slate, back[0].t)
    assert kbps(camera, slate[0].t) > 3 * kbps(slate, back[0].t)
    assert 10 <= (len(back) - 1) / (back[-1].t - back[0].t) <= 16  # the camera's 15 fps
    # background-mute: the tone is silent while the slate is sent, and back after it
    loud = [rms for t, rms in audio if t < slate[0].t - 0.2 or t > back[0].t + 0.3]
    quiet = [rms for t, rms in audio if slate[0].t + 0.3 < t < back[0].t - 0.2]
    assert np.median(loud) > 0.05 and max(quiet) < 0.01, (np.median(loud), max(quiet))


def test_waiting_timeout_stops_the_push_with_5000(nginx: NginxRtmp, stopping: Any) -> None:
    pusher, rec = make_pusher(nginx.url("t"), **{"waiting-timeout": 2})
    stopping(pusher)
    pusher.handle_command("pause", {"reason": "privacy"})  # privacy before the start
    pusher.start()
    assert pusher.done.wait(15)
    on = rec.wait_for(Code.WAITING_IMAGE_ON)
    handup = rec.wait_for(Code.PUSH_WARNING_HANDUP_STOP)
    assert 1.8 <= (handup.ts - on.ts) / 1000 <= 3.5
    assert handup.detail["reasons"] == ["privacy"]
    assert rec.codes()[-1] == Code.PUSH_WARNING_HANDUP_STOP  # 5000 stays the last word
    assert pusher.state == "stopped"
    assert 1003 not in rec.codes() or rec.codes().index(1003) < rec.codes().index(1002)


@pytest.fixture
def bright_jpeg(tmp_path: Path) -> Path:
    frame = av.VideoFrame.from_ndarray(np.full((180, 320, 3), 230, np.uint8), format="rgb24")
    path = tmp_path / "away.jpg"
    path.write_bytes(encode_jpeg(frame))
    return path


@pytest.mark.parametrize("good_hash", [True, False])
def test_waiting_image_hash_is_checked(nginx: NginxRtmp, stopping: Any, bright_jpeg: Path,
                                       good_hash: bool) -> None:
    md5 = hashlib.md5(bright_jpeg.read_bytes()).hexdigest() if good_hash else "0" * 32
    pusher, rec = make_pusher(nginx.url("h"), **{"enable-camera": False,
                                                 "waiting-image": str(bright_jpeg),
                                                 "waiting-image-hash": md5})
    stopping(pusher)
    pusher.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    time.sleep(1.5)
    pusher.stop()
    codes = rec.codes()
    assert 1003 not in codes  # the camera stays closed
    # the waiting image is on before the publish begins (its order with 1001, the network
    # connect running in parallel, is free)
    assert in_order(codes, [{1001}, {1002}]) and codes.index(6023) < codes.index(1002)
    video, _ = received(nginx.recordings("h")[0])
    lumas = [p.luma for p in video if p.luma >= 0]
    if good_hash:
        assert Code.WAITING_IMAGE_INVALID not in codes
        assert min(lumas) > 200
    else:
        invalid = rec.wait_for(Code.WAITING_IMAGE_INVALID)
        assert "md5" in invalid.msg and "away.jpg" in invalid.msg
        assert max(lumas) < DARK


def test_enable_camera_live_switches_back_to_the_camera(nginx: NginxRtmp,
                                                         stopping: Any) -> None:
    pusher, rec = make_pusher(nginx.url("e"), **{"enable-camera": False})
    stopping(pusher)
    pusher.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    assert pusher.state == "waiting"
    pusher.configure(pusher.config.model_copy(update={"enable_camera": True}))
    rec.wait_for(Code.WAITING_IMAGE_OFF)
    assert pusher.state == "pushing"
    pusher.configure(pusher.config.model_copy(update={"enable_camera": False}))
    mark = len(rec.events)
    rec.wait_for(Code.WAITING_IMAGE_ON, mark)
    pusher.stop()
    assert in_order(rec.codes(), [{6023}, {1002}, {1003}, {6024}, {6023}])
    assert rec.codes().count(1001) == 1


def test_camera_missing_at_start_keeps_the_stream_up(nginx: NginxRtmp, stopping: Any) -> None:
    pusher, rec = make_pusher(nginx.url("m"), source="/dev/video99")
    stopping(pusher)
    pusher.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    assert nginx.publishers("m") == 1 and pusher.state == "waiting"
    codes = rec.codes()
    # the network connect (1001) runs in parallel with the camera: only its place before 1002
    # is fixed
    assert in_order(codes, [{-1301}, {6023}, {1002}]), codes
    assert in_order(codes, [{1001}, {1002}]), codes
    failure = rec.wait_for(Code.PUSH_ERR_OPEN_CAMERA_FAIL)
    assert "/dev/video99" in failure.msg


class FakeUnpluggableCamera(TestSource):
    """testsrc that can be 'unplugged': reads and opens fail while `plugged` is clear."""

    plugged = threading.Event()

    def open(self, width: int, height: int, fps: int) -> None:
        if not self.plugged.is_set():
            raise CameraError("fake camera: no such device")
        super().open(width, height, fps)

    def read(self) -> Any:
        if not self.plugged.is_set():
            raise CameraError("fake camera: device unplugged")
        return super().read()


def open_fake(spec: str, *, width: int, height: int, fps: int, **controls: Any) -> FrameSource:
    camera = FakeUnpluggableCamera()
    camera.set_controls(**controls)
    camera.open(width, height, fps)
    return camera


def test_camera_unplugged_mid_stream_and_back(nginx: NginxRtmp, stopping: Any) -> None:
    events = EventLog(Source.PUSHER)
    rec = Recorder()
    events.subscribe(rec)
    config = PusherConfig.model_validate({"url": nginx.url("u"), "resolution": "320x180",
                                          "fps": 15, "audio-device": "none"})
    pusher = Pusher(config, events, lambda status: None, open_camera=open_fake)
    stopping(pusher)
    FakeUnpluggableCamera.plugged.set()
    pusher.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    FakeUnpluggableCamera.plugged.clear()
    rec.wait_for(Code.WAITING_IMAGE_ON)
    time.sleep(3.5)  # at least one retry fails while unplugged
    FakeUnpluggableCamera.plugged.set()
    plugged = time.time()
    back = rec.wait_for(Code.WAITING_IMAGE_OFF, timeout=8)
    pusher.stop()
    codes = rec.codes()
    assert in_order(codes, [{1003}, {1002}, {-1301}, {6023}, {1003}, {6024}]), codes
    assert codes.count(-1301) == 1  # reported once, not at every retry
    assert codes.count(1001) == 1 and 1102 not in codes
    assert back.ts / 1000 - plugged <= 3.5  # retried every few seconds
