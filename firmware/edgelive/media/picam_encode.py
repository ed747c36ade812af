"""picamera2's H264Encoder as a `VideoEncoder`: the Pi's hardware encoder fed by the ISP.

picamera2 drives the encoder itself (its own thread) and hands each encoded frame to an
Output's `outputframe(frame, keyframe, timestamp)`; this adapter queues them as PyAV packets
for the RTMP output. `encode()` ignores the picture it is given (the camera already feeds the
encoder) and returns what arrived since the last call, on the pusher's stream clock.
H264Encoder emits Annex B with SPS/PPS before each key frame (`repeat=True`): the first key
frame's SPS/PPS is the stream's extradata. A bitrate change restarts the encoder, whose
first frame is a key frame. picamera2 is imported only when this class is used.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import av

from edgelive.config.presets import VideoPlan
from edgelive.media.encode import MS, StreamParams, VideoEncodeError, VideoEncoder

FIRST_KEY_TIMEOUT_S = 3.0
RESTART_SHARE = 0.05
"""Bitrate changes under 5 % are not worth an encoder restart (a key frame each)."""


def parameter_sets(annexb: bytes) -> bytes:
    """The SPS and PPS NAL units (types 7, 8) of an Annex B access unit, with start codes."""
    units = annexb.split(b"\x00\x00\x01")
    kept = [u.rstrip(b"\x00") for u in units[1:] if u and (u[0] & 0x1F) in (7, 8)]
    return b"".join(b"\x00\x00\x00\x01" + u for u in kept)


class PicamVideoEncoder(VideoEncoder):
    """H264Encoder on a started Picamera2; `camera` is the Picamera2 object."""

    name = "picamera2"

    def __init__(self, plan: VideoPlan, camera: Any) -> None:
        super().__init__(plan)
        from picamera2.encoders import H264Encoder
        from picamera2.outputs import Output

        adapter = self

        class PacketOutput(Output):  # type: ignore[misc, valid-type]
            def outputframe(self, frame: bytes, keyframe: bool = True,
                            timestamp: int | None = None, *_: Any, **__: Any) -> None:
                adapter._frame_out(bytes(frame), keyframe, timestamp or 0)

        self._camera = camera
        self._make = lambda kbps: H264Encoder(bitrate=kbps * 1000, repeat=True,
                                              iperiod=plan.gop_frames)
        self._output = PacketOutput()
        self._packets: queue.SimpleQueue[tuple[bytes, bool, int]] = queue.SimpleQueue()
        self._first_key = threading.Event()
        self._extradata = b""
        self._origin: tuple[int, int] | None = None  # (camera µs, stream ms) of frame one
        self._wanted_kbps = self.kbps
        self._restart = False
        self._encoder = self._make(self.kbps)
        self._closed = False
        camera.start_encoder(self._encoder, self._output)

    def _frame_out(self, data: bytes, keyframe: bool, timestamp_us: int) -> None:
        """picamera2's encoder thread: keep the frame; the first key frame gives extradata."""
        if keyframe and not self._first_key.is_set():
            self._extradata = parameter_sets(data)
            self._first_key.set()
        self._packets.put((data, keyframe, timestamp_us))

    @property
    def params(self) -> StreamParams:
        if not self._first_key.wait(FIRST_KEY_TIMEOUT_S):
            raise VideoEncodeError("picamera2 H264Encoder gave no key frame")
        return StreamParams("h264", MS, self._extradata, width=self.plan.width,
                            height=self.plan.height, fps=self.plan.fps,
                            bit_rate=self.kbps * 1000)

    def encode(self, frame: av.VideoFrame | None, pts_ms: int) -> list[av.Packet]:
        if self._closed:
            raise VideoEncodeError("picamera2 encoder is closed")
        if self._restart:
            self._restart_encoder()
        packets = []
        while True:
            try:
                data, keyframe, timestamp_us = self._packets.get_nowait()
            except queue.Empty:
                return packets
            if self._origin is None:
                self._origin = (timestamp_us, pts_ms)
            packet = av.Packet(data)
            packet.pts = packet.dts = self._origin[1] + (timestamp_us - self._origin[0]) // 1000
            packet.time_base = MS
            packet.is_keyframe = keyframe
            self._count_load(0.0)  # encoded in hardware: no CPU time here
            packets.append(packet)

    def _restart_encoder(self) -> None:
        """Stop and start the encoder: new bitrate, and a key frame first."""
        self._restart = False
        self._camera.stop_encoder(self._encoder)
        self.kbps = self._wanted_kbps
        self._encoder = self._make(self.kbps)
        self._camera.start_encoder(self._encoder, self._output)

    def force_keyframe(self) -> None:
        self._restart = True

    def set_bitrate(self, kbps: int) -> None:
        kbps = max(1, min(kbps, self.plan.max_kbps))
        if abs(kbps - self.kbps) >= RESTART_SHARE * self.kbps:
            self._wanted_kbps = kbps
            self._restart = True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._camera.stop_encoder(self._encoder)
