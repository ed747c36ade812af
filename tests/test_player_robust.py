"""Corrupt and discontinuous input: warnings, recovery at the next key frame, no crash."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time

from edgelive.codes import Code
from tests.servers import free_port
from tests.test_player_e2e import play, players  # noqa: F401


def corrupting_flv_server(port: int, seconds: float = 8) -> threading.Thread:
    """Serves ffmpeg's FLV over HTTP; garbles video payloads at 2 s, jumps timestamps at 4 s."""
    listener = socket.create_server(("127.0.0.1", port))

    def run() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/x-flv\r\n\r\n")
        src = subprocess.Popen(
            ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi",
             "-i", f"testsrc2=size=320x180:rate=25:duration={seconds}", "-c:v", "libx264",
             "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-f", "flv", "-"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert src.stdout is not None
        try:
            conn.sendall(src.stdout.read(13))  # FLV header + first PreviousTagSize
            while header := src.stdout.read(11):
                kind, size = header[0], int.from_bytes(header[1:4], "big")
                ts = int.from_bytes(header[4:7], "big") | header[7] << 24
                body = bytearray(src.stdout.read(size + 4))
                if kind == 9 and 2000 <= ts < 2400 and size > 60:
                    body[40:size - 8] = bytes(size - 48)  # garble the slice data
                if ts >= 4000:
                    ts += 30_000  # a discontinuity: timestamps jump 30 s
                header = bytes([kind]) + header[1:4] + (ts & 0xFFFFFF).to_bytes(3, "big") \
                    + struct.pack("B", ts >> 24) + header[8:]
                conn.sendall(header + bytes(body))
        except OSError:
            pass
        finally:
            src.kill()
            conn.close()
            listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_corrupt_data_and_timestamp_jump_recover(players) -> None:  # noqa: F811
    port = free_port()
    corrupting_flv_server(port)
    shown: list[int] = []
    p = play(players, f"http://127.0.0.1:{port}/live.flv",
             on_present=lambda px, ms: shown.append(ms))
    p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
    p.wait_for(Code.PLAY_WARNING_VIDEO_DECODE_FAIL, timeout=10)
    p.wait_for(Code.PLAY_WARNING_VIDEO_DISCONTINUITY, timeout=10)
    decode_fail = p.wait_for(Code.PLAY_WARNING_VIDEO_DECODE_FAIL).ts
    jump = p.wait_for(Code.PLAY_WARNING_VIDEO_DISCONTINUITY).ts
    time.sleep(1.5)
    # pictures kept coming after each fault (recovered at the next key frame)
    assert any(decode_fail + 300 < ms < jump for ms in shown)
    assert len([ms for ms in shown if ms > jump + 200]) > 10
    assert p.player is not None and p.player.netstatus["videoFPS"] > 10
