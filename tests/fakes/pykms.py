"""FakePykms: the slice of pykms (kms++ Python bindings) that KmsSink uses, recording commits.

pykms exists only in the Raspberry Pi apt repository; this fake has the same call shapes,
checked against kmsxx's bindings (github tomba/kmsxx, py/pykms/pykmsbase.cpp and
pykmsutil.cpp at 4a7836f): `Card()`, `ResourceManager(card)` with
`reserve_connector(name="")`, `reserve_crtc(connector)`, `reserve_overlay_plane(crtc,
format)`; `Connector.get_default_mode()` → a Videomode with `hdisplay`/`vdisplay`;
`DumbFramebuffer(card, width, height, PixelFormat)` with `stride(plane)` and `map(plane)`
— a 2-D memoryview of shape (height, bytes of one row of that plane) whose row stride is the
framebuffer's pitch, so it is not contiguous — and `AtomicReq(card)` with `add(object,
{property: value})` and `commit_sync(allow_modeset=False)`. It keeps what was written so
tests can check plane rectangles and framebuffer bytes.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np

_ids = itertools.count(100)


class PixelFormat:
    YUV420 = "YU12"
    ARGB8888 = "AR24"


class Card:
    def __init__(self) -> None:
        self.commits: list[list[tuple[Any, dict[str, int]]]] = []


class FakePlane:
    def __init__(self, fmt: str) -> None:
        self.id = next(_ids)
        self.format = fmt


class ResourceManager:
    def __init__(self, card: Card) -> None:
        self.card = card

    def reserve_connector(self, name: str = "") -> Any:
        mode = SimpleNamespace(hdisplay=640, vdisplay=360)
        return SimpleNamespace(id=next(_ids), get_default_mode=lambda: mode)

    def reserve_crtc(self, connector: Any) -> Any:
        return SimpleNamespace(id=next(_ids))

    def reserve_overlay_plane(self, crtc: Any, fmt: str) -> FakePlane:
        return FakePlane(fmt)


class DumbFramebuffer:
    def __init__(self, card: Card, width: int, height: int, fmt: str) -> None:
        self.id = next(_ids)
        self.width, self.height, self.format = width, height, fmt
        bpp = 4 if fmt == PixelFormat.ARGB8888 else 1
        self._strides = [width * bpp + 64] + ([] if bpp == 4 else [width // 2 + 32] * 2)
        self._row_bytes = [width * bpp] + ([] if bpp == 4 else [width // 2] * 2)
        # kmsxx's map() shapes every plane with the framebuffer's full height
        self.planes = [bytearray(s * height) for s in self._strides]

    def map(self, i: int) -> memoryview:
        if i >= len(self.planes):
            raise RuntimeError("map: bad plane number")
        rows = np.ndarray((self.height, self._row_bytes[i]), dtype=np.uint8,
                          buffer=self.planes[i], strides=(self._strides[i], 1))
        return memoryview(rows)

    def stride(self, i: int) -> int:
        return self._strides[i]


class AtomicReq:
    def __init__(self, card: Card) -> None:
        self.card = card
        self.items: list[tuple[Any, dict[str, int]]] = []

    def add(self, obj: Any, props: dict[str, int]) -> None:
        self.items.append((obj, dict(props)))

    def commit_sync(self, allow_modeset: bool = False) -> None:
        self.card.commits.append(self.items)
