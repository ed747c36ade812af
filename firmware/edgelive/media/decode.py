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
"""Assumed until the stream says otherwise."""


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
    """Decodes audio packets into interleaved float32 samples, (n, channels), at the
    stream's own rate: SDL plays that as it is, so nothing is resampled (AAC decodes to
    planar float; interleaving a batch of frames is one numpy copy per channel)."""

    def __init__(self, stream: av.AudioStream) -> None:
        self._ctx = stream.codec_context
        self._packer: av.AudioResampler | None = None
        self.rate = stream.codec_context.sample_rate or AUDIO_RATE
        """Sample rate of what `interleave` returned last."""

    def frames(self, packet: av.Packet) -> list[av.AudioFrame]:
        try:
            return self._ctx.decode(packet)
        except (av.FFmpegError, ValueError) as exc:
            raise DecodeError(str(exc)) from None

    def interleave(self, frames: list[av.AudioFrame]) -> np.ndarray:
        """The frames' samples, one after the other, channels interleaved."""
        first = frames[0]
        if first.format.name not in ("fltp", "flt"):  # other formats: convert to float
            if self._packer is None:
                self._packer = av.AudioResampler(format="flt", layout=first.layout.name,
                                                 rate=first.sample_rate)
            frames = [f for frame in frames for f in self._packer.resample(frame)]
            if not frames:
                return np.zeros((0, first.layout.nb_channels), dtype=np.float32)
        self.rate = first.sample_rate
        channels = first.layout.nb_channels
        out = np.empty((sum(f.samples for f in frames), channels), dtype=np.float32)
        row = 0
        for frame in frames:
            n = frame.samples
            if frame.format.is_planar:
                for ch, plane in enumerate(frame.planes[:channels]):
                    out[row:row + n, ch] = np.frombuffer(plane, np.float32, n)
            else:
                out[row:row + n] = np.frombuffer(frame.planes[0], np.float32,
                                                 n * channels).reshape(n, channels)
            row += n
        return out
