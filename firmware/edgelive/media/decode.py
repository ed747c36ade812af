"""Video and audio decoding for the player: hardware H.264 where the board has it.

`h264_v4l2m2m` is tried first when asked for; where it cannot open (no codec device, as on
a PC) the software decoder takes over and the caller reports HW_ACCELERATION_FAIL (2106).
The software decoder runs slice-threaded: frame threading would hold back one frame per
thread, which a low-latency player cannot afford.
"""

from __future__ import annotations

import av
import av.codec
import numpy as np

HW_DECODER = "h264_v4l2m2m"
AUDIO_RATE = 48000
AUDIO_CHANNELS = 2


class DecodeError(Exception):
    """A packet could not be decoded (corrupt data); the caller waits for a key frame."""


def _software_context(stream: av.VideoStream) -> av.VideoCodecContext:
    ctx = av.CodecContext.create(stream.codec_context.name, "r")
    if stream.codec_context.extradata:
        ctx.extradata = stream.codec_context.extradata
    ctx.thread_type = "SLICE"
    ctx.thread_count = 2
    ctx.flags |= av.codec.context.Flags.low_delay
    return ctx


def _hardware_context(stream: av.VideoStream) -> av.VideoCodecContext:
    ctx = av.CodecContext.create(HW_DECODER, "r")
    if stream.codec_context.extradata:
        ctx.extradata = stream.codec_context.extradata
    ctx.open()
    return ctx


class VideoDecoder:
    """Decodes one stream's video packets into frames; `name` tells which decoder runs."""

    def __init__(self, stream: av.VideoStream, prefer_hardware: bool) -> None:
        self.hardware_error: str | None = None
        ctx = None
        if prefer_hardware and stream.codec_context.name == "h264":
            try:
                ctx = _hardware_context(stream)
            except (av.FFmpegError, ValueError, OSError) as exc:
                self.hardware_error = str(exc)
        self._ctx = ctx or _software_context(stream)
        self._stream = stream
        self.name = self._ctx.codec.name

    def decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            frames = self._ctx.decode(packet)
        except (av.FFmpegError, ValueError) as exc:
            raise DecodeError(str(exc)) from None
        if any(f.is_corrupt for f in frames):
            raise DecodeError("corrupt picture")
        return frames

    def reset(self) -> None:
        """Start clean at the next key frame (after corrupt data or a jump)."""
        self._ctx = _software_context(self._stream) if self.name != HW_DECODER else self._ctx
        if self.name == HW_DECODER:
            self._ctx.flush_buffers()


class AudioDecoder:
    """Decodes audio packets into interleaved signed 16-bit stereo at 48 kHz."""

    def __init__(self, stream: av.AudioStream) -> None:
        self._ctx = stream.codec_context
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)

    def decode(self, packet: av.Packet) -> np.ndarray:
        try:
            frames = self._ctx.decode(packet)
            out = [r for f in frames for r in self._resampler.resample(f)]
        except (av.FFmpegError, ValueError) as exc:
            raise DecodeError(str(exc)) from None
        if not out:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in out])
