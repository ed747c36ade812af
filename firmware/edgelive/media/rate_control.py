"""libx264's VBV limits changed on an open encoder, through FFmpeg's AVOptions.

FFmpeg's libx264 wrapper re-reads `rc_max_rate` and `rc_buffer_size` at every frame and
reconfigures x264 when they change, but PyAV exposes neither (`max_bit_rate` is read-only).
A new `bit_rate` alone leaves the VBV ceiling at the rate the encoder was opened with, and
x264's average-bitrate control then needs seconds to come down: on a link that just became
short, seconds of video too many. So the ceiling follows the target here, set with
`av_opt_set_int` on the AVCodecContext that PyAV's CodecContext wraps.

PyAV (checked against 18.1's av/codec/context.pxd) declares `AVCodecContext *ptr` as the
first field of its `CodecContext` extension type, after the object header and Cython's
vtable pointer. The pointer found there is used only once its AVClass names it an
AVCodecContext; otherwise the ceiling stays where it was opened (the bitrate still changes).
"""

from __future__ import annotations

import ctypes
import logging
import struct
from functools import cache

from av.codec.context import CodecContext

from edgelive.media.avio import _libavformat

log = logging.getLogger(__name__)

_PTR_OFFSET = struct.calcsize("P") * 3
"""ob_refcnt, ob_type, __pyx_vtab, then `ptr`."""


@cache
def _setter() -> ctypes._CFuncPtr:
    lib = _libavformat()  # libavutil's, found through libavformat's dependencies
    setter = lib.av_opt_set_int
    setter.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int]
    return setter


def _av_codec_context(ctx: CodecContext) -> int | None:
    address = ctypes.c_void_p.from_address(id(ctx) + _PTR_OFFSET).value
    if not address:
        return None
    av_class = ctypes.c_void_p.from_address(address).value
    if not av_class or ctypes.c_char_p.from_address(av_class).value != b"AVCodecContext":
        return None
    return address


@cache
def _say_unreachable() -> None:
    """Once: the bitrate changes twice a second, the reason does not."""
    log.warning("encoder: VBV ceiling not adjustable with this PyAV")


def set_vbv(ctx: CodecContext, max_kbps: int, buffer_kbit: int) -> bool:
    """Set the VBV ceiling and buffer of an open encoder (applied from its next frame);
    False when the context cannot be reached (a PyAV of another layout)."""
    address = _av_codec_context(ctx)
    if address is None:
        _say_unreachable()
        return False
    setter = _setter()
    return (setter(address, b"maxrate", max_kbps * 1000, 0) == 0
            and setter(address, b"bufsize", buffer_kbit * 1000, 0) == 0)
