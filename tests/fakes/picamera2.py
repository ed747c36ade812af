"""FakePicamera2: picamera2's API shape for machines without a Pi camera.

Shaped after picamera2 v0.3.36 (picamera2/picamera2.py, picamera2/request.py), only what
edgelive calls: `Picamera2.global_camera_info()`, `create_video_configuration`, `configure`,
`camera_configuration`, `start`, `stop`, `close`, `capture_array`, `capture_metadata`,
`set_controls`, `start_encoder(encoder, output, pts, quality, name)`,
`stop_encoder(encoders)`, `pre_callback`/`post_callback`, `camera_properties`,
`camera_controls`, and `MappedArray(request, stream, reshape, write)`.

Like picamera2, a started camera runs its own thread that completes one request per frame
period; for each request it calls `pre_callback`, answers the waiting `capture_*` calls
(a copy for `capture_array`, the metadata dict for `capture_metadata`), calls
`post_callback`, then hands the request to every started encoder (`encode(name, request)`).
Frames are YUV420 with rows padded to a 64-byte stride like the ISP's output, the left
half bright, the right half dark; `SensorTimestamp` is time.monotonic_ns() like the
kernel's CLOCK_MONOTONIC buffer times. `make_module()` returns a fresh module to put in
`sys.modules["picamera2"]`.
"""

from __future__ import annotations

import threading
import time
import types
from typing import Any, ClassVar

import numpy as np

BRIGHT_Y, DARK_Y, PADDING = 200, 40, 255
TIMEOUT_S = 5.0


class FakeRequest:
    """A completed request: one buffer per stream and its metadata."""

    def __init__(self, config: dict[str, Any], buffer: np.ndarray, sensor_ns: int) -> None:
        self.config = config
        self.buffers = {"main": buffer}
        self.metadata = {"SensorTimestamp": sensor_ns, "FrameDuration": 0}

    def get_metadata(self) -> dict[str, Any]:
        return dict(self.metadata)

    def make_array(self, name: str) -> np.ndarray:
        return self.buffers[name].copy()


class MappedArray:
    """`with MappedArray(request, "main") as m: m.array` — the buffer itself, writable."""

    def __init__(self, request: FakeRequest, stream: str, reshape: bool = True,
                 write: bool = True) -> None:
        self._request, self._stream = request, stream
        self.array: np.ndarray | None = None

    def __enter__(self) -> MappedArray:
        self.array = self._request.buffers[self._stream]
        return self

    def __exit__(self, *exc: object) -> None:
        self.array = None


class FakePicamera2:
    cameras: ClassVar[list[dict[str, Any]]] = []
    max_size: ClassVar[tuple[int, int]] = (4608, 2592)
    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None,
                 allocator: Any = None) -> None:
        if camera_num >= len(self.cameras):
            raise IndexError("list index out of range")
        self.camera_properties = {"Model": self.cameras[camera_num]["Model"],
                                  "PixelArraySize": self.max_size}
        self.camera_controls = {"Brightness": (-1.0, 1.0, 0.0), "Sharpness": (0.0, 16.0, 1.0),
                                "NoiseReductionMode": (0, 4, 0), "FrameRate": (1.0, 120.0, 30.0)}
        self.controls_set: list[dict[str, Any]] = []
        self.config: dict[str, Any] | None = None
        self.started = self.closed = False
        self.captures = 0  # capture_array calls: pictures copied into Python
        self.metadata_reads = 0
        self.configures = 0
        self.unplugged = False  # set to make capture_* fail like a pulled ribbon cable
        self.busy = False  # set for noise in the picture: bits for the rate control to spend
        self.pre_callback: Any = None
        self.post_callback: Any = None
        self.encoders: set[Any] = set()
        self._waiters: list[tuple[str, list[Any], threading.Event]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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

    def configure(self, camera_config: dict[str, Any] | None = None) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        assert camera_config is not None
        w, h = camera_config["main"]["size"]
        if w > self.max_size[0] or h > self.max_size[1] or w % 2 or h % 2:
            raise RuntimeError(f"Failed to configure camera: {w}x{h}")
        if camera_config["main"]["format"] != "YUV420":
            raise NotImplementedError("the fake only produces YUV420")
        main = dict(camera_config["main"], stride=-(-w // 64) * 64)
        self.config = dict(camera_config, main=main)
        self.configures += 1

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.config

    def start(self, config: Any = None, show_preview: bool = False) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        self.started = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-camera")
        self._thread.start()

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.controls_set.append(dict(controls))

    # -- the camera thread

    def _run(self) -> None:
        assert self.config is not None
        fps = self.config["controls"].get("FrameRate", 30.0)
        base = self._picture(*self.config["main"]["size"])
        noise = np.random.default_rng(1)
        due = time.monotonic()
        while not self._stop.is_set():
            due += 1 / fps
            if self._stop.wait(max(0.0, due - time.monotonic())):
                break
            if self.unplugged:
                continue  # no frames come from a camera without its cable
            buffer = base.copy()
            if self.busy:
                w, h = self.config["main"]["size"]
                buffer[:h, :w] ^= noise.integers(0, 64, (h, w), np.uint8)
            request = FakeRequest(self.config, buffer, time.monotonic_ns())
            if self.pre_callback:
                self.pre_callback(request)
            with self._lock:
                waiters, self._waiters = self._waiters, []
            for kind, box, done in waiters:
                box.append(request.make_array("main") if kind == "array"
                           else request.get_metadata())
                done.set()
            if self.post_callback:
                self.post_callback(request)
            for encoder in list(self.encoders):
                encoder.encode(encoder.name, request)

    def _next(self, kind: str) -> Any:
        if not self.started or self.config is None:
            raise RuntimeError("Camera is not running")
        if self.unplugged:
            raise RuntimeError("Camera frontend has timed out!")
        box: list[Any] = []
        done = threading.Event()
        with self._lock:
            self._waiters.append((kind, box, done))
        if not done.wait(TIMEOUT_S):
            raise RuntimeError("Camera frontend has timed out!")
        return box[0]

    def capture_array(self, name: str = "main", wait: Any = None,
                      signal_function: Any = None) -> np.ndarray:
        array = self._next("array")
        self.captures += 1
        return array

    def capture_metadata(self, wait: Any = None, signal_function: Any = None) -> dict[str, Any]:
        metadata = self._next("metadata")
        self.metadata_reads += 1
        return metadata

    # -- encoders

    def start_encoder(self, encoder: Any = None, output: Any = None, pts: Any = None,
                      quality: Any = None, name: str | None = None) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        if output is not None:
            encoder.output = output
        encoder.name = name or "main"
        main = self.config["main"]
        encoder.width, encoder.height = main["size"]
        encoder.format, encoder.stride = main["format"], main["stride"]
        if encoder.framerate is None:  # picamera2 gives it the camera's nominal rate
            encoder.framerate = self.config["controls"].get("FrameRate", 30.0)
        encoder.start(quality=quality)
        with self._lock:
            self.encoders.add(encoder)

    def stop_encoder(self, encoders: Any = None) -> None:
        with self._lock:
            chosen = set(self.encoders) if encoders is None else (
                {encoders} if not isinstance(encoders, (list, set)) else set(encoders))
            self.encoders -= chosen
        for encoder in chosen:
            encoder.stop()

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
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def close(self) -> None:
        self.stop()
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
    module.MappedArray = MappedArray  # type: ignore[attr-defined]
    return module
