"""Which picture goes out: the camera, or the waiting image while any reason holds (SPEC §3).

Reasons to show the waiting image: `pause`, privacy, enable-camera = false, and a camera
that failed (to open, or mid-stream). Only the capture thread reads pictures
(`next_picture`); commands and config changes from other threads only change the reasons,
the camera choice or the image, under a lock. A camera that failed is retried every
`CAMERA_RETRY_S` while the waiting image is shown; when it works again the camera is back.

The waiting image goes out at `WAITING_FPS` with a key frame every GOP (viewers who join
get a picture); every switch (camera ↔ waiting image, front ↔ back) starts at a key frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import av

from edgelive.codes import Code
from edgelive.config.presets import VideoPlan
from edgelive.config.schema import PusherConfig
from edgelive.events import EventLog, now_ms
from edgelive.hw.camera import CameraError, FrameSource, UnsupportedResolution
from edgelive.media.waiting import load_waiting_image

WAITING_FPS = 5
WAITING_KBPS = 64
"""Video bitrate while the still waiting image is sent (its P-frames are nearly empty)."""
CAMERA_RETRY_S = 3.0

CameraOpener = Callable[..., FrameSource]
"""`hw.camera.open_source`'s signature: (spec, *, width, height, fps, **controls)."""


class Why(StrEnum):
    """A reason to show the waiting image instead of the camera."""

    PAUSED = "paused"
    PRIVACY = "privacy"
    CAMERA_OFF = "camera-disabled"
    CAMERA_FAILED = "camera-failed"


TIMED = frozenset({Why.PAUSED, Why.PRIVACY, Why.CAMERA_OFF})
"""Reasons that end the push after waiting-timeout. A failed camera does not: the box
keeps the stream up and the camera retried until it works again."""


@dataclass
class Picture:
    image: av.VideoFrame
    capture_ms: int
    waiting: bool
    """The waiting image, not the camera."""
    switched: bool
    """First picture after a switch: camera ↔ waiting image, or another camera."""
    key: bool
    """Encode this picture as a key frame."""


class Scene:
    """Holds the camera and the waiting image; decides which one each picture comes from."""

    def __init__(self, config: PusherConfig, events: EventLog, *,
                 open_camera: CameraOpener | None = None,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self._events = events
        self._open_camera = open_camera or _open_source
        self._on_change = on_change
        self._plan: VideoPlan | None = None
        self._reasons: set[Why] = set() if config.enable_camera else {Why.CAMERA_OFF}
        self._camera: FrameSource | None = None
        self._position = config.device_position
        self._retired: list[FrameSource] = []  # closed by the capture thread
        self._image: av.VideoFrame | None = None
        self._camera_retry_at = 0.0
        self._camera_changed = False
        self._shown_waiting: bool | None = None  # what the previous picture was
        self._shown_since = 0.0  # when the picture last switched (monotonic)
        self._timed_since: float | None = None  # when a TIMED reason began to hold
        self._next_waiting_at = 0.0
        self._next_key_at = 0.0
        self._lock = threading.RLock()
        self._wake = threading.Event()

    @property
    def waiting(self) -> bool:
        return bool(self._reasons)

    @property
    def reasons(self) -> list[str]:
        return sorted(self._reasons)

    # -- control (any thread)

    def hold(self, why: Why, on: bool) -> None:
        """Add or remove a reason to show the waiting image."""
        with self._lock:
            if (why in self._reasons) == on:
                return
            before = self.waiting
            (self._reasons.add if on else self._reasons.discard)(why)
            timed = bool(self._reasons & TIMED)
            if timed and self._timed_since is None:
                self._timed_since = time.monotonic()
            elif not timed:
                self._timed_since = None
        self._wake.set()  # cut the waiting image's pause short
        if self.waiting != before:
            self._on_change()

    def configure(self, config: PusherConfig) -> None:
        """Apply a live config change: enable-camera, waiting image, camera controls."""
        old, self.config = self.config, config
        if (config.waiting_image, config.waiting_image_hash) != (
                old.waiting_image, old.waiting_image_hash) and self._plan is not None:
            self._load_image(self._plan)
        controls = _controls(config)
        with self._lock:
            camera = self._camera
            if not config.enable_camera and camera is not None:
                self._retire_camera()  # privacy: the camera device is released
        if camera is not None and controls != _controls(old):
            camera.set_controls(**controls)
        self.hold(Why.CAMERA_OFF, not config.enable_camera)

    def switch_camera(self, position: str | None = None) -> str:
        """Use the other camera (or `position`); raises CameraError and keeps the current
        one when it cannot be opened."""
        target = position or ("back" if self._position == "front" else "front")
        if target not in ("front", "back"):
            raise ValueError("position must be front or back")
        if target == self._position or self._plan is None or not self.config.enable_camera:
            self._position = target  # used when the camera is next opened
            return target
        try:
            camera = self._open(target, self._plan)
        except CameraError as exc:
            self._events.emit(Code.PUSH_ERR_OPEN_CAMERA_FAIL,
                              f"cannot switch to the {target} camera: {exc}; "
                              f"staying on the {self._position} one", position=target)
            raise
        with self._lock:
            self._retire_camera()
            self._camera, self._position, self._camera_changed = camera, target, True
        self._camera_opened(camera, target)
        self.hold(Why.CAMERA_FAILED, False)
        return target

    def waited_s(self) -> float:
        """Seconds the waiting image has been shown for a TIMED reason (0 when not)."""
        since = self._timed_since
        if since is None or not self._shown_waiting:
            return 0.0
        return time.monotonic() - max(since, self._shown_since)

    def wake(self) -> None:
        self._wake.set()

    # -- the capture thread

    def start(self, plan: VideoPlan) -> None:
        """Load the waiting image and open the camera; raises UnsupportedResolution only."""
        self._plan = plan
        self._shown_waiting = None
        self._load_image(plan)
        if self.config.enable_camera:
            self._try_camera(plan)

    def next_picture(self) -> Picture | None:
        """The next picture to encode; None when woken early (check for stop, call again)."""
        assert self._plan is not None, "start() first"
        self._close_retired()
        if self._camera is None and self.config.enable_camera \
                and time.monotonic() >= self._camera_retry_at:
            self._try_camera(self._plan)
        with self._lock:
            camera = None if self.waiting else self._camera
            changed, self._camera_changed = self._camera_changed, False
        if camera is not None:
            try:
                frame = camera.read()
            except CameraError as exc:
                self._camera_failed(f"camera failed: {exc}")
                return None
            return self._picture(frame.image, frame.capture_ms, False, changed)
        if self._shown_waiting:
            self._wake.clear()
            if self._wake.wait(max(0.0, self._next_waiting_at - time.monotonic())):
                return None
        assert self._image is not None
        return self._picture(self._image, now_ms(), True, False)

    def close(self) -> None:
        with self._lock:
            self._retire_camera()
        self._close_retired()

    # -- internals

    def _picture(self, image: av.VideoFrame, capture_ms: int, waiting: bool,
                 camera_changed: bool) -> Picture:
        now = time.monotonic()
        switched = waiting != self._shown_waiting
        if switched:
            self._shown_since = now
            if self._shown_waiting is not None or waiting:
                self._announce(waiting)
        self._shown_waiting = waiting
        assert self._plan is not None
        key = switched or camera_changed
        if waiting:
            self._next_waiting_at = max(now, self._next_waiting_at) + 1 / WAITING_FPS
            if now >= self._next_key_at:  # the camera's GOP does not tick at this rate
                key = True
            if key:
                self._next_key_at = now + self._plan.gop_seconds
        return Picture(image, capture_ms, waiting, switched or camera_changed, key)

    def _announce(self, waiting: bool) -> None:
        if waiting:
            self._events.emit(Code.WAITING_IMAGE_ON, "sending the waiting image",
                              reasons=self.reasons)
        else:
            self._events.emit(Code.WAITING_IMAGE_OFF, "sending the camera again")

    def reannounce(self) -> None:
        """Tell a new session's listeners that the waiting image is what they get."""
        if self._shown_waiting:
            self._announce(True)

    def _load_image(self, plan: VideoPlan) -> None:
        loaded = load_waiting_image(self.config.waiting_image, self.config.waiting_image_hash,
                                    plan.width, plan.height)
        if loaded.reason:
            self._events.emit(Code.WAITING_IMAGE_INVALID,
                              f"waiting image unusable, slate used: {loaded.reason}")
        self._image = loaded.frame
        self._wake.set()

    def _open(self, position: str, plan: VideoPlan) -> FrameSource:
        cfg = self.config
        spec = cfg.back_source if position == "back" and cfg.back_source else cfg.source
        return self._open_camera(spec, width=plan.width, height=plan.height, fps=plan.fps,
                                 **_controls(cfg))

    def _try_camera(self, plan: VideoPlan) -> None:
        try:
            camera = self._open(self._position, plan)
        except UnsupportedResolution:
            raise
        except CameraError as exc:
            self._camera_failed(str(exc))
            return
        with self._lock:
            self._camera, self._camera_changed = camera, True
        self._camera_opened(camera, self._position)
        self.hold(Why.CAMERA_FAILED, False)

    def _camera_opened(self, camera: FrameSource, position: str) -> None:
        assert self._plan is not None
        self._events.emit(Code.PUSH_EVT_OPEN_CAMERA_SUCC, f"camera {camera.name} opened",
                          source=camera.name, position=position, width=self._plan.width,
                          height=self._plan.height, fps=self._plan.fps)

    def _camera_failed(self, message: str) -> None:
        """-1301 once per failure; the waiting image is sent and the camera retried."""
        self._camera_retry_at = time.monotonic() + CAMERA_RETRY_S
        with self._lock:
            self._retire_camera()
        if Why.CAMERA_FAILED not in self._reasons:
            self._events.emit(Code.PUSH_ERR_OPEN_CAMERA_FAIL, message,
                              source=self.config.source, retry_s=CAMERA_RETRY_S)
        self.hold(Why.CAMERA_FAILED, True)

    def _retire_camera(self) -> None:
        """Caller holds the lock; the capture thread closes it between reads."""
        if self._camera is not None:
            self._retired.append(self._camera)
            self._camera = None

    def _close_retired(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for camera in retired:
            camera.close()


def _controls(cfg: PusherConfig) -> dict[str, Any]:
    return {"beauty": cfg.beauty, "whiteness": cfg.whiteness, "zoom": cfg.zoom,
            "rotation": cfg.rotation, "auto_focus": cfg.auto_focus}


def _open_source(spec: str, **kwargs: Any) -> FrameSource:
    from edgelive.hw.camera import open_source  # V4L2/picamera2 probing only when used

    return open_source(spec, **kwargs)
