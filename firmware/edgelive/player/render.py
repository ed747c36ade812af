"""Screen layout: object-fit, orientation, full screen vs layout box, PiP, overlays. Pure.

The sink rotates a layer about the centre of its destination rectangle, so a vertical
(90°) picture is given the unrotated rectangle that, once turned, fills the target box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgelive.hw.display import Layer, Rect, YuvPicture
from edgelive.player.font import render_text

PIP_FRACTION = 0.3
PIP_MARGIN = 16


def fit(src_w: int, src_h: int, box: Rect, object_fit: str, angle: int = 0) -> tuple[Rect, Rect]:
    """Source and (unrotated) destination rectangles of a picture shown in `box`.

    contain: the whole picture, centred, with bars; fillCrop: fills the box, the
    picture's overflowing edges are cropped.
    """
    turned = angle % 180 == 90
    eff_w, eff_h = (src_h, src_w) if turned else (src_w, src_h)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    if object_fit == "fillCrop":
        scale = max(box.w / eff_w, box.h / eff_h)
        vis_w, vis_h = box.w / scale, box.h / scale  # visible part, in turned source pixels
        crop_w, crop_h = (vis_h, vis_w) if turned else (vis_w, vis_h)
        crop_w, crop_h = min(src_w, round(crop_w)), min(src_h, round(crop_h))
        src = Rect((src_w - crop_w) // 2, (src_h - crop_h) // 2, crop_w, crop_h)
        out_w, out_h = (box.h, box.w) if turned else (box.w, box.h)
    else:
        scale = min(box.w / eff_w, box.h / eff_h)
        src = Rect(0, 0, src_w, src_h)
        out_w, out_h = round(src_w * scale), round(src_h * scale)
    return src, Rect(round(cx - out_w / 2), round(cy - out_h / 2), out_w, out_h)


def pip_box(screen: tuple[int, int], corner: str) -> Rect:
    """The picture-in-picture window: 30 % of the screen in the named corner."""
    w, h = int(screen[0] * PIP_FRACTION), int(screen[1] * PIP_FRACTION)
    x = PIP_MARGIN if "left" in corner else screen[0] - w - PIP_MARGIN
    y = PIP_MARGIN if "top" in corner else screen[1] - h - PIP_MARGIN
    return Rect(x, y, w, h)


def main_box(screen: tuple[int, int], layout: Sequence[int], fullscreen: bool) -> Rect:
    if fullscreen or not layout:
        return Rect(0, 0, screen[0], screen[1])
    return Rect(*layout)


def picture_layer(key: str, picture: YuvPicture, box: Rect, object_fit: str,
                  orientation: str) -> Layer:
    angle = 90 if orientation == "vertical" else 0
    src, dst = fit(picture.width, picture.height, box, object_fit, angle)
    return Layer(key, src, dst, angle, picture=picture)


def text_layer(key: str, lines: list[str], box: Rect, where: str = "top-left",
               scale: int = 2) -> Layer:
    """Text on a translucent box inside `box` (top-left corner, or centred)."""
    image = render_text(lines, scale)
    h, w = image.shape[:2]
    w, h = min(w, box.w), min(h, box.h)
    if where == "center":
        x, y = box.x + (box.w - w) // 2, box.y + (box.h - h) // 2
    else:
        x, y = box.x + 8, box.y + 8
    return Layer(key, Rect(0, 0, w, h), Rect(x, y, w, h), rgba=image)


def slate_layer(key: str, box: Rect, message: str) -> list[Layer]:
    """A dark grey slate with a centred message (no stream to show)."""
    grey = np.zeros((2, 2, 4), dtype=np.uint8)
    grey[...] = (40, 40, 40, 255)
    return [Layer(key, Rect(0, 0, 2, 2), box, rgba=grey),
            text_layer(f"{key}-text", [message], box, "center", scale=3)]
