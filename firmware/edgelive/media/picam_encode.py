"""picamera2's H264Encoder as a `VideoEncoder`: the Pi's hardware encoder fed by the ISP.

On a Pi camera with the VideoCore encoder, no picture comes into Python: picamera2 hands
each camera buffer (a dma-buf) to `H264Encoder` itself, and the camera source gives the
pusher only a `FedPicture` (the request's sensor timestamp) to pace and stamp the stream.
The encoder's own thread hands each encoded frame to an Output's `outputframe(frame,
keyframe, timestamp)`; this adapter queues them and `encode()` returns them as PyAV packets.

What the pusher asks of every encoder, and how it is done here (docs/pi-encoder.md):
- key frame on demand: `H264Encoder.force_key_frame()` (picamera2 ≥ 0.3.32), else the
  V4L2 control FORCE_KEY_FRAME on the codec device; packets before it are dropped.
- live bitrate: the V4L2 control VIDEO_BITRATE set on the running codec device, which the
  bcm2835-codec driver passes to the VPU at once (25 kbit/s steps, 25 kbit/s–25 Mbit/s).
- SPS/PPS in band: `repeat=True` puts them before every key frame; every packet goes
  through FFmpeg's `extract_extradata`, so a key frame whose parameter sets differ from the
  last ones (another size, the other encoder) makes the FLV muxer send a new AVC sequence
  header on the same RTMP session.
- presentation times: sensor timestamps (µs, CLOCK_MONOTONIC) moved onto the stream clock
  by the offset of the latest `FedPicture`, whose pts the pusher computed from the same
  sensor timestamp.
- a smaller picture (resolution step): the camera's main stream is reconfigured and the
  encoder restarted; its first frame is a key frame with the new SPS/PPS.
- the debug overlay: drawn into the camera buffer's luma in picamera2's `post_callback`
  (after snapshots copy it, before it goes to the encoder): no copy either.
- pictures with pixels (the waiting image, or a camera whose hardware feed failed): encoded
  by a software encoder (libx264) on the same stream; hardware packets are dropped meanwhile
  and the camera resumes at a hardware key frame.

picamera2 is imported only when this class is built.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from av.bitstream import BitStreamFilterContext

from edgelive.config.presets import VideoPlan
from edgelive.media.encode import (
    MS,
    HardwareEncoderUnavailable,
    PictureSize,
    PyAvVideoEncoder,
    StreamParams,
    VideoEncodeError,
    VideoEncoder,
)
from edgelive.media.overlay import draw_status

log = logging.getLogger(__name__)

ENCODER_DEVICE = "/dev/video11"  # the VideoCore H.264 encoder picamera2's H264Encoder opens
FIRST_KEY_TIMEOUT_S = 3.0
V4L2_CID_MPEG_VIDEO_BITRATE = 0x009909CF  # V4L2_CID_CODEC_BASE + 207
V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME = 0x009909E5  # V4L2_CID_CODEC_BASE + 229
VIDIOC_S_CTRL = 0xC008561C  # _IOWR('V', 28, struct v4l2_control)
BITRATE_STEP = 25_000
"""The driver's bitrate control: 25 kbit/s steps from 25 kbit/s to 25 Mbit/s."""

Ioctl = Callable[[Any, int, Any], Any]
codec_ioctl: Ioctl = fcntl.ioctl
"""How a control reaches the codec device (tests put a model of the driver here)."""


class V4l2Control(ctypes.Structure):
    """struct v4l2_control: the argument of VIDIOC_S_CTRL."""

    _fields_ = (("id", ctypes.c_uint32), ("value", ctypes.c_int32))


@dataclass(frozen=True)
class FedPicture:
    """A camera picture that picamera2 hands to the hardware encoder itself: only its
    sensor timestamp comes into Python. `overlay` is text to burn into the pictures that
    follow (the pusher's debug stats), `still` takes a copy of the next picture (snapshots)."""

    sensor_us: int
    still: Callable[[], av.VideoFrame]
    overlay: tuple[str, ...] = ()


def parameter_sets(annexb: bytes) -> bytes:
    """The SPS and PPS NAL units (types 7, 8) of an Annex B access unit, with start codes."""
    units = annexb.split(b"\x00\x00\x01")
    kept = [u.rstrip(b"\x00") for u in units[1:] if u and (u[0] & 0x1F) in (7, 8)]
    return b"".join(b"\x00\x00\x00\x01" + u for u in kept)


def bitrate_step(bits: int) -> int:
    """The value the driver keeps for a bitrate control write (rounded to its step)."""
    bits = max(BITRATE_STEP, min(bits, 25_000_000))
    return (bits + BITRATE_STEP // 2) // BITRATE_STEP * BITRATE_STEP


class PicamVideoEncoder(VideoEncoder):
    """H264Encoder on the camera that `attach()` is given, libx264 for pictures with pixels."""

    def __init__(self, plan: VideoPlan) -> None:
        super().__init__(plan)
        try:
            picamera2 = importlib.import_module("picamera2")
            encoders = importlib.import_module("picamera2.encoders")
            outputs = importlib.import_module("picamera2.outputs")
        except ImportError:
            raise HardwareEncoderUnavailable("picamera2 is not installed") from None
        if not os.path.exists(ENCODER_DEVICE):
            raise HardwareEncoderUnavailable(f"picamera2's H264Encoder needs the VideoCore "
                                             f"encoder {ENCODER_DEVICE}, which is absent")
        self.name = "picamera2"
        self._h264_class = encoders.H264Encoder
        self._mapped_array = picamera2.MappedArray
        adapter = self

        class PacketOutput(outputs.Output):  # type: ignore[misc, name-defined]
            def outputframe(self, frame: bytes, keyframe: bool = True,
                            timestamp: int | None = None, *_: Any, **__: Any) -> None:
                adapter._frame_out(self, bytes(frame), keyframe, timestamp or 0)

        self._output_class = PacketOutput
        self._software = PyAvVideoEncoder(plan, "libx264")
        self._headers = BitStreamFilterContext("extract_extradata", "h264")
        self._lock = threading.Lock()
        self._camera: Any = None
        self._h264: Any = None
        self._output: Any = None
        self._packets: queue.SimpleQueue[tuple[bytes, bool, int]] = queue.SimpleQueue()
        self._first_key = threading.Event()
        self._hw_extradata = b""
        self._need_key = True  # hardware packets are dropped until a key frame
        self._on_hardware = False  # the previous picture was a FedPicture
        self._offset_ms = 0.0  # stream ms − sensor ms, from the latest FedPicture
        self._last_pts = -1
        self._overlay: tuple[str, ...] = ()
        self._fallback = ""  # why the hardware path was given up, for good
        self._news = ""  # the same, until the pusher has reported it (1103)
        self._closed = False

    # -- the camera (called by the camera source)

    def attach(self, camera: Any) -> bool:
        """Start the hardware encoder on this started Picamera2; False (and a reason for
        `take_fallback`) when it cannot be started: the source then hands out pixels."""
        with self._lock:
            if self._closed or self._fallback:
                return False
            self._stop_h264()  # another camera (switchCamera) is closed after this one opened
            self._camera = camera
            try:
                self._start_h264()
            except Exception as exc:  # picamera2 and V4L2 raise assorted types
                self._camera = self._h264 = None
                self._give_up(f"picamera2's H264Encoder cannot start ({exc})")
                return False
            camera.post_callback = self._draw_overlay
            return True

    def detach(self, camera: Any) -> None:
        """The camera is about to stop: stop its encoder first. Safe twice."""
        with self._lock:
            if camera is not self._camera:
                return
            self._stop_h264()
            if getattr(camera, "post_callback", None) == self._draw_overlay:
                camera.post_callback = None
            self._camera = None

    def decline(self, why: str) -> None:
        """The camera cannot feed the encoder: its pictures go to libx264 (1103, `why`)."""
        with self._lock:
            if not self._fallback:
                self._give_up(why)

    def fed_by(self, camera: Any) -> bool:
        """The hardware encoder takes this camera's buffers (the source skips the copy)."""
        return camera is not None and camera is self._camera and self._h264 is not None

    def _start_h264(self) -> None:
        """Caller holds the lock. A new encoder: its first frame is a key frame."""
        self._output = self._output_class()
        self._h264 = self._h264_class(bitrate=bitrate_step(self.kbps * 1000), repeat=True,
                                      iperiod=max(1, round(self.plan.gop_seconds
                                                           * self.size.fps)))
        self._need_key = True
        self._on_hardware = True  # its first frame is a key frame anyway
        self._camera.start_encoder(self._h264, self._output)

    def _stop_h264(self) -> None:
        h264, self._h264, self._output = self._h264, None, None
        if h264 is not None and self._camera is not None:
            self._camera.stop_encoder(h264)

    def _give_up(self, why: str) -> None:
        self._fallback = self._news = f"{why}; libx264 encodes the camera"
        self.name = "libx264"
        self._first_key.set()  # params: nothing more to wait for

    def _frame_out(self, output: Any, data: bytes, keyframe: bool, timestamp_us: int) -> None:
        """picamera2's encoder thread: keep the frame with its sensor time (µs)."""
        h264 = self._h264
        if output is not self._output or h264 is None:
            return  # a stopped encoder's last frames
        if keyframe and not self._first_key.is_set():
            self._hw_extradata = parameter_sets(data)
            self._first_key.set()
        # picamera2 gives times relative to the encoder's first frame; add it back so
        # restarts (bitrate, size) stay on one sensor clock.
        sensor_us = timestamp_us + (h264.firsttimestamp or 0)
        self._packets.put((data, keyframe, sensor_us))

    def _draw_overlay(self, request: Any) -> None:
        """picamera2's post_callback: the debug text into the buffer the encoder gets."""
        lines = self._overlay
        if not lines:
            return
        width, height = self.size.width, self.size.height
        with self._mapped_array(request, "main") as mapped:
            draw_status(mapped.array[:height, :width], lines)

    # -- VideoEncoder

    @property
    def params(self) -> StreamParams:
        """The camera's SPS/PPS when it feeds the encoder, else libx264's."""
        if self._camera is not None and not self._first_key.wait(FIRST_KEY_TIMEOUT_S):
            with self._lock:
                camera = self._camera
                self._stop_h264()
                self._camera = None
                self._give_up(f"picamera2's H264Encoder gave no key frame in "
                              f"{FIRST_KEY_TIMEOUT_S:g} s")
            if camera is not None:
                camera.post_callback = None
        extradata = self._hw_extradata or self._software.params.extradata
        return StreamParams("h264", MS, extradata, width=self.plan.width,
                            height=self.plan.height, fps=self.plan.fps,
                            bit_rate=self.kbps * 1000)

    def encode(self, frame: av.VideoFrame | FedPicture | None,
               pts_ms: int) -> list[av.Packet]:
        if self._closed:
            raise VideoEncodeError("picamera2 encoder is closed")
        if isinstance(frame, FedPicture):
            return self._encode_fed(frame, pts_ms)
        if frame is None:
            return self._drain() if self._on_hardware else []
        if self._on_hardware:  # the camera's frames stop here until it is back
            self._on_hardware = False
            self._discard()
            self._software.force_keyframe()  # its last frame was long ago
        with self._lock:
            wanted = self._wanted
            if wanted is not None:
                self._software.request_size(wanted)
                self.size = wanted
                if self._camera is None:  # else the camera follows when it is back
                    self._wanted = None
        started = time.monotonic()
        packets = [self._with_headers(p) for p in self._software.encode(frame, pts_ms)]
        self._count_load(time.monotonic() - started)
        return self._filtered(packets)

    def _encode_fed(self, picture: FedPicture, pts_ms: int) -> list[av.Packet]:
        self._offset_ms = pts_ms - picture.sensor_us / 1000
        self._overlay = picture.overlay
        if not self._on_hardware:
            self._on_hardware = True
            self._discard()  # what was encoded while the waiting image went out
            self._key_now()
        if self._wanted is not None:
            self._resize()
        self._count_load(0.0)  # encoded by the VPU: no CPU time here
        return self._drain()

    def _discard(self) -> None:
        while True:
            try:
                self._packets.get_nowait()
            except queue.Empty:
                break
        self._need_key = True

    def _drain(self) -> list[av.Packet]:
        packets = []
        while True:
            try:
                data, keyframe, sensor_us = self._packets.get_nowait()
            except queue.Empty:
                return self._filtered(packets)
            if self._need_key and not keyframe:
                continue
            self._need_key = False
            packet = av.Packet(data)
            packet.pts = packet.dts = round(sensor_us / 1000 + self._offset_ms)
            packet.time_base = MS
            packet.is_keyframe = keyframe
            packets.append(packet)

    def _with_headers(self, packet: av.Packet) -> av.Packet:
        """libx264 (opened with global headers) keeps SPS/PPS out of band: put them in
        front of its key frames like the hardware does, so a switch is seen in band."""
        if not packet.is_keyframe or parameter_sets(bytes(packet)):
            return packet  # after a size change libx264 puts them in band itself
        keyed = av.Packet(self._software.params.extradata + bytes(packet))
        keyed.pts, keyed.dts, keyed.time_base = packet.pts, packet.dts, packet.time_base
        keyed.is_keyframe = True
        return keyed

    def _filtered(self, packets: list[av.Packet]) -> list[av.Packet]:
        """Strictly increasing times across both encoders, and new-extradata side data on
        every key frame (the FLV muxer sends a sequence header only when it changed)."""
        out = []
        for packet in packets:
            if packet.pts is None or packet.pts <= self._last_pts:
                if packet.is_keyframe or packet.pts is None:
                    packet.pts = packet.dts = self._last_pts + 1
                else:
                    continue  # late P-frame of the other encoder: not decodable here
            self._last_pts = packet.pts
            out.extend(self._headers.filter(packet))
        return out

    def _key_now(self) -> None:
        h264 = self._h264
        if h264 is None:
            return
        self._need_key = True
        if hasattr(h264, "force_key_frame"):
            h264.force_key_frame()
        else:
            self._set_control(V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1)

    def _set_control(self, control: int, value: int) -> None:
        """A control on the running codec device. A failure is logged, not raised: the
        encoder may be restarting (a size change) on the capture thread, and a restart takes
        the bitrate kept on the encoder object."""
        h264 = self._h264
        if h264 is None or getattr(h264, "vd", None) is None:
            return
        try:
            codec_ioctl(h264.vd, VIDIOC_S_CTRL, V4l2Control(control, value))
        except (OSError, ValueError) as exc:
            log.warning("VideoCore encoder control %#x = %d not taken: %s", control, value, exc)

    def _resize(self) -> None:
        """Reconfigure the camera's main stream to the wanted size, restart the encoder."""
        with self._lock:
            size, self._wanted = self._wanted, None
            camera = self._camera
            if size is None or camera is None:
                return
            self._stop_h264()
            try:
                camera.stop()
                config = camera.create_video_configuration(
                    main={"size": (size.width, size.height), "format": "YUV420"},
                    controls={"FrameRate": float(size.fps)})
                camera.configure(config)
                camera.start()
                self.size = size
                self._software.request_size(size)
                self._start_h264()
            except Exception as exc:
                raise VideoEncodeError(f"picamera2: cannot change to {size.width}x"
                                       f"{size.height}@{size.fps} ({exc})") from None

    def force_keyframe(self) -> None:
        if self._on_hardware:
            self._key_now()
        else:
            self._software.force_keyframe()

    def set_bitrate(self, kbps: int) -> None:
        self.kbps = max(1, min(kbps, self.plan.max_kbps))
        self._software.set_bitrate(self.kbps)
        bits = bitrate_step(self.kbps * 1000)
        h264 = self._h264
        if h264 is not None:
            h264.bitrate = bits  # kept for a restart
            self._set_control(V4L2_CID_MPEG_VIDEO_BITRATE, bits)

    def request_size(self, size: PictureSize) -> None:
        with self._lock:
            self._wanted = None if size == self.size else size

    def take_fallback(self) -> str:
        why, self._news = self._news, ""
        return why

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_h264()
            camera, self._camera = self._camera, None
        if camera is not None and getattr(camera, "post_callback", None) == self._draw_overlay:
            camera.post_callback = None
        self._software.close()
