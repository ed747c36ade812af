"""Stream input for the player: RTMP and HTTP-FLV opened with minimal probing (SPEC §4).

`probesize` is in bytes, so a low-bitrate stream (a still waiting image) takes seconds to
open with FFmpeg's defaults; 4096 bytes opens any stream in about a second at most.
Failures are classified into the seed's codes: 3001 DNS, 3002 connection, 3003 RTMP
handshake. FFmpeg's RTMP client ignores the server's UnpublishNotify, so a clean end of
an RTMP stream shows as silence on a live connection (a read timeout), while a server that
goes away shows as an I/O error; HTTP-FLV has no end message at all. An https:// or
rtmps:// server's certificate and host name are verified against the system's CAs or the
player's `ca-file`.

FFmpeg's FLV demuxer creates a track when its first packet arrives, so a player that opens
a stream before the publisher's first sound reaches the server finds no audio track. PyAV
knows only the tracks found by the open and silently drops the packets of any later one, so
while a track is missing the demuxer is asked now and then what it has (its own format
description); when the track has appeared, `late_tracks` says so and the caller opens a
second connection, which has it, to take over.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import av
import av.container
import av.logging

from edgelive.codes import Code
from edgelive.redact import redact_url

PROBE_BYTES = 2048
LATE_VIDEO_PROBE_BYTES = 131072
"""FFmpeg stops probing once an FLV stream has both tracks, so a large probe only costs
time when video is missing, and PyAV cannot see a track found after the open."""
RENEW_PROBE_BYTES = 16384
"""Probe of a connection opened again for a late track: both tracks flow by now, but the
server may send a key frame larger than PROBE_BYTES before the first sound."""
LATE_TRACK_LOOK = 0.5
"""Seconds between looks for a track the demuxer found after the open."""
_TRACK_LINE = re.compile(r"^\s*Stream #\d+:\d+\S*: (Video|Audio):", re.MULTILINE)
OPEN_TIMEOUT = 5.0
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
"""Debian's and Raspberry Pi OS's bundle of trusted CAs."""
READ_TIMEOUT = 3.0


def is_rtmp(url: str) -> bool:
    return urlsplit(url).scheme in ("rtmp", "rtmps")


def open_options(url: str, probe_bytes: int = PROBE_BYTES,
                 ca_file: str = "") -> dict[str, str]:
    options = {"flags": "low_delay", "probesize": str(probe_bytes),
               "analyzeduration": "0"}
    if is_rtmp(url):
        options["rtmp_live"] = "live"
    if urlsplit(url).scheme in ("https", "rtmps"):
        # FFmpeg accepts any certificate unless asked to verify; its TLS library's own
        # idea of "the system's CAs" is where it was built, so the bundle is named.
        options.update(tls_verify="1", ca_file=ca_file or SYSTEM_CA_FILE)
    return options


class InputError(Exception):
    """Opening or reading failed; `code` is the warning to emit (or 0 for none)."""

    def __init__(self, code: int, reason: str, *, ended: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        self.ended = ended
        """True when the publisher stopped cleanly (RTMP PLAY_END), not a failure."""


def classify_open_error(url: str, exc: BaseException) -> int:
    """Map an open failure to 3001/3002/3003 (the last only for RTMP)."""
    host = urlsplit(url).hostname or ""
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        return Code.WARNING_DNS_FAIL
    if isinstance(exc, ConnectionError | TimeoutError) or "refused" in str(exc).lower():
        return Code.WARNING_SERVER_CONN_FAIL
    if is_rtmp(url):
        return Code.WARNING_SHAKE_FAIL
    return Code.WARNING_SERVER_CONN_FAIL


@dataclass(slots=True)
class ArrivedPacket:
    """A demuxed packet with its arrival time (monotonic s) and timestamp in seconds."""

    packet: av.Packet
    arrived: float
    pts: float
    is_video: bool
    is_key: bool


_log_lock = threading.Lock()
_log_listeners = 0
_log_level_before: int | None = None


@contextlib.contextmanager
def ffmpeg_log() -> Iterator[list[tuple[int, str, str]]]:
    """The lines FFmpeg logs on this thread meanwhile (level, name, text), down to INFO.

    PyAV passes nothing on while its logging is off (its default), so it is on at INFO
    while any thread listens (the main and picture-in-picture feeds may overlap); what
    other threads log in the meantime goes to Python's `libav` loggers.
    """
    global _log_listeners, _log_level_before
    with _log_lock:
        if _log_listeners == 0:
            _log_level_before = av.logging.get_level()
            if _log_level_before is None or _log_level_before < av.logging.INFO:
                av.logging.set_level(av.logging.INFO)
        _log_listeners += 1
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        with _log_lock:
            _log_listeners -= 1
            if _log_listeners == 0:
                av.logging.set_level(_log_level_before)


def demuxer_tracks(container: av.container.InputContainer) -> set[str]:
    """The kinds of track (video, audio) FFmpeg's demuxer has now, also those found after
    the open, which PyAV does not show: from its format description."""
    with ffmpeg_log():
        description = container.dumps_format()
    return {kind.lower() for kind in _TRACK_LINE.findall(description)}


def tls_refusal(logs: list[tuple[int, str, str]]) -> str | None:
    """The TLS library's reason for failing, from FFmpeg's log ("Peer certificate failed
    verification"), or None when TLS was not what failed."""
    for level, name, text in logs:
        if name == "tls" and level <= av.logging.ERROR:
            return text.strip()
    return None


class StreamInput:
    """One connection to a stream: open, then iterate packets until it ends or fails."""

    def __init__(self, url: str, open_timeout: float = OPEN_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT, ca_file: str = "", *,
                 renewed: bool = False) -> None:
        self.url = url
        self._ca_file = ca_file
        self._timeouts = (open_timeout, read_timeout)
        self._renewed = renewed
        """This connection replaces one that found a track late: it probes a little more,
        and looks for no more tracks (the server's stream does not flip-flop)."""
        self.container: av.container.InputContainer | None = None
        self.video: av.VideoStream | None = None
        self.audio: av.AudioStream | None = None
        self.late_tracks: set[str] = set()
        """{"audio"} (or "video") once the demuxer found that track after the open: this
        connection never delivers it, a new one would."""

    def open(self) -> None:
        """Connect and probe; when only sound was found in the first bytes (a server that
        starts video at the next key frame), probe again until the video track shows up."""
        probe = RENEW_PROBE_BYTES if self._renewed else PROBE_BYTES
        with ffmpeg_log() as logs:
            try:
                self.container = av.open(self.url, timeout=self._timeouts,
                                         options=open_options(self.url, probe, self._ca_file))
                if not self.container.streams.video and self.container.streams.audio:
                    self.container.close()
                    self.container = av.open(
                        self.url, timeout=self._timeouts,
                        options=open_options(self.url, LATE_VIDEO_PROBE_BYTES, self._ca_file))
            except (OSError, av.FFmpegError) as exc:
                code, reason = classify_open_error(self.url, exc), str(exc)
            else:
                return
        refusal = tls_refusal(logs)
        if refusal is not None:
            # FFmpeg's own error is a bare "Input/output error"
            trusted = self._ca_file or "the system's CAs"
            what = "certificate was refused" if "certificate" in refusal.lower() \
                else "TLS handshake failed"
            reason = (f"the server's {what}: {refusal} (checked against {trusted} for "
                      f"{urlsplit(self.url).hostname})")
        raise InputError(code, f"open {redact_url(self.url)}: {reason}")

    def tracks(self) -> set[str]:
        """The kinds of track PyAV shows of this connection (none before the open)."""
        return set() if self.container is None else \
            {s.type for s in self.container.streams} & {"video", "audio"}

    def packets(self) -> Iterator[ArrivedPacket]:
        """Packets as they arrive; raises InputError when the stream stops.

        With minimal probing a stream may be found only after the open, so `video` and
        `audio` are set from the first packet of each kind.
        """
        assert self.container is not None, "open() first"
        # Per stream index: (time base as a float, is video); Fraction arithmetic per
        # packet costs more than the rest of this loop.
        kinds: dict[int, tuple[float, bool]] = {}
        clock = time.monotonic
        missing = set() if self._renewed else {"video", "audio"} - self.tracks()
        next_look = clock() + LATE_TRACK_LOOK if missing else float("inf")
        try:
            for packet in self.container.demux():
                size, pts = packet.size, packet.pts
                if size == 0 or pts is None:
                    continue
                if missing and next_look <= (now := clock()):
                    next_look = now + LATE_TRACK_LOOK
                    if found := missing & demuxer_tracks(self.container):
                        self.late_tracks, missing = found, set()
                stream = packet.stream
                known = kinds.get(stream.index)
                if known is None:
                    kind = stream.type
                    if kind not in ("video", "audio") or stream.time_base is None:
                        continue
                    if kind == "video" and self.video is None:
                        self.video = stream
                    elif kind == "audio" and self.audio is None:
                        self.audio = stream
                    known = kinds[stream.index] = (float(stream.time_base), kind == "video")
                scale, is_video = known
                yield ArrivedPacket(packet, clock(), pts * scale, is_video,
                                    is_video and packet.is_keyframe)
        except av.ExitError:
            if is_rtmp(self.url):
                raise InputError(Code.PLAY_EVT_PLAY_END, "no data: the stream ended",
                                 ended=True) from None
            raise InputError(Code.PLAY_WARNING_RECONNECT, "no data: read timed out") from None
        except (OSError, av.FFmpegError) as exc:
            raise InputError(Code.PLAY_WARNING_RECONNECT, f"connection lost: {exc}") from None
        raise InputError(Code.PLAY_WARNING_RECONNECT, "connection closed by the server")

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
