"""On-screen text for the player (debug overlay, slates) as RGBA images.

The glyphs are the box's one 5x7 font (media/glyphs.py), rasterised by media/overlay.py's
`text_mask`; here they are only composed onto a translucent box (SDL2_ttf is not on the
box).
"""

from __future__ import annotations

import numpy as np

from edgelive.media.glyphs import GLYPH_H, GLYPH_W
from edgelive.media.overlay import text_mask


def render_text(lines: list[str], scale: int = 2) -> np.ndarray:
    """White text on a translucent black box, as an HxWx4 RGBA array."""
    cols = max((len(line) for line in lines), default=0)
    cell_w, cell_h = (GLYPH_W + 1) * scale, (GLYPH_H + 2) * scale
    image = np.zeros((max(1, len(lines)) * cell_h + scale, max(1, cols) * cell_w + scale, 4),
                     dtype=np.uint8)
    image[..., 3] = 160
    for row, line in enumerate(lines):
        mask = text_mask(line, scale)
        y = row * cell_h + scale
        image[y:y + mask.shape[0], scale:scale + mask.shape[1]][mask] = (255, 255, 255, 255)
    return image
