"""A video file as a camera: decoded with PyAV, looped, paced at the output fps.

For recordings replayed as a test source and for the CPU benchmark, where the pusher and the
ffmpeg CLI must encode the very same raw input (`.y4m` is raw yuv420p with a header).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import av

from edgelive.hw.camera import BaseSource, CameraError, Frame, Pacer, now_ms
from edgelive.media.picture import condition


class VideoFileSource(BaseSource):
    def __init__(self, path: str, pacer_factory: Callable[[float], Pacer] = Pacer) -> None:
        super().__init__()
        self.path = path
        self.name = f"file:{path}"
        self._pacer_factory = pacer_factory
        self._container: Any = None
        self._frames: Iterator[av.VideoFrame] | None = None

    def open(self, width: int, height: int, fps: int) -> None:
        self._start(width, height, fps)
        try:
            self._container = av.open(self.path)
            self._container.streams.video[0].thread_type = "AUTO"
        except (av.FFmpegError, OSError, IndexError) as exc:
            self.close()
            raise CameraError(f"{self.path}: cannot read a video ({exc})") from exc
        self._frames = self._loop()
        self._pacer = self._pacer_factory(fps)
        self._opened = True

    def _loop(self) -> Iterator[av.VideoFrame]:
        while True:
            shown = 0
            for frame in self._container.decode(video=0):
                shown += 1
                yield frame
            if not shown:
                raise CameraError(f"{self.path}: no video frames")
            self._container.seek(0)

    def read(self) -> Frame:
        self._check_open()
        assert self._frames is not None
        self._pacer.wait()
        try:
            raw = next(self._frames)
        except av.FFmpegError as exc:
            raise CameraError(f"{self.path}: decode failed ({exc})") from exc
        return self._frame(condition(raw, self.width, self.height, self.controls), now_ms())

    def close(self) -> None:
        super().close()
        if self._container is not None:
            self._container.close()
            self._container = self._frames = None
