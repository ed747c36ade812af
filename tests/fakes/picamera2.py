"""FakePicamera2: picamera2's API shape for machines without a Pi camera.

Only what edgelive calls: `Picamera2.global_camera_info()`, `create_video_configuration`,
`configure`, `start`, `capture_array`, `set_controls`, `stop`, `close`,
`camera_properties` and `camera_controls`. Frames are YUV420 with rows padded to a 64-byte
stride like the real ISP output, paced at the configured FrameRate; the left half is
bright, the right half dark, so geometry is checkable. `make_module()` returns a fresh
module to put in `sys.modules["picamera2"]`.
"""

from __future__ import annotations

import time
import types
from typing import Any, ClassVar

import numpy as np

BRIGHT_Y, DARK_Y, PADDING = 200, 40, 255


class FakePicamera2:
    cameras: ClassVar[list[dict[str, Any]]] = []
    max_size: ClassVar[tuple[int, int]] = (4608, 2592)
    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= len(self.cameras):
            raise IndexError("list index out of range")
        self.camera_properties = {"Model": self.cameras[camera_num]["Model"],
                                  "PixelArraySize": self.max_size}
        self.camera_controls = {"Brightness": (-1.0, 1.0, 0.0), "Sharpness": (0.0, 16.0, 1.0),
                                "NoiseReductionMode": (0, 4, 0), "FrameRate": (1.0, 120.0, 30.0)}
        self.controls_set: list[dict[str, Any]] = []
        self.config: dict[str, Any] | None = None
        self.started = self.closed = False
        self.captures = 0
        self.unplugged = False  # set to make capture_array fail like a pulled ribbon cable
        self._next_due = 0.0
        type(self).instances.append(self)

    @classmethod
    def global_camera_info(cls) -> list[dict[str, Any]]:
        return [dict(c) for c in cls.cameras]

    def create_video_configuration(self, main: dict[str, Any] | None = None,
                                   controls: dict[str, Any] | None = None,
                                   **_: Any) -> dict[str, Any]:
        main = dict(main or {})
        main.setdefault("size", (1280, 720))
        main.setdefault("format", "XBGR8888")
        return {"use_case": "video", "main": main, "controls": dict(controls or {})}

    def configure(self, config: dict[str, Any]) -> None:
        w, h = config["main"]["size"]
        if w > self.max_size[0] or h > self.max_size[1] or w % 2 or h % 2:
            raise RuntimeError(f"Failed to configure camera: {w}x{h}")
        if config["main"]["format"] != "YUV420":
            raise NotImplementedError("the fake only produces YUV420")
        self.config = config

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        self._next_due = time.monotonic()

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.controls_set.append(dict(controls))

    def capture_array(self, name: str = "main") -> np.ndarray:
        if not self.started or self.config is None:
            raise RuntimeError("Camera is not running")
        if self.unplugged:
            raise RuntimeError("Camera frontend has timed out!")
        fps = self.config["controls"].get("FrameRate", 30.0)
        delay = self._next_due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next_due = max(self._next_due + 1 / fps, time.monotonic())
        self.captures += 1
        return self._picture(*self.config[name]["size"])

    @staticmethod
    def _picture(width: int, height: int) -> np.ndarray:
        stride = -(-width // 64) * 64
        luma = np.full((height, stride), PADDING, dtype=np.uint8)
        luma[:, :width // 2] = BRIGHT_Y
        luma[:, width // 2:width] = DARK_Y
        chroma = np.full((height // 2, stride // 2), PADDING, dtype=np.uint8)
        chroma[:, :width // 2] = 128
        flat = np.concatenate([luma.reshape(-1), chroma.reshape(-1), chroma.reshape(-1)])
        return flat.reshape(height * 3 // 2, stride)

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
        self.closed = True


def make_module(models: tuple[str, ...] = ("imx708",)) -> types.ModuleType:
    """A fresh `picamera2` module whose Picamera2 sees cameras of the given models."""
    camera_class = type("Picamera2", (FakePicamera2,), {
        "cameras": [{"Model": m, "Location": 2, "Rotation": 0, "Num": i}
                    for i, m in enumerate(models)],
        "instances": [],
    })
    module = types.ModuleType("picamera2")
    module.Picamera2 = camera_class  # type: ignore[attr-defined]
    return module
