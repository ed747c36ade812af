"""Preview tap: the encoder's own H.264 packets as fragmented MP4 on a local Unix socket.

Used by the pusher while someone watches the web console's preview (the supervisor says
when). `offer()` never blocks the capture thread: packets go through a small queue to the
tap's thread, which remuxes them with PyAV (no decode, no encode) into one MP4 fragment per
frame and writes each as `kind + length + bytes` (`web/preview.py` documents the format).
The first fragment after (re)opening is a key frame; a new picture size (bitrate
adaptation's resolution step) starts a new init segment at its key frame.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
from dataclasses import dataclass
from fractions import Fraction

import av
from av.codec.context import Flags

HEADER = struct.Struct(">cI")
_START = b"\x00\x00\x01"
_SPS, _PPS = 7, 8
MS = Fraction(1, 1000)  # the pusher's stream clock
QUEUE_PACKETS = 60
FMP4_OPTIONS = {"movflags": "empty_moov+default_base_moof+frag_every_frame",
                "flush_packets": "1"}


class _Boxes:
    """Collects what the muxer writes and hands out whole top-level MP4 boxes."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.boxes: list[tuple[bytes, bytes]] = []

    def write(self, data: bytes) -> int:
        self._buf += data
        while len(self._buf) >= 8:
            size = int.from_bytes(self._buf[:4], "big")
            if size < 8 or len(self._buf) < size:
                break
            self.boxes.append((bytes(self._buf[4:8]), bytes(self._buf[:size])))
            del self._buf[:size]
        return len(data)


class PreviewTap:
    """Remuxes offered video packets to fMP4 and writes them to `path` until `close()`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: queue.Queue[tuple[Frame, Format] | None] = queue.Queue(QUEUE_PACKETS)
        self._keyed = False
        self._thread = threading.Thread(target=self._run, name="preview-tap", daemon=True)
        self._thread.start()

    def offer(self, packet: av.Packet, width: int, height: int, extradata: bytes) -> None:
        """Called by the capture thread for each video packet (with the encoder's current
        size and its opening SPS/PPS), before the RTMP sender has it; never blocks. The
        tap takes a copy: muxing rewrites a packet's timestamps in place."""
        if not self._keyed:
            if not packet.is_keyframe:
                return
            self._keyed = True
        frame = Frame(bytes(packet), packet.pts, packet.dts, packet.is_keyframe)
        try:
            self._queue.put_nowait((frame, Format(width, height, extradata)))
        except queue.Full:
            self._keyed = False  # the reader is stuck: start again at a key frame

    def close(self) -> None:
        """Stop the thread and the connection; safe twice."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        muxer: _Muxer | None = None

        def send(chunks: list[tuple[bytes, bytes]]) -> None:
            for kind, chunk in chunks:
                sock.sendall(HEADER.pack(kind, len(chunk)) + chunk)

        try:
            sock.connect(self.path)
            while (item := self._queue.get()) is not None:
                packet, fmt = item[0].packet(), item[1]
                if muxer is None or not muxer.continues(packet, fmt):
                    if not packet.is_keyframe:
                        continue
                    if muxer is not None:
                        send(muxer.close())
                    muxer = _Muxer(fmt, in_band_headers(bytes(packet)))
                    sock.sendall(HEADER.pack(b"I", len(muxer.init)) + muxer.init)
                try:
                    chunks = muxer.mux(packet)
                except (av.FFmpegError, ValueError):
                    muxer.close()  # start over with a new init segment at the next key frame
                    muxer = None
                    continue
                send(chunks)
        except OSError:
            pass  # the supervisor went away or closed the preview: nothing to report
        finally:
            if muxer is not None:
                muxer.close()
            sock.close()


@dataclass(frozen=True)
class Frame:
    data: bytes
    pts: int | None
    dts: int | None
    key: bool

    def packet(self) -> av.Packet:
        packet = av.Packet(self.data)
        packet.pts, packet.dts, packet.time_base = self.pts, self.dts, MS
        packet.is_keyframe = self.key
        return packet


@dataclass(frozen=True)
class Format:
    width: int
    height: int
    extradata: bytes


def in_band_headers(data: bytes) -> bytes:
    """The SPS and PPS NAL units (Annex-B) a key frame carries in-band, b"" if none: after a
    size change the encoder sends them there, not in its opening extradata."""
    out = b""
    for nal in data.split(_START)[1:]:
        nal = nal.rstrip(b"\x00")  # the next unit's 4-byte start code leaves a zero
        if nal and nal[0] & 0x1F in (_SPS, _PPS):
            out += b"\x00\x00\x00\x01" + nal
    return out


class _Muxer:
    """One fMP4 stream at one picture size."""

    def __init__(self, fmt: Format, headers: bytes) -> None:
        self.size = (fmt.width, fmt.height)
        self._out = _Boxes()
        self._keys: list[bool] = []  # key flag per muxed packet, in order
        self._container = av.open(self._out, "w", format="mp4", options=FMP4_OPTIONS)
        # As in rtmp_out: the stream's codec context is a placeholder that never encodes;
        # without GLOBAL_HEADER, opening it keeps our SPS/PPS instead of making its own.
        stream = self._container.add_stream("h264")
        ctx = stream.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = fmt.width, fmt.height, "yuv420p"
        ctx.flags &= ~Flags.global_header
        ctx.options = {"preset": "ultrafast", "threads": "1"}  # opened, never used
        ctx.extradata = headers or fmt.extradata
        ctx.time_base = stream.time_base = MS
        self._stream = stream
        self._container.start_encoding()
        self.init = b"".join(box for _, box in self._out.boxes)
        self._out.boxes.clear()
        self._moof: bytes | None = None
        self._last_dts = -1

    def continues(self, packet: av.Packet, fmt: Format) -> bool:
        """False when `packet` needs a new stream: another size, or a clock that started
        again (a new push session)."""
        dts = packet.dts if packet.dts is not None else packet.pts
        return self.size == (fmt.width, fmt.height) and (dts is None or dts > self._last_dts)

    def mux(self, packet: av.Packet) -> list[tuple[bytes, bytes]]:
        """Mux one packet; returns the (kind, moof+mdat) fragments completed by it (the
        muxer writes a frame's fragment when the next frame arrives)."""
        dts = packet.dts if packet.dts is not None else packet.pts
        if dts is not None:
            self._last_dts = dts
        self._keys.append(bool(packet.is_keyframe))
        packet.stream = self._stream
        self._container.mux(packet)
        return self._fragments()

    def _fragments(self) -> list[tuple[bytes, bytes]]:
        out = []
        for kind, box in self._out.boxes:
            if kind == b"moof":
                self._moof = box
            elif kind == b"mdat" and self._moof is not None:
                key = self._keys.pop(0) if self._keys else False
                out.append((b"K" if key else b"F", self._moof + box))
                self._moof = None
        self._out.boxes.clear()
        return out

    def close(self) -> list[tuple[bytes, bytes]]:
        """End the stream; returns the last frame's fragment, which only closing writes."""
        with contextlib.suppress(av.FFmpegError, OSError, ValueError):
            self._container.close()
        return self._fragments()
