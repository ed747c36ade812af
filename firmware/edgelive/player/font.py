"""A 5x7 bitmap font for the on-screen debug overlay (SDL2_ttf is not on the box).

Each glyph is seven rows of five bits, most significant bit leftmost. Lower case prints
as upper case; characters without a glyph print as a blank.
"""

from __future__ import annotations

import numpy as np

GLYPH_W, GLYPH_H = 5, 7
_GLYPHS: dict[str, tuple[int, ...]] = {
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
}


def render_text(lines: list[str], scale: int = 2) -> np.ndarray:
    """White text on a translucent black box, as an HxWx4 RGBA array."""
    cols = max((len(line) for line in lines), default=0)
    cell_w, cell_h = (GLYPH_W + 1) * scale, (GLYPH_H + 2) * scale
    image = np.zeros((max(1, len(lines)) * cell_h + scale, max(1, cols) * cell_w + scale, 4),
                     dtype=np.uint8)
    image[..., 3] = 160
    for row, line in enumerate(lines):
        for col, char in enumerate(line.upper()):
            glyph = _GLYPHS.get(char)
            if glyph is None:
                continue
            bits = np.array([[(r >> (GLYPH_W - 1 - i)) & 1 for i in range(GLYPH_W)]
                             for r in glyph], dtype=bool)
            bits = bits.repeat(scale, axis=0).repeat(scale, axis=1)
            y, x = row * cell_h + scale, col * cell_w + scale
            image[y:y + bits.shape[0], x:x + bits.shape[1]][bits] = (255, 255, 255, 255)
    return image
