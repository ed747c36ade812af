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

from edgelive.media.glyphs import GLYPH_H, GLYPH_W, GLYPHS

INK, PAPER = 235, 16  # video-range white and black


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


def lines_height(count: int, scale: int) -> int:
    """Height in pixels that `draw_lines` covers with `count` lines (without its margin)."""
    return count * (GLYPH_H + 2) * scale


def draw_lines(plane: np.ndarray, lines: list[str], x: int, y: int, *,
               scale: int = 2) -> None:
    """Several lines on one box (the debug stats overlay)."""
    line_h = lines_height(1, scale)
    width = max((text_size(line, scale)[0] for line in lines), default=0)
    pad = scale
    plane[max(0, y - pad):y + lines_height(len(lines), scale) + pad,
          max(0, x - pad):x + width + pad] = PAPER
    for row, line in enumerate(lines):
        draw_text(plane, line, x, y + row * line_h, scale=scale, box=None)


def clock_text(t_ms: int) -> str:
    """Local wall-clock time as HH:MM:SS.mmm."""
    return time.strftime("%H:%M:%S", time.localtime(t_ms // 1000)) + f".{t_ms % 1000:03d}"


def draw_status(luma: np.ndarray, lines: list[str] | tuple[str, ...]) -> None:
    """The pusher's debug stats at the bottom left of a luma plane (the top holds testsrc's
    stamp and clock), scaled with the picture's height."""
    height = luma.shape[0]
    scale = max(1, height // 360)
    margin = 4 * scale
    draw_lines(luma, list(lines), margin, height - margin - lines_height(len(lines), scale),
               scale=scale)
