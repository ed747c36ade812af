"""The push's own TCP connection to the ingest server, relayed to FFmpeg's RTMP client.

FFmpeg speaks RTMP but keeps its socket to itself, so a publish goes through a relay in
this process: `Upstream.connect()` opens the one real connection to the server (TLS for
rtmps://) and a loopback listener, and FFmpeg's RTMP client publishes to that listener with
the server's own tcUrl. One thread moves the bytes both ways. The server sees exactly one
connection per publish, as before.

Owning the socket gives the pusher two things no sysctl-free FFmpeg option does:
- `TCP_NOTSENT_LOWAT` on that socket: the kernel accepts only this much data it has not
  sent yet, so a short link shows up as media waiting in the box (where the sender can
  drop stale frames) instead of seconds of video hidden in the socket;
- `TCP_INFO` at every tick (`readings()`): RTT, unsent and unacknowledged bytes, the
  kernel's delivery-rate estimate, bytes acknowledged: the controller's early signals.

The loopback hop is kept small (FFmpeg's socket's send buffer, the relay's receive
buffer, one chunk in hand), for the same reason. FFmpeg is told the server's own tcUrl
(`server_tc_url`), so a server that picks a virtual host or checks a token by it sees what
a direct publish would have sent, not the relay's loopback address.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import socket
import ssl
import struct
import termios
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

NOTSENT_LOWAT = 8192
"""Unsent bytes the kernel takes before the socket stops being writable: 0.16 s at
400 kbit/s, 44 ms at 1.5 Mbit/s."""
LOOPBACK_BUFFER = 4096
"""SO_SNDBUF of FFmpeg's socket and SO_RCVBUF of the relay's (the kernel doubles both)."""
CHUNK = 4096
"""Bytes the relay reads from FFmpeg at once: never more in hand than this."""
IN_FLIGHT_S = 0.05
"""`limit_rate` lets the kernel hold (unsent + unacknowledged) what the rate carries in this
long plus the path's RTT: enough to keep the link busy, while a link that drops below the
rate finds at most about a tenth of a second of video in flight (the kernel doubles the
buffer for its bookkeeping), not a modem buffer's worth."""
MIN_SNDBUF = 8192
CONNECT_TIMEOUT = 5.0
"""As FFmpeg's own connect timeout was: a host that drops packets fails in 5 s."""
RTMP_PORT, RTMPS_PORT = 1935, 443

# struct tcp_info (linux/tcp.h) up to tcpi_bytes_retrans: 8 u8, 24 u32, 4 u64, 2 u32,
# notsent_bytes, min_rtt, data_segs_in, data_segs_out, delivery_rate (u64), busy_time,
# rwnd_limited, sndbuf_limited (u64), delivered, delivered_ce, bytes_sent, bytes_retrans.
_TCP_INFO = struct.Struct("=8B24I4Q2I4IQ3Q2I2Q")
_TCP_INFO_FIELDS = {"snd_mss": 10, "unacked": 12, "lost": 14, "rtt": 23, "rttvar": 24,
                    "snd_cwnd": 26, "total_retrans": 31, "bytes_acked": 34,
                    "notsent_bytes": 38, "min_rtt": 39, "delivery_rate": 42, "bytes_sent": 48}
_APP_LIMITED_BIT = 0x01  # in the byte after the wscale nibbles (tcpi_delivery_rate_app_limited)


@dataclass(frozen=True)
class TcpReadings:
    """One TCP_INFO reading of the upstream socket, plus what the relay holds."""

    at: float
    """time.monotonic() of the reading."""
    rtt_ms: float
    """Smoothed RTT: grows as the bottleneck's queue (a modem's buffer) fills."""
    min_rtt_ms: float
    """The smallest RTT seen on this connection: the path without a queue."""
    unsent_bytes: int
    """Bytes muxed and not sent yet: in the kernel's socket (tcpi_notsent_bytes), in the
    relay's hand and in the loopback hop from FFmpeg."""
    unacked_bytes: int
    """Bytes sent and not acknowledged yet: in flight or queued in the path."""
    delivery_kbps: float
    """The kernel's latest delivery-rate sample (tcpi_delivery_rate)."""
    app_limited: bool
    """That sample was taken while the sender had too little to send to fill the link."""
    acked_bytes: int
    """Bytes the server acknowledged since the connection opened (a counter)."""
    relayed_bytes: int
    """Bytes FFmpeg handed the relay since the connection opened (a counter): media plus
    FLV and RTMP framing, which gives the container's overhead."""
    retransmits: int
    """Segments retransmitted since the connection opened (a counter): loss on the path."""


def read_tcp_info(sock: socket.socket) -> dict[str, int]:
    """The TCP_INFO fields the pusher uses, by name (tcpi_ without the prefix)."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
    values = _TCP_INFO.unpack(raw.ljust(_TCP_INFO.size, b"\0"))
    info = {name: values[index] for name, index in _TCP_INFO_FIELDS.items()}
    info["app_limited"] = values[7] & _APP_LIMITED_BIT
    return info


def tune_client(address: tuple[str, int]) -> socket.socket | None:
    """Give FFmpeg's end of the loopback hop (the socket of this process bound to
    `address`) a small fixed send buffer and no Nagle delay; returns a duplicate of it to
    read its queue from, None when it is not found. Autotuning would grow that buffer to
    hold seconds of a slow uplink's video."""
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = os.dup(int(name))
        except (OSError, ValueError):
            continue
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            continue
        try:
            found = sock.type == socket.SOCK_STREAM and sock.getsockname() == address
        except OSError:
            found = False
        if found:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LOOPBACK_BUFFER)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        sock.close()
    return None


def queued(sock: socket.socket | None, request: int) -> int:
    """SIOCINQ (bytes received, not read) or SIOCOUTQ (bytes not acknowledged) of `sock`."""
    # The relay thread may close it between the caller's look and this one (fileno -1).
    fd = sock.fileno() if sock is not None else -1
    if fd < 0:
        return 0
    try:
        raw = fcntl.ioctl(fd, request, b"\0\0\0\0")
    except OSError:
        return 0
    return struct.unpack("i", raw)[0]


class UpstreamError(Exception):
    """The connection to the server failed; `errno` as the OS gave it, or `tls` when the
    TLS handshake did."""

    def __init__(self, message: str, number: int | None = None, tls: bool = False) -> None:
        super().__init__(message)
        self.errno = number
        self.tls = tls


def local_url(url: str, port: int) -> str:
    """The URL FFmpeg publishes to: the relay's loopback port, the same application and
    stream key."""
    parts = urlsplit(url)
    return urlunsplit(("rtmp", f"127.0.0.1:{port}", parts.path, parts.query, ""))


def server_tc_url(url: str) -> str:
    """The tcUrl FFmpeg would send publishing to `url` directly: scheme, host, port (the
    default one written out) and application, which is the first path segment, or the first
    two when the path has more than two (`app/instance/stream`), as FFmpeg splits it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = parts.port or (RTMPS_PORT if parts.scheme == "rtmps" else RTMP_PORT)
    segments = parts.path.lstrip("/").split("/")
    app = "/".join(segments[:2]) if len(segments) > 2 else segments[0]
    return f"{parts.scheme}://{host}:{port}/{app}"


class Upstream:
    """The TCP (or TLS) connection of one publish and the relay that feeds it."""

    def __init__(self, url: str, *, notsent_lowat: int = NOTSENT_LOWAT,
                 timeout: float = CONNECT_TIMEOUT) -> None:
        self._url = url
        self._notsent_lowat = notsent_lowat
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._closing = threading.Event()
        self._in_hand = 0
        self._loopback: tuple[socket.socket | None, socket.socket | None] = (None, None)
        """FFmpeg's end (a duplicate) and the relay's end of the loopback hop."""
        self._relayed = 0
        self._thread: threading.Thread | None = None

    def connect(self) -> str:
        """Connect to the server and start the relay; returns the URL FFmpeg publishes to.
        Raises UpstreamError."""
        parts = urlsplit(self._url)
        secure = parts.scheme == "rtmps"
        host = parts.hostname or ""
        port = parts.port or (RTMPS_PORT if secure else RTMP_PORT)
        try:
            sock = socket.create_connection((host, port), timeout=self._timeout)
        except TimeoutError:
            raise UpstreamError(f"cannot connect to {host}:{port}: timed out",
                                errno.ETIMEDOUT) from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: "
                                f"{os.strerror(exc.errno) if exc.errno else exc}",
                                exc.errno) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, self._notsent_lowat)
        # A frame's last segment goes now, not after the previous one's ACK (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if secure:
            sock = self._tls(sock, host)
        self._sock = sock
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Set before listen(): an accepted socket inherits it, and the window it advertises
        # to FFmpeg follows from it.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LOOPBACK_BUFFER)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self._listener = listener
        self._thread = threading.Thread(target=self._run, name="upstream", daemon=True)
        self._thread.start()
        return local_url(self._url, listener.getsockname()[1])

    def _tls(self, sock: socket.socket, host: str) -> ssl.SSLSocket:
        # As FFmpeg's RTMPS client did by default: encrypted, the certificate not verified
        # (the pusher has no CA setting of its own).
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            return context.wrap_socket(sock, server_hostname=host)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise UpstreamError(f"TLS handshake with {host} failed: {exc}", tls=True) from None

    def readings(self) -> TcpReadings | None:
        """TCP_INFO of the upstream socket now; None once it is closed."""
        sock = self._sock
        if sock is None:
            return None
        try:
            info = read_tcp_info(sock)
        except OSError:
            return None
        return TcpReadings(
            at=time.monotonic(),
            rtt_ms=info["rtt"] / 1000, min_rtt_ms=info["min_rtt"] / 1000,
            unsent_bytes=info["notsent_bytes"] + self._in_hand + self._loopback_bytes(),
            unacked_bytes=info["unacked"] * info["snd_mss"],
            delivery_kbps=info["delivery_rate"] * 8 / 1000,
            app_limited=bool(info["app_limited"]),
            acked_bytes=info["bytes_acked"], relayed_bytes=self._relayed,
            retransmits=info["total_retrans"])

    def limit_rate(self, kbps: float, min_rtt_ms: float) -> None:
        """Size the socket's send buffer for `kbps` (see IN_FLIGHT_S): whatever the
        congestion control does, the path's queue then holds little more than that."""
        sock = self._sock
        if sock is None or kbps <= 0:
            return
        size = max(MIN_SNDBUF, round(kbps * 125 * (IN_FLIGHT_S + min_rtt_ms / 1000)))
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    def _loopback_bytes(self) -> int:
        client, relay_end = self._loopback
        return (queued(client, termios.TIOCOUTQ)  # SIOCOUTQ: FFmpeg's unacknowledged
                + queued(relay_end, termios.FIONREAD))  # SIOCINQ: not read by the relay

    # -- the relay thread

    def _run(self) -> None:
        assert self._listener is not None and self._sock is not None
        try:
            self._listener.settimeout(self._timeout)
            local, _ = self._listener.accept()
        except OSError:
            self.close()
            return
        finally:
            self._listener.close()
        client = tune_client(local.getpeername())
        self._loopback = (client, local)
        with contextlib.suppress(OSError), local:
            self._relay(local, self._sock)
            self._loopback = (None, None)  # before the sockets close: readings() reads them
        if client is not None:
            client.close()
        self.close()

    def _relay(self, local: socket.socket, up: socket.socket) -> None:
        """Until either side ends: FFmpeg → server one chunk at a time (read only once the
        last chunk is in the kernel), server → FFmpeg as it comes (a few small messages)."""
        local.setblocking(False)
        up.setblocking(False)
        to_up = b""
        local_done = False
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            selector.register(local, selectors.EVENT_READ)
            selector.register(up, selectors.EVENT_READ)
            reading_local = True
            while not self._closing.is_set():
                if reading_local != (not to_up and not local_done):
                    reading_local = not reading_local
                    if reading_local:
                        selector.register(local, selectors.EVENT_READ)
                    else:
                        selector.unregister(local)
                selector.modify(up, selectors.EVENT_READ | (
                    selectors.EVENT_WRITE if to_up else 0))
                ready = {key.fileobj: mask for key, mask in selector.select()}
                if self._wake_r in ready:
                    return
                if up in ready and ready[up] & selectors.EVENT_READ and not self._down(up, local):
                    return
                if to_up and up in ready and ready[up] & selectors.EVENT_WRITE:
                    to_up = self._send(up, to_up)
                if local in ready and not to_up and not local_done:
                    data = local.recv(CHUNK)
                    if not data:
                        local_done = True
                    self._relayed += len(data)
                    to_up = self._send(up, data) if data else b""
                self._in_hand = len(to_up)
                if local_done and not to_up:
                    return

    @staticmethod
    def _send(up: socket.socket, data: bytes) -> bytes:
        """Write what the socket takes now; returns the rest."""
        try:
            return data[up.send(data):]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            return data

    @staticmethod
    def _down(up: socket.socket, local: socket.socket) -> bool:
        """Pass on what the server sent (TLS may hold more than one read's worth);
        False when the server closed the connection."""
        while True:
            try:
                data = up.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return True
            if not data:
                return False
            local.setblocking(True)
            try:
                local.sendall(data)
            finally:
                local.setblocking(False)
            if not isinstance(up, ssl.SSLSocket) or not up.pending():
                return True

    def close(self) -> None:
        """End the relay and the connection; safe twice and from any thread."""
        if self._closing.is_set():
            return
        self._closing.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._listener is not None:
            # wakes an accept() still waiting for FFmpeg (an attempt that failed before it
            # connected), which the wake byte does not reach
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
        if self._sock is not None:
            # Ends any send or receive the relay thread is in before the descriptor is
            # freed: OpenSSL keeps the descriptor's number, and a TLS write finishing after
            # close() would go to whatever file gets that number next.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._listener is not None:
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
