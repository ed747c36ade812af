"""The Pi camera (CSI) as a frame source, through picamera2.

picamera2 exists only in the Raspberry Pi apt repository, so it is imported inside `open()`;
tests put a fake of the same API shape in `sys.modules["picamera2"]`.

Two ways to hand out pictures: copied into Python (`capture_array`, for libx264 or any
other encoder), or, once `feed()` has attached picamera2's H264Encoder to the camera, none
at all: `read()` then waits for the next frame's metadata only and returns a `FedPicture`
(its sensor timestamp), while the camera's buffers go to the VideoCore encoder directly.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edgelive.hw.camera import BaseSource, CameraError, Frame, UnsupportedResolution, now_ms
from edgelive.media.picam_encode import ENCODER_DEVICE, FedPicture
from edgelive.media.picture import condition, new_frame

if TYPE_CHECKING:
    import av

    from edgelive.media.picam_encode import PicamVideoEncoder


def _yuv420_planes(array: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """Y, U, V views of a picamera2 YUV420 array whose rows may be padded to a stride."""
    stride = array.shape[1]
    flat = array.reshape(-1)
    luma_end, chroma = height * stride, (height // 2) * (stride // 2)
    y = flat[:luma_end].reshape(height, stride)[:, :width]
    u = flat[luma_end:luma_end + chroma].reshape(height // 2, stride // 2)[:, :width // 2]
    v = flat[luma_end + chroma:luma_end + 2 * chroma].reshape(height // 2, stride // 2)
    return y, u, v[:, :width // 2]


class Picamera2Source(BaseSource):
    """The Pi camera (CSI) through picamera2, imported only when opened.

    `camera` exposes the Picamera2 object so the pusher can attach picamera2's own
    H264Encoder when `hardware_encoder_available`.
    """

    name = "picamera2"

    def __init__(self, camera_num: int = 0, encoder_device: str = ENCODER_DEVICE) -> None:
        super().__init__()
        self.camera_num = camera_num
        self._encoder_device = encoder_device
        self.camera: Any = None
        self._feed: PicamVideoEncoder | None = None

    @property
    def hardware_encoder_available(self) -> bool:
        return os.path.exists(self._encoder_device)

    def open(self, width: int, height: int, fps: int) -> None:
        self._start(width, height, fps)
        picamera2 = import_picamera2()
        if not picamera2.Picamera2.global_camera_info():
            raise CameraError("picamera2: no camera found")
        # picamera2 and libcamera raise assorted exception types: catch them all here.
        try:
            camera = picamera2.Picamera2(self.camera_num)
        except Exception as exc:
            raise CameraError(f"picamera2: cannot open camera {self.camera_num} ({exc})") from exc
        try:
            config = camera.create_video_configuration(
                main={"size": (width, height), "format": "YUV420"},
                controls={"FrameRate": float(fps)})
            camera.configure(config)
        except Exception as exc:
            camera.close()
            raise UnsupportedResolution(
                f"picamera2: {width}x{height}@{fps} not supported ({exc})") from exc
        self.camera = camera
        try:
            self._apply_camera_controls()
            camera.start()
        except Exception as exc:
            self.close()
            raise CameraError(f"picamera2: cannot start camera ({exc})") from exc
        self._opened = True

    def set_controls(self, **controls: Any) -> None:
        super().set_controls(**controls)
        if self.camera is not None:
            self._apply_camera_controls()

    def _apply_camera_controls(self) -> None:
        """Beauty and whiteness as the ISP's own controls (free, unlike the numpy filter)."""
        c = self.controls
        wanted = {"Brightness": c.whiteness * 0.05, "Sharpness": 1.0 - c.beauty / 10,
                  "NoiseReductionMode": 2 if c.beauty else 1,
                  "AfMode": 2 if c.auto_focus else 0}
        available = self.camera.camera_controls
        self.camera.set_controls({k: v for k, v in wanted.items() if k in available})

    def feed(self, encoder: PicamVideoEncoder) -> bool:
        """Hand the camera's buffers to picamera2's H264Encoder (`encoder`) from now on;
        False when it cannot take them (pictures are then copied as before)."""
        self._check_open()
        c = self.controls
        if c.rotation or c.zoom:
            # The encoder takes the ISP's picture as it is: turning or cropping it is done
            # on a copy in Python, so that path keeps the pixels.
            encoder.decline(f"rotation {c.rotation} / zoom {c.zoom} are applied in software")
            return False
        if not encoder.attach(self.camera):
            return False
        self._feed = encoder
        return True

    def read(self) -> Frame:
        self._check_open()
        feed = self._feed
        if feed is None or not feed.fed_by(self.camera):
            image = self.still()
            return self._frame(image, now_ms())
        try:
            metadata = self.camera.capture_metadata()
        except Exception as exc:
            raise CameraError(f"picamera2: capture failed ({exc})") from exc
        sensor_ns = int(metadata["SensorTimestamp"])  # CLOCK_MONOTONIC, like time.monotonic
        taken_ms = now_ms() - (time.monotonic_ns() - sensor_ns) // 1_000_000
        return self._frame(FedPicture(sensor_ns // 1000, self.still), taken_ms)

    def still(self) -> av.VideoFrame:
        """A copy of the camera's next picture, conditioned like every source's."""
        self._check_open()
        try:
            array = self.camera.capture_array("main")
            w, h = self.camera.camera_configuration()["main"]["size"]
        except Exception as exc:
            raise CameraError(f"picamera2: capture failed ({exc})") from exc
        image = new_frame(w, h, *_yuv420_planes(array, w, h))
        return condition(image, self.width, self.height, self.controls, luma=False)

    def close(self) -> None:
        super().close()
        camera, self.camera = self.camera, None
        feed, self._feed = self._feed, None
        if camera is not None:
            try:
                if feed is not None:
                    feed.detach(camera)  # the encoder stops before the camera does
                camera.stop()
            finally:
                camera.close()


def import_picamera2() -> Any:
    try:
        return importlib.import_module("picamera2")
    except ImportError:
        raise CameraError("picamera2 is not installed") from None
