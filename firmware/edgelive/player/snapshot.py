"""Snapshots of what the player shows: a JPEG of the decoded picture (SPEC §5 snapshot)."""

from __future__ import annotations

from fractions import Fraction

import av


def encode_jpeg(frame: av.VideoFrame, quality: int = 5) -> bytes:
    """A JPEG of a decoded picture (MJPEG encoder; `quality` is its qscale, 2 = best)."""
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = frame.width, frame.height
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.qmin = ctx.qmax = quality
    picture = frame.reformat(format="yuvj420p")
    picture.pts = 0
    return b"".join(bytes(p) for p in [*ctx.encode(picture), *ctx.encode(None)])
