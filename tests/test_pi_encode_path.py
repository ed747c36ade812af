"""The pusher on a Pi camera with the VideoCore encoder (fakes of picamera2 v0.3.36's shape
and a model of the bcm2835-codec driver, tests/fakes): `auto` picks picamera2's encoder,
the seed's events and netstatus, the waiting image, snapshot and debug overlay on the same
RTMP session with no picture copied into Python; the fallback chain's 1103s; bitrate
adaptation driving the hardware encoder; all through real nginx-rtmp, read back with
ffprobe/PyAV."""

from __future__ import annotations

import io
import itertools
import sys
import time
from types import ModuleType
from typing import Any

import av
import pytest

from edgelive.codes import Code, Source
from edgelive.config.presets import VideoPlan
from edgelive.config.schema import PusherConfig
from edgelive.events import EventLog
from edgelive.hw.camera import is_pi_camera
from edgelive.media import picam_encode
from edgelive.media.picam_encode import V4L2_CID_MPEG_VIDEO_BITRATE, PicamVideoEncoder
from edgelive.media.rtmp_out import PacketSender, RtmpOutput, SenderStats
from edgelive.pusher import Pusher
from edgelive.pusher.adapt import Adapter
from edgelive.testbed import NginxRtmp
from tests.fakes import picamera2 as fake_picamera2
from tests.flvprobe import probe
from tests.test_picam_encode import frames_of, pi  # noqa: F401  (pi: the fixture)
from tests.test_pusher_reconnect import BASE, Recorder, in_order
from tests.test_pusher_waiting import received, runs


def pi_pusher(url: str, **overrides: Any) -> tuple[Pusher, Recorder, list[dict[str, Any]]]:
    """A pusher as `edgelive push` builds it on a board whose profile has the encoder."""
    events = EventLog(Source.PUSHER)
    recorder = Recorder()
    events.subscribe(recorder)
    statuses: list[dict[str, Any]] = []
    config = PusherConfig.model_validate({**BASE, "source": "picamera2", "encoder": "auto",
                                          "url": url, **overrides})
    return Pusher(config, events, statuses.append, hardware_available=True), recorder, statuses


def push_for(pusher: Pusher, rec: Recorder, seconds: float) -> None:
    """Start, wait until publishing, push `seconds` more, stop."""
    pusher.start()
    try:
        rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
        time.sleep(seconds)
    finally:
        pusher.stop()


def camera_of(module: ModuleType) -> Any:
    (camera,) = module.Picamera2.instances
    return camera


def test_auto_streams_from_picamera2s_encoder_with_waiting_image_and_snapshot(
        pi: ModuleType, nginx: NginxRtmp) -> None:  # noqa: F811
    pusher, rec, statuses = pi_pusher(nginx.url("pi"))
    pusher.start()
    try:
        rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
        time.sleep(2.0)
        jpeg = pusher.handle_command("snapshot", {})["jpeg"]
        for _ in range(2):  # twice: the second time libx264 has old frames to forget
            pusher.handle_command("pause", {})
            time.sleep(2.0)
            pusher.handle_command("resume", {})
            time.sleep(2.0)
        assert nginx.publishers("pi") == 1
    finally:
        pusher.stop()
    camera = camera_of(pi)
    assert camera.captures == 1  # the snapshot: the only picture copied into Python
    assert camera.metadata_reads >= 60
    codes = rec.codes()
    assert in_order(codes, [{Code.PUSH_EVT_OPEN_CAMERA_SUCC}, {Code.PUSH_EVT_CONNECT_SUCC},
                            {Code.PUSH_EVT_PUSH_BEGIN}, {Code.WAITING_IMAGE_ON},
                            {Code.WAITING_IMAGE_OFF}, {Code.WAITING_IMAGE_ON},
                            {Code.WAITING_IMAGE_OFF}])
    assert Code.PUSH_WARNING_HW_ACCELERATION_FAIL not in codes
    assert {s["encoder"] for s in statuses} == {"picamera2"}
    with av.open(io.BytesIO(jpeg)) as container:
        assert next(container.decode(video=0)).width == 320
    recording = nginx.recordings("pi")[-1]
    video = probe(recording).stream("video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 180)
    packets, _ = received(recording)
    groups = runs(packets)
    # camera (hardware) → waiting image (libx264) → camera … twice, every picture decoded
    assert len(groups) == 5 and all(len(g) >= 8 for g in groups), [len(g) for g in groups]
    assert all(g[0].key for g in groups)
    assert all(p.luma >= 0 for p in packets)


def test_debug_overlay_is_drawn_in_the_camera_buffer(pi: ModuleType,  # noqa: F811
                                                     nginx: NginxRtmp) -> None:
    pusher, rec, _ = pi_pusher(nginx.url("pidbg"), debug=True)
    push_for(pusher, rec, 3.0)
    assert camera_of(pi).captures == 0
    marked = []
    with av.open(str(nginx.recordings("pidbg")[-1])) as container:
        for frame in container.decode(video=0):
            luma = frame.to_ndarray()[:frame.height]
            box = luma[frame.height - 30:frame.height - 5, 5:100]  # 3 lines at scale 1
            marked.append(bool((box < 50).mean() > 0.5 and (box > 200).mean() > 0.05))
    assert [k for k, _ in itertools.groupby(marked)] == [False, True], marked
    assert marked.count(True) >= 15


def test_hardware_chain_reports_each_step_with_1103(pi: ModuleType, nginx: NginxRtmp,  # noqa: F811
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(picam_encode, "ENCODER_DEVICE", "/nonexistent/video11")
    pusher, rec, statuses = pi_pusher(nginx.url("pisw"), encoder="hardware")
    push_for(pusher, rec, 1.5)
    fell = [e for e in rec.events if e.code == Code.PUSH_WARNING_HW_ACCELERATION_FAIL]
    assert len(fell) == 2
    assert "/nonexistent/video11" in fell[0].msg and "h264_v4l2m2m" in fell[1].msg
    assert statuses[-1]["encoder"] == "libx264"
    assert camera_of(pi).captures >= 15  # pictures copied for the software encoder
    assert probe(nginx.recordings("pisw")[-1]).stream("video")["width"] == 320


def stats(send_kbps: float, backlog_ms: int) -> SenderStats:
    return SenderStats(send_kbps=send_kbps, queue_depth=backlog_ms // 20,
                       backlog_ms=backlog_ms, dropped_frames=0, jitter_ms=5.0)


def test_bitrate_adaptation_drives_the_hardware_encoder(pi: ModuleType,  # noqa: F811
                                                        nginx: NginxRtmp) -> None:
    """The adapter's decisions reach the VPU as the driver takes them (live, 25 kbit/s
    steps) and the stream's bitrate follows; a step down reconfigures the camera."""
    from edgelive.hw.picamera import Picamera2Source

    plan = VideoPlan(640, 360, 20, 40, 300, 1200, True)
    encoder = PicamVideoEncoder(plan)
    source = Picamera2Source()
    source.open(640, 360, 20)
    source.camera.busy = True
    assert source.feed(encoder)
    clock = [0.0]
    adapter = Adapter(encoder, plan, EventLog(Source.PUSHER), other_kbps=32,
                      clock=lambda: clock[0])
    output = RtmpOutput(encoder.params, None)
    output.open(nginx.url("piadapt"))
    sender = PacketSender(output, on_error=lambda exc: None, on_first_packet=lambda: None)
    sender.start()
    t0 = source.read().capture_ms
    phases: list[tuple[float, str]] = []

    def run(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            frame = source.read()
            for packet in encoder.encode(frame.image, frame.capture_ms - t0):
                sender.put(packet, True, packet.pts)

    try:
        run(3.0)
        phases.append((time.monotonic(), "short"))
        clock[0] = 1.0
        adapter.tick(stats(450, 500), 1200, waiting=False)  # the uplink carries 450 kbit/s
        h264 = encoder._h264
        run(3.0)
        clock[0] = 2.0
        adapter.tick(stats(300, 600), encoder.kbps, waiting=False)  # the floor does not fit
        clock[0] = 3.0
        adapter.tick(stats(300, 600), encoder.kbps, waiting=False)  # still: a smaller size
        run(2.5)
    finally:
        sender.stop()
        encoder.close()
        source.close()
    bitrate_writes = [v for c, v in h264.vd.writes if c == V4L2_CID_MPEG_VIDEO_BITRATE]
    assert bitrate_writes and bitrate_writes[0] < 1_200_000
    assert h264.vd.bitrate % 25_000 == 0
    assert encoder.size.width < 640  # the floor did not fit: a smaller picture
    assert source.camera is None
    recording = nginx.recordings("piadapt")[-1]
    frames = []
    with av.open(str(recording)) as container:
        for packet in container.demux(video=0):
            if packet.size and packet.pts is not None:
                frames.append((float(packet.pts * packet.time_base), packet.size))
    first = [size for t, size in frames if 0.5 < t < 2.8]
    second = [size for t, size in frames if 3.8 < t < 5.8]
    rate = [sum(x) * 8 / 1000 / (len(x) / 20) for x in (first, second)]  # kbit/s
    assert rate[1] < 0.6 * rate[0], rate
    sizes = [(w, h) for w, h, _, _ in frames_of(recording)]
    assert sizes[0] == (640, 360) and sizes[-1][0] < 640  # one session, a smaller picture


def test_the_pi_camera_is_recognised_before_it_is_opened(pi: ModuleType,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """What chooses picamera2's encoder: the source is the Pi camera, or `auto` and
    picamera2 sees one."""
    assert is_pi_camera("picamera2") and is_pi_camera("auto")
    assert not is_pi_camera("testsrc") and not is_pi_camera("/dev/video0")
    monkeypatch.setitem(sys.modules, "picamera2", fake_picamera2.make_module(models=()))
    assert not is_pi_camera("auto")
