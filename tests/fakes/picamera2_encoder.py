"""FakeH264Encoder and FakeOutput: picamera2's encoder API shape, with real H.264.

`H264Encoder(bitrate=, repeat=, iperiod=)`, an `Output` base with `outputframe(frame,
keyframe, timestamp)`, and `start_encoder(encoder, output)` / `stop_encoder(encoder)` on the
fake Picamera2. While started, the encoder takes the camera's frames at its frame rate,
encodes them with libx264 (Annex B, SPS/PPS before each key frame, like the Pi's encoder
with repeat=True) and calls `outputframe` from its own thread, timestamps in µs.
`make_module()` returns picamera2 with its `encoders` and `outputs` submodules.
"""

from __future__ import annotations

import threading
import time
import types
from fractions import Fraction
from typing import Any

import av
from av.codec.context import CodecContext

from tests.fakes import picamera2 as fake_camera


class FakeOutput:
    def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                    packet: Any = None, audio: bool = False) -> None:
        raise NotImplementedError


class FakeH264Encoder:
    def __init__(self, bitrate: int | None = None, repeat: bool = False,
                 iperiod: int | None = None) -> None:
        self.bitrate, self.repeat, self.iperiod = bitrate, repeat, iperiod
        self.frames = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self, camera: FakeEncodingCamera, output: FakeOutput) -> None:
        self._thread = threading.Thread(target=self._run, args=(camera, output), daemon=True)
        self._thread.start()

    def _run(self, camera: FakeEncodingCamera, output: FakeOutput) -> None:
        assert camera.config is not None
        width, height = camera.config["main"]["size"]
        ctx = CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = Fraction(1, 1_000_000)
        ctx.bit_rate = self.bitrate or 1_000_000
        ctx.gop_size = self.iperiod or 30
        ctx.max_b_frames = 0
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency"}
        while not self._stop.is_set():
            yuv = camera.capture_array()
            picture = av.VideoFrame.from_ndarray(
                yuv[:, :width].copy() if yuv.shape[1] != width else yuv, format="yuv420p")
            # Sensor timestamps: one clock for the camera, across encoder restarts.
            picture.pts = round(time.monotonic() * 1_000_000)
            for packet in ctx.encode(picture):
                self.frames += 1
                output.outputframe(bytes(packet), packet.is_keyframe, packet.pts)

    def _stop_now(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class FakeEncodingCamera(fake_camera.FakePicamera2):
    """FakePicamera2 that can also run an encoder."""

    def __init__(self, camera_num: int = 0) -> None:
        super().__init__(camera_num)
        self.encoders_started: list[FakeH264Encoder] = []

    def start_encoder(self, encoder: FakeH264Encoder, output: FakeOutput) -> None:
        if not self.started:
            raise RuntimeError("Camera is not running")
        self.encoders_started.append(encoder)
        encoder._start(self, output)

    def stop_encoder(self, encoder: FakeH264Encoder) -> None:
        encoder._stop_now()


def make_module(models: tuple[str, ...] = ("imx708",)) -> dict[str, types.ModuleType]:
    """`sys.modules` entries: picamera2 (with an encoding camera), .encoders, .outputs."""
    camera = fake_camera.make_module(models)
    base = camera.Picamera2  # type: ignore[attr-defined]
    camera.Picamera2 = type("Picamera2", (FakeEncodingCamera,), {  # type: ignore[attr-defined]
        "cameras": base.cameras, "instances": []})
    encoders = types.ModuleType("picamera2.encoders")
    encoders.H264Encoder = FakeH264Encoder  # type: ignore[attr-defined]
    outputs = types.ModuleType("picamera2.outputs")
    outputs.Output = FakeOutput  # type: ignore[attr-defined]
    return {"picamera2": camera, "picamera2.encoders": encoders, "picamera2.outputs": outputs}
