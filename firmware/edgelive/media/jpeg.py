"""JPEG of a picture for snapshots (pusher: the camera frame; player: what is shown), with
PyAV's MJPEG encoder, so no image library is needed."""

from __future__ import annotations

from fractions import Fraction

import av
from av.codec.context import CodecContext


def encode_jpeg(image: av.VideoFrame, quality: int = 5) -> bytes:
    """A baseline JPEG of `image`; `quality` is the MJPEG qscale (2 best … 31)."""
    ctx = CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = image.width, image.height
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 1)
    ctx.options = {"qmin": str(quality), "qmax": str(quality)}
    picture = image.reformat(format="yuvj420p")
    picture.pts = 0
    return b"".join(bytes(p) for p in [*ctx.encode(picture), *ctx.encode(None)])
