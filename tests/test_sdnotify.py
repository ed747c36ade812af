"""sd_notify messages arrive on a real unix datagram socket, as systemd would read them."""

from __future__ import annotations

import socket
from pathlib import Path

from edgelive.sdnotify import Notifier, watchdog_interval


def test_ready_watchdog_status_reach_the_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(2)
        notifier = Notifier(path)
        notifier.ready("pusher streaming")
        notifier.watchdog()
        notifier.status("reconnecting")
        got = [server.recv(4096).decode() for _ in range(3)]
        notifier.close()
        notifier.close()
    assert got == ["READY=1\nSTATUS=pusher streaming", "WATCHDOG=1", "STATUS=reconnecting"]


def test_without_notify_socket_it_is_a_no_op(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("x")  # must not raise


def test_watchdog_interval_is_half_the_timeout(monkeypatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "15000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 7.5
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval() is None
