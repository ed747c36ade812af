"""picamera2 H264Encoder adapter against FakeH264Encoder (same API shape, real H.264):
extradata from the first key frame, packets on the stream clock, bitrate by restart,
pushed through real nginx-rtmp and read back with ffprobe."""

from __future__ import annotations

import sys
import time

import pytest

from edgelive.config.presets import VideoPlan
from edgelive.media.picam_encode import PicamVideoEncoder
from edgelive.media.rtmp_out import RtmpOutput
from edgelive.testbed import NginxRtmp
from tests.fakes import picamera2_encoder
from tests.flvprobe import probe

PLAN = VideoPlan(width=320, height=180, fps=20, gop_frames=20, min_kbps=100, max_kbps=600,
                 low_latency=True)


@pytest.fixture
def camera(monkeypatch: pytest.MonkeyPatch):
    for name, module in picamera2_encoder.make_module().items():
        monkeypatch.setitem(sys.modules, name, module)
    cam = sys.modules["picamera2"].Picamera2(0)
    cam.configure(cam.create_video_configuration(main={"size": (320, 180), "format": "YUV420"},
                                                 controls={"FrameRate": 20.0}))
    cam.start()
    yield cam
    cam.close()


def test_picamera2_encoder_streams_to_rtmp_and_restarts_for_a_new_bitrate(
        camera, nginx: NginxRtmp) -> None:
    encoder = PicamVideoEncoder(PLAN, camera)
    params = encoder.params
    assert params.extradata.startswith(b"\x00\x00\x00\x01\x67")  # SPS, then PPS
    output = RtmpOutput(params, None)
    output.open(nginx.url("picam"))
    pts = []
    start = time.monotonic()
    try:
        while time.monotonic() - start < 3.0:
            if time.monotonic() - start > 1.5 and len(camera.encoders_started) == 1:
                encoder.set_bitrate(200)
            for packet in encoder.encode(None, 1000 + int((time.monotonic() - start) * 1000)):
                pts.append((packet.pts, packet.is_keyframe))
                output.mux(packet, True)
            time.sleep(0.02)
    finally:
        output.close()
        encoder.close()
    assert [e.bitrate for e in camera.encoders_started] == [600_000, 200_000]
    assert all(e.repeat and e.iperiod == 20 for e in camera.encoders_started)
    assert pts[0][0] >= 1000 and [p for p, _ in pts] == sorted(p for p, _ in pts)
    assert sum(key for _, key in pts) >= 2  # the first frame and the restart
    result = probe(nginx.recordings("picam")[-1])
    video = result.stream("video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 180)
    assert len(result.packet_times("video")) >= 40
    encoder.close()  # safe twice
