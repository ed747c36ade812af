"""The waiting image: files and URLs (a real local HTTP server), md5, bounds, the slate."""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest

from edgelive.media import overlay
from edgelive.media.picture import declared_size, planes
from edgelive.media.waiting import SLATE_TEXT, SLATE_Y, load_waiting_image, slate


def png_bytes(width: int = 64, height: int = 36, value: int = 255) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="image2pipe") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        rgb = np.full((height, width, 3), value, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return buffer.getvalue()


GOOD = png_bytes()


def luma(frame: av.VideoFrame) -> np.ndarray:
    return planes(frame)[0]


def assert_slate(frame: av.VideoFrame, width: int, height: int) -> None:
    assert (frame.width, frame.height) == (width, height)
    assert np.array_equal(luma(frame), luma(slate(width, height)))


class Handler(BaseHTTPRequestHandler):
    release: threading.Event

    def do_GET(self) -> None:
        if self.path == "/good.png":
            self._send(GOOD)
        elif self.path == "/garbage":
            self._send(b"\x89PNG but not really" * 50)
        elif self.path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(50_000_000))
            self.end_headers()
        elif self.path == "/huge-streamed":  # no Content-Length: the reader must count
            self.send_response(200)
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"\0" * 65536)
        elif self.path == "/stalled":
            self.send_response(200)
            self.end_headers()
            self.release.wait(10)
        elif self.path == "/trickle":  # a byte at a time: no single read times out
            self.send_response(200)
            self.end_headers()
            for byte in GOOD:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                if self.release.wait(0.05):
                    return
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    release = threading.Event()
    handler = type("TestHandler", (Handler,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()
    server.server_close()


def test_good_file_is_fitted_to_the_output(tmp_path: Path) -> None:
    path = tmp_path / "wait.png"
    path.write_bytes(GOOD)
    image = load_waiting_image(str(path), hashlib.md5(GOOD).hexdigest().upper(), 320, 180)
    assert (image.reason, image.is_slate) == ("", False)
    assert (image.frame.width, image.frame.height, image.frame.format.name) == (
        320, 180, "yuv420p")
    assert luma(image.frame).min() >= 230  # white, same 16:9 aspect: no bars


def test_no_image_configured_is_the_slate_without_complaint() -> None:
    image = load_waiting_image("", "", 320, 180)
    assert image.is_slate and image.reason == ""
    assert_slate(image.frame, 320, 180)


def test_md5_mismatch_falls_back_to_the_slate(tmp_path: Path) -> None:
    path = tmp_path / "wait.png"
    path.write_bytes(GOOD)
    image = load_waiting_image(str(path), "0" * 32, 320, 180)
    assert image.is_slate and "md5 mismatch" in image.reason and "wait.png" in image.reason
    assert_slate(image.frame, 320, 180)


def test_missing_file(tmp_path: Path) -> None:
    image = load_waiting_image(str(tmp_path / "gone.png"), "", 320, 180)
    assert image.is_slate and "gone.png" in image.reason and "No such file" in image.reason


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "wait.jpg"
    path.write_bytes(b"\xff\xd8 garbage" * 100)
    image = load_waiting_image(str(path), "", 320, 180)
    assert image.is_slate and "not a decodable image" in image.reason


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "wait.png"
    path.write_bytes(GOOD)
    image = load_waiting_image(str(path), "", 320, 180, max_bytes=len(GOOD) - 1)
    assert image.is_slate and "byte limit" in image.reason


def test_good_url(http_url: str) -> None:
    image = load_waiting_image(f"{http_url}/good.png", hashlib.md5(GOOD).hexdigest(), 320, 180)
    assert not image.is_slate and image.reason == ""
    assert luma(image.frame).min() >= 230


@pytest.mark.parametrize(("path", "why"), [
    ("/garbage", "not a decodable image"),
    ("/huge-declared", "50000000 bytes is over"),
    ("/huge-streamed", "body is over"),
    ("/missing", "404"),
])
def test_bad_urls_fall_back(http_url: str, path: str, why: str) -> None:
    image = load_waiting_image(f"{http_url}{path}", "", 320, 180, max_bytes=1_000_000)
    assert image.is_slate and why in image.reason
    assert_slate(image.frame, 320, 180)


@pytest.mark.parametrize("path", ["/stalled", "/trickle"])
def test_slow_servers_are_bounded_in_time(http_url: str, path: str) -> None:
    start = time.monotonic()
    image = load_waiting_image(f"{http_url}{path}", "", 320, 180, timeout=0.5)
    elapsed = time.monotonic() - start
    assert image.is_slate and ("timed out" in image.reason or "took over" in image.reason)
    assert elapsed < 2.0


def test_url_secrets_are_redacted_in_the_reason(http_url: str) -> None:
    image = load_waiting_image(f"{http_url}/garbage?token=hunter2", "", 320, 180)
    assert image.is_slate and "hunter2" not in image.reason


def test_slate_says_please_wait_and_can_show_a_clock() -> None:
    frame = slate(640, 360)
    y = luma(frame)
    scale = 640 // 160
    mask = overlay.text_mask(SLATE_TEXT, scale)
    text_w, text_h = overlay.text_size(SLATE_TEXT, scale)
    x0, y0 = (640 - text_w) // 2, (360 - text_h) // 2
    region = y[y0:y0 + text_h, x0:x0 + text_w]
    assert (region[mask] == overlay.INK).all() and (region[~mask] == SLATE_Y).all()
    ticking = luma(slate(640, 360, clock_ms=1_700_000_000_000))
    assert (ticking[y0 + 2 * text_h:] == overlay.INK).any()
    assert not (y[y0 + 2 * text_h:] == overlay.INK).any()


def test_a_png_declaring_huge_dimensions_is_refused_before_decoding(tmp_path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                        zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)  # 900 Mpx of grey
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 30001 * 64)) + chunk(b"IEND", b""))
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    image = load_waiting_image(str(path), "", 320, 180)
    assert image.is_slate and "30000x30000 is too large" in image.reason


@pytest.mark.parametrize("codec", ["mjpeg", "png"])
def test_declared_size_reads_jpeg_and_png_headers(codec: str) -> None:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="image2pipe") as container:
        stream = container.add_stream(codec)
        stream.width, stream.height = 100, 60
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((60, 100, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame.reformat(format=stream.pix_fmt)), *stream.encode()]:
            container.mux(packet)
    assert declared_size(buffer.getvalue()) == (100, 60)
