"""Frame sources for the pusher: testsrc, a still image, a video file, a V4L2 device, the
Pi camera.

Every source hands out yuv420p `av.VideoFrame`s of exactly the size asked for in `open()`,
with the wall-clock time the picture was taken. Geometry and image controls (rotation,
zoom, beauty, whiteness) are one post-process shared by all sources
(`edgelive.media.picture.condition`), so a USB camera and the Pi camera behave alike. The Pi
camera lives in `edgelive.hw.picamera`, which imports picamera2 inside `open()` only:
importing these modules never probes hardware.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

import av
import numpy as np

from edgelive.media import overlay, stamp
from edgelive.media.picture import (
    NEUTRAL_C,
    Controls,
    PictureError,
    condition,
    copy_frame,
    decode_picture,
    new_frame,
    planes,
)

if TYPE_CHECKING:
    from edgelive.media.picam_encode import FedPicture

log = logging.getLogger(__name__)
_FOCUS_NOT_APPLIED: set[str] = set()
"""V4L2 devices whose log already says that auto-focus = false is not applied."""

MAX_SIDE = 4096
MIN_SIDE = 32
V4L2_TIMEOUT_S = 5.0
VIDEO_SUFFIXES = (".y4m", ".mp4", ".mkv", ".mov", ".avi", ".ts", ".flv", ".webm")


@dataclass
class Frame:
    image: av.VideoFrame | FedPicture
    """yuv420p, exactly the size asked for in open(); a FedPicture (no pixels) when the
    Pi camera feeds picamera2's hardware encoder itself."""
    capture_ms: int  # wall-clock (time.time) ms when the picture was taken
    index: int  # frame number from 0


class CameraError(Exception):
    """Opening or reading the camera failed; the message says why (device path, cause)."""


class UnsupportedResolution(CameraError):
    """The size cannot be produced by this source."""


class FrameSource(Protocol):
    name: str

    def open(self, width: int, height: int, fps: int) -> None: ...
    def read(self) -> Frame: ...
    def close(self) -> None: ...
    def set_controls(self, *, beauty: int = 0, whiteness: int = 0, zoom: bool = False,
                     rotation: int = 0, auto_focus: bool = True) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...


# --- sizes -----------------------------------------------------------------------------

def check_size(width: int, height: int) -> None:
    if width % 2 or height % 2:
        raise UnsupportedResolution(f"{width}x{height}: width and height must be even")
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise UnsupportedResolution(f"{width}x{height}: sides must be {MIN_SIDE}-{MAX_SIDE} px")


# --- pacing ------------------------------------------------------------------------------

class Pacer:
    """Frame slots at a fixed rate from one monotonic anchor.

    Slot n is due at anchor + n/fps, so sleeping never accumulates drift. A reader more than
    one period late skips the missed slots (counted in `skipped`) instead of bursting.
    """

    def __init__(self, fps: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.period = 1.0 / fps
        self.skipped = 0
        self._clock, self._sleep = clock, sleep
        self._anchor: float | None = None
        self._slot = 0

    def wait(self) -> None:
        now = self._clock()
        if self._anchor is None:
            self._anchor = now
            return
        self._slot += 1
        due = self._anchor + self._slot * self.period
        if now > due + self.period:
            behind = int((now - self._anchor) / self.period)
            self.skipped += behind - self._slot
            self._slot = behind
        elif now < due:
            self._sleep(due - now)


def now_ms() -> int:
    return int(time.time() * 1000)


class BaseSource:
    """Shared state: requested size, controls, frame counter, closed flag."""

    name = "source"

    def __init__(self) -> None:
        self.controls = Controls()
        self.width = self.height = self.fps = 0
        self._index = 0
        self._opened = False

    def set_controls(self, *, beauty: int = 0, whiteness: int = 0, zoom: bool = False,
                     rotation: int = 0, auto_focus: bool = True) -> None:
        self.controls = Controls(beauty, whiteness, zoom, rotation, auto_focus)

    def _start(self, width: int, height: int, fps: int) -> None:
        check_size(width, height)
        if fps <= 0:
            raise CameraError(f"{self.name}: fps must be positive, not {fps}")
        self.width, self.height, self.fps = width, height, fps
        self._index = 0

    def _frame(self, image: av.VideoFrame | FedPicture, capture_ms: int) -> Frame:
        frame = Frame(image, capture_ms, self._index)
        self._index += 1
        return frame

    def _check_open(self) -> None:
        if not self._opened:
            raise CameraError(f"{self.name}: not open")

    def close(self) -> None:
        self._opened = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- sources -----------------------------------------------------------------------------

# BT.601 video-range colour bars: white, yellow, cyan, green, magenta, red, blue, black.
_BARS = ((235, 128, 128), (210, 16, 146), (170, 166, 16), (145, 54, 34),
         (106, 202, 222), (81, 90, 240), (41, 240, 110), (16, 128, 128))


def _bars_background(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bars over a luma ramp, two widths wide so a moving window can slide over them."""
    bar = (np.arange(width) * len(_BARS) // width).astype(np.intp)
    table = np.array(_BARS, dtype=np.uint8)
    y = np.repeat(table[bar, 0][None, :], height, axis=0)
    y[height * 3 // 4:] = np.linspace(16, 235, width, dtype=np.uint8)
    u = np.repeat(table[bar[::2], 1][None, :], height // 2, axis=0)
    v = np.repeat(table[bar[::2], 2][None, :], height // 2, axis=0)
    u[height * 3 // 8:] = v[height * 3 // 8:] = NEUTRAL_C
    y, u, v = (np.ascontiguousarray(np.tile(p, (1, 2))) for p in (y, u, v))
    return y, u, v


class TestSource(BaseSource):
    """Scrolling colour bars with the SPEC §3 stamp, a clock and the frame number."""

    __test__ = False  # not a pytest class
    name = "testsrc"

    def __init__(self, pacer_factory: Callable[[float], Pacer] = Pacer) -> None:
        super().__init__()
        self._pacer_factory = pacer_factory
        self._background: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def open(self, width: int, height: int, fps: int) -> None:
        self._start(width, height, fps)
        self._background = _bars_background(width, height)
        self._step = max(2, width // 240 * 2)  # the bars cross the picture in ~4 s
        self._pacer = self._pacer_factory(fps)
        self._opened = True

    def read(self) -> Frame:
        self._check_open()
        assert self._background is not None
        self._pacer.wait()
        t_ms = now_ms()
        w, h = self.width, self.height
        x = self._index * self._step % w
        y, u, v = self._background
        image = new_frame(w, h, y[:, x:x + w], u[:, x // 2:(x + w) // 2], v[:, x // 2:(x + w) // 2])
        image = condition(image, w, h, self.controls)
        luma, u, v = planes(image)
        scale = max(1, w // 320)
        top = stamp.square_size(w) + 2 * scale
        band = (top + 18 * scale) // 2  # grey under stamp and text: readable as RGB too
        u[:band] = v[:band] = NEUTRAL_C
        stamp.draw(luma, t_ms)
        overlay.draw_text(luma, overlay.clock_text(t_ms), 2 * scale, top, scale=scale)
        overlay.draw_text(luma, f"#{self._index}", 2 * scale, top + 10 * scale, scale=scale)
        return self._frame(image, t_ms)


class ImageSource(BaseSource):
    """A still image, letterboxed to the output size and repeated at fps."""

    def __init__(self, path: str, pacer_factory: Callable[[float], Pacer] = Pacer) -> None:
        super().__init__()
        self.path = path
        self.name = f"image:{path}"
        self._pacer_factory = pacer_factory
        self._raw: av.VideoFrame | None = None
        self._prepared: av.VideoFrame | None = None

    def open(self, width: int, height: int, fps: int) -> None:
        self._start(width, height, fps)
        try:
            self._raw = decode_picture(Path(self.path).read_bytes())
        except OSError as exc:
            raise CameraError(f"{self.path}: cannot read ({exc.strerror or exc})") from exc
        except PictureError as exc:
            raise CameraError(f"{self.path}: {exc}") from exc
        self._prepare()
        self._pacer = self._pacer_factory(fps)
        self._opened = True

    def set_controls(self, **controls: Any) -> None:
        super().set_controls(**controls)
        if self._raw is not None:
            self._prepare()

    def _prepare(self) -> None:
        assert self._raw is not None
        self._prepared = copy_frame(condition(self._raw, self.width, self.height, self.controls))

    def read(self) -> Frame:
        self._check_open()
        assert self._prepared is not None
        self._pacer.wait()
        return self._frame(copy_frame(self._prepared), now_ms())


class V4l2Source(BaseSource):
    """A V4L2 capture device (USB camera, HDMI grabber) read through PyAV."""

    def __init__(self, device: str, input_format: str | None = None) -> None:
        super().__init__()
        self.device = device
        self.name = f"v4l2:{device}"
        self.input_format = input_format
        self._container: Any = None
        self._frames: Any = None

    def open(self, width: int, height: int, fps: int) -> None:
        self._start(width, height, fps)
        if not os.path.exists(self.device):
            raise CameraError(f"{self.device}: no such device")
        options = {"video_size": f"{width}x{height}", "framerate": str(fps)}
        if self.input_format:
            options["input_format"] = self.input_format
        try:
            self._container = av.open(self.device, format="v4l2", options=options,
                                      timeout=V4L2_TIMEOUT_S)
            self._frames = self._container.decode(video=0)
        except (av.FFmpegError, OSError) as exc:
            self.close()
            raise CameraError(f"{self.device}: cannot capture ({exc})") from exc
        self._opened = True

    def set_controls(self, **controls: Any) -> None:
        super().set_controls(**controls)
        if not self.controls.auto_focus and self.device not in _FOCUS_NOT_APPLIED:
            # Not applied: untested without a camera that has the control, and a UVC
            # camera keeps what it was last set to (usually continuous autofocus on).
            # Said once per device, not at every reopen of a camera that went away.
            _FOCUS_NOT_APPLIED.add(self.device)
            log.warning("%s: auto-focus = false is not applied to V4L2 cameras; the camera "
                        "keeps its own focus setting (v4l2-ctl -d %s -c "
                        "focus_automatic_continuous=0 turns it off)", self.name, self.device)

    def read(self) -> Frame:
        self._check_open()
        try:
            raw = next(self._frames)
        except StopIteration:
            raise CameraError(f"{self.device}: stream ended") from None
        except (av.FFmpegError, OSError) as exc:
            raise CameraError(f"{self.device}: capture failed ({exc})") from exc
        t_ms = now_ms()
        return self._frame(condition(raw, self.width, self.height, self.controls), t_ms)

    def close(self) -> None:
        super().close()
        if self._container is not None:
            self._container.close()
            self._container = self._frames = None


def _picamera2_has_camera() -> bool:
    from edgelive.hw.picamera import import_picamera2

    try:
        return bool(import_picamera2().Picamera2.global_camera_info())
    except CameraError:
        return False


def is_pi_camera(spec: str) -> bool:
    """The source `spec` opens is the Pi camera (picamera2): asked before it is opened, to
    choose picamera2's own H.264 encoder."""
    return spec == "picamera2" or (spec == "auto" and _picamera2_has_camera())


def video_devices(pattern: str = "/dev/video*") -> list[str]:
    """V4L2 device nodes in numeric order (/dev/video2 before /dev/video10)."""
    def number(path: str) -> int:
        match = re.search(r"(\d+)$", path)
        return int(match.group(1)) if match else -1
    return sorted(glob.glob(pattern), key=number)


def make_source(spec: str) -> FrameSource:
    """An unopened source for a config `source` value (anything but "auto")."""
    if spec == "testsrc":
        return TestSource()
    if spec == "picamera2":
        from edgelive.hw.picamera import Picamera2Source  # imports camera: no cycle at load

        return Picamera2Source()
    if spec.startswith("v4l2:"):
        return V4l2Source(spec.removeprefix("v4l2:"))
    if spec.startswith("/dev/"):
        return V4l2Source(spec)
    if spec.lower().endswith(VIDEO_SUFFIXES):
        from edgelive.hw.video_file import VideoFileSource  # subclasses BaseSource from here

        return VideoFileSource(spec)
    return ImageSource(spec)


def open_source(spec: str, *, width: int, height: int, fps: int,
                **controls: Any) -> FrameSource:
    """Make, configure and open a source. "auto" prefers the Pi camera, then the first
    V4L2 device that captures; raises CameraError("no camera found") when there is none."""
    if spec != "auto":
        source = make_source(spec)
        source.set_controls(**controls)
        source.open(width, height, fps)
        return source
    candidates = ["picamera2"] if _picamera2_has_camera() else []
    reasons = []
    for candidate in candidates + video_devices():
        source = make_source(candidate)
        source.set_controls(**controls)
        try:
            source.open(width, height, fps)
            if isinstance(source, V4l2Source):
                source.read()  # some nodes open but never deliver (codec, ISP, metadata)
            return source
        except UnsupportedResolution:
            source.close()
            raise
        except CameraError as exc:
            source.close()
            reasons.append(str(exc))
    raise CameraError("no camera found" + (f" ({'; '.join(reasons)})" if reasons else ""))
