"""One publish, one TCP connection: the pusher never probes the server with a connection of
its own, so a server that takes a single connection (`ffmpeg -listen 1`, which people use to
receive a box's stream) gets the stream, and an ingest server sees no failed handshakes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgelive.codes import Code
from edgelive.pusher import Pusher
from tests.flvprobe import probe
from tests.servers import NginxRtmp, free_port
from tests.test_pusher_reconnect import make_pusher, pushers  # noqa: F401

LISTEN = "0A"
"""The TCP state LISTEN in /proc/net/tcp."""


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port`, found without connecting to it (a
    connection would be the one a one-connection server takes)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == LISTEN and int(local.split(":")[1], 16) == port:
            return True
    return False


def wait_listening(port: int, timeout: float = 10.0) -> float:
    """The monotonic time at which the port was seen listening."""
    deadline = time.monotonic() + timeout
    while not listening(port):
        assert time.monotonic() < deadline, f"nothing listens on {port} after {timeout} s"
        time.sleep(0.01)
    return time.monotonic()


class OneConnectionServer:
    """`ffmpeg -listen 1`: accepts one RTMP connection, copies what it receives to a file
    and exits when that connection ends."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.url = f"rtmp://127.0.0.1:{port}/live/box"
        self.output = workdir / "received.flv"
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> float:
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-listen", "1",
             "-i", self.url, "-c", "copy", "-f", "flv", "-y", str(self.output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return wait_listening(self.port)

    def finish(self, timeout: float = 10.0) -> str:
        """Wait for ffmpeg to end (its publisher left); returns what it wrote to stderr."""
        assert self.proc is not None
        try:
            _, errors = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, errors = self.proc.communicate()
        return errors


@pytest.fixture
def one_connection_server(tmp_path: Path) -> Iterator[OneConnectionServer]:
    server = OneConnectionServer(tmp_path, free_port())
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


def assert_received_stream(server: OneConnectionServer, pushed_s: float) -> None:
    """What ffmpeg received is the box's H.264 at its planned size, for most of the time it
    was pushed, and its AAC track."""
    result = probe(server.output)
    video = result.stream("video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 180)
    assert result.stream("audio")["codec_name"] == "aac"
    frames = len(result.packet_times("video"))
    assert frames >= 0.6 * pushed_s * 15, frames  # 15 fps planned; margin for a busy host


def test_a_one_connection_server_receives_the_stream(
        one_connection_server: OneConnectionServer,
        pushers: list[Pusher]) -> None:  # noqa: F811
    one_connection_server.start()
    pusher, rec = make_pusher(one_connection_server.url)
    pushers.append(pusher)
    pusher.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    time.sleep(3.0)
    pusher.stop()
    errors = one_connection_server.finish()
    assert one_connection_server.proc is not None
    assert one_connection_server.proc.returncode == 0, errors
    assert rec.codes()[:3] == [1003, 1001, 1002], rec.codes()
    assert_received_stream(one_connection_server, 3.0)


def test_a_one_connection_server_that_comes_up_later_receives_the_stream_within_1_5_s(
        one_connection_server: OneConnectionServer,
        pushers: list[Pusher]) -> None:  # noqa: F811
    pusher, rec = make_pusher(one_connection_server.url)
    pushers.append(pusher)
    pusher.start()
    rec.wait_for(Code.WARNING_SERVER_CONN_FAIL)
    rec.wait_for(Code.PUSH_WARNING_RECONNECT)
    time.sleep(1.0)  # the reconnect attempts meet a closed port for a while
    up = time.time() - time.monotonic() + one_connection_server.start()
    begin = rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    resumed_s = begin.ts / 1000 - up
    time.sleep(3.0)
    pusher.stop()
    errors = one_connection_server.finish()
    assert one_connection_server.proc is not None
    assert one_connection_server.proc.returncode == 0, errors
    print(f"published {resumed_s:.3f} s after the server listened")
    assert resumed_s <= 1.5, resumed_s
    assert_received_stream(one_connection_server, 3.0)


def connections(server: NginxRtmp) -> int:
    """RTMP connections nginx has accepted so far (its info log has one line each)."""
    log = server.dir / "logs" / "error.log"
    return log.read_text().count("client connected") if log.exists() else 0


@pytest.fixture
def counting_nginx(tmp_path: Path) -> Iterator[NginxRtmp]:
    """nginx-rtmp that logs each connection it accepts."""
    server = NginxRtmp(tmp_path / "nginx")
    server.conf.write_text(server.conf.read_text().replace("error.log warn", "error.log info"))
    server.start()
    yield server
    server.stop()


def test_each_publish_is_exactly_one_tcp_connection(counting_nginx: NginxRtmp,
                                                    pushers: list[Pusher]) -> None:  # noqa: F811
    nginx = counting_nginx
    time.sleep(0.3)  # the log line of start()'s own readiness check is written
    before = connections(nginx)
    pusher, rec = make_pusher(nginx.url("one"))
    pushers.append(pusher)
    pusher.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    time.sleep(1.0)
    first = connections(nginx) - before
    # The server goes away and comes back: the attempts while it is down are refused (no
    # connection), and the one that reaches it is the publish.
    mark = len(rec.events)
    nginx.kill()
    rec.wait_for(Code.WARNING_SERVER_CONN_FAIL, mark)
    nginx.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN, mark)
    time.sleep(1.0)
    pusher.stop()
    # start()'s readiness check is one connection too, and not the pusher's.
    second = connections(nginx) - before - first - 1
    print(f"connections per publish: first {first}, after the restart {second}")
    assert (first, second) == (1, 1)
    assert len(nginx.recordings("one")) == 2
