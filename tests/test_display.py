"""Sinks and layout: pixels read back from the SDL offscreen renderer, KMS against FakePykms."""

from __future__ import annotations

import av
import numpy as np
import pytest

from edgelive.hw.display import KmsSink, Rect, SdlSink
from edgelive.hw.speaker import pick_device
from edgelive.media import stamp
from edgelive.player.render import fit, main_box, picture_layer, pip_box, text_layer
from tests.fakes import pykms as fake_pykms


def white_picture(w: int, h: int) -> av.VideoFrame:
    """A white picture with a stamp row, so orientation can be read back."""
    yuv = np.full((h * 3 // 2, w), 128, dtype=np.uint8)
    yuv[:h] = 235
    stamp.draw(yuv[:h], 0x55555555)  # alternating squares along the top edge
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


@pytest.fixture
def sink():
    s = SdlSink((320, 180), offscreen=True)
    shots: list[np.ndarray] = []
    s.on_present = lambda px, ms: shots.append(px)
    s.shots = shots  # type: ignore[attr-defined]
    yield s
    s.close()


def test_contain_leaves_bars_and_fillcrop_fills(sink: SdlSink) -> None:
    square = white_picture(180, 180)
    box = main_box(sink.size, [], True)
    sink.present([picture_layer("main", square, box, "contain", "horizontal")])
    shown = sink.shots[-1].mean(axis=2)  # type: ignore[attr-defined]
    assert shown[90, 10] < 10 and shown[90, 310] < 10  # pillar-box bars
    assert shown[90, 160] > 200
    sink.present([picture_layer("main", square, box, "fillCrop", "horizontal")])
    shown = sink.shots[-1].mean(axis=2)  # type: ignore[attr-defined]
    assert shown[90, 10] > 200 and shown[90, 310] > 200


def test_vertical_orientation_turns_the_picture(sink: SdlSink) -> None:
    wide = white_picture(320, 180)  # stamp row along the top edge
    box = main_box(sink.size, [], True)
    sink.present([picture_layer("main", wide, box, "contain", "vertical")])
    shown = sink.shots[-1].mean(axis=2)  # type: ignore[attr-defined]
    # turned 90° clockwise into a 101x180 picture centred between bars: the stamp's
    # alternating squares now run down the right edge, the left edge is plain white
    assert shown[90, 100] < 10 and shown[90, 220] < 10
    right, left = shown[:, 208], shown[:, 113]
    assert left[2:-2].min() > 200
    assert (right[:144] < 60).sum() > 50 and (right[:144] > 200).sum() > 50


def test_layout_box_pip_and_overlay_text(sink: SdlSink) -> None:
    picture = white_picture(320, 180)
    box = main_box(sink.size, [0, 0, 160, 90], fullscreen=False)
    assert box == Rect(0, 0, 160, 90)
    sink.present([picture_layer("main", picture, box, "contain", "horizontal"),
                  picture_layer("pip", picture, pip_box(sink.size, "bottom-right"),
                                "contain", "horizontal"),
                  text_layer("debug", ["2004 PLAY"], Rect(0, 100, 160, 80))])
    shown = sink.shots[-1].mean(axis=2)  # type: ignore[attr-defined]
    assert shown[60, 80] > 200 and shown[60, 240] < 10  # main only in its layout box
    assert shown[150, 270] > 200  # PiP in the bottom-right corner
    assert (shown[108:122, 8:80] > 200).any() and (shown[108:122, 8:80] < 100).any()


def test_fit_geometry() -> None:
    src, dst = fit(640, 360, Rect(0, 0, 1280, 720), "contain")
    assert (src, dst) == (Rect(0, 0, 640, 360), Rect(0, 0, 1280, 720))
    src, dst = fit(640, 360, Rect(0, 0, 720, 720), "fillCrop")
    assert src == Rect(140, 0, 360, 360) and dst == Rect(0, 0, 720, 720)
    src, dst = fit(640, 360, Rect(0, 0, 360, 640), "contain", angle=90)
    assert dst == Rect(-140, 140, 640, 360)  # turned about its centre it fills 360x640


def test_kms_sink_sets_scaled_planes_and_copies_pixels() -> None:
    sink = KmsSink(pykms=fake_pykms)
    assert sink.size == (640, 360)
    picture = white_picture(320, 180)
    layer = picture_layer("main", picture, main_box(sink.size, [], True), "contain",
                          "vertical")
    sink.present([layer])
    (plane, props), = sink._card.commits[-1]
    assert plane.format == fake_pykms.PixelFormat.YUV420
    assert props["rotation"] == 2 and props["SRC_W"] == 320 << 16
    assert (props["CRTC_W"], props["CRTC_H"]) == (202, 360)  # the turned rectangle
    fb = next(fb for fb in sink._fbs["main"] if fb.id == props["FB_ID"])
    y = np.frombuffer(fb.planes[0], dtype=np.uint8).reshape(180, -1)[:, :320]
    assert np.array_equal(y, picture.to_ndarray()[:180])
    sink.close()


def test_sound_mode_picks_the_named_output() -> None:
    names = ["bcm2835 Headphones", "vc4-hdmi-0 HDMI"]
    assert pick_device(names, "speaker") == "vc4-hdmi-0 HDMI"
    assert pick_device(names, "ear") == "bcm2835 Headphones"
    assert pick_device(["Built-in Audio"], "speaker") is None
