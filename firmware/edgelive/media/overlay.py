"""Text burned into pictures: testsrc's clock and frame number, the waiting slate, the
pusher's debug stats.

A 5x7 bitmap font drawn straight into a luma (Y) plane with numpy, so no font library is
needed on the box and a per-frame clock costs tens of microseconds. Glyph masks are built
once per (character, scale) and cached.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

GLYPH_W, GLYPH_H = 5, 7
INK, PAPER = 235, 16  # video-range white and black

# Seven rows of five bits, most significant bit leftmost.
GLYPHS: dict[str, tuple[int, ...]] = {
    "0": (14, 17, 19, 21, 25, 17, 14), "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31), "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2), "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14), "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14), "9": (14, 17, 17, 15, 1, 2, 12),
    "A": (14, 17, 17, 31, 17, 17, 17), "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14), "D": (28, 18, 17, 17, 17, 18, 28),
    "E": (31, 16, 16, 30, 16, 16, 31), "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15), "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14), "J": (7, 2, 2, 2, 2, 18, 12),
    "K": (17, 18, 20, 24, 20, 18, 17), "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17), "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14), "P": (30, 17, 17, 30, 16, 16, 16),
    "Q": (14, 17, 17, 17, 21, 18, 13), "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30), "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14), "V": (17, 17, 17, 17, 17, 10, 4),
    "W": (17, 17, 17, 21, 21, 21, 10), "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 17, 10, 4, 4, 4), "Z": (31, 1, 2, 4, 8, 16, 31),
    ".": (0, 0, 0, 0, 0, 12, 12), ":": (0, 12, 12, 0, 12, 12, 0),
    "-": (0, 0, 0, 31, 0, 0, 0), "/": (1, 1, 2, 4, 8, 16, 16),
    "=": (0, 0, 31, 0, 31, 0, 0), "%": (24, 25, 2, 4, 8, 19, 3),
    "(": (2, 4, 8, 8, 8, 4, 2), ")": (8, 4, 2, 2, 2, 4, 8),
    "_": (0, 0, 0, 0, 0, 0, 31), ",": (0, 0, 0, 0, 12, 4, 8),
    "#": (10, 10, 31, 10, 31, 10, 10), " ": (0, 0, 0, 0, 0, 0, 0),
}


@lru_cache(maxsize=512)
def _glyph_mask(char: str, scale: int) -> np.ndarray:
    """One character cell (glyph plus a one-dot gap on the right) as a boolean mask."""
    rows = GLYPHS.get(char.upper(), GLYPHS[" "])
    bits = np.array([[(r >> (GLYPH_W - 1 - i)) & 1 for i in range(GLYPH_W)] + [0]
                     for r in rows], dtype=bool)
    return bits.repeat(scale, axis=0).repeat(scale, axis=1)


def text_size(text: str, scale: int) -> tuple[int, int]:
    """Width and height in pixels that `draw_text` covers (without its box margin)."""
    return len(text) * (GLYPH_W + 1) * scale, GLYPH_H * scale


def text_mask(text: str, scale: int) -> np.ndarray:
    """The whole line as one boolean mask, `text_size` big."""
    if not text:
        return np.zeros((GLYPH_H * scale, 0), dtype=bool)
    return np.hstack([_glyph_mask(c, scale) for c in text])


def draw_text(plane: np.ndarray, text: str, x: int, y: int, *, scale: int = 2,
              ink: int = INK, box: int | None = PAPER) -> None:
    """Draw one line into a 2-D uint8 plane at (x, y), in place, clipped to the plane.

    `box` fills a margin of one dot around the text first so it stays readable on any
    picture; None draws the glyphs only.
    """
    mask = text_mask(text, scale)
    if box is not None:
        pad = scale
        by0, bx0 = max(0, y - pad), max(0, x - pad)
        by1, bx1 = y + mask.shape[0] + pad, x + mask.shape[1] + pad
        plane[by0:by1, bx0:bx1] = box
    h = max(0, min(mask.shape[0], plane.shape[0] - y))
    w = max(0, min(mask.shape[1], plane.shape[1] - x))
    if h and w and x >= 0 and y >= 0:
        plane[y:y + h, x:x + w][mask[:h, :w]] = ink


def draw_lines(plane: np.ndarray, lines: list[str], x: int, y: int, *,
               scale: int = 2) -> None:
    """Several lines on one box (the debug stats overlay)."""
    line_h = (GLYPH_H + 2) * scale
    width = max((text_size(line, scale)[0] for line in lines), default=0)
    pad = scale
    plane[max(0, y - pad):y + len(lines) * line_h + pad, max(0, x - pad):x + width + pad] = PAPER
    for row, line in enumerate(lines):
        draw_text(plane, line, x, y + row * line_h, scale=scale, box=None)


def clock_text(t_ms: int) -> str:
    """Local wall-clock time as HH:MM:SS.mmm."""
    return time.strftime("%H:%M:%S", time.localtime(t_ms // 1000)) + f".{t_ms % 1000:03d}"
