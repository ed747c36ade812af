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


def test_supervisor_pings_only_while_its_workers_are_heard(
        mosquitto, tmp_path: Path, monkeypatch) -> None:
    """A worker that keeps writing lines keeps the pings coming; one that crash-loops
    without a line stops them once it has been silent `worker_stale_after` s, so systemd's
    WatchdogSec restarts the box. STATUS says which worker."""
    import asyncio

    from edgelive.supervisor import box as box_module
    from tests.test_device_care import running_box

    chatty = ["sh", "-c", "while :; do echo '{\"type\":\"state\",\"state\":\"idle\"}'; "
              "sleep 0.2; done"]
    crashing = ["sh", "-c", "exit 3"]
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    def messages_while(argv: list[str], name: str) -> list[str]:
        monkeypatch.setattr(box_module, "worker_argv", lambda kind: argv)
        path = str(tmp_path / f"notify-{name}")
        got: list[str] = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(path)
            server.setblocking(False)

            async def scenario() -> None:
                # read as systemd does, as they come (the socket's queue is short)
                asyncio.get_running_loop().add_reader(
                    server.fileno(), lambda: got.append(server.recv(4096).decode()))
                pusher = {"pusher": {"url": "rtmp://127.0.0.1:1/live/x"}}
                async with running_box(mosquitto, tmp_path / name, pusher,
                                       notifier=Notifier(path), worker_stale_after=1.5):
                    await asyncio.sleep(3.5)

            asyncio.run(scenario())
        return got

    healthy = messages_while(chatty, "chatty")
    assert healthy.count("WATCHDOG=1") >= 10, healthy
    looping = messages_while(crashing, "looping")
    pings = [i for i, m in enumerate(looping) if m == "WATCHDOG=1"]
    silent = [i for i, m in enumerate(looping) if "pusher worker silent" in m]
    assert pings and silent, looping
    # pings for the first 1.5 s only, then none: every later status names the worker
    assert max(pings) < min(silent) and len(pings) <= 9, looping
