"""The player against real peers: ffmpeg pushing into nginx-rtmp, ffmpeg serving HTTP-FLV.

The player runs in-process on an offscreen SDL sink; tests read back what was shown.
"""

from __future__ import annotations

import base64
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgelive.codes import Code, Source
from edgelive.config.schema import PlayerConfig
from edgelive.events import Event, EventLog
from edgelive.hw.display import SdlSink
from edgelive.player.worker import Player
from tests.relay import Relay
from tests.servers import NginxRtmp, free_port

SCREEN = (320, 180)


def ffmpeg_push(url: str, size: str = "320x180", audio: bool = True,
                extra: tuple[str, ...] = (), colour: str = "") -> subprocess.Popen[bytes]:
    """An independent publisher: ffmpeg's test pattern, or a plain `colour`, (+ a sine
    tone) at real time."""
    video = f"color=c={colour}:" if colour else "testsrc2="
    argv = ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi",
            "-i", f"{video}size={size}:rate=25"]
    if audio:
        argv += ["-f", "lavfi", "-i", "sine=frequency=440"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
             "-pix_fmt", "yuv420p", *extra]
    if audio:
        argv += ["-c:a", "aac"]
    return subprocess.Popen([*argv, "-f", "flv", url], stdin=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def ffmpeg_http_flv(port: int, seconds: float = 60,
                    tls: tuple[Path, Path] | None = None) -> subprocess.Popen[bytes]:
    """ffmpeg serving one HTTP-FLV client (FACTS.md), exiting after `seconds` of stream;
    over https with `tls` = (certificate, key)."""
    scheme, cert = "http", []
    if tls is not None:
        scheme, cert = "https", ["-cert_file", str(tls[0]), "-key_file", str(tls[1])]
    proc = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi",
         "-i", f"testsrc2=size=320x180:rate=25:duration={seconds}", "-c:v", "libx264",
         "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-f", "flv",
         "-listen", "1", *cert, f"{scheme}://127.0.0.1:{port}/live.flv"],
        stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    return proc


def wait_listening(port: int, timeout: float = 15.0) -> None:
    """Wait for a listening socket without connecting (the server takes one client only).
    A player already retrying may be its client by then: the listener is gone, so an
    accepted connection counts too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Htn", "state", "listening", "state", "established",
                              f"sport = :{port}"], capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


class PlayerThread:
    """A Player with its offscreen sink, both on one thread (SDL's rule), events recorded."""

    def __init__(self, config: PlayerConfig, on_present: Callable[[np.ndarray, int], None]
                 | None = None, speaker: Callable[[], Any] | None = None) -> None:
        self.events: list[Event] = []
        self.player: Player | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(config, on_present, speaker),
                                        daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self, config: PlayerConfig, on_present: Any, speaker: Any) -> None:
        log = EventLog(Source.PLAYER)
        log.subscribe(self.events.append)
        sink = SdlSink(SCREEN, offscreen=True)
        sink.on_present = on_present
        self.player = Player(config, sink, log, speaker=speaker)
        self._ready.set()
        try:
            self.player.run()
        finally:
            self.player.close()

    def codes(self) -> list[int]:
        return [e.code for e in self.events]

    def wait_for(self, code: int, timeout: float = 15.0, count: int = 1) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events if e.code == code]
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {code} within {timeout} s; got {self.codes()}")

    def close(self) -> None:
        assert self.player is not None
        self.player.stop()
        self._thread.join(10)


@pytest.fixture
def players() -> Iterator[list[PlayerThread]]:
    made: list[PlayerThread] = []
    yield made
    for p in made:
        p.close()


def play(players: list[PlayerThread], src: str, **config: Any) -> PlayerThread:
    on_present = config.pop("on_present", None)
    speaker = config.pop("speaker", None)
    cfg = PlayerConfig.model_validate({"src": src, "autoplay": True, "mode": "RTC",
                                       "sink": "offscreen", **config})
    p = PlayerThread(cfg, on_present, speaker)
    players.append(p)
    return p


def test_rtmp_events_in_order_picture_shown_and_netstatus(
        nginx: NginxRtmp, players: list[PlayerThread]) -> None:
    frames: list[np.ndarray] = []
    pusher = ffmpeg_push(nginx.url("cam"))
    try:
        p = play(players, nginx.url("cam"), on_present=lambda px, ms: frames.append(px))
        begin = p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        first_key = p.wait_for(Code.PLAY_EVT_RCV_FIRST_I_FRAME)
        order = [c for c in p.codes() if c in (2001, 2002, 2003, 2004)]
        assert order == [2001, 2002, 2003, 2004]
        assert begin.ts - first_key.ts <= 300  # first picture ≤ 0.3 s after the key frame
        assert Code.PLAY_WARNING_HW_ACCELERATION_FAIL in p.codes()  # no v4l2 codec here
        time.sleep(2.5)
        assert p.player is not None
        status = p.player.netstatus
        for key in ("videoBitrate", "audioBitrate", "videoFPS", "videoGOP", "netSpeed",
                    "netJitter", "videoWidth", "videoHeight", "cache", "droppedFrames",
                    "decoder"):
            assert key in status
        assert (status["videoWidth"], status["videoHeight"]) == (320, 180)
        assert 18 <= status["videoFPS"] <= 32
        assert status["videoGOP"] == pytest.approx(1.0, abs=0.1)
        assert status["cache"] <= 0.3 and status["decoder"] == "h264"
        shown = frames[-1]
        assert shown.shape == (180, 320, 3) and shown.std() > 20  # testsrc2, not a slate
        snap = p.player.request("snapshot")
        assert snap["ok"] and base64.b64decode(snap["result"]["jpeg"])[:2] == b"\xff\xd8"
        assert abs(snap["result"]["ts"] - time.time() * 1000) < 2000
    finally:
        stop(pusher)


def test_server_killed_reconnects_three_times_then_gives_up_and_recovers(
        nginx: NginxRtmp, players: list[PlayerThread]) -> None:
    pusher = ffmpeg_push(nginx.url("cam"), audio=False)
    try:
        p = play(players, nginx.url("cam"), reconnect={"first-delay": 0.2, "max-delay": 2})
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        nginx.kill()
        p.wait_for(Code.PLAY_ERR_NET_DISCONNECT, timeout=20)
        p.wait_for(Code.PLAY_RETRY_SCHEDULED)
        after_start = p.codes()[p.codes().index(2004) + 1:]
        warnings = [c for c in after_start if c in (2103, -2301)]
        assert warnings[:4] == [2103, 2103, 2103, -2301]
        assert 2006 not in after_start  # a dead server is not a clean end
        stop(pusher)
        nginx.start()
        pusher = ffmpeg_push(nginx.url("cam"), audio=False)
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN, timeout=20, count=2)
    finally:
        stop(pusher)


def test_rtmp_publisher_stop_is_play_end(nginx: NginxRtmp,
                                         players: list[PlayerThread]) -> None:
    pusher = ffmpeg_push(nginx.url("cam"), audio=False)
    p = play(players, nginx.url("cam"))
    p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
    assert pusher.stdin is not None
    pusher.stdin.write(b"q")  # a clean unpublish
    pusher.stdin.flush()
    pusher.wait(10)
    p.wait_for(Code.PLAY_EVT_PLAY_END, timeout=10)
    assert Code.PLAY_WARNING_RECONNECT not in p.codes()
    pusher = ffmpeg_push(nginx.url("cam"), audio=False)  # a new publisher is played again
    try:
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN, timeout=15, count=2)
    finally:
        stop(pusher)


def test_http_flv_plays_and_a_dropped_stream_never_ends_with_2006(
        players: list[PlayerThread]) -> None:
    port = free_port()
    server = ffmpeg_http_flv(port, seconds=3)
    try:
        p = play(players, f"http://127.0.0.1:{port}/live.flv",
                 reconnect={"first-delay": 0.2, "max-delay": 1})
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        p.wait_for(Code.PLAY_ERR_NET_DISCONNECT, timeout=20)
        assert Code.PLAY_EVT_PLAY_END not in p.codes()
        assert p.codes().count(Code.PLAY_WARNING_RECONNECT) == 3
    finally:
        stop(server)


@pytest.mark.parametrize(("url", "reason"), [
    ("http://box.invalid/live.flv", "Failed to resolve hostname box.invalid"),  # no such name
    ("http://127.0.0.1:{port}/live.flv", "Connection refused")])  # nothing listens
def test_http_flv_failures_are_reconnects_without_the_rtmp_only_codes(
        url: str, reason: str, players: list[PlayerThread]) -> None:
    p = play(players, url.format(port=free_port()),
             reconnect={"first-delay": 0.1, "max-delay": 1})
    p.wait_for(Code.PLAY_ERR_NET_DISCONNECT, timeout=20)
    codes = p.codes()
    assert codes[:codes.index(Code.PLAY_ERR_NET_DISCONNECT) + 1] == [2103, 2103, 2103, -2301]
    assert not {3001, 3002, 3003} & set(codes)
    # what 3001/3002 would have said is in each 2103's message (docs/codes.md)
    reconnects = [e for e in p.events if e.code == Code.PLAY_WARNING_RECONNECT]
    assert all(reason in e.msg for e in reconnects), [e.msg for e in reconnects]


def test_rtmp_failures_keep_3001_and_3002(players: list[PlayerThread]) -> None:
    dns = play(players, "rtmp://box.invalid/live/cam",
               reconnect={"attempts": 1, "first-delay": 0.1, "max-delay": 1})
    refused = play(players, f"rtmp://127.0.0.1:{free_port()}/live/cam",
                   reconnect={"attempts": 1, "first-delay": 0.1, "max-delay": 1})
    for p, code in ((dns, Code.WARNING_DNS_FAIL), (refused, Code.WARNING_SERVER_CONN_FAIL)):
        p.wait_for(Code.PLAY_ERR_NET_DISCONNECT, timeout=20)
        assert p.codes()[:4] == [code, 2103, code, -2301]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key, made by openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def assert_certificate_refused(msg: str, trusted: str) -> None:
    """The message says the certificate was refused, the TLS library's reason, and what it
    was checked against, not FFmpeg's bare "Input/output error"."""
    assert "certificate was refused: Peer certificate failed verification" in msg, msg
    assert f"checked against {trusted} for localhost" in msg, msg
    assert "Input/output error" not in msg, msg


def test_https_flv_plays_with_its_certificate_trusted_and_refuses_it_otherwise(
        tmp_path: Path, players: list[PlayerThread]) -> None:
    tls = self_signed(tmp_path)
    port = free_port()
    url = f"https://localhost:{port}/live.flv"
    server = ffmpeg_http_flv(port, tls=tls)
    try:  # the system's CAs do not vouch for a self-signed certificate
        refused = play(players, url, reconnect={"attempts": 1, "first-delay": 1})
        warning = refused.wait_for(Code.PLAY_WARNING_RECONNECT)
    finally:
        stop(server)
    assert Code.PLAY_EVT_CONNECT_SUCC not in refused.codes()
    assert_certificate_refused(warning.msg, "the system's CAs")
    frames: list[np.ndarray] = []
    server = ffmpeg_http_flv(port, tls=tls)
    try:
        p = play(players, url, ca_file=str(tls[0]), on_present=lambda px, ms: frames.append(px))
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        time.sleep(0.5)
    finally:
        stop(server)
    assert frames and frames[-1].std() > 20  # testsrc2, not a slate


def test_rtmps_through_a_tls_front_verifies_the_certificate(
        tmp_path: Path, nginx: NginxRtmp, players: list[PlayerThread]) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    front = Relay((nginx.host, nginx.port), tls=tls)
    pusher = ffmpeg_push(nginx.url("cam"), audio=False)
    try:
        url = f"rtmps://localhost:{front.port}/live/cam"
        refused = play(players, url, reconnect={"attempts": 1, "first-delay": 1})
        trusted = play(players, url, ca_file=str(cert))
        trusted.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        warning = refused.wait_for(Code.PLAY_WARNING_RECONNECT)
        assert refused.codes()[0] == Code.WARNING_SHAKE_FAIL  # TLS is part of the handshake
        assert Code.PLAY_EVT_CONNECT_SUCC not in refused.codes()
        assert_certificate_refused(refused.events[0].msg, "the system's CAs")
        assert_certificate_refused(warning.msg, "the system's CAs")
        # a ca-file that does not hold the server's certificate is named in the reason
        (tmp_path / "other").mkdir()
        other, _ = self_signed(tmp_path / "other")
        wrong = play(players, url, ca_file=str(other),
                     reconnect={"attempts": 1, "first-delay": 1})
        assert_certificate_refused(wrong.wait_for(Code.PLAY_WARNING_RECONNECT).msg,
                                   str(other))
    finally:
        stop(pusher)
        front.close()
