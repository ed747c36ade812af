"""The player's Pi path: the KMS sink against FakePykms (shaped after kmsxx's bindings,
whose `map()` is a strided 2-D view), and the decoder the board profile asks for, with the
software fallback (2106) where the VideoCore decoder is absent, as on this machine."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from edgelive.hw.board import detect_board
from edgelive.hw.display import KmsSink, Rect
from edgelive.media.decode import HW_DECODER, VideoDecoder
from edgelive.player.render import picture_layer, text_layer
from tests.fakes import pykms as fake_pykms


def grey_picture(w: int, h: int) -> av.VideoFrame:
    yuv = np.zeros((h * 3 // 2, w), dtype=np.uint8)
    yuv[:h] = np.arange(w, dtype=np.uint8)[None, :]  # a ramp: columns are checkable
    yuv[h:h + h // 4] = 90  # U
    yuv[h + h // 4:] = 170  # V
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


def test_kms_sink_fills_yuv_and_argb_planes_through_the_strided_map() -> None:
    sink = KmsSink(pykms=fake_pykms)
    picture = grey_picture(160, 96)
    layers = [picture_layer("main", picture, Rect(0, 0, *sink.size), "contain", "horizontal"),
              text_layer("stats", ["1.2 Mbit/s"], Rect(0, 0, *sink.size))]
    sink.present(layers)
    (video_plane, video), (text_plane, text) = sink._card.commits[-1]
    assert video_plane.format == fake_pykms.PixelFormat.YUV420
    assert text_plane.format == fake_pykms.PixelFormat.ARGB8888
    assert (video["SRC_W"], video["SRC_H"], video["CRTC_W"], video["CRTC_H"]) == (
        160 << 16, 96 << 16, 600, 360)  # scaled by the display controller
    fb = next(f for f in sink._fbs["main"] if f.id == video["FB_ID"])
    luma, u, v = (np.asarray(fb.map(i)) for i in range(3))
    assert np.array_equal(luma[:96], np.tile(np.arange(160, dtype=np.uint8), (96, 1)))
    assert (u[:48] == 90).all() and (v[:48] == 170).all()
    # the pitch's padding beyond each row stays untouched
    pitch = np.frombuffer(fb.planes[0], np.uint8).reshape(fb.height, -1)
    assert (pitch[:, 160:] == 0).all()
    argb = np.asarray(next(f for f in sink._fbs["stats"] if f.id == text["FB_ID"]).map(0))
    assert argb.shape[1] % 4 == 0 and argb[..., 3::4].max() > 0  # alpha in the 4th byte
    sink.present(layers)  # the other buffer of the pair: no tearing on the shown one
    assert sink._card.commits[-1][0][1]["FB_ID"] != video["FB_ID"]
    sink.close()


@pytest.fixture
def h264_file(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for i in range(10):
            frame = grey_picture(160, 96)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize(("model", "hardware"), [
    ("Raspberry Pi 4 Model B Rev 1.5", True), ("Raspberry Pi Zero 2 W Rev 1.0", True),
    ("Raspberry Pi 5 Model B Rev 1.0", False)])
def test_decoder_follows_the_board_profile(tmp_path: Path, h264_file: Path, model: str,
                                           hardware: bool) -> None:
    """`decoder = auto` asks for h264_v4l2m2m where the profile has it (not on a Pi 5,
    whose only hardware decoder is HEVC); here it cannot open, so the software decoder
    plays and `hardware_error` is what the player reports as 2106."""
    model_file = tmp_path / "model"
    model_file.write_bytes(model.encode() + b"\x00")
    board = detect_board(model_file)
    assert board.has_hw_h264_decoder is hardware
    assert (board.h264_decoder == HW_DECODER) is hardware
    with av.open(str(h264_file)) as container:
        stream = container.streams.video[0]
        decoder = VideoDecoder(stream, prefer_hardware=board.has_hw_h264_decoder)
        frames = [f for p in container.demux(stream) for f in decoder.decode(p)]
    assert decoder.name == "h264" and len(frames) >= 9
    assert (decoder.hardware_error is not None) is hardware
