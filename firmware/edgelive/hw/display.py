"""VideoSink: where the player's pictures go — SDL2 window, SDL offscreen, KMS plane, none.

A sink shows a list of layers (decoded pictures and RGBA overlays), each with a source
rectangle, a destination rectangle and a rotation computed by the player. YUV pictures are
uploaded as IYUV textures straight from the decoder's planes (no colour conversion in
Python). SDL and pykms are imported when a sink is made, never at import time.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int


class Plane(Protocol):
    buffer_ptr: int
    line_size: int


class YuvPicture(Protocol):
    """What the sink needs of a decoded frame (a yuv420p av.VideoFrame fits)."""

    width: int
    height: int
    planes: Sequence[Plane]


@dataclass(frozen=True)
class Layer:
    key: str
    """Identity of the texture/plane this layer reuses frame after frame."""
    src: Rect
    dst: Rect
    """Destination before rotation; the picture is rotated `angle`° about its centre."""
    angle: int = 0
    picture: YuvPicture | None = None
    rgba: np.ndarray | None = None


PresentHook = Callable[[np.ndarray, int], None]
"""Called with the RGB pixels just shown and the wall-clock ms they were shown."""


class VideoSink(ABC):
    size: tuple[int, int]
    name: str
    on_present: PresentHook | None = None

    @abstractmethod
    def present(self, layers: Sequence[Layer]) -> int:
        """Show the layers (first at the bottom); returns the wall-clock ms of the flip."""

    def pump(self) -> bool:
        """Handle window-system events; False when the user closed the window."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook, safe twice
        pass

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class NullSink(VideoSink):
    """Shows nothing (headless player, benchmarks of decoding)."""

    name = "none"

    def __init__(self, size: tuple[int, int] = (1280, 720)) -> None:
        self.size = size

    def present(self, layers: Sequence[Layer]) -> int:
        return _wall_ms()


class SdlSink(VideoSink):
    """SDL2 renderer in a (full-screen) window, or offscreen for tests and capture."""

    def __init__(self, size: tuple[int, int], offscreen: bool = False,
                 fullscreen: bool = False) -> None:
        if offscreen:
            os.environ["SDL_VIDEODRIVER"] = "offscreen"
        import sdl2

        self._sdl = sdl2
        self.name = "offscreen" if offscreen else "sdl"
        if offscreen:
            # No GPU behind an offscreen window: SDL's default there is OpenGL emulated on
            # the CPU (Mesa llvmpipe), for the renderer and the window framebuffer alike,
            # at 4-5x the CPU of its plain software renderer.
            sdl2.SDL_SetHint(sdl2.SDL_HINT_RENDER_DRIVER, b"software")
            sdl2.SDL_SetHint(sdl2.SDL_HINT_FRAMEBUFFER_ACCELERATION, b"0")
        if sdl2.SDL_InitSubSystem(sdl2.SDL_INIT_VIDEO) != 0:
            raise RuntimeError(f"SDL video: {sdl2.SDL_GetError().decode()}")
        flags = sdl2.SDL_WINDOW_FULLSCREEN_DESKTOP if fullscreen and not offscreen else 0
        self._window = sdl2.SDL_CreateWindow(b"edgelive", sdl2.SDL_WINDOWPOS_CENTERED,
                                             sdl2.SDL_WINDOWPOS_CENTERED, size[0], size[1],
                                             flags)
        self._renderer = sdl2.SDL_CreateRenderer(
            self._window, -1, sdl2.SDL_RENDERER_SOFTWARE if offscreen else 0)
        if not self._window or not self._renderer:
            raise RuntimeError(f"SDL window: {sdl2.SDL_GetError().decode()}")
        w, h = ctypes.c_int(), ctypes.c_int()
        sdl2.SDL_GetRendererOutputSize(self._renderer, ctypes.byref(w), ctypes.byref(h))
        self.size = (w.value, h.value)
        self._textures: dict[str, tuple[Any, tuple[int, int, str]]] = {}
        self._pixels = np.empty((self.size[1], self.size[0], 3), dtype=np.uint8)
        self._event = sdl2.SDL_Event()
        self._bytes = ctypes.POINTER(ctypes.c_uint8)

    def _texture(self, key: str, w: int, h: int, kind: str) -> Any:
        sdl2 = self._sdl
        cached = self._textures.get(key)
        if cached and cached[1] == (w, h, kind):
            return cached[0]
        if cached:
            sdl2.SDL_DestroyTexture(cached[0])
        fmt = sdl2.SDL_PIXELFORMAT_IYUV if kind == "yuv" else sdl2.SDL_PIXELFORMAT_ABGR8888
        texture = sdl2.SDL_CreateTexture(self._renderer, fmt,
                                         sdl2.SDL_TEXTUREACCESS_STREAMING, w, h)
        if kind == "rgba":
            sdl2.SDL_SetTextureBlendMode(texture, sdl2.SDL_BLENDMODE_BLEND)
        self._textures[key] = (texture, (w, h, kind))
        return texture

    def _upload(self, layer: Layer) -> Any:
        sdl2 = self._sdl
        if layer.picture is not None:
            pic = layer.picture
            texture = self._texture(layer.key, pic.width, pic.height, "yuv")
            y, u, v = pic.planes[:3]
            cast, ptr = ctypes.cast, self._bytes  # the frame's own planes, no copy
            sdl2.SDL_UpdateYUVTexture(texture, None, cast(y.buffer_ptr, ptr), y.line_size,
                                      cast(u.buffer_ptr, ptr), u.line_size,
                                      cast(v.buffer_ptr, ptr), v.line_size)
            return texture
        assert layer.rgba is not None
        rgba = np.ascontiguousarray(layer.rgba)
        texture = self._texture(layer.key, rgba.shape[1], rgba.shape[0], "rgba")
        sdl2.SDL_UpdateTexture(texture, None, rgba.ctypes.data, rgba.shape[1] * 4)
        return texture

    def present(self, layers: Sequence[Layer]) -> int:
        sdl2 = self._sdl
        if not self._covered(layers):  # else every pixel is drawn anyway: skip the fill
            sdl2.SDL_SetRenderDrawColor(self._renderer, 0, 0, 0, 255)
            sdl2.SDL_RenderClear(self._renderer)
        for layer in layers:
            texture = self._upload(layer)
            src = sdl2.SDL_Rect(layer.src.x, layer.src.y, layer.src.w, layer.src.h)
            dst = sdl2.SDL_Rect(layer.dst.x, layer.dst.y, layer.dst.w, layer.dst.h)
            if layer.angle:
                sdl2.SDL_RenderCopyEx(self._renderer, texture, src, dst, float(layer.angle),
                                      None, sdl2.SDL_FLIP_NONE)
            else:
                sdl2.SDL_RenderCopy(self._renderer, texture, src, dst)
        hook = self.on_present
        if hook is not None:  # read back before the flip: the back buffer is undefined after
            sdl2.SDL_RenderReadPixels(self._renderer, None, sdl2.SDL_PIXELFORMAT_RGB24,
                                      self._pixels.ctypes.data, self.size[0] * 3)
        sdl2.SDL_RenderPresent(self._renderer)
        shown = _wall_ms()
        if hook is not None:
            hook(self._pixels.copy(), shown)
        return shown

    def _covered(self, layers: Sequence[Layer]) -> bool:
        """The bottom layer is an opaque picture filling the whole screen."""
        if not layers or layers[0].picture is None or layers[0].angle % 180:
            return False
        dst, (w, h) = layers[0].dst, self.size
        return dst.x <= 0 and dst.y <= 0 and dst.x + dst.w >= w and dst.y + dst.h >= h

    def pump(self) -> bool:
        sdl2 = self._sdl
        event = self._event
        while sdl2.SDL_PollEvent(ctypes.byref(event)):
            if event.type == sdl2.SDL_QUIT:
                return False
        return True

    def close(self) -> None:
        sdl2 = self._sdl
        for texture, _ in self._textures.values():
            sdl2.SDL_DestroyTexture(texture)
        self._textures.clear()
        if self._renderer:
            sdl2.SDL_DestroyRenderer(self._renderer)
            self._renderer = None
        if self._window:
            sdl2.SDL_DestroyWindow(self._window)
            self._window = None
            sdl2.SDL_QuitSubSystem(sdl2.SDL_INIT_VIDEO)


class KmsSink(VideoSink):
    """A DRM/KMS plane per layer via pykms (Raspberry Pi OS `python3-kms++`).

    The display controller scales and positions each plane, so a picture costs one copy
    into a dumb framebuffer and no CPU scaling; rotation uses the plane's `rotation`
    property. RGBA overlays go to an ARGB8888 plane.
    """

    name = "kms"
    _ROTATE: ClassVar[dict[int, int]] = {0: 1, 90: 2, 180: 4, 270: 8}  # DRM_MODE_ROTATE_*

    def __init__(self, pykms: Any = None) -> None:
        self._kms = pykms or importlib.import_module("pykms")
        kms = self._kms
        self._card = kms.Card()
        self._res = kms.ResourceManager(self._card)
        self._conn = self._res.reserve_connector("")
        self._crtc = self._res.reserve_crtc(self._conn)
        mode = self._conn.get_default_mode()
        self.size = (mode.hdisplay, mode.vdisplay)
        self._planes: dict[str, Any] = {}
        self._fbs: dict[str, list[Any]] = {}
        self._flip: dict[str, int] = {}

    def _framebuffer(self, key: str, w: int, h: int, rgba: bool) -> Any:
        kms = self._kms
        fmt = kms.PixelFormat.ARGB8888 if rgba else kms.PixelFormat.YUV420
        fbs = self._fbs.get(key)
        if not fbs or (fbs[0].width, fbs[0].height) != (w, h):
            if key not in self._planes:
                self._planes[key] = self._res.reserve_overlay_plane(self._crtc, fmt)
            fbs = self._fbs[key] = [kms.DumbFramebuffer(self._card, w, h, fmt) for _ in "ab"]
        self._flip[key] = 1 - self._flip.get(key, 0)  # draw into the buffer not on screen
        return fbs[self._flip[key]]

    @staticmethod
    def _copy_rows(dst: memoryview, src: np.ndarray) -> None:
        """`dst` is pykms's `map(plane)`: a 2-D view whose rows are the framebuffer's pitch
        apart (not contiguous), so it is written through numpy's strided view."""
        rows, width = src.shape[0], src.shape[1] * (src.shape[2] if src.ndim == 3 else 1)
        np.asarray(dst)[:rows, :width] = src.reshape(rows, width)

    def present(self, layers: Sequence[Layer]) -> int:
        req = self._kms.AtomicReq(self._card)
        for layer in layers:
            if layer.picture is not None:
                pic = layer.picture
                fb = self._framebuffer(layer.key, pic.width, pic.height, rgba=False)
                for i, (w, h) in enumerate(((pic.width, pic.height),
                                            (pic.width // 2, pic.height // 2),
                                            (pic.width // 2, pic.height // 2))):
                    plane = pic.planes[i]
                    data = np.ctypeslib.as_array(
                        ctypes.cast(plane.buffer_ptr, ctypes.POINTER(ctypes.c_uint8)),
                        shape=(h, plane.line_size))[:, :w]
                    self._copy_rows(fb.map(i), data)
            else:
                assert layer.rgba is not None
                argb = layer.rgba[..., [2, 1, 0, 3]]  # ARGB8888 is B,G,R,A in memory
                fb = self._framebuffer(layer.key, argb.shape[1], argb.shape[0], rgba=True)
                self._copy_rows(fb.map(0), argb)
            w, h = layer.dst.w, layer.dst.h
            if layer.angle in (90, 270):  # the plane's rectangle is the rotated one
                cx, cy = layer.dst.x + w // 2, layer.dst.y + h // 2
                w, h = h, w
                x, y = cx - w // 2, cy - h // 2
            else:
                x, y = layer.dst.x, layer.dst.y
            req.add(self._planes[layer.key], {
                "FB_ID": fb.id, "CRTC_ID": self._crtc.id,
                "SRC_X": layer.src.x << 16, "SRC_Y": layer.src.y << 16,
                "SRC_W": layer.src.w << 16, "SRC_H": layer.src.h << 16,
                "CRTC_X": x, "CRTC_Y": y, "CRTC_W": w, "CRTC_H": h,
                "rotation": self._ROTATE[layer.angle % 360]})
        req.commit_sync(allow_modeset=False)
        return _wall_ms()

    def close(self) -> None:
        self._fbs.clear()
        self._planes.clear()


def open_sink(kind: str, size: tuple[int, int], fullscreen: bool = True) -> VideoSink:
    """Make the sink `kind` names; `auto` is KMS on a console, an SDL window on a desktop."""
    if kind == "auto":
        kind = "sdl" if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") else "kms"
    if kind == "none":
        return NullSink(size)
    if kind == "kms":
        return KmsSink()
    return SdlSink(size, offscreen=kind == "offscreen", fullscreen=fullscreen)
