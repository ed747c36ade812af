"""The waiting image: a configured picture (file or http(s) URL), else the built-in slate.

A URL is fetched with bounds on size and on total time, the bytes are checked against the
configured MD5, and the picture is decoded and size-checked before use. Any failure gives
the slate plus a reason the pusher reports as WAITING_IMAGE_INVALID: a bad waiting image
never stops the stream.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import av

from edgelive.media import overlay
from edgelive.media.picture import PictureError, decode_picture, fit, new_frame, planes
from edgelive.redact import redact_url

SLATE_Y = 32  # dark grey: distinct from a black (dead) picture
SLATE_TEXT = "PLEASE WAIT"
CHUNK = 64 * 1024


class WaitingImageError(Exception):
    """Why a configured waiting image cannot be used."""


@dataclass
class WaitingImage:
    frame: av.VideoFrame  # yuv420p at the output size
    reason: str = ""  # empty when the configured image is used (or none was configured)
    is_slate: bool = False


def slate(width: int, height: int, clock_ms: int | None = None) -> av.VideoFrame:
    """The built-in "please wait" picture, with a clock when `clock_ms` is given."""
    frame = new_frame(width, height, SLATE_Y)
    luma = planes(frame)[0]
    scale = max(1, width // 160)
    text_w, text_h = overlay.text_size(SLATE_TEXT, scale)
    x, y = (width - text_w) // 2, (height - text_h) // 2
    overlay.draw_text(luma, SLATE_TEXT, x, y, scale=scale, box=None)
    if clock_ms is not None:
        clock = overlay.clock_text(clock_ms)
        small = max(1, scale // 2)
        clock_w, _ = overlay.text_size(clock, small)
        overlay.draw_text(luma, clock, (width - clock_w) // 2, y + text_h * 2, scale=small,
                          box=None)
    return frame


def _fetch_url(url: str, max_bytes: int, timeout: float) -> bytes:
    """The body, refusing more than max_bytes or more than `timeout` s in total."""
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise WaitingImageError(f"{length} bytes is over the {max_bytes} byte limit")
            body = bytearray()
            while chunk := response.read1(CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise WaitingImageError(f"body is over the {max_bytes} byte limit")
                if time.monotonic() > deadline:
                    raise WaitingImageError(f"download took over {timeout:g} s")
            return bytes(body)
    except (urllib.error.URLError, OSError) as exc:
        raise WaitingImageError(f"download failed ({exc})") from exc


def _read_file(path: str, max_bytes: int) -> bytes:
    try:
        size = Path(path).stat().st_size
        if size > max_bytes:
            raise WaitingImageError(f"{size} bytes is over the {max_bytes} byte limit")
        return Path(path).read_bytes()
    except OSError as exc:
        raise WaitingImageError(f"cannot read ({exc.strerror or exc})") from exc


def load_waiting_image(spec: str, md5: str, width: int, height: int, *,
                       max_bytes: int = 5_000_000, timeout: float = 5.0) -> WaitingImage:
    """The configured picture fitted to width x height, or the slate and the reason."""
    if not spec:
        return WaitingImage(slate(width, height), is_slate=True)
    is_url = spec.startswith(("http://", "https://"))
    try:
        data = _fetch_url(spec, max_bytes, timeout) if is_url else _read_file(spec, max_bytes)
        if md5 and hashlib.md5(data).hexdigest() != md5.lower():
            raise WaitingImageError(
                f"md5 mismatch: expected {md5.lower()}, got {hashlib.md5(data).hexdigest()}")
        picture = decode_picture(data)
    except (WaitingImageError, PictureError) as exc:
        shown = redact_url(spec) if is_url else spec
        return WaitingImage(slate(width, height), reason=f"{shown}: {exc}", is_slate=True)
    return WaitingImage(fit(picture, width, height))
