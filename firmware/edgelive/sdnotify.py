"""systemd notification protocol (sd_notify): READY, WATCHDOG, STATUS, STOPPING.

A datagram to $NOTIFY_SOCKET; without the variable (a terminal, CI) every call is a no-op.
Non-blocking: the socket is a local datagram socket and a full queue drops the message,
which systemd tolerates (the next watchdog ping comes a few seconds later).
"""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> None:
        if self._sock is None:
            return
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        # systemd busy or gone: drop it, watchdog pings repeat anyway
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            self._sock.sendto(message, self._address)

    def ready(self, status: str) -> None:
        self.notify(ready=1, status=status)

    def watchdog(self) -> None:
        self.notify(watchdog=1)

    def status(self, text: str) -> None:
        self.notify(status=text)

    def stopping(self) -> None:
        self.notify(stopping=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Half the WatchdogSec systemd gave us (WATCHDOG_USEC), or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000
