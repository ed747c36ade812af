"""H.264 and AAC encoders over standalone PyAV codec contexts.

The encoders are not tied to an output container: they are opened with GLOBAL_HEADER so
their `extradata` (SPS/PPS, AudioSpecificConfig) is known up front, and an RTMP output can
be closed and reopened on reconnect while the encoders keep running (`StreamParams` is all
an output needs). libx264 is opened with VBV (`maxrate`/`bufsize`) because only then does a
bit-rate change take effect mid-stream, which bitrate adaptation relies on.

A cheaper picture (smaller size or lower fps: resolution steps, 1107) is asked for from any
thread with `request_size`; the capture thread applies it at its next frame by reopening the
codec, so the change lands on a key frame. The reopened codec keeps SPS/PPS in-band and its
packets carry them as new-extradata side data (FFmpeg's `extract_extradata` filter): FLV
writes a new AVC sequence header and the same RTMP session goes on at the new size (checked
with ffprobe and a live reader through nginx-rtmp); a new session after a reconnect gets it
at its first key frame the same way.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction

import av
from av.bitstream import BitStreamFilterContext
from av.codec.context import CodecContext, Flags
from av.video.frame import PictureType

from edgelive.codes import Code
from edgelive.config.presets import AudioPlan, VideoPlan
from edgelive.media.rate_control import set_vbv

MS = Fraction(1, 1000)
"""Video timestamps are capture times in milliseconds since the stream started."""


class EncoderError(Exception):
    """An encoder failed to open or to encode; `code` is the seed's error code."""

    code: Code = Code.PUSH_ERR_VIDEO_ENCODE_FAIL


class VideoEncodeError(EncoderError):
    code = Code.PUSH_ERR_VIDEO_ENCODE_FAIL


class AudioEncodeError(EncoderError):
    code = Code.PUSH_ERR_AUDIO_ENCODE_FAIL


class HardwareEncoderUnavailable(VideoEncodeError):
    """The hardware encoder cannot be used; the caller falls back to software (1103)."""


@dataclass(frozen=True)
class StreamParams:
    """What an output needs to carry one encoded stream."""

    codec: str  # "h264" | "aac"
    time_base: Fraction
    extradata: bytes
    width: int = 0
    height: int = 0
    fps: int = 0
    sample_rate: int = 0
    layout: str = ""
    bit_rate: int = 0


@dataclass(frozen=True)
class PictureSize:
    """What the encoder encodes: size and frame rate (a cheaper path lowers them)."""

    width: int
    height: int
    fps: int


class VideoEncoder(ABC):
    """H.264 encoder: frames with millisecond timestamps in, packets out.

    It also keeps the time spent encoding, so the pusher can tell when it cannot keep up
    with the frame rate (1107), and takes requests for a smaller picture from any thread.
    """

    name: str
    """Encoder in use, as reported in netstatus: libx264 | h264_v4l2m2m | picamera2."""

    def __init__(self, plan: VideoPlan) -> None:
        self.plan = plan
        self.kbps = plan.max_kbps
        self.size = PictureSize(plan.width, plan.height, plan.fps)
        """What is encoded now; `request_size` changes it at the next frame."""
        self._wanted: PictureSize | None = None
        self._load_lock = threading.Lock()
        self._frames = 0
        self._busy_s = 0.0

    @property
    @abstractmethod
    def params(self) -> StreamParams:
        """The stream as opened (a later size change travels in-band, see the module)."""

    @abstractmethod
    def encode(self, frame: av.VideoFrame | None, pts_ms: int) -> list[av.Packet]:
        """Encode one frame shown at `pts_ms`; returns the packets that are ready."""

    @abstractmethod
    def force_keyframe(self) -> None:
        """Make the next encoded frame a key frame (switch, reconnect, new viewer). Call it
        from the thread that encodes: other threads ask that thread (the pusher's
        `_key_wanted`), so a request is never cleared by an encode already under way."""

    @abstractmethod
    def set_bitrate(self, kbps: int) -> None:
        """Change the target bitrate live, without reopening."""

    @abstractmethod
    def close(self) -> None: ...

    def take_fallback(self) -> str:
        """Why the encoder left its hardware path since the last call ("" = it did not);
        the pusher reports it as 1103."""
        return ""

    def request_size(self, size: PictureSize) -> None:
        """Encode at `size` from the next frame on (a key frame); safe from any thread."""
        self._wanted = None if size == self.size else size

    def take_load(self) -> tuple[int, float]:
        """(frames encoded, seconds spent encoding them) since the previous call."""
        with self._load_lock:
            load = (self._frames, self._busy_s)
            self._frames, self._busy_s = 0, 0.0
        return load

    def _count_load(self, busy_s: float) -> None:
        with self._load_lock:
            self._frames += 1
            self._busy_s += busy_s

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bits(kbps: int) -> int:
    return kbps * 1000


class PyAvVideoEncoder(VideoEncoder):
    """libx264 (software) or h264_v4l2m2m (the Pi's hardware encoder) through PyAV."""

    def __init__(self, plan: VideoPlan, codec_name: str = "libx264") -> None:
        super().__init__(plan)
        self.name = codec_name
        self._force_key = False
        self._ctx = self._open(self.size, global_header=True)
        self._params = StreamParams("h264", MS, bytes(self._ctx.extradata or b""),
                                    width=plan.width, height=plan.height, fps=plan.fps,
                                    bit_rate=_bits(self.kbps))
        self._headers: BitStreamFilterContext | None = None
        """After a size change: copies the in-band SPS/PPS to new-extradata side data."""
        self._next_due_ms: float | None = None
        self._closed = False

    def _open(self, size: PictureSize, *, global_header: bool) -> CodecContext:
        plan, codec_name = self.plan, self.name
        gop_frames = max(1, round(plan.gop_seconds * size.fps))
        try:
            ctx = CodecContext.create(codec_name, "w")
            ctx.width, ctx.height = size.width, size.height
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = MS
            ctx.framerate = Fraction(size.fps)
            ctx.gop_size = gop_frames
            ctx.max_b_frames = 0 if plan.low_latency else 2
            ctx.bit_rate = _bits(self.kbps)
            if global_header:
                ctx.flags |= Flags.global_header
            ctx.options = self._options(codec_name, gop_frames)
            ctx.open()
        except (av.FFmpegError, ValueError) as exc:
            if codec_name != "libx264":
                raise HardwareEncoderUnavailable(
                    f"hardware H.264 encoder {codec_name} cannot be opened: {exc}") from None
            raise VideoEncodeError(f"cannot open H.264 encoder {codec_name}: {exc}") from None
        return ctx

    def _options(self, codec_name: str, gop_frames: int) -> dict[str, str]:
        if codec_name != "libx264":
            return {}
        plan = self.plan
        options = {
            "preset": "ultrafast",
            # Key frames exactly every GOP: no scene-cut keys, no shorter intervals.
            "keyint_min": str(gop_frames),
            "sc_threshold": "0",
            "forced-idr": "1",
            # VBV makes live bit-rate changes effective (FACTS: ignored without it).
            # the target in use: the plan's maximum at first, the adapted rate on a resize
            "maxrate": f"{self.kbps}k",
            "bufsize": f"{self._vbv_buffer_kbit(self.kbps)}k",
        }
        if plan.low_latency:
            options["tune"] = "zerolatency"
        return options

    @property
    def params(self) -> StreamParams:
        return self._params

    def encode(self, frame: av.VideoFrame | None, pts_ms: int) -> list[av.Packet]:
        if self._closed:
            raise VideoEncodeError(f"{self.name} encoder is closed")
        wanted = self._wanted
        if wanted is not None and frame is not None:
            self._resize(wanted)
        if frame is not None:
            if self._skip(pts_ms):
                return []
            frame = self._fit(frame)
            frame.pts = pts_ms
            frame.time_base = MS
            if self._force_key:
                frame.pict_type = PictureType.I
        started = time.monotonic()
        try:
            packets = self._encode_packets(frame)
            if self._headers is not None:
                packets = [out for p in packets for out in self._headers.filter(p)]
        except (av.FFmpegError, ValueError) as exc:
            raise VideoEncodeError(f"H.264 encoding failed ({self.name}): {exc}") from None
        finally:
            if frame is not None and self._force_key:
                frame.pict_type = PictureType.NONE  # the source may hand us this frame again
                self._force_key = False
        if frame is not None:
            self._count_load(time.monotonic() - started)
        return packets

    def _encode_packets(self, frame: av.VideoFrame | None) -> list[av.Packet]:
        return self._ctx.encode(frame)

    def _resize(self, size: PictureSize) -> None:
        """Reopen at `size`; its first frame is a key frame with SPS/PPS in-band."""
        self._ctx = self._open(size, global_header=False)
        self._headers = BitStreamFilterContext("extract_extradata", "h264")
        self.size, self._wanted = size, None
        self._next_due_ms = None

    def _skip(self, pts_ms: int) -> bool:
        """Below the source's frame rate, frames are dropped to keep the encoder's rate."""
        if self.size.fps >= self.plan.fps:
            return False
        interval = 1000 / self.size.fps
        if self._next_due_ms is not None and pts_ms < self._next_due_ms:
            return True
        # Tolerate capture jitter: due again a little before one interval from now.
        self._next_due_ms = pts_ms + interval * 0.8
        return False

    def _fit(self, frame: av.VideoFrame) -> av.VideoFrame:
        size = self.size
        if (frame.width, frame.height) == (size.width, size.height):
            return frame
        return frame.reformat(width=size.width, height=size.height, format="yuv420p")

    def force_keyframe(self) -> None:
        self._force_key = True

    def set_bitrate(self, kbps: int) -> None:
        self.kbps = max(1, min(kbps, self.plan.max_kbps))
        self._ctx.bit_rate = _bits(self.kbps)
        if self.name == "libx264":
            # The ceiling follows, or x264 takes seconds to come down to a lower target.
            set_vbv(self._ctx, self.kbps, self._vbv_buffer_kbit(self.kbps))

    def _vbv_buffer_kbit(self, max_kbps: int) -> int:
        """One second of the ceiling in low-latency modes (a key frame crosses the link in
        about a second at most), two otherwise."""
        return max_kbps // 2 if self.plan.low_latency else max_kbps * 2

    def close(self) -> None:
        self._closed = True  # PyAV frees the codec context with its last reference


def open_video_encoder(plan: VideoPlan, choice: str, *, hardware_available: bool,
                       hardware_codec: str = "h264_v4l2m2m",
                       camera_feed: bool = False) -> tuple[VideoEncoder, list[str]]:
    """Open the encoder `choice` (auto | hardware | software) asks for.

    The hardware chain is picamera2's H264Encoder on the camera's own buffers (when the
    source is the Pi camera: `camera_feed`), then `hardware_codec` through PyAV, then
    libx264. Returns the encoder and why each hardware step was passed over, in order (the
    pusher reports each as 1103); none when hardware was not wanted or the first step opened.
    """
    wants_hardware = choice == "hardware" or (choice == "auto" and hardware_available)
    if not wants_hardware:
        return PyAvVideoEncoder(plan, "libx264"), []
    reasons = []
    if camera_feed:
        from edgelive.media.picam_encode import PicamVideoEncoder  # imports encode: lazy

        try:
            return PicamVideoEncoder(plan), []
        except HardwareEncoderUnavailable as exc:
            reasons.append(f"{exc}; trying {hardware_codec}")
    try:
        return PyAvVideoEncoder(plan, hardware_codec), reasons
    except HardwareEncoderUnavailable as exc:
        reasons.append(str(exc))
    return PyAvVideoEncoder(plan, "libx264"), reasons


class AudioEncoder:
    """AAC at the plan's rate/channels/bitrate; takes any PCM frames, resamples and
    re-chunks them to the encoder's frame size, and stamps them by sample count."""

    def __init__(self, plan: AudioPlan) -> None:
        self.plan = plan
        layout = "mono" if plan.channels == 1 else "stereo"
        try:
            ctx = CodecContext.create("aac", "w")
            ctx.sample_rate = plan.sample_rate
            ctx.layout = layout
            ctx.format = "fltp"
            ctx.bit_rate = _bits(plan.kbps)
            ctx.time_base = Fraction(1, plan.sample_rate)
            ctx.flags |= Flags.global_header
            ctx.open()
        except (av.FFmpegError, ValueError) as exc:
            raise AudioEncodeError(f"cannot open AAC encoder: {exc}") from None
        self._ctx = ctx
        self._layout = layout
        self._resampler = av.AudioResampler(format="fltp", layout=layout,
                                            rate=plan.sample_rate,
                                            frame_size=ctx.frame_size)
        self._resampling = False
        """Set once a frame needed the resampler: from then on all go through it, so
        samples it holds back are never overtaken."""
        self._next_pts: int | None = None
        self._closed = False

    @property
    def params(self) -> StreamParams:
        return StreamParams("aac", Fraction(1, self.plan.sample_rate),
                            bytes(self._ctx.extradata or b""),
                            sample_rate=self.plan.sample_rate, layout=self._layout,
                            bit_rate=_bits(self.plan.kbps))

    def encode(self, frame: av.AudioFrame, start_ms: int) -> list[av.Packet]:
        """Encode PCM; `start_ms` (stream time of this frame) anchors the first one only,
        later frames follow by sample count so audio timestamps never jump."""
        if self._closed:
            raise AudioEncodeError("AAC encoder is closed")
        if self._next_pts is None:
            # FFmpeg's AAC packets come out one frame (the priming) before their input:
            # start no earlier than that so no timestamp is negative.
            self._next_pts = max(start_ms * self.plan.sample_rate // 1000, self._ctx.frame_size)
        frame.pts = None
        packets: list[av.Packet] = []
        try:
            for chunk in self._chunks(frame):
                chunk.pts = self._next_pts
                chunk.time_base = self._ctx.time_base
                self._next_pts += chunk.samples
                packets.extend(self._ctx.encode(chunk))
        except (av.FFmpegError, ValueError) as exc:
            raise AudioEncodeError(f"AAC encoding failed: {exc}") from None
        return packets

    def _chunks(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        """`frame` as encoder-sized fltp chunks; one that is already that (the sources'
        usual frames) skips the resampler's filter graph."""
        if not self._resampling and self._fits(frame):
            return [frame]
        self._resampling = True
        return self._resampler.resample(frame)

    def _fits(self, frame: av.AudioFrame) -> bool:
        return (frame.samples == self._ctx.frame_size
                and frame.sample_rate == self.plan.sample_rate
                and frame.format.name == "fltp" and frame.layout.name == self._layout)

    def close(self) -> None:
        self._closed = True  # PyAV frees the codec context with its last reference
