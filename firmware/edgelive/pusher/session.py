"""The RTMP link of one push: connect, publish, and reconnect by the policy (SPEC §3).

One thread runs a small state machine:

    connecting ──ok──▶ up ──lost──▶ reconnecting ──ok──▶ up …
         └──failed──────────────────────┘    └──policy gives up──▶ gave_up

Every failure (the loss itself, then each failed attempt) is reported with its 3001–3005
code and the server's reason, then handed to `ReconnectPolicy`: the first attempts are
announced with 1102, the one that spends them with -1307, the backed-off ones after it with
PUSH_RETRY_SCHEDULED. While the server refuses connections (nothing listens on its port),
publish attempts are also made quietly every RETRY_INTERVAL during the wait: a refusal costs
the server no connection, and the attempt that reaches it is the publish itself, so a
returning server is used within a fraction of a second whatever the backoff has grown to.
The server is never probed with a connection of its own (one publish, one connection).

Capture and encoding never wait for the link: `send()` drops packets while it is down, and
each new session starts at a key frame, and so does the picture after a stale drop
(`want_key_frame` asks the encoder for one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import av

from edgelive.codes import Code
from edgelive.config.schema import Reconnect
from edgelive.events import EventLog, now_ms
from edgelive.media.encode import StreamParams
from edgelive.media.rtmp_out import PacketSender, PushNetError, RtmpOutput, SenderStats
from edgelive.policy.bitrate import HIGH_BACKLOG_S
from edgelive.policy.reconnect import ReconnectPolicy

RETRY_INTERVAL = 0.25
"""How often a publish is attempted quietly while the server refuses connections."""

Attempt = RtmpOutput | PushNetError
"""What one publish attempt gave: a connected output or the reason it failed."""


class LinkState(StrEnum):
    CONNECTING = "connecting"  # first connection of the push
    UP = "up"  # publishing: the first packet went out (1002)
    RECONNECTING = "reconnecting"
    GAVE_UP = "gave_up"  # the policy stopped retrying (reconnect.give-up)
    CLOSED = "closed"


class Link:
    """Publishes to `url` and keeps doing so until `close()` or the policy gives up."""

    def __init__(self, url: str, streams: tuple[StreamParams, StreamParams | None],
                 events: EventLog, reconnect: Reconnect, *,
                 want_key_frame: Callable[[], None], on_change: Callable[[], None],
                 on_late: Callable[[], None] = lambda: None,
                 live_detail: Callable[[], dict[str, Any]] = dict) -> None:
        """`on_late`: a picture met the delay the bitrate control counts as a short link
        (HIGH_BACKLOG_S), between two of its ticks."""
        self._url = url
        self._streams = streams
        self._events = events
        self._policy = ReconnectPolicy(reconnect.attempts, reconnect.first_delay,
                                       reconnect.max_delay, reconnect.give_up)
        self._want_key_frame = want_key_frame
        self._on_late = on_late
        self._on_change = on_change
        self._live_detail = live_detail
        self.state = LinkState.CONNECTING
        self._sender: PacketSender | None = None
        self._lost: PushNetError | None = None
        self._wake = threading.Event()  # the session was lost, or close() was called
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def send(self, packet: av.Packet, is_video: bool, stream_ms: int) -> None:
        """Hand a packet to the current session; dropped while there is none."""
        sender = self._sender
        if sender is not None:
            sender.put(packet, is_video, stream_ms)

    def stats(self) -> SenderStats | None:
        sender = self._sender
        return sender.stats() if sender is not None else None

    def limit_rate(self, kbps: float) -> None:
        """The stream's rate now, video and all: the socket keeps that much in flight."""
        sender = self._sender
        if sender is not None:
            sender.limit_rate(kbps)

    def close(self) -> None:
        """End the session and stop reconnecting; safe twice and from any thread."""
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
        self._end_session()
        if self.state is not LinkState.GAVE_UP:
            self._set_state(LinkState.CLOSED)

    # -- the link thread

    def _run(self) -> None:
        attempt: Attempt | None = self._attempt()
        while attempt is not None:
            error = self._publish(attempt) if isinstance(attempt, RtmpOutput) else attempt
            if error is None:
                return
            attempt = self._retry_after(error)

    def _attempt(self) -> Attempt:
        output = RtmpOutput(*self._streams)
        try:
            output.open(self._url, abandon=self._closing.is_set)
        except PushNetError as exc:
            output.close()
            return exc.with_traceback(None)  # its frames would hold the failed output
        return output

    def _publish(self, output: RtmpOutput) -> PushNetError | None:
        """One session on a connected output (1001), until it is lost; returns why, None
        on close."""
        if self._closing.is_set():
            output.close()
            return None
        self._events.emit(Code.PUSH_EVT_CONNECT_SUCC, "connected to the RTMP server")
        self._lost = None
        self._wake.clear()
        sender = PacketSender(output, on_error=self._on_lost, on_first_packet=self._on_live,
                              want_key_frame=self._want_key_frame,
                              late_alarm_ms=HIGH_BACKLOG_S * 1000, on_late=self._on_late)
        sender.start()
        self._sender = sender
        self._want_key_frame()  # the session starts at a key frame
        self._wake.wait()
        self._end_session()
        # Closing abandons a send that waits for the network: that is no failure to report.
        return None if self._closing.is_set() else self._lost

    def _on_live(self) -> None:
        with self._lock:
            self._policy.success()
        self._events.emit(Code.PUSH_EVT_PUSH_BEGIN, "publishing", **self._live_detail())
        self._set_state(LinkState.UP)

    def _on_lost(self, exc: PushNetError) -> None:
        self._lost = exc
        self._wake.set()

    def _end_session(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.stop()

    def _retry_after(self, error: PushNetError) -> Attempt | None:
        """Report the failure, wait as the policy says and attempt again; returns that
        attempt, None = stop trying."""
        self._events.emit(error.code, str(error))
        if self._closing.is_set():
            return None
        with self._lock:
            decision = self._policy.failure()
        if decision.gave_up_now:
            self._events.emit(Code.PUSH_ERR_NET_DISCONNECT,
                              f"{self._policy.attempts} reconnect attempts failed")
        if decision.delay is None:
            self._set_state(LinkState.GAVE_UP)
            self._events.emit(Code.PUSH_STOPPED, "push stopped: the server stays unreachable")
            return None
        if self.state is not LinkState.CONNECTING:
            self._set_state(LinkState.RECONNECTING)
        delay_ms = round(decision.delay * 1000)
        if decision.scheduled:
            self._events.emit(Code.PUSH_RETRY_SCHEDULED,
                              f"next attempt in {decision.delay:g} s",
                              at=now_ms() + delay_ms, delay_ms=delay_ms,
                              attempt=decision.attempt)
        else:
            self._events.emit(Code.PUSH_WARNING_RECONNECT,
                              f"reconnecting in {decision.delay:g} s "
                              f"(attempt {decision.attempt} of {self._policy.attempts})",
                              attempt=decision.attempt, delay_ms=delay_ms)
        return self._wait_and_attempt(decision.delay, quietly=error.refused)

    def _wait_and_attempt(self, delay: float, quietly: bool) -> Attempt | None:
        """The attempt due after `delay` s; None when closed meanwhile. With `quietly`, the
        server refused the last one: attempts go on every RETRY_INTERVAL during the wait,
        and the first that is not refused again is the one returned."""
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            if self._closing.wait(min(remaining, RETRY_INTERVAL)):
                return None
            if quietly and deadline - time.monotonic() > 0:
                attempt = self._attempt()
                if not (isinstance(attempt, PushNetError) and attempt.refused):
                    return attempt
        return None if self._closing.is_set() else self._attempt()

    def _set_state(self, state: LinkState) -> None:
        if state is not self.state:
            self.state = state
            self._on_change()
