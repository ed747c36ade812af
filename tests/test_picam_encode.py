"""picamera2's H264Encoder on the camera's own buffers, against the API-shaped fakes
(tests/fakes/picamera2*.py, shaped after picamera2 v0.3.36) with real H.264: no picture
copied into Python, sensor times on the stream clock, key frames on demand, live bitrate
through the codec device's control, a resolution step and the waiting image on one RTMP
session; pushed through real nginx-rtmp and read back with ffprobe."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import av
import pytest

from edgelive.config.presets import VideoPlan
from edgelive.hw.picamera import Picamera2Source
from edgelive.media import picam_encode
from edgelive.media.encode import HardwareEncoderUnavailable, PictureSize, open_video_encoder
from edgelive.media.picam_encode import (
    V4L2_CID_MPEG_VIDEO_BITRATE,
    FedPicture,
    PicamVideoEncoder,
    bitrate_step,
)
from edgelive.media.rtmp_out import RtmpOutput
from edgelive.media.waiting import load_waiting_image
from edgelive.testbed import NginxRtmp
from tests.fakes import picamera2_encoder
from tests.flvprobe import probe

PLAN = VideoPlan(width=320, height=180, fps=20, gop_frames=80, min_kbps=100, max_kbps=800,
                 low_latency=True)


@pytest.fixture
def pi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """A Pi with a camera and the VideoCore encoder: the fakes, a codec device node, and
    the driver's model behind the control ioctl."""
    for name, module in picamera2_encoder.make_module().items():
        monkeypatch.setitem(sys.modules, name, module)
    device = tmp_path / "video11"
    device.touch()
    monkeypatch.setattr(picam_encode, "ENCODER_DEVICE", str(device))
    monkeypatch.setattr(picam_encode, "codec_ioctl", picamera2_encoder.ioctl)
    return sys.modules["picamera2"]


@pytest.fixture
def fed(pi: ModuleType) -> Iterator[tuple[Picamera2Source, PicamVideoEncoder]]:
    """The Pi camera feeding picamera2's encoder, as the pusher wires them."""
    encoder = PicamVideoEncoder(PLAN)
    source = Picamera2Source()
    source.open(PLAN.width, PLAN.height, PLAN.fps)
    assert source.feed(encoder)
    yield source, encoder
    encoder.close()
    source.close()
    encoder.close()  # safe twice, and after the camera closed


@dataclass
class Run:
    """What one push sent: (pts, key) of each packet and the pts of each fed picture."""

    packets: list[tuple[int, bool]] = field(default_factory=list)
    pictures: list[int] = field(default_factory=list)
    t0: int | None = None


def push(source: Picamera2Source, encoder: PicamVideoEncoder, output: RtmpOutput, run: Run,
         seconds: float, still: av.VideoFrame | None = None) -> None:
    """The pusher's loop in small: camera pictures (or `still`, the waiting image at the
    camera's rate) on one clock, their packets to the output."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frame = source.read()
        if run.t0 is None:
            run.t0 = frame.capture_ms
        pts = max(frame.capture_ms - run.t0, run.pictures[-1] + 1 if run.pictures else 0)
        run.pictures.append(pts)
        for packet in encoder.encode(still if still is not None else frame.image, pts):
            run.packets.append((packet.pts, packet.is_keyframe))
            output.mux(packet, True)


def frames_of(recording: Path) -> list[tuple[int, int, int, float]]:
    """(width, height, key, time) of each decoded picture, by ffprobe."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-of", "csv=p=0",
                          "-show_entries", "frame=width,height,key_frame,pts_time",
                          str(recording)], capture_output=True, text=True, check=True,
                         timeout=30)
    rows = [line.split(",") for line in out.stdout.split()]
    return [(int(w), int(h), int(k), float(t)) for k, t, w, h in
            ((r[0], r[1], r[2], r[3]) for r in rows)]


def test_the_camera_feeds_the_encoder_without_copies_on_the_sensor_clock(
        fed: tuple[Picamera2Source, PicamVideoEncoder], nginx: NginxRtmp) -> None:
    source, encoder = fed
    camera = source.camera
    first = source.read()
    assert isinstance(first.image, FedPicture)
    encoder.encode(first.image, 0)
    params = encoder.params  # the camera's own SPS/PPS, from its first key frame
    assert params.extradata.startswith(b"\x00\x00\x00\x01\x67")
    output = RtmpOutput(params, None)
    output.open(nginx.url("picam"))
    run = Run(t0=first.capture_ms, pictures=[0])
    try:
        push(source, encoder, output, run, 1.5)
        encoder.force_keyframe()  # a reconnect or a new viewer
        asked = run.pictures[-1]
        push(source, encoder, output, run, 1.5)
    finally:
        output.close()
    assert camera.captures == 0 and camera.metadata_reads >= 50  # no picture in Python
    times = [pts for pts, _ in run.packets]
    assert times == sorted(set(times))
    # Each packet is stamped with its own picture's time: sensor time moved onto the
    # stream clock (a few ms of clock-reading jitter), not the time it left the encoder.
    # (The camera ran on while `params` waited: those frames were encoded, not read.)
    read = [pts for pts in times if pts >= run.pictures[1]]
    assert all(min(abs(pts - p) for p in run.pictures) <= 3 for pts in read)
    keys = [pts for pts, key in run.packets if key]
    assert any(asked < k <= asked + 4 * 50 for k in keys), (asked, keys)  # within 4 frames
    assert camera.encoders == {encoder._h264} and len(keys) == 2  # no restart for the key
    result = probe(nginx.recordings("picam")[-1])
    video = result.stream("video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 180)
    assert len(result.packet_times("video")) >= 50


def test_a_bitrate_change_goes_to_the_running_codec_as_the_driver_takes_it(
        fed: tuple[Picamera2Source, PicamVideoEncoder], nginx: NginxRtmp) -> None:
    source, encoder = fed
    source.camera.busy = True
    h264 = encoder._h264
    output = RtmpOutput(encoder.params, None)
    output.open(nginx.url("rate"))
    run = Run()
    try:
        push(source, encoder, output, run, 2.0)
        encoder.set_bitrate(130)
        switch = len(h264.sizes)
        push(source, encoder, output, run, 3.0)
    finally:
        output.close()
    assert h264.vd.writes == [(V4L2_CID_MPEG_VIDEO_BITRATE, 125_000)]
    assert h264.vd.bitrate == 125_000 == bitrate_step(130_000) and encoder.kbps == 130
    assert encoder._h264 is h264 and h264.running  # the same encoder, not restarted
    p_frames = [size for size, key in h264.sizes if not key]
    before = p_frames[5:switch - 1]
    after = p_frames[switch + 20:]
    assert sum(after) / len(after) < 0.5 * sum(before) / len(before)
    assert len(frames_of(nginx.recordings("rate")[-1])) >= 80


def test_resolution_step_and_waiting_image_stay_on_one_rtmp_session(
        fed: tuple[Picamera2Source, PicamVideoEncoder], nginx: NginxRtmp) -> None:
    source, encoder = fed
    camera = source.camera
    slate = load_waiting_image("", "", PLAN.width, PLAN.height).frame
    output = RtmpOutput(encoder.params, None)
    output.open(nginx.url("steps"))
    run = Run()
    try:
        push(source, encoder, output, run, 1.5)
        encoder.request_size(PictureSize(160, 90, 20))  # the adaptation steps down
        push(source, encoder, output, run, 1.5)
        encoder.force_keyframe()  # as the pusher does at a switch
        push(source, encoder, output, run, 1.5, still=slate)  # privacy: waiting image
        push(source, encoder, output, run, 1.5)  # the camera again
        assert nginx.publishers("steps") == 1
    finally:
        output.close()
    assert camera.configures == 2 and camera.captures == 0
    assert camera.config["main"]["size"] == (160, 90)
    frames = frames_of(nginx.recordings("steps")[-1])
    sizes = [(w, h) for w, h, _, _ in frames]
    runs = [size for i, size in enumerate(sizes) if i == 0 or size != sizes[i - 1]]
    # camera 320x180 → camera 160x90 → waiting image (libx264, 160x90) → camera 160x90
    assert runs == [(320, 180), (160, 90)], runs
    changes = [i for i in range(1, len(frames)) if sizes[i] != sizes[i - 1]]
    assert all(frames[i][2] == 1 for i in changes)  # every change starts at a key frame
    times = [t for *_, t in frames]
    assert times == sorted(times) and len(frames) >= 100
    assert max(b - a for a, b in itertools.pairwise(times)) < 0.5  # no hole
    keys = [pts for pts, key in run.packets if key]
    assert len(keys) >= 4  # start, step, waiting image, camera back


def test_fallback_chain_picamera2_then_v4l2m2m_then_libx264(
        pi: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder, reasons = open_video_encoder(PLAN, "auto", hardware_available=True,
                                          camera_feed=True)
    assert encoder.name == "picamera2" and reasons == []
    encoder.close()
    monkeypatch.setattr(picam_encode, "ENCODER_DEVICE", "/nonexistent/video11")
    encoder, reasons = open_video_encoder(PLAN, "hardware", hardware_available=False,
                                          camera_feed=True)
    assert encoder.name == "libx264" and len(reasons) == 2
    assert "/nonexistent/video11" in reasons[0] and "h264_v4l2m2m" in reasons[1]
    encoder.close()
    monkeypatch.setitem(sys.modules, "picamera2.encoders", None)  # not installed
    with pytest.raises(HardwareEncoderUnavailable, match="picamera2 is not installed"):
        PicamVideoEncoder(PLAN)


def test_an_encoder_that_cannot_start_leaves_the_camera_to_libx264(pi: ModuleType) -> None:
    encoder = PicamVideoEncoder(PLAN)
    source = Picamera2Source()
    source.open(PLAN.width, PLAN.height, PLAN.fps)
    try:
        def refuse(*_: object, **__: object) -> None:
            raise OSError(16, "Device or resource busy")

        source.camera.start_encoder = refuse
        assert not source.feed(encoder)
        why = encoder.take_fallback()
        assert "cannot start" in why and "Device or resource busy" in why
        assert encoder.take_fallback() == ""  # reported once
        assert encoder.name == "libx264"
        packets = []
        for i in range(10):
            frame = source.read()
            assert isinstance(frame.image, av.VideoFrame)  # pixels again
            packets += encoder.encode(frame.image, i * 50)
        assert packets and packets[0].is_keyframe
        assert source.camera.captures == 10
    finally:
        source.close()
        encoder.close()


def test_rotation_keeps_the_pixel_path(pi: ModuleType) -> None:
    encoder = PicamVideoEncoder(PLAN)
    source = Picamera2Source()
    source.set_controls(rotation=90)
    source.open(PLAN.width, PLAN.height, PLAN.fps)
    try:
        assert not source.feed(encoder)
        assert "rotation 90" in encoder.take_fallback() and encoder.name == "libx264"
        assert isinstance(source.read().image, av.VideoFrame)
    finally:
        source.close()
        encoder.close()
