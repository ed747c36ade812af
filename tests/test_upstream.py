"""The push's own connection to the server (media.upstream): rtmps:// through a TLS front,
and TCP_INFO readings over a tbf-shaped uplink with `tcp_notsent_lowat` unset."""

from __future__ import annotations

import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from edgelive.bench.netlab import ShapedLink
from edgelive.media.rtmp_out import RtmpOutput
from edgelive.media.upstream import CHUNK, NOTSENT_LOWAT, queued, server_tc_url
from tests.flvprobe import probe
from tests.relay import Relay
from tests.servers import NginxRtmp
from tests.test_player_e2e import self_signed
from tests.test_rtmp_out import encoders, push  # noqa: F401  (fixture)


def test_rtmps_publishes_through_a_tls_front(nginx: NginxRtmp, encoders,  # noqa: F811
                                            tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    front = Relay((nginx.host, nginx.port), tls=tls)
    video, audio = encoders
    output = RtmpOutput(video.params, audio.params)
    try:
        output.open(f"rtmps://127.0.0.1:{front.port}/live/secure")
        push(output, video, audio, 45)
        readings = output.readings()
        output.close()
    finally:
        front.close()
    assert readings is not None and readings.acked_bytes > 10_000, readings
    result = probe(nginx.recordings("secure")[-1])
    assert result.stream("video")["codec_name"] == "h264"
    assert len(nginx.recordings("secure")) == 1
    # the server is told the address the box published to, not the relay's loopback one
    assert nginx.published()[-1]["tcurl"] == f"rtmps://127.0.0.1:{front.port}/live"


def test_the_server_sees_the_urls_own_tcurl_and_stream_name(nginx: NginxRtmp,
                                                            encoders) -> None:  # noqa: F811
    video, audio = encoders
    output = RtmpOutput(video.params, audio.params)
    output.open(nginx.url("named?token=abc"))
    push(output, video, audio, 10)
    output.close()
    announced = nginx.published()[-1]
    assert announced["tcurl"] == f"rtmp://127.0.0.1:{nginx.port}/live", announced
    assert (announced["app"], announced["name"], announced["token"]) == ("live", "named", "abc")
    assert server_tc_url("rtmp://example.com/app/instance/key") == \
        "rtmp://example.com:1935/app/instance"
    assert server_tc_url("rtmps://[::1]/live/key") == "rtmps://[::1]:443/live"


PUSH_IN_NAMESPACE = """
import json, sys, time
import av, numpy as np
from edgelive.config.presets import VideoPlan
from edgelive.media.encode import PyAvVideoEncoder
from edgelive.media.rtmp_out import RtmpOutput
print(json.dumps(open("/proc/sys/net/ipv4/tcp_notsent_lowat").read().strip()), flush=True)
video = PyAvVideoEncoder(VideoPlan(320, 180, 30, 30, 800, 800, True))
output = RtmpOutput(video.params, None)
output.open(sys.argv[1])
rng = np.random.default_rng(1)
started = last = time.monotonic()
i = 0
while time.monotonic() - started < float(sys.argv[2]):
    noise = rng.integers(0, 255, (270, 320), dtype=np.uint8)  # ~800 kbit/s, past the link
    for packet in video.encode(av.VideoFrame.from_ndarray(noise, format="yuv420p"), i * 33):
        output.mux(packet, True)
    i += 1
    time.sleep(max(0.0, started + i / 30 - time.monotonic()))
    if time.monotonic() - last >= 0.5:
        last = time.monotonic()
        print(json.dumps(output.readings().__dict__), flush=True)
output.close()
"""
LINK_KBPS = 400


@pytest.mark.slow
@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.flaky(reruns=1)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for ip netns, veth and tc")
def test_readings_over_a_shaped_link_without_the_sysctl(tmp_path: Path) -> None:
    """Pushing twice what a 400 kbit/s link carries: the socket holds little unsent data
    (the per-socket option does what the sysctl did), and the readings say what the link
    carries and how long the path takes."""
    with ShapedLink(tmp_path, kbps=LINK_KBPS) as link:
        run = subprocess.run(link.box_argv([sys.executable, "-c", PUSH_IN_NAMESPACE,
                                            link.box_url("readings"), "10"]),
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    sysctl, readings = lines[0], lines[1:]
    assert int(sysctl) > 1 << 30, sysctl  # unset: the kernel's default, UINT_MAX
    assert len(readings) >= 6, readings
    # The kernel holds about the low-water mark past what it sends, plus the relay's chunk
    # and the small loopback hop: tens of KB at most (measured 45–66 KB), not the
    # megabytes a socket takes by default.
    assert max(r["unsent_bytes"] for r in readings) <= NOTSENT_LOWAT + 20 * CHUNK, readings
    late = readings[len(readings) // 3:]
    seconds = late[-1]["at"] - late[0]["at"]
    acked_kbps = (late[-1]["acked_bytes"] - late[0]["acked_bytes"]) * 8 / 1000 / seconds
    assert 0.7 * LINK_KBPS <= acked_kbps <= 1.05 * LINK_KBPS, (acked_kbps, readings)
    delivery = statistics.median(r["delivery_kbps"] for r in late)
    assert 0.5 * LINK_KBPS <= delivery <= 1.5 * LINK_KBPS, (delivery, readings)
    for r in late:
        assert 0 < r["min_rtt_ms"] <= r["rtt_ms"] < 3000, r
    # what FFmpeg handed the relay is the media plus its framing: a few % more
    relayed = late[-1]["relayed_bytes"] - late[0]["relayed_bytes"]
    assert relayed * 8 / 1000 / seconds <= 1.3 * LINK_KBPS, readings


def test_queue_readings_of_a_loopback_socket_closed_meanwhile_are_zero() -> None:
    """The sender reads the loopback hop's queues while the relay thread may be closing it
    (the server went away): that reading is 0, not an exception in the sending thread."""
    relay_end, ffmpeg_end = socket.socketpair()
    ffmpeg_end.sendall(b"flv tag")
    assert queued(relay_end, termios.FIONREAD) == 7
    relay_end.close()
    assert queued(relay_end, termios.FIONREAD) == 0
    ffmpeg_end.close()
