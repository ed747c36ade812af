"""FakePykms: the slice of pykms (kms++ Python bindings) that KmsSink uses, recording commits.

pykms exists only in the Raspberry Pi apt repository; this fake has the same call shapes
(Card, ResourceManager, DumbFramebuffer with map/stride, AtomicReq) and keeps what was
written so tests can check plane rectangles and framebuffer bytes.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

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
        rows = [height] + ([] if bpp == 4 else [height // 2] * 2)
        self.planes = [bytearray(s * r) for s, r in zip(self._strides, rows, strict=True)]

    def map(self, i: int) -> memoryview:
        return memoryview(self.planes[i])

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
