"""Snapshot: one camera frame as JPEG (PyAV's mjpeg encoder, no extra image library)."""

from __future__ import annotations

from fractions import Fraction

import av
from av.codec.context import CodecContext


def jpeg_of(image: av.VideoFrame, quality: int = 5) -> bytes:
    """Encode `image` as a baseline JPEG; `quality` is the mjpeg qscale (2 best … 31)."""
    ctx = CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = image.width, image.height
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 1)
    ctx.options = {"qmin": str(quality), "qmax": str(quality)}
    picture = image.reformat(format="yuvj420p")
    picture.pts = 0
    packets = ctx.encode(picture) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)
