"""H.264 and AAC encoders over standalone PyAV codec contexts.

The encoders are not tied to an output container: they are opened with GLOBAL_HEADER so
their `extradata` (SPS/PPS, AudioSpecificConfig) is known up front, and an RTMP output can
be closed and reopened on reconnect while the encoders keep running (`StreamParams` is all
an output needs). libx264 is opened with VBV (`maxrate`/`bufsize`) because only then does a
bit-rate change take effect mid-stream, which bitrate adaptation relies on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction

import av
from av.codec.context import CodecContext, Flags
from av.video.frame import PictureType

from edgelive.codes import Code
from edgelive.config.presets import AudioPlan, VideoPlan

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


class VideoEncoder(ABC):
    """H.264 encoder: frames with millisecond timestamps in, packets out."""

    name: str
    """Encoder in use, as reported in netstatus: libx264 | h264_v4l2m2m | picamera2."""

    def __init__(self, plan: VideoPlan) -> None:
        self.plan = plan
        self.kbps = plan.max_kbps

    @property
    @abstractmethod
    def params(self) -> StreamParams: ...

    @abstractmethod
    def encode(self, frame: av.VideoFrame | None, pts_ms: int) -> list[av.Packet]:
        """Encode one frame shown at `pts_ms`; returns the packets that are ready."""

    @abstractmethod
    def force_keyframe(self) -> None:
        """Make the next encoded frame a key frame (switch, reconnect, new viewer)."""

    @abstractmethod
    def set_bitrate(self, kbps: int) -> None:
        """Change the target bitrate live, without reopening."""

    @abstractmethod
    def close(self) -> None: ...

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
        try:
            ctx = CodecContext.create(codec_name, "w")
            ctx.width, ctx.height = plan.width, plan.height
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = MS
            ctx.framerate = Fraction(plan.fps)
            ctx.gop_size = plan.gop_frames
            ctx.max_b_frames = 0 if plan.low_latency else 2
            ctx.bit_rate = _bits(self.kbps)
            ctx.flags |= Flags.global_header
            ctx.options = self._options(codec_name, plan)
            ctx.open()
        except (av.FFmpegError, ValueError) as exc:
            if codec_name != "libx264":
                raise HardwareEncoderUnavailable(
                    f"hardware H.264 encoder {codec_name} cannot be opened: {exc}") from None
            raise VideoEncodeError(f"cannot open H.264 encoder {codec_name}: {exc}") from None
        self._ctx = ctx
        self._closed = False

    def _options(self, codec_name: str, plan: VideoPlan) -> dict[str, str]:
        if codec_name != "libx264":
            return {}
        options = {
            "preset": "ultrafast",
            # Key frames exactly every GOP: no scene-cut keys, no shorter intervals.
            "keyint_min": str(plan.gop_frames),
            "sc_threshold": "0",
            "forced-idr": "1",
            # VBV makes live bit-rate changes effective (FACTS: ignored without it).
            "maxrate": f"{plan.max_kbps}k",
            "bufsize": f"{plan.max_kbps if plan.low_latency else plan.max_kbps * 2}k",
        }
        if plan.low_latency:
            options["tune"] = "zerolatency"
        return options

    @property
    def params(self) -> StreamParams:
        return StreamParams("h264", MS, bytes(self._ctx.extradata or b""),
                            width=self.plan.width, height=self.plan.height, fps=self.plan.fps,
                            bit_rate=_bits(self.kbps))

    def encode(self, frame: av.VideoFrame | None, pts_ms: int) -> list[av.Packet]:
        if self._closed:
            raise VideoEncodeError(f"{self.name} encoder is closed")
        if frame is not None:
            frame.pts = pts_ms
            frame.time_base = MS
            if self._force_key:
                frame.pict_type = PictureType.I
        try:
            packets = self._ctx.encode(frame)
        except (av.FFmpegError, ValueError) as exc:
            raise VideoEncodeError(f"H.264 encoding failed ({self.name}): {exc}") from None
        finally:
            if frame is not None and self._force_key:
                frame.pict_type = PictureType.NONE  # the source may hand us this frame again
                self._force_key = False
        return packets

    def force_keyframe(self) -> None:
        self._force_key = True

    def set_bitrate(self, kbps: int) -> None:
        self.kbps = max(1, min(kbps, self.plan.max_kbps))
        self._ctx.bit_rate = _bits(self.kbps)

    def close(self) -> None:
        self._closed = True  # PyAV frees the codec context with its last reference


def open_video_encoder(plan: VideoPlan, choice: str, *, hardware_available: bool,
                       hardware_codec: str = "h264_v4l2m2m") -> tuple[VideoEncoder, str]:
    """Open the encoder `choice` (auto | hardware | software) asks for.

    Returns the encoder and, when the hardware one was wanted but failed, the reason it
    fell back to libx264 (the pusher reports it as 1103); else an empty string.
    """
    wants_hardware = choice == "hardware" or (choice == "auto" and hardware_available)
    if wants_hardware:
        try:
            return PyAvVideoEncoder(plan, hardware_codec), ""
        except HardwareEncoderUnavailable as exc:
            return PyAvVideoEncoder(plan, "libx264"), str(exc)
    return PyAvVideoEncoder(plan, "libx264"), ""


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
            for chunk in self._resampler.resample(frame):
                chunk.pts = self._next_pts
                chunk.time_base = self._ctx.time_base
                self._next_pts += chunk.samples
                packets.extend(self._ctx.encode(chunk))
        except (av.FFmpegError, ValueError) as exc:
            raise AudioEncodeError(f"AAC encoding failed: {exc}") from None
        return packets

    def close(self) -> None:
        self._closed = True  # PyAV frees the codec context with its last reference
