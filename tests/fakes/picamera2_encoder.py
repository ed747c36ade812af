"""FakeH264Encoder, FakeOutput and a fake VideoCore codec device, with real H.264.

Shaped after picamera2 v0.3.36 (picamera2/encoders/h264_encoder.py, encoder.py,
v4l2_encoder.py, outputs/output.py): `H264Encoder(bitrate, repeat, iperiod, framerate,
enable_sps_framerate, qp, profile)` with `start(quality)`, `stop()`, `encode(stream,
request)`, `force_key_frame()`, `running`, `firsttimestamp`, `output` and the codec device
file `vd`; an `Output` base with `outputframe(frame, keyframe, timestamp, packet, audio)`.

The encoder takes the camera thread's requests, encodes them with libx264 on its own
thread (Annex B, SPS/PPS before each key frame with repeat=True, like the Pi's encoder)
and calls `outputframe` with times relative to its first frame, in µs, as picamera2 does.

`FakeCodecDevice` (the `vd`) stands for /dev/video11 under the bcm2835-codec driver
(raspberrypi/linux drivers/staging/vc04_services/bcm2835-codec/bcm2835-v4l2-codec.c,
`bcm2835_codec_s_ctrl`): VIDEO_BITRATE is taken while streaming (25 kbit/s steps, clamped
to 25 kbit/s–25 Mbit/s as the V4L2 core does for that control's range) and applies from
the next frame; FORCE_KEY_FRAME makes the next frame an IDR. `ioctl(fd, request, arg)`
dispatches VIDIOC_S_CTRL to it, in place of fcntl.ioctl. `make_module()` returns
picamera2 with its `encoders` and `outputs` submodules.
"""

from __future__ import annotations

import errno
import queue
import threading
import types
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.codec.context import CodecContext
from av.video.frame import PictureType

from edgelive.media.picam_encode import (
    V4L2_CID_MPEG_VIDEO_BITRATE,
    V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME,
    VIDIOC_S_CTRL,
)
from tests.fakes import picamera2 as fake_camera

BITRATE_MIN, BITRATE_MAX, BITRATE_STEP = 25_000, 25_000_000, 25_000


class FakeCodecDevice:
    """The controls of one open codec instance, as the driver keeps them."""

    def __init__(self, bitrate: int) -> None:
        self.bitrate = bitrate
        self.key_requests = 0
        self.writes: list[tuple[int, int]] = []
        self.closed = False

    def s_ctrl(self, control: int, value: int) -> None:
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        self.writes.append((control, value))
        if control == V4L2_CID_MPEG_VIDEO_BITRATE:
            value = min(max(value, BITRATE_MIN), BITRATE_MAX)
            self.bitrate = BITRATE_MIN + (value - BITRATE_MIN + BITRATE_STEP // 2) \
                // BITRATE_STEP * BITRATE_STEP
        elif control == V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME:
            self.key_requests += 1
        else:
            raise OSError(errno.EINVAL, "Invalid argument")


def ioctl(fd: Any, request: int, arg: Any) -> int:
    """fcntl.ioctl for a FakeCodecDevice: VIDIOC_S_CTRL only."""
    if not isinstance(fd, FakeCodecDevice) or request != VIDIOC_S_CTRL:
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
    fd.s_ctrl(arg.id, arg.value)
    return 0


class FakeOutput:
    def __init__(self, pts: Any = None) -> None:
        self.recording = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                    packet: Any = None, audio: bool = False) -> None:
        """Subclasses write the frame somewhere."""


class FakeH264Encoder:
    def __init__(self, bitrate: int | None = None, repeat: bool = True,
                 iperiod: int | None = None, framerate: float | None = None,
                 enable_sps_framerate: bool = False, qp: int | None = None,
                 profile: str | None = None) -> None:
        self.bitrate, self.repeat, self.iperiod = bitrate, repeat, iperiod
        self.framerate, self.qp, self.profile = framerate, qp, profile
        self.name = "main"
        self.width = self.height = self.stride = 0
        self.format: str | None = None
        self.firsttimestamp: int | None = None
        self.vd: FakeCodecDevice | None = None
        self.frames = 0
        self.sizes: list[tuple[int, bool]] = []  # (bytes, key) of each frame output
        self._outputs: list[FakeOutput] = []
        self._key_frames_requested = self._key_frames_generated = 0
        self._running = False
        self._queue: queue.Queue[tuple[Any, int] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def output(self) -> Any:
        return self._outputs[0] if len(self._outputs) == 1 else self._outputs

    @output.setter
    def output(self, value: Any) -> None:
        self._outputs = list(value) if isinstance(value, list) else [value]

    def start(self, quality: Any = None) -> None:
        if self._running:
            raise RuntimeError("Encoder already running")
        self._running = True
        self.firsttimestamp = None
        self.vd = FakeCodecDevice(self.bitrate if self.bitrate is not None else 10_000_000)
        for out in self._outputs:
            out.start()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-h264")
        self._thread.start()

    def stop(self) -> None:
        if not self._running:
            raise RuntimeError("Encoder already stopped")
        self._running = False
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(5)
        if self.vd is not None:
            self.vd.closed = True
        for out in self._outputs:
            out.stop()

    def force_key_frame(self) -> None:
        self._key_frames_requested += 1

    def _timestamp(self, request: fake_camera.FakeRequest) -> int:
        ts = int(request.metadata["SensorTimestamp"] / 1000)
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
            return 0
        return ts - self.firsttimestamp

    def encode(self, stream: str, request: fake_camera.FakeRequest) -> None:
        """The camera thread: like V4L2Encoder._encode, the key-frame request goes to the
        device with this frame, which is queued to the codec (here, our thread)."""
        if not self._running:
            return
        assert self.vd is not None
        if self._key_frames_requested > self._key_frames_generated:
            self._key_frames_generated += 1
            self.vd.s_ctrl(V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1)
        # The VPU reads the dma-buf; the fake has to copy it before the camera reuses it.
        self._queue.put((request.buffers[stream].copy(), self._timestamp(request)))

    def _run(self) -> None:
        vd = self.vd
        assert vd is not None
        ctx = CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, "yuv420p"
        ctx.time_base = Fraction(1, 1_000_000)
        ctx.framerate = Fraction(round(self.framerate or 30))  # its rate control's frame budget
        ctx.bit_rate = vd.bitrate
        ctx.gop_size = self.iperiod or 60
        ctx.max_b_frames = 0
        # VBV lets the bitrate change mid-stream, as the VPU's rate control does.
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "forced-idr": "1",
                       "maxrate": f"{vd.bitrate // 1000}k", "bufsize": f"{vd.bitrate // 1000}k"}
        keys_done = 0
        while (item := self._queue.get()) is not None:
            yuv, timestamp_us = item
            rows = self.height * 3 // 2
            planar = yuv.reshape(-1)[:rows * self.stride].reshape(rows, self.stride)
            picture = av.VideoFrame.from_ndarray(self._unpad(planar), format="yuv420p")
            picture.pts = timestamp_us
            if vd.key_requests > keys_done:
                keys_done = vd.key_requests
                picture.pict_type = PictureType.I
            if ctx.bit_rate != vd.bitrate:
                ctx.bit_rate = vd.bitrate
            for packet in ctx.encode(picture):
                data = bytes(packet)  # without GLOBAL_HEADER x264 repeats SPS/PPS in band
                self.frames += 1
                self.sizes.append((len(data), packet.is_keyframe))
                for out in self._outputs:
                    out.outputframe(data, packet.is_keyframe, packet.pts)

    def _unpad(self, planar: np.ndarray) -> np.ndarray:
        """Stride-padded I420 (picamera2's YUV420 buffer) to a tight one for PyAV."""
        w, h, s = self.width, self.height, self.stride
        flat = planar.reshape(-1)
        y = flat[:h * s].reshape(h, s)[:, :w]
        c = (h // 2) * (s // 2)
        u = flat[h * s:h * s + c].reshape(h // 2, s // 2)[:, :w // 2]
        v = flat[h * s + c:h * s + 2 * c].reshape(h // 2, s // 2)[:, :w // 2]
        return np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(
            h * 3 // 2, w)


def make_module(models: tuple[str, ...] = ("imx708",)) -> dict[str, types.ModuleType]:
    """`sys.modules` entries: picamera2, picamera2.encoders, picamera2.outputs."""
    camera = fake_camera.make_module(models)
    encoders = types.ModuleType("picamera2.encoders")
    encoders.H264Encoder = FakeH264Encoder  # type: ignore[attr-defined]
    outputs = types.ModuleType("picamera2.outputs")
    outputs.Output = FakeOutput  # type: ignore[attr-defined]
    return {"picamera2": camera, "picamera2.encoders": encoders, "picamera2.outputs": outputs}
