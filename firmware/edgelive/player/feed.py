"""The network side of one player: a thread that connects, reads and reconnects.

Connection events come from here: 2001 when a connection opens, 2002 on its first packet,
2003 on its first video key frame; 2006 when an RTMP publisher stops; 2103 for each of the
fast reconnect attempts, then -2301 and PLAY_RETRY_SCHEDULED with growing backoff
(policy/reconnect.py); before each 2103, 3001/3002/3003 for RTMP only, as in the seed.
Packets go to a bounded queue the render loop drains; a new connection is announced in the
queue as a `Session` so decoding restarts cleanly. A connection that finds a track late
(sound that began after the open) is replaced by one that has it, opened beside it so the
pictures flow meanwhile, with no events: it is the same stream playing on.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edgelive.codes import Code
from edgelive.events import EventLog
from edgelive.media.rtmp_in import ArrivedPacket, InputError, StreamInput, is_rtmp
from edgelive.policy.reconnect import ReconnectPolicy
from edgelive.redact import redact_url

MAX_QUEUED = 4000
"""Packets kept at most (minutes of a low-rate stream); the oldest go first beyond it."""
RETAKE_DELAY = 2.0
"""Wait after a replacement connection failed or lacked the late track before the next."""
END_POLL = 1.0
"""Pause between looks for a new publisher after an RTMP stream ended."""
SPARSE_VIDEO = 0.1
"""Sound wakes the render loop only when no picture arrived for this long (s); otherwise
it is taken with the next picture, so the loop wakes once per picture."""

_session_ids = itertools.count(1)


class Replacement:
    """A second connection to the same stream, opened in its own thread while the first
    plays on; `input` once `ready` is set (None if the open failed or the connection lacks
    one of the `wanted` tracks too)."""

    def __init__(self, url: str, ca_file: str, wanted: set[str]) -> None:
        self._opening = StreamInput(url, ca_file=ca_file, renewed=True)
        self._wanted = wanted
        self.input: StreamInput | None = None
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._discarded = False
        threading.Thread(target=self._open, name="feed-replacement", daemon=True).start()

    def _open(self) -> None:
        stream = self._opening
        try:
            stream.open()
            usable = self._wanted <= stream.tracks()
        except InputError:
            usable = False
        with self._lock:
            if usable and not self._discarded:
                self.input = stream
            else:
                stream.close()
        self.ready.set()

    def discard(self) -> None:
        """Not wanted (any more): closed now, or as soon as its open ends."""
        with self._lock:
            self._discarded = True
            stream, self.input = self.input, None
        if stream is not None:
            stream.close()


@dataclass(frozen=True)
class Session:
    """A new connection (its input's streams build the decoders), or its end (None)."""

    id: int
    input: StreamInput | None
    continues: bool = False
    """It replaces a connection to the same stream that lacked a track: no new start."""


class Feed:
    """Reads `url` in a daemon thread until `stop()`; `drain()` returns what arrived."""

    def __init__(self, url: str, events: EventLog, policy: ReconnectPolicy,
                 role: str = "main", on_arrival: Callable[[], None] | None = None,
                 ca_file: str = "") -> None:
        self.url = url
        self._ca_file = ca_file
        self.role = role
        self._on_arrival = on_arrival
        """Called when an item is queued and the render loop was not woken since its last
        `drain()`, so the loop sleeps until data comes, once per batch."""
        self.wake_on_audio = True
        """False when nobody listens: sound then always waits for the next picture."""
        self._wake_on_video = True
        self._woken = False
        self._events = events
        self._policy = policy
        self._queue: deque[Session | ArrivedPacket] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = "idle"
        """connecting | playing | reconnecting | disconnected | ended | stopped"""
        self.bytes_received = 0
        self._ended = False

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"feed-{self.role}",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading (the blocked read ends at its timeout at the latest); safe twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self.state = "stopped"

    def drain(self) -> deque[Session | ArrivedPacket]:
        """What arrived since the last call, oldest first."""
        self._woken = False  # before taking: a later arrival wakes the loop again
        with self._lock:
            items, self._queue = self._queue, deque()
        return items

    def wake_on_video(self, wanted: bool) -> None:
        """Whether an arriving picture wakes the render loop. Not while pictures are queued:
        the loop wakes for the first of them and takes the newcomers then, so each picture
        costs one wake-up instead of two. Turned back on with something queued meanwhile,
        it wakes the loop now."""
        self._wake_on_video = wanted
        if wanted and self._queue and not self._woken and self._on_arrival is not None:
            self._woken = True
            self._on_arrival()

    def _put(self, item: Session | ArrivedPacket, wake: bool = True) -> None:
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                self._queue.popleft()
            self._queue.append(item)
        if wake and not self._woken and self._on_arrival is not None:
            self._woken = True
            self._on_arrival()

    def _emit(self, code: Code | int, msg: str, **detail: object) -> None:
        self._events.emit(code, msg, role=self.role, **detail)

    def _run(self) -> None:
        self._ended = False
        self.state = "connecting"
        taken_over: StreamInput | None = None
        while not self._stop.is_set():
            renewing = taken_over is not None
            stream = taken_over or StreamInput(self.url, ca_file=self._ca_file)
            taken_over = None
            if not renewing:
                try:
                    stream.open()
                except InputError as exc:
                    if not self._failed(exc):
                        return
                    continue
            try:
                if not self._ended and not renewing:
                    self._emit(Code.PLAY_EVT_CONNECT_SUCC, f"connected to {redact_url(self.url)}")
                taken_over = self._read(stream, connect_pending=self._ended, renewing=renewing)
            except InputError as exc:
                if exc.ended:
                    if not self._ended:
                        self._emit(Code.PLAY_EVT_PLAY_END, "the stream ended")
                        self._put(Session(next(_session_ids), None))
                    self._ended = True
                    self.state = "ended"
                    self._policy.success()
                    self._stop.wait(END_POLL)
                    continue
                self._ended = False
                if not self._failed(exc):
                    return
            finally:
                stream.close()
        if taken_over is not None:  # stopped just as it took over
            taken_over.close()

    def _read(self, stream: StreamInput, connect_pending: bool,
              renewing: bool) -> StreamInput | None:
        """Queue packets; `connect_pending`: 2001 was held back (waiting for a publisher);
        `renewing`: the stream plays on, its start was announced already. Returns the
        connection that takes over when this one lacks a track that began late."""
        first_packet, first_key = True, not renewing
        last_video = 0.0
        replacement: Replacement | None = None
        retry_at = 0.0
        try:
            for arrived in stream.packets():
                if self._stop.is_set():
                    return None
                if first_packet:
                    first_packet = False
                    self._policy.success()
                    self._ended = False
                    self.state = "playing"
                    self._put(Session(next(_session_ids), stream, continues=renewing))
                    if connect_pending:
                        self._emit(Code.PLAY_EVT_CONNECT_SUCC,
                                   f"connected to {redact_url(self.url)}")
                    if not renewing:
                        self._emit(Code.PLAY_EVT_RTMP_STREAM_BEGIN, "stream begins")
                if first_key and arrived.is_key:
                    first_key = False
                    self._emit(Code.PLAY_EVT_RCV_FIRST_I_FRAME, "first key frame received")
                self.bytes_received += arrived.packet.size
                if arrived.is_video:
                    last_video = arrived.arrived
                    self._put(arrived, self._wake_on_video)
                else:
                    self._put(arrived, self.wake_on_audio
                              and arrived.arrived - last_video > SPARSE_VIDEO)
                if stream.late_tracks and replacement is None and arrived.arrived >= retry_at:
                    replacement = Replacement(self.url, self._ca_file, stream.late_tracks)
                if replacement is not None and replacement.ready.is_set():
                    taking_over, replacement = replacement.input, None
                    if taking_over is not None:
                        return taking_over
                    retry_at = arrived.arrived + RETAKE_DELAY  # this one plays on meanwhile
        finally:
            if replacement is not None:
                replacement.discard()
        return None

    def _failed(self, exc: InputError) -> bool:
        """Report a failure and wait before the next attempt; False = stop for good."""
        # The seed's 3001-3003 are RTMP-only; an HTTP-FLV failure is told by 2103 alone
        # (its message carries the reason), then -2301.
        if is_rtmp(self.url) and exc.code in (Code.WARNING_DNS_FAIL,
                                              Code.WARNING_SERVER_CONN_FAIL,
                                              Code.WARNING_SHAKE_FAIL):
            self._emit(exc.code, str(exc))
        decision = self._policy.failure()
        if decision.gave_up_now:
            self._emit(Code.PLAY_ERR_NET_DISCONNECT, "reconnect attempts failed",
                       attempts=self._policy.attempts)
        if decision.delay is None:
            self.state = "disconnected"
            return False
        if decision.scheduled:
            self.state = "disconnected"
            self._emit(Code.PLAY_RETRY_SCHEDULED, f"next attempt in {decision.delay:.1f} s",
                       attempt=decision.attempt, delay_s=decision.delay)
        else:
            self.state = "reconnecting"
            self._emit(Code.PLAY_WARNING_RECONNECT, f"reconnecting: {exc}",
                       attempt=decision.attempt, delay_s=decision.delay)
        return not self._stop.wait(decision.delay)
