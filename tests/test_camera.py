"""Frame sources: sizes, the wall-clock stamp, pacing, controls on pixels, failures."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from edgelive.hw import camera
from edgelive.hw.camera import (
    CameraError,
    ImageSource,
    Pacer,
    UnsupportedResolution,
    V4l2Source,
    make_source,
    open_source,
)
from edgelive.hw.picamera import Picamera2Source
from edgelive.media import overlay, stamp
from edgelive.media.picture import Controls, condition, planes
from tests.fakes import picamera2 as fake_picamera2


def luma(frame: av.VideoFrame) -> np.ndarray:
    return planes(frame)[0].copy()


def write_png(path: Path, rgb: np.ndarray) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --- testsrc -------------------------------------------------------------------------------

def test_testsrc_frames_carry_their_capture_time_in_the_stamp() -> None:
    with open_source("testsrc", width=320, height=180, fps=30) as source:
        frames = [source.read() for _ in range(5)]
    for i, frame in enumerate(frames):
        assert (frame.image.width, frame.image.height) == (320, 180)
        assert frame.image.format.name == "yuv420p"
        assert frame.index == i
        assert stamp.decode(luma(frame.image)) == frame.capture_ms % stamp.MOD
    assert abs(frames[0].capture_ms - time.time() * 1000) < 5000
    # the pattern moves: the bars below the text band differ between frames
    assert not np.array_equal(luma(frames[0].image)[120:], luma(frames[4].image)[120:])


def test_testsrc_stamp_survives_an_independent_decoder_at_720p() -> None:
    with open_source("testsrc", width=1280, height=720, fps=30) as source:
        frame = source.read()
    rgb = frame.image.reformat(format="rgb24").to_ndarray()  # swscale, as a player would
    assert stamp.decode(rgb) == frame.capture_ms % stamp.MOD


def test_testsrc_draws_the_clock_and_frame_number() -> None:
    source = open_source("testsrc", width=640, height=360, fps=30)
    frames = [source.read() for _ in range(3)]
    source.close()
    source.close()  # safe twice
    scale = 2
    top = stamp.square_size(640) + 2 * scale
    text = overlay.clock_text(frames[2].capture_ms)
    mask = overlay.text_mask(text, scale)
    region = luma(frames[2].image)[top:top + mask.shape[0], 2 * scale:2 * scale + mask.shape[1]]
    assert (region[mask] == overlay.INK).all() and (region[~mask] == overlay.PAPER).all()
    number = overlay.text_mask("#2", scale)
    y = top + 10 * scale
    region = luma(frames[2].image)[y:y + number.shape[0], 2 * scale:2 * scale + number.shape[1]]
    assert (region[number] == overlay.INK).all()


def test_testsrc_read_is_paced_at_fps() -> None:
    with open_source("testsrc", width=320, height=180, fps=30) as source:
        source.read()
        start = time.monotonic()
        for _ in range(15):
            source.read()
        elapsed = time.monotonic() - start
    assert 0.9 <= elapsed / (15 / 30) <= 1.6


def test_testsrc_read_after_close_raises() -> None:
    source = open_source("testsrc", width=320, height=180, fps=30)
    source.close()
    with pytest.raises(CameraError):
        source.read()


@pytest.mark.parametrize("size", [(321, 180), (320, 181), (16, 16), (8192, 720)])
def test_unsupported_resolution(size: tuple[int, int]) -> None:
    with pytest.raises(UnsupportedResolution):
        open_source("testsrc", width=size[0], height=size[1], fps=30)


def test_pacer_has_no_drift_and_skips_missed_slots() -> None:
    clock = FakeClock()
    pacer = Pacer(10, clock=clock, sleep=clock.sleep)
    pacer.wait()
    for _ in range(100):
        clock.now += 0.03  # work done between reads
        pacer.wait()
    assert clock.now == pytest.approx(110.0)  # 100 slots of 0.1 s, no accumulated error
    clock.now += 0.35  # a stall: slots 101 and 102 pass unread, 103 is taken late
    pacer.wait()
    assert pacer.skipped == 2
    before = clock.now
    pacer.wait()
    assert clock.now - before == pytest.approx(0.05)  # back on the original grid


# --- image ---------------------------------------------------------------------------------

def _halves(width: int, height: int) -> np.ndarray:
    """Top half white, bottom half black: rotation moves the white half."""
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[: height // 2] = 255
    return rgb


def test_image_is_letterboxed_and_repeated(tmp_path: Path) -> None:
    path = write_png(tmp_path / "square.png", np.full((200, 200, 3), 255, dtype=np.uint8))
    with open_source(str(path), width=320, height=180, fps=30) as source:
        a, b = source.read(), source.read()
    y = luma(a.image)
    assert (a.image.width, a.image.height) == (320, 180)
    assert y[:, :60].max() <= 20 and y[:, -60:].max() <= 20  # pillarbox bars
    assert y[:, 80:240].min() >= 230  # the white picture, 180 px wide
    assert np.array_equal(y, luma(b.image)) and a.image is not b.image
    assert b.index == 1


@pytest.mark.parametrize(("rotation", "bright"), [(0, "top"), (90, "right"), (180, "bottom"),
                                                  (270, "left")])
def test_rotation_turns_the_picture_clockwise(tmp_path: Path, rotation: int,
                                              bright: str) -> None:
    path = write_png(tmp_path / "halves.png", _halves(160, 160))
    with open_source(str(path), width=160, height=160, fps=30, rotation=rotation) as source:
        y = luma(source.read().image).astype(int)
    halves = {"top": y[:80].mean(), "bottom": y[80:].mean(),
              "left": y[:, :80].mean(), "right": y[:, 80:].mean()}
    assert max(halves, key=halves.__getitem__) == bright
    assert halves[bright] > 200


def test_zoom_crops_the_centre_twice_as_large(tmp_path: Path) -> None:
    rgb = np.zeros((160, 320, 3), dtype=np.uint8)
    rgb[60:100, 140:180] = 255  # a 40 px white square in the centre
    path = write_png(tmp_path / "dot.png", rgb)
    with open_source(str(path), width=320, height=160, fps=30, zoom=True) as source:
        y = luma(source.read().image)
    rows, cols = np.nonzero(y > 128)
    assert 76 <= rows.max() - rows.min() + 1 <= 84 and 76 <= cols.max() - cols.min() + 1 <= 84


def test_controls_can_change_while_open(tmp_path: Path) -> None:
    path = write_png(tmp_path / "halves.png", _halves(160, 160))
    with open_source(str(path), width=160, height=160, fps=30) as source:
        assert luma(source.read().image)[:80].mean() > 200
        source.set_controls(rotation=180)
        assert luma(source.read().image)[80:].mean() > 200


@pytest.mark.parametrize("content", [b"", b"not an image at all" * 100])
def test_unreadable_image_is_a_camera_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(CameraError, match=r"broken\.jpg"):
        open_source(str(path), width=320, height=180, fps=30)


def test_missing_image_is_a_camera_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match=r"nothing\.png"):
        ImageSource(str(tmp_path / "nothing.png")).open(320, 180, 30)


# --- shared post-process -------------------------------------------------------------------

def _checkerboard() -> av.VideoFrame:
    y = ((np.indices((120, 160)).sum(axis=0) % 2) * 160 + 40).astype(np.uint8)
    return camera.new_frame(160, 120, y)


def test_condition_is_a_no_op_without_controls() -> None:
    frame = _checkerboard()
    assert condition(frame, 160, 120, Controls()) is frame


def test_beauty_smooths_and_whiteness_lifts_luma() -> None:
    frame = _checkerboard()
    original = luma(frame).astype(int)

    def roughness(y: np.ndarray) -> float:
        return float(np.abs(np.diff(y.astype(int), axis=1)).mean())

    smooth = luma(condition(frame, 160, 120, Controls(beauty=9)))
    assert roughness(smooth) < roughness(original) / 3
    light = luma(condition(frame, 160, 120, Controls(whiteness=5))).astype(int)
    assert light.mean() > original.mean() + 20 and light.max() <= 235
    assert np.array_equal(luma(frame), original)  # the source picture is left alone


# --- V4L2 ----------------------------------------------------------------------------------

def test_missing_v4l2_device_names_the_path() -> None:
    with pytest.raises(CameraError, match="/dev/video99"):
        open_source("/dev/video99", width=320, height=180, fps=30)
    with pytest.raises(CameraError, match="/dev/video98"):
        open_source("v4l2:/dev/video98", width=320, height=180, fps=30)


def test_a_file_that_is_not_a_device_is_a_camera_error(tmp_path: Path) -> None:
    fake_device = tmp_path / "video0"
    fake_device.write_bytes(b"\0" * 1024)
    source = V4l2Source(str(fake_device))
    with pytest.raises(CameraError, match="video0"):
        source.open(320, 180, 30)
    source.close()


# --- picamera2 (fake) ---------------------------------------------------------------------

@pytest.fixture
def picam(monkeypatch: pytest.MonkeyPatch):
    module = fake_picamera2.make_module()
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return module


def test_picamera2_frames_have_the_asked_size_without_stride_padding(picam) -> None:
    with open_source("picamera2", width=360, height=240, fps=30) as source:
        frames = [source.read() for _ in range(3)]
        (cam,) = picam.Picamera2.instances
        assert source.camera is cam and cam.started
    assert cam.closed and not cam.started
    y = luma(frames[2].image)
    assert (frames[2].image.width, frames[2].image.height) == (360, 240)
    assert (y[:, :180] == fake_picamera2.BRIGHT_Y).all()
    assert (y[:, 180:] == fake_picamera2.DARK_Y).all()  # 360 is padded to 384 by the fake
    assert [f.index for f in frames] == [0, 1, 2]
    assert cam.config["controls"]["FrameRate"] == 30.0


def test_picamera2_controls_go_to_the_camera(picam) -> None:
    with open_source("picamera2", width=320, height=180, fps=30, beauty=5,
                     whiteness=4) as source:
        (cam,) = picam.Picamera2.instances
        assert cam.controls_set[-1] == {"Brightness": pytest.approx(0.2), "Sharpness": 0.5,
                                        "NoiseReductionMode": 2}  # no AfMode on this model
        y = luma(source.read().image)
        assert (y[:, :160] == fake_picamera2.BRIGHT_Y).all()  # not filtered twice in numpy
        source.set_controls(rotation=180)
        assert cam.controls_set[-1]["Brightness"] == 0.0
        assert (luma(source.read().image)[:, 160:] == fake_picamera2.BRIGHT_Y).all()


def test_picamera2_unplugged_mid_stream_raises(picam) -> None:
    with open_source("picamera2", width=320, height=180, fps=30) as source:
        source.read()
        picam.Picamera2.instances[0].unplugged = True
        with pytest.raises(CameraError, match="capture failed"):
            source.read()


def test_picamera2_unsupported_size(picam) -> None:
    with pytest.raises(UnsupportedResolution, match="4096x4096"):
        open_source("picamera2", width=4096, height=4096, fps=30)
    assert picam.Picamera2.instances[0].closed


def test_picamera2_without_cameras_or_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", fake_picamera2.make_module(models=()))
    with pytest.raises(CameraError, match="no camera found"):
        open_source("picamera2", width=320, height=180, fps=30)
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import raises ImportError
    with pytest.raises(CameraError, match="picamera2 is not installed"):
        open_source("picamera2", width=320, height=180, fps=30)


def test_hardware_encoder_follows_the_encoder_device(tmp_path: Path) -> None:
    device = tmp_path / "video11"
    assert not Picamera2Source(encoder_device=str(device)).hardware_encoder_available
    device.touch()
    assert Picamera2Source(encoder_device=str(device)).hardware_encoder_available


# --- auto ----------------------------------------------------------------------------------

def test_auto_prefers_the_pi_camera(picam) -> None:
    with open_source("auto", width=320, height=180, fps=30) as source:
        assert source.name == "picamera2"


def test_auto_without_any_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    monkeypatch.setattr(camera, "video_devices", lambda: ["/dev/video99"])
    with pytest.raises(CameraError, match=r"no camera found \(/dev/video99: no such device"):
        open_source("auto", width=320, height=180, fps=30)


def test_video_devices_sort_numerically(tmp_path: Path) -> None:
    for n in (10, 2, 0):
        (tmp_path / f"video{n}").touch()
    assert camera.video_devices(str(tmp_path / "video*")) == [
        str(tmp_path / f"video{n}") for n in (0, 2, 10)]


# --- overlay -------------------------------------------------------------------------------

def test_debug_lines_share_one_box_and_clip_at_the_edge() -> None:
    plane = np.full((60, 100), 128, dtype=np.uint8)
    overlay.draw_lines(plane, ["FPS 30", "KBPS 1200"], 2, 2, scale=1)
    assert (plane[1:2 + 18, 1:2 + 54] != 128).all()  # box under both lines, 9 cells wide
    assert (plane[2:9, 2:56] == overlay.INK).any() and (plane[11:18, 2:56] == overlay.INK).any()
    assert (plane[25:, 60:] == 128).all()
    overlay.draw_text(plane, "12:34:56.789", 90, 55, scale=2)  # mostly outside: no error
    assert (plane[54:, 89:] == overlay.PAPER).any()


def test_glyphs_are_exact() -> None:
    one = overlay.text_mask("1", 1)
    assert one.shape == (7, 6)
    assert one[:, :5].astype(int).tolist()[0] == [0, 0, 1, 0, 0]
    assert overlay.clock_text(0).endswith(".000") and len(overlay.clock_text(0)) == 12


def test_v4l2_auto_focus_off_is_not_applied_and_the_log_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """No V4L2 camera with a focus control can be tested here (vivid is not loadable), so
    the box does not touch `focus_automatic_continuous`: a camera keeps its own setting,
    and asking for fixed focus says once per device that it was not applied."""
    caplog.set_level(logging.WARNING, logger="edgelive.hw.camera")
    make_source("/dev/video77").set_controls(auto_focus=True)
    assert not caplog.records
    for _ in range(3):  # a camera reopened after it went away: still one line
        make_source("/dev/video77").set_controls(auto_focus=False)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "auto-focus = false is not applied" in lines[0], lines
    assert "/dev/video77" in lines[0] and "focus_automatic_continuous=0" in lines[0]


def test_picamera2_auto_focus_is_the_cameras_af_mode_where_it_has_one(picam) -> None:
    with open_source("picamera2", width=320, height=180, fps=30) as source:
        (cam,) = picam.Picamera2.instances
        assert "AfMode" not in cam.controls_set[-1]  # this module has fixed focus
        cam.camera_controls["AfMode"] = (0, 2, 0)  # as a Camera Module 3 reports it
        source.set_controls(auto_focus=True)
        assert cam.controls_set[-1]["AfMode"] == 2  # continuous
        source.set_controls(auto_focus=False)
        assert cam.controls_set[-1]["AfMode"] == 0  # manual
