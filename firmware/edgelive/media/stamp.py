"""The machine-readable wall-clock stamp that testsrc draws (SPEC §3).

A row of 32 squares from pixel (0, 0), 16x16 px (8x8 when the picture is under 512 px
wide); square i is white when bit i of (unix time in ms mod 2^32) is 1. Anything that sees
a decoded picture — a reader after nginx, the player's own screen — can recover the capture
time from it and so measure glass-to-glass latency without trusting the sender's clocks.
"""

from __future__ import annotations

import numpy as np

BITS = 32
MOD = 1 << BITS


def square_size(width: int) -> int:
    return 8 if width < 512 else 16


def draw(luma: np.ndarray, t_ms: int) -> None:
    """Write the stamp for `t_ms` into a 2-D luma (Y) plane, in place."""
    size = square_size(luma.shape[1])
    value = t_ms % MOD
    for i in range(BITS):
        luma[0:size, i * size:(i + 1) * size] = 235 if (value >> i) & 1 else 16


def decode(picture: np.ndarray, width: int | None = None) -> int:
    """Read the stamp from a luma plane or an RGB(A) picture; returns ms mod 2^32.

    `width` is the width the stamp was drawn at when the picture was scaled since
    (e.g. a screen showing a 640 px stream at 1280 px): squares scale with it.
    """
    plane = picture if picture.ndim == 2 else picture[..., :3].mean(axis=2)
    shown_w = plane.shape[1]
    drawn_w = width or shown_w
    scale = shown_w / drawn_w
    size = square_size(drawn_w) * scale
    value = 0
    for i in range(BITS):
        y = int(size / 2)
        x0, x1 = int(i * size + size * 0.25), int(i * size + size * 0.75)
        y0, y1 = int(y - size * 0.25), int(y + size * 0.25) + 1
        if plane[y0:y1, x0:x1].mean() > 128:
            value |= 1 << i
    return value


def age_ms(stamp_value: int, now_ms: int) -> int:
    """Milliseconds between the stamped time and `now_ms`, across the 2^32 wrap."""
    return (now_ms - stamp_value) % MOD
