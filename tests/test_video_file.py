"""A video file as the pusher's camera: decoded, scaled, looped and paced."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edgelive.hw.camera import CameraError, open_source
from edgelive.hw.video_file import VideoFileSource
from edgelive.media.picture import planes


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.y4m"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x180:rate=10", "-frames:v", "10", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    return path


def test_file_is_looped_scaled_and_paced(clip: Path) -> None:
    source = open_source(str(clip), width=160, height=90, fps=50)
    assert isinstance(source, VideoFileSource)
    started = time.monotonic()
    frames = [source.read() for _ in range(25)]  # 2.5 passes over a 10-frame clip
    elapsed = time.monotonic() - started
    source.close()
    source.close()
    assert all(f.image.width == 160 and f.image.height == 90 for f in frames)
    assert [f.index for f in frames] == list(range(25))
    luma = [np.array(planes(f.image)[0]) for f in frames]
    assert not np.array_equal(luma[0], luma[5])  # it moves
    assert np.array_equal(luma[0], luma[10]) and np.array_equal(luma[3], luma[23])  # loops
    assert 0.8 <= elapsed / (24 / 50) <= 2.0


def test_a_file_that_is_not_a_video_is_a_camera_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(CameraError, match=r"bad\.mp4"):
        open_source(str(bad), width=160, height=90, fps=10)
