"""Bitrate adaptation glue, picture-size changes on one RTMP session, encoder fallback (1103)
and the cheaper path when the encoder cannot keep up (1107); real nginx-rtmp, ffprobe."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest

from edgelive.codes import Code, Source
from edgelive.config.presets import VideoPlan
from edgelive.events import EventLog
from edgelive.media.encode import PictureSize, PyAvVideoEncoder
from edgelive.media.rtmp_out import PacketSender, RtmpOutput, SenderStats
from edgelive.pusher.adapt import Adapter
from edgelive.testbed import NginxRtmp
from tests.test_pusher_cli import codes, push

PLAN = VideoPlan(width=640, height=360, fps=25, gop_frames=25, min_kbps=300, max_kbps=800,
                 low_latency=True)
RNG = np.random.default_rng(3)


def frame(plan: VideoPlan, i: int) -> av.VideoFrame:
    """A moving gradient with some noise: something for the rate control to spend bits on."""
    rows = plan.height * 3 // 2
    picture = (np.arange(plan.width)[None, :] + i * 4 + np.arange(rows)[:, None]) % 256
    picture = picture.astype(np.uint8) ^ RNG.integers(0, 24, (rows, plan.width), np.uint8)
    return av.VideoFrame.from_ndarray(picture, format="yuv420p")


def frame_sizes(recording: Path) -> list[tuple[int, int, int]]:
    """(width, height, key) of every decoded picture, by ffprobe."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-of", "json",
                          "-show_entries", "frame=width,height,key_frame", str(recording)],
                         capture_output=True, text=True, check=True, timeout=30)
    return [(f["width"], f["height"], f["key_frame"]) for f in json.loads(out.stdout)["frames"]]


def recorded(event_log: EventLog) -> list[dict]:
    seen: list[dict] = []
    event_log.subscribe(lambda event: seen.append(event.to_dict()))
    return seen


class Stream:
    """encoder → PacketSender → nginx, paced at the plan's frame rate."""

    def __init__(self, encoder: PyAvVideoEncoder, url: str) -> None:
        self.encoder = encoder
        self.output = RtmpOutput(encoder.params, None)
        self.output.open(url)
        self.sender = PacketSender(self.output, on_error=lambda exc: None,
                                   on_first_packet=lambda: None)
        self.sender.start()
        self.frames = 0

    def run(self, seconds: float, each_second=None) -> None:
        plan = self.encoder.plan
        start, first = time.monotonic(), self.frames
        next_tick = start + 1.0
        while (now := time.monotonic()) < start + seconds:
            for packet in self.encoder.encode(frame(plan, self.frames), self.frames * 40):
                self.sender.put(packet, True, self.frames * 40)
            self.frames += 1
            if each_second and now >= next_tick:
                next_tick += 1.0
                each_second()
            time.sleep(max(0.0, start + (self.frames - first) / plan.fps - time.monotonic()))

    def close(self) -> None:
        self.sender.stop()


def test_a_smaller_picture_continues_the_same_rtmp_session_from_a_key_frame(
        nginx: NginxRtmp) -> None:
    stream = Stream(PyAvVideoEncoder(PLAN), nginx.url("resize"))
    try:
        stream.run(1.2)
        stream.encoder.request_size(PictureSize(320, 180, 25))
        stream.run(1.2)
        assert nginx.publishers("resize") == 1
    finally:
        stream.close()
    recordings = nginx.recordings("resize")
    assert len(recordings) == 1  # one publish
    sizes = frame_sizes(recordings[0])
    switch = next(i for i, s in enumerate(sizes) if s[:2] == (320, 180))
    assert {s[:2] for s in sizes[:switch]} == {(640, 360)}
    assert {s[:2] for s in sizes[switch:]} == {(320, 180)}
    assert sizes[switch][2] == 1  # the new size starts with a key frame
    assert switch >= 20 and len(sizes) - switch >= 20


def stats(send_kbps: float, backlog_ms: int, jitter_ms: float = 5.0) -> SenderStats:
    return SenderStats(send_kbps=send_kbps, queue_depth=backlog_ms // 20,
                       backlog_ms=backlog_ms, dropped_frames=0, jitter_ms=jitter_ms)


def test_adapter_lowers_the_encoder_and_reports_1101_once() -> None:
    events = EventLog(Source.PUSHER)
    seen = recorded(events)
    clock = [0.0]
    wide = VideoPlan(640, 360, 25, 25, 100, 800, True)
    with PyAvVideoEncoder(wide) as encoder:
        adapter = Adapter(encoder, wide, events, other_kbps=32, clock=lambda: clock[0])
        report = adapter.tick(stats(850, 0), 800, waiting=False)
        assert report["targetBitrate"] == 800 and encoder.kbps == 800
        # 450 kbit/s carried, 0.5 s queued: 0.8 × 450 − 32 of audio = 328, minus the queue
        # beyond 0.15 s drained over 3 s: (0.5 − 0.15) × 832 / 3 = 97
        clock[0] = 1.0
        report = adapter.tick(stats(450, 500), 800, waiting=False)
        assert encoder.kbps == report["targetBitrate"] == 231 and report["linkShort"]
        # a blocked mux() with a moderate queue is congestion too, in the same episode:
        # 0.8 × 200 − 32 = 128, less (0.17 − 0.15) × 263 / 3 = 2
        clock[0] = 2.0
        adapter.tick(stats(200, 170, jitter_ms=400), 231, waiting=False)
        assert encoder.kbps == 126
        assert encoder.size == PictureSize(640, 360, 25)  # 100 kbit/s still fits this size
    assert [e["code"] for e in seen] == [Code.PUSH_WARNING_NET_BUSY]
    assert seen[0]["detail"]["send_kbps"] == 450


def test_adapter_steps_the_size_down_when_the_floor_does_not_fit() -> None:
    clock = [0.0]
    with PyAvVideoEncoder(PLAN) as encoder:
        adapter = Adapter(encoder, PLAN, EventLog(Source.PUSHER), other_kbps=32,
                          clock=lambda: clock[0])
        adapter.tick(stats(300, 600), 800, waiting=False)  # 268 < the 300 floor + 15 %
        assert encoder.kbps == 300 and encoder.size.width == 640
        clock[0] = 1.0
        adapter.tick(stats(300, 600), 300, waiting=False)
        assert encoder.size.width == 640  # applied at the next frame, a key frame
        packets = encoder.encode(frame(PLAN, 0), 0)
        assert encoder.size == PictureSize(480, 270, 25) and packets[0].is_keyframe
        clock[0] = 2.0
        report = adapter.tick(stats(300, 300), 300, waiting=False)
        assert (report["videoWidth"], report["videoHeight"]) == (480, 270)


def test_adapter_leaves_the_waiting_image_and_a_lost_link_alone() -> None:
    events = EventLog(Source.PUSHER)
    seen = recorded(events)
    with PyAvVideoEncoder(PLAN) as encoder:
        adapter = Adapter(encoder, PLAN, events, other_kbps=32)
        encoder.set_bitrate(100)  # the waiting image's rate
        adapter.tick(stats(90, 2000), 100, waiting=True)
        adapter.tick(None, 100, waiting=False)
        assert encoder.kbps == 100 and encoder.size == PictureSize(640, 360, 25)
    assert seen == []


def test_a_new_bitrate_range_applies_to_the_running_adapter() -> None:
    events = EventLog(Source.PUSHER)
    with PyAvVideoEncoder(PLAN) as encoder:
        adapter = Adapter(encoder, PLAN, events, other_kbps=32)
        narrower = VideoPlan(640, 360, 25, 25, 300, 500, True)
        report = adapter.tick(stats(850, 0), 800, waiting=False, plan=narrower)
        assert report["targetBitrate"] == 500 and encoder.kbps == 500


class SlowEncoder(PyAvVideoEncoder):
    """libx264 plus an artificial cost: 60 ms a frame at 640x360 (1.5× the 40 ms a frame has
    at 25 fps), 19 ms at 480x270 (well inside it, so one step is enough)."""

    def _encode_packets(self, frame: av.VideoFrame | None) -> list[av.Packet]:
        if frame is not None:
            time.sleep(0.060 * (frame.width * frame.height / (640 * 360)) ** 2)
        return super()._encode_packets(frame)


@pytest.mark.slow
def test_an_encoder_that_cannot_keep_up_switches_to_a_smaller_picture_with_1107(
        nginx: NginxRtmp) -> None:
    events = EventLog(Source.PUSHER)
    seen = recorded(events)
    stream = Stream(SlowEncoder(PLAN), nginx.url("slow"))
    adapter = Adapter(stream.encoder, PLAN, events, other_kbps=0)
    try:
        stream.run(9.0, lambda: adapter.tick(stream.sender.stats(), 500, waiting=False))
    finally:
        stream.close()
    switches = [e for e in seen if e["code"] == Code.PUSH_WARNING_SWITCH_SWENC]
    assert len(switches) == 1, seen  # one step was enough: no second switch
    assert switches[0]["detail"]["encode_ms"] > 0.9 * 40
    assert (switches[0]["detail"]["width"], switches[0]["detail"]["height"]) == (480, 270)
    sizes = frame_sizes(nginx.recordings("slow")[0])
    assert sizes[0][:2] == (640, 360) and sizes[-1][:2] == (480, 270)
    assert nginx.publishers("slow") == 0 and len(nginx.recordings("slow")) == 1


@pytest.mark.slow
def test_encoder_hardware_without_a_hardware_encoder_pushes_software_after_1103(
        nginx: NginxRtmp) -> None:
    rc, lines, stderr = push(nginx.url("hw"), "--source", "testsrc", "--encoder", "hardware",
                             "--resolution", "320x180", "--fps", "15", "--audio-device", "none",
                             "--duration", "4")
    assert rc == 0, stderr
    sequence = codes(lines)
    assert Code.PUSH_WARNING_HW_ACCELERATION_FAIL in sequence
    assert sequence.index(Code.PUSH_WARNING_HW_ACCELERATION_FAIL) < sequence.index(
        Code.PUSH_EVT_PUSH_BEGIN)
    status = [line for line in lines if line["type"] == "netstatus"]
    assert status[-1]["encoder"] == "libx264" and status[-1]["targetBitrate"] > 0
    sizes = frame_sizes(nginx.recordings("hw")[-1])
    assert len(sizes) >= 30 and {s[:2] for s in sizes} == {(320, 180)}
