"""FLV over RTMP out, with failures classified into the seed's codes (3001–3005).

`RtmpOutput` is the connection: open, mux, close. `PacketSender` owns one in a thread
behind a bounded queue so a slow uplink (mux() blocks once the socket is full) never stalls
capture; it measures what the link really carries (send rate, backlog) for netstatus and
bitrate adaptation, and on overflow drops non-key video until the next key frame. A new
session starts at a video key frame: video before it is not sent, and sound only from the
key frame's time on (held while its encode finishes), so a receiver's first picture
decodes and audio never leads video.

A publish is one TCP connection: the server is never probed with a connection of its own
(ingest servers log those as failed handshakes, and a server that takes one connection,
such as `ffmpeg -listen 1`, would be used up by it). Only the name is resolved first,
which gives 3001 exactly; every other failure is classified from FFmpeg's own attempt.
FFmpeg's RTMP connection is opened through `media.avio` (the GIL is free while it connects,
shakes hands or waits for the socket) and the FLV muxer writes into it.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import av
import av.logging
from av.codec.context import Flags

from edgelive.codes import Code
from edgelive.media.avio import AvioWriter
from edgelive.media.encode import StreamParams
from edgelive.media.upstream import TcpReadings, Upstream, UpstreamError, server_tc_url
from edgelive.redact import redact_text

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 10.0
"""Connect, handshake and publish: FFmpeg's RTMP would wait for a silent server forever
(its TCP connect alone gives up after 5 s)."""
STALE_MS = 600
"""A video frame that would reach the wire later than this behind the newest one (queue,
unsent bytes at the delivery rate, the path's queue) is dropped before the socket, and the
frames after it until the next key frame (which always goes: decoding restarts there)."""
KEY_REQUEST_INTERVAL_S = 1.0
"""When the stale drop begins the sender asks the encoder for a key frame, which ends the
drop within a frame or two instead of at the GOP's next key frame (up to a second of no
picture in RTC mode); at most once per this long, so a link that stays short does not pay
for a key frame at every stale episode."""
EARLY_AUDIO_PACKETS = 32
"""Sound kept while a session waits for its first key frame (about 0.7 s of AAC)."""


class PushNetError(Exception):
    """The RTMP session failed; `code` is one of 3001–3005, the message is redacted."""

    def __init__(self, code: Code, message: str, refused: bool = False) -> None:
        super().__init__(redact_text(message))
        self.code = code
        self.refused = refused
        """Nothing listens on the server's port (3002): trying again costs no connection
        the server sees, so it can be done often while waiting for the server."""


def _server_reason(text: str) -> str:
    marker = "Server error:"
    return text.split(marker, 1)[1].strip() if marker in text else ""


def resolve(url: str) -> None:
    """Resolve the URL's host name without connecting; raises 3001."""
    host = urlsplit(url).hostname or ""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise PushNetError(Code.WARNING_DNS_FAIL,
                           f"cannot resolve {host!r}: {exc.strerror or exc}") from None


UNREACHABLE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                                errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN})
"""The TCP connection itself failed (3002): nothing of RTMP was exchanged."""


def classify_open_error(exc: Exception, url: str = "") -> PushNetError:
    """The code of a failed publish attempt, from FFmpeg's exception (and its log)."""
    text = str(exc)
    reason = _server_reason(text)
    if reason:
        return PushNetError(Code.PUSH_WARNING_SERVER_DISCONNECT,
                            f"server rejected the publish: {reason}")
    number = getattr(exc, "errno", None)
    if number in UNREACHABLE_ERRNOS:
        parts = urlsplit(url)
        where = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        what = os.strerror(number).lower() if number is not None else text
        return PushNetError(Code.WARNING_SERVER_CONN_FAIL, f"cannot connect to {where}: {what}",
                            refused=number == errno.ECONNREFUSED)
    return PushNetError(Code.WARNING_SHAKE_FAIL,
                        f"RTMP handshake/connect failed (is it an RTMP server and "
                        f"application?): {text}")


def classify_send_error(exc: Exception) -> PushNetError:
    text = str(exc)
    reason = _server_reason(text)
    if reason:
        return PushNetError(Code.PUSH_WARNING_SERVER_DISCONNECT,
                            f"server closed the stream: {reason}")
    if isinstance(exc, EOFError):
        return PushNetError(Code.PUSH_WARNING_SERVER_DISCONNECT, "server closed the stream")
    name = errno.errorcode.get(getattr(exc, "errno", 0) or 0, type(exc).__name__)
    return PushNetError(Code.PUSH_WARNING_SOCKET_BROKEN, f"connection broken ({name}): {text}")


class _Tap:
    """What one FLV muxer writes, sent to the connection while `passing`."""

    def __init__(self, writer: AvioWriter, passing: bool = True) -> None:
        self._writer = writer
        self.passing = passing

    def write(self, data: bytes) -> int:
        return self._writer.write(data) if self.passing else len(data)


class RtmpOutput:
    """One RTMP publish session carrying the given encoded streams."""

    def __init__(self, video: StreamParams, audio: StreamParams | None) -> None:
        self._params = (video, audio)
        self._header: av.container.OutputContainer | None = None
        self._head_tap: _Tap | None = None
        self._muxers: dict[bool, av.stream.Stream] = {}
        """One single-stream FLV muxer per track (key: is video), found by its stream."""
        self._writer: AvioWriter | None = None
        self._upstream: Upstream | None = None
        self._origin: float | None = None

    def open(self, url: str, abandon: Callable[[], bool] = lambda: False) -> None:
        """Connect and publish; raises PushNetError (3001–3004). `abandon` returning True
        gives up a connect or handshake that is under way (FFmpeg asks it every 100 ms)."""
        resolve(url)
        video, audio = self._params
        if av.logging.get_level() is None:
            # FFmpeg only quotes the server's reason ("Already publishing") in its
            # exceptions when logging is on; Capture keeps those lines off stderr.
            av.logging.set_level(av.logging.ERROR)
        try:
            # The pusher holds the connection itself (TCP_NOTSENT_LOWAT, TCP_INFO): FFmpeg's
            # RTMP client publishes through it via a loopback relay.
            self._upstream = Upstream(url)
            local_url = self._upstream.connect()
            with av.logging.Capture():
                self._writer = AvioWriter(local_url, OPEN_TIMEOUT, abandon,
                                          {"rtmp_tcurl": server_tc_url(url)})
                # The stream's head (FLV header, metadata, both sequence headers) comes
                # from a muxer that knows both tracks; packets go through one muxer per
                # track, whose own head is not sent. FFmpeg's muxer interleaves by time
                # and so holds each video packet until a later audio one is queued, a
                # frame of delay: a muxer with one track writes every packet at once.
                self._head_tap = _Tap(self._writer)
                self._header = av.open(self._head_tap, "w", format="flv",
                                       container_options={"flush_packets": "1"})
                tracks = {True: self._add_stream(self._header, video)}
                if audio:
                    tracks[False] = self._add_stream(self._header, audio)
                self._header.start_encoding()
                for is_video, track in tracks.items():
                    self._muxers[is_video] = self._track_muxer(track)
        except (av.FFmpegError, OSError, EOFError, ValueError, UpstreamError) as exc:
            error = classify_open_error(exc, url)
        else:
            return
        self.close()  # the connection, if it was made before the failure
        # Raised outside the except block: FFmpeg's exception (whose traceback holds this
        # frame) is not chained, so no reference cycle keeps the half-open container alive.
        raise error

    @staticmethod
    def _add_stream(container: av.container.OutputContainer,
                    params: StreamParams) -> av.stream.Stream:
        """A stream described by `params`: its codec context is a placeholder that carries
        the encoder's extradata into the FLV sequence header; it never encodes."""
        if params.codec == "h264":
            stream = container.add_stream("libx264", rate=params.fps)
            ctx = stream.codec_context
            ctx.width, ctx.height, ctx.pix_fmt = params.width, params.height, "yuv420p"
            # PyAV opens it for every publish although it never encodes: the cheapest
            # x264 there is (one thread, no lookahead).
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "threads": "1"}
        else:
            stream = container.add_stream("aac", rate=params.sample_rate)
            ctx = stream.codec_context
            ctx.layout, ctx.format = params.layout, "fltp"
        ctx.time_base = params.time_base
        ctx.bit_rate = params.bit_rate
        # Without GLOBAL_HEADER the placeholder keeps the extradata we give it.
        ctx.flags &= ~Flags.global_header
        ctx.extradata = params.extradata
        return stream

    def _track_muxer(self, track: av.stream.Stream) -> av.stream.Stream:
        """An FLV muxer for `track` alone (a copy of its parameters; no codec is opened)
        writing to the connection once its own head is dropped; returns its stream."""
        assert self._writer is not None
        tap = _Tap(self._writer, passing=False)
        container = av.open(tap, "w", format="flv", container_options={"flush_packets": "1"})
        stream = container.add_stream_from_template(track)
        container.start_encoding()
        tap.passing = True
        return stream

    def mux(self, packet: av.Packet, is_video: bool) -> None:
        """Write one packet; raises PushNetError (3004/3005) when the session breaks."""
        stream = self._muxers.get(is_video)
        if stream is None:
            raise PushNetError(Code.PUSH_WARNING_SOCKET_BROKEN, "not connected")
        # FLV takes the first packet's time as its origin and rejects anything older: on a
        # session that starts mid-stream, audio captured just before that is not sent.
        at = float(packet.dts * packet.time_base) if packet.dts is not None else 0.0
        if self._origin is None:
            self._origin = at
        elif at < self._origin:
            return
        packet.stream = stream
        try:
            with av.logging.Capture() as logs:
                stream.container.mux(packet)
                return
        except (av.FFmpegError, OSError, EOFError, ValueError) as exc:
            error = classify_send_error(exc)
        if logs:
            error.args = (f"{error.args[0]} ({logs[-1][2].strip()})",)
        raise error  # unchained, as in open()

    def close(self) -> None:
        header, self._header = self._header, None
        if self._head_tap is not None:
            self._head_tap.passing = False
        muxers, self._muxers = self._muxers, {}
        writer, self._writer = self._writer, None
        # The video muxer's trailer (H.264's end of sequence) is sent; the head's muxer has
        # no packets to end. Closed now, even if something (an exception's traceback) still
        # refers to this object: the head's codec contexts hold encoder threads.
        for container in [stream.container for stream in muxers.values()] + [header]:
            if container is not None:
                with contextlib.suppress(av.FFmpegError, OSError, EOFError, ValueError):
                    container.close()
        if writer is not None:
            writer.close()
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            upstream.close()

    def limit_rate(self, kbps: float, min_rtt_ms: float) -> None:
        """Keep about `kbps` worth of data in flight (`Upstream.limit_rate`)."""
        upstream = self._upstream
        if upstream is not None:
            upstream.limit_rate(kbps, min_rtt_ms)

    def readings(self) -> TcpReadings | None:
        """TCP_INFO of the connection to the server now; None when there is none."""
        upstream = self._upstream
        return upstream.readings() if upstream is not None else None


@dataclass(frozen=True)
class SenderStats:
    send_kbps: float
    """What the link carried over the last window (all streams), kbit/s."""
    queue_depth: int
    backlog_ms: int
    """Stream time waiting in the queue: how far the link is behind capture."""
    dropped_frames: int
    jitter_ms: float
    """Spread of the time mux() takes per video packet (seed's netJitter)."""
    tcp: TcpReadings | None = None
    """The connection's TCP_INFO at the time of these stats."""
    wire_kbps: float | None = None
    """What the server acknowledged since the previous stats, everything counted."""
    overhead: float = 1.0
    """Bytes on the wire per media byte since the previous stats (FLV and RTMP framing)."""
    stale_frames: int = 0
    """Video frames dropped as stale (STALE_MS) since the session began."""
    peak_delay_ms: float = 0.0
    """The longest a video packet would have waited to reach the wire (see `_stale`) since
    the previous stats, not counting a wait the link was not the cause of (it idled for
    want of data: the box was late). A reading at the tick alone misses a delay that
    builds and is cut by the stale drop between two ticks."""


class PacketSender:
    """Sends packets through an `RtmpOutput` in its own thread."""

    def __init__(self, output: RtmpOutput, on_error: Callable[[PushNetError], None],
                 on_first_packet: Callable[[], None], max_packets: int = 120,
                 window_s: float = 2.0,
                 want_key_frame: Callable[[], None] = lambda: None,
                 late_alarm_ms: float = float("inf"),
                 on_late: Callable[[], None] = lambda: None) -> None:
        """`on_late` is called when a video packet's delay (see `_stale`) reaches
        `late_alarm_ms`, once until it falls below again."""
        self._output = output
        self._late_alarm_ms = late_alarm_ms
        self._on_late = on_late
        self._late = False
        self._skipping = False
        """Stale video is being dropped until the next key frame."""
        self._want_key_frame = want_key_frame
        self._key_asked_at = float("-inf")
        self._stale_frames = 0
        self._peak_late_ms = 0.0
        self._media_bytes = 0
        self._previous: tuple[TcpReadings, int] | None = None
        self._wire_kbps = 0.0
        self._overhead = 1.0
        self._on_error = on_error
        self._on_first_packet = on_first_packet
        self._queue: queue.Queue[tuple[av.Packet, bool, int] | None] = queue.Queue(max_packets)
        self._window_s = window_s
        self._sent: collections.deque[tuple[float, int]] = collections.deque()
        self._mux_times: collections.deque[float] = collections.deque(maxlen=60)
        self._lock = threading.Lock()
        self._dropping = True  # until the session's first key frame
        self._keyed = False
        self._early_audio: collections.deque[tuple[av.Packet, int]] = collections.deque(
            maxlen=EARLY_AUDIO_PACKETS)
        """Sound that came before the first key frame: what was captured after that
        frame goes out right behind it (its encode may finish after theirs)."""
        self._dropped = 0
        self._newest_ms = 0
        self._oldest_ms = 0
        self._thread = threading.Thread(target=self._run, name="rtmp-sender", daemon=True)
        self._stopped = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def put(self, packet: av.Packet, is_video: bool, stream_ms: int) -> None:
        """Queue a packet (never blocks). When the queue is full, or while recovering
        from that, video is dropped until its next key frame so the picture stays valid."""
        if self._stopped.is_set():
            return
        if is_video:
            if self._dropping and packet.is_keyframe:
                self._dropping = False
                if not self._keyed:
                    self._keyed = True
                    self._enqueue(packet, True, stream_ms)
                    for early, early_ms in self._early_audio:
                        if early_ms >= stream_ms:
                            self._enqueue(early, False, early_ms)
                    self._early_audio.clear()
                    return
            if self._dropping:
                self._count_drop()
                return
        elif not self._keyed:
            self._early_audio.append((packet, stream_ms))
            return
        self._enqueue(packet, is_video, stream_ms)

    def _enqueue(self, packet: av.Packet, is_video: bool, stream_ms: int) -> None:
        try:
            self._queue.put_nowait((packet, is_video, stream_ms))
            self._newest_ms = stream_ms
        except queue.Full:
            if is_video:
                self._dropping = True
                self._count_drop()

    def _count_drop(self) -> None:
        with self._lock:
            self._dropped += 1

    def _run(self) -> None:
        first = True
        while True:
            item = self._queue.get()
            if item is None or self._stopped.is_set():
                break
            packet, is_video, stream_ms = item
            self._oldest_ms = stream_ms
            size = packet.size
            started = time.monotonic()
            try:
                if is_video and self._stale(packet, stream_ms):
                    self._count_drop()
                    self._stale_frames += 1
                    continue
                self._output.mux(packet, is_video)
            except Exception as exc:  # a failure ends the session, not the thread
                if not isinstance(exc, PushNetError):
                    # a bug, not the network: said with its traceback, and the session is
                    # redone as for a broken connection instead of stalling unseen
                    log.exception("sending failed")
                    exc = PushNetError(Code.PUSH_WARNING_SOCKET_BROKEN, f"sending failed: {exc}")
                self._stopped.set()
                # Its traceback holds mux()'s frame, which holds the exception: a cycle
                # that would keep the dead connection (and its codec threads) until the
                # next full garbage collection.
                self._on_error(exc.with_traceback(None))
                break
            done = time.monotonic()
            with self._lock:
                self._media_bytes += size
                self._sent.append((done, size))
                if is_video:
                    self._mux_times.append(done - started)
            if first:
                first = False
                self._on_first_packet()

    def _stale(self, packet: av.Packet, stream_ms: int) -> bool:
        """Whether this video packet is to be dropped (see STALE_MS)."""
        if packet.is_keyframe:
            self._skipping = False
            return False
        if self._skipping:
            return True
        queued_ms = float(self._newest_ms - stream_ms)
        link_ms = 0.0
        tcp = self._output.readings()
        if tcp is not None:
            link_ms += max(0.0, tcp.rtt_ms - tcp.min_rtt_ms)
            if self._wire_kbps > 0:
                link_ms += tcp.unsent_bytes * 8 / self._wire_kbps
        late_ms = queued_ms + link_ms
        counted = link_ms if tcp is not None and tcp.app_limited else late_ms
        self._peak_late_ms = max(self._peak_late_ms, counted)
        if (late_ms >= self._late_alarm_ms) != self._late:  # the controller tells the cause
            self._late = not self._late
            if self._late:
                self._on_late()
        if late_ms <= STALE_MS:
            return False
        self._skipping = True
        now = time.monotonic()
        if now - self._key_asked_at >= KEY_REQUEST_INTERVAL_S:
            self._key_asked_at = now
            self._want_key_frame()
        return True

    def limit_rate(self, kbps: float) -> None:
        """The rate the stream is encoded for now (all of it): the socket holds in flight
        what that rate carries in a moment, no more."""
        tcp = self._output.readings()
        self._output.limit_rate(kbps, tcp.min_rtt_ms if tcp else 0.0)

    def _link_rates(self, tcp: TcpReadings | None) -> tuple[float | None, float]:
        """(acknowledged kbit/s, overhead) since the previous call."""
        with self._lock:
            media = self._media_bytes
        previous, self._previous = self._previous, (tcp, media) if tcp else None
        if tcp is None or previous is None or tcp.at <= previous[0].at:
            return None, self._overhead
        before, media_before = previous
        # Not the kernel's delivery-rate sample: one ACK's worth, it reads up to 1.7× a
        # tbf-shaped link (ACKs of a burst arrive together) and the target followed it.
        self._wire_kbps = (tcp.acked_bytes - before.acked_bytes) * 8 / 1000 / (
            tcp.at - before.at)
        if media - media_before > 4096:  # enough to tell framing from noise
            ratio = (tcp.relayed_bytes - before.relayed_bytes) / (media - media_before)
            self._overhead = min(1.5, max(1.0, ratio))
        return self._wire_kbps, self._overhead

    def stats(self) -> SenderStats:
        now = time.monotonic()
        with self._lock:
            while self._sent and now - self._sent[0][0] > self._window_s:
                self._sent.popleft()
            sent = sum(size for _, size in self._sent)
            times = list(self._mux_times)
            dropped = self._dropped
        peak_ms, self._peak_late_ms = self._peak_late_ms, 0.0
        jitter = (max(times) - min(times)) * 1000 if times else 0.0
        depth = self._queue.qsize()
        tcp = self._output.readings()
        wire_kbps, overhead = self._link_rates(tcp)
        return SenderStats(
            send_kbps=sent * 8 / self._window_s / 1000,
            queue_depth=depth,
            backlog_ms=max(0, self._newest_ms - self._oldest_ms) if depth else 0,
            dropped_frames=dropped,
            jitter_ms=round(jitter, 1),
            tcp=tcp, wire_kbps=wire_kbps, overhead=overhead, stale_frames=self._stale_frames,
            peak_delay_ms=peak_ms,
        )

    def stop(self) -> None:
        """Stop sending (queued packets are discarded) and close the output; safe twice."""
        self._stopped.set()  # put() accepts nothing from now on
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._queue.put(None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._output.close()

