"""RTMP output against real nginx-rtmp: what arrives, and how each failure is classified."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import av
import numpy as np
import pytest

from edgelive.codes import Code
from edgelive.config.presets import AudioPlan, VideoPlan
from edgelive.media.encode import AudioEncoder, PyAvVideoEncoder, StreamParams
from edgelive.media.rtmp_out import PacketSender, PushNetError, RtmpOutput
from tests.flvprobe import probe
from tests.servers import NginxRtmp, free_port, wait_port

PLAN = VideoPlan(320, 180, 30, 15, 200, 800, True)
AUDIO = AudioPlan(16000, 1, 32)


@pytest.fixture
def encoders() -> Iterator[tuple[PyAvVideoEncoder, AudioEncoder]]:
    video, audio = PyAvVideoEncoder(PLAN), AudioEncoder(AUDIO)
    yield video, audio
    video.close()
    audio.close()


def frames(count: int) -> Iterator[tuple[av.VideoFrame, int]]:
    rng = np.random.default_rng(1)
    for i in range(count):
        data = rng.integers(0, 255, (PLAN.height * 3 // 2, PLAN.width), dtype=np.uint8)
        yield av.VideoFrame.from_ndarray(data, format="yuv420p"), i * 1000 // PLAN.fps


def tone(ms: int) -> av.AudioFrame:
    samples = AUDIO.sample_rate * ms // 1000
    pcm = (np.sin(np.arange(samples) * 0.1) * 8000).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate = AUDIO.sample_rate
    return frame


def push(output: RtmpOutput, video: PyAvVideoEncoder, audio: AudioEncoder, count: int) -> None:
    for image, pts in frames(count):
        for packet in video.encode(image, pts):
            output.mux(packet, True)
        for packet in audio.encode(tone(1000 // PLAN.fps), pts):
            output.mux(packet, False)


def open_error(url: str, encoders: tuple[PyAvVideoEncoder, AudioEncoder]) -> PushNetError:
    video, audio = encoders
    output = RtmpOutput(video.params, audio.params)
    with pytest.raises(PushNetError) as info:
        output.open(url)
    output.close()
    return info.value


def test_published_stream_is_h264_and_aac_as_planned(nginx: NginxRtmp, encoders) -> None:
    video, audio = encoders
    output = RtmpOutput(video.params, audio.params)
    output.open(nginx.url("plain"))
    assert nginx.publishers("plain") == 1
    push(output, video, audio, 45)
    output.close()
    output.close()  # safe twice
    result = probe(nginx.recordings("plain")[-1])
    v, a = result.stream("video"), result.stream("audio")
    assert (v["codec_name"], v["width"], v["height"]) == ("h264", 320, 180)
    assert (a["codec_name"], int(a["sample_rate"]), a["channels"]) == ("aac", 16000, 1)
    keys = result.packet_times("video", key_only=True)
    assert keys == pytest.approx([0.0, 0.5, 1.0], abs=0.002)


def test_each_packet_reaches_the_server_when_muxed_not_when_the_other_track_catches_up(
        nginx: NginxRtmp, encoders) -> None:
    """A session with sound sends each video packet at once, although no sound came yet:
    a muxer that interleaves by time would hold every picture until a later one (or later
    sound) arrives, a frame of delay in RTC mode. nginx-rtmp records each frame on arrival."""
    video, audio = encoders
    output = RtmpOutput(video.params, audio.params)
    output.open(nginx.url("prompt"))
    sent = 0
    for image, pts in frames(5):
        for packet in video.encode(image, pts):
            output.mux(packet, True)
            sent += 1
    time.sleep(0.5)
    recorded = probe(nginx.recordings("prompt")[-1]).packet_times("video")
    output.close()
    assert sent == 5
    assert len(recorded) == sent


def test_unknown_host_is_a_dns_failure(encoders) -> None:
    error = open_error("rtmp://nonexistent.invalid/live/secretkey", encoders)
    assert error.code == Code.WARNING_DNS_FAIL
    assert "nonexistent.invalid" in str(error) and "secretkey" not in str(error)


def test_closed_port_is_a_connection_failure(encoders) -> None:
    error = open_error(f"rtmp://127.0.0.1:{free_port()}/live/x", encoders)
    assert error.code == Code.WARNING_SERVER_CONN_FAIL and error.refused
    assert "refused" in str(error).lower()


ATTEMPT_IN_NAMESPACE = """
import json, sys, threading, time
from edgelive.config.presets import AudioPlan, VideoPlan
from edgelive.media.encode import AudioEncoder, PyAvVideoEncoder
from edgelive.media.rtmp_out import PushNetError, RtmpOutput
video = PyAvVideoEncoder(VideoPlan(320, 180, 30, 15, 200, 800, True))
audio = AudioEncoder(AudioPlan(16000, 1, 32))
ticks = [time.monotonic()]
def tick():  # another thread of the process, as capture and the worker's heartbeat are
    while True:
        time.sleep(0.05)
        ticks.append(time.monotonic())
threading.Thread(target=tick, daemon=True).start()
for url in sys.argv[1:]:
    started = time.monotonic()
    try:
        RtmpOutput(video.params, audio.params).open(url)
    except PushNetError as exc:
        stall = max(b - a for a, b in zip(ticks, ticks[1:]))
        print(json.dumps([exc.code, str(exc), exc.refused, time.monotonic() - started, stall]))
"""


@pytest.fixture
def dead_end_namespace() -> Iterator[str]:
    """A network namespace where 10.77.0.2 is on a link but drops every packet (a server
    that is off behind a firewall) and 10.78.0.0/16 has no route at all."""
    if os.geteuid() != 0:
        pytest.skip("needs root for ip netns")
    name = f"elrtmp{os.getpid() % 100000}"
    for argv in (["ip", "netns", "add", name],
                 ["ip", "-n", name, "link", "set", "lo", "up"],
                 ["ip", "-n", name, "link", "add", "dead0", "type", "veth", "peer", "dead1"],
                 ["ip", "-n", name, "addr", "add", "10.77.0.1/24", "dev", "dead0"],
                 ["ip", "-n", name, "link", "set", "dead0", "up"],
                 ["ip", "-n", name, "neigh", "add", "10.77.0.2", "lladdr",
                  "02:00:00:00:00:09", "dev", "dead0", "nud", "permanent"]):
        subprocess.run(argv, check=True, capture_output=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_a_host_that_drops_packets_or_has_no_route_is_a_connection_failure(
        dead_end_namespace: str) -> None:
    """Classified from FFmpeg's own attempt (no probe connection of ours): 3002, and not
    "refused", so the reconnect loop does not retry it quietly in between. The 5 s of
    waiting for a connection do not stop the process's other threads."""
    run = subprocess.run(["ip", "netns", "exec", dead_end_namespace, sys.executable, "-c",
                          ATTEMPT_IN_NAMESPACE, "rtmp://10.77.0.2/live/key",
                          "rtmp://10.78.0.1/live/key"],
                         capture_output=True, text=True, timeout=60)
    (dropped, no_route) = [json.loads(line) for line in run.stdout.splitlines()]
    assert dropped[:3] == [Code.WARNING_SERVER_CONN_FAIL,
                           "cannot connect to 10.77.0.2: connection timed out", False], run
    assert 4.0 <= dropped[3] <= 8.0  # FFmpeg's connect timeout, 5 s
    # meanwhile the rest of the process ran: the GIL is not held while FFmpeg waits
    assert dropped[4] < 1.0, dropped
    assert no_route[:3] == [Code.WARNING_SERVER_CONN_FAIL,
                            "cannot connect to 10.78.0.1: network is unreachable", False], run


def test_http_server_is_a_handshake_failure(encoders) -> None:
    # Its own process: PyAV holds the GIL while it connects.
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "-b", "127.0.0.1",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", port)
        error = open_error(f"rtmp://127.0.0.1:{port}/live/x", encoders)
    finally:
        server.kill()
        server.wait()
    assert error.code == Code.WARNING_SHAKE_FAIL
    assert "handshake" in str(error).lower()


def test_stream_name_in_use_is_rejected_with_the_servers_reason(nginx: NginxRtmp,
                                                                 encoders) -> None:
    video, audio = encoders
    first = RtmpOutput(video.params, audio.params)
    first.open(nginx.url("busy"))
    try:
        error = open_error(nginx.url("busy"), encoders)
    finally:
        first.close()
    assert error.code == Code.PUSH_WARNING_SERVER_DISCONNECT
    assert "Already publishing" in str(error)
    assert "busy" not in str(error)  # the stream key is redacted


@pytest.mark.flaky(reruns=1)
def sending(url: str, video: StreamParams, audio: StreamParams | None
            ) -> tuple[RtmpOutput, PacketSender, list[PushNetError], threading.Event]:
    """A publish to `url` with its sender started: the errors it reports, and an event set
    once its first packet is out."""
    output = RtmpOutput(video, audio)
    output.open(url)
    errors: list[PushNetError] = []
    began = threading.Event()
    sender = PacketSender(output, on_error=errors.append, on_first_packet=began.set)
    sender.start()
    return output, sender, errors, began


def test_server_killed_mid_stream_is_a_broken_socket_in_the_sender(nginx: NginxRtmp,
                                                                   encoders) -> None:
    video, audio = encoders
    output, sender, errors, began = sending(nginx.url("cut"), video.params, audio.params)
    # the relay passes the loss on once the kernel has given up on the server: keep sending
    for sent, (image, pts) in enumerate(frames(1500), start=1):
        for packet in video.encode(image, pts):
            sender.put(packet, True, pts)
        if sent == 10:
            assert began.wait(5)
            nginx.kill()
        if errors:
            break
        time.sleep(0.01)
    sender.stop()
    sender.stop()
    output.close()
    assert [e.code for e in errors] == [Code.PUSH_WARNING_SOCKET_BROKEN]
    assert "EPIPE" in str(errors[0]) or "ECONNRESET" in str(errors[0])


def test_full_queue_drops_video_until_the_next_key_frame(nginx: NginxRtmp, encoders) -> None:
    """A stalled server (SIGSTOP) fills the socket and then the queue; capture is never
    blocked, and video is dropped (counted) instead."""
    _, audio = encoders
    video = PyAvVideoEncoder(VideoPlan(320, 180, 30, 15, 200, 20000, True))  # ~40 kB frames
    output = RtmpOutput(video.params, audio.params)
    output.open(nginx.url("stall"))
    sender = PacketSender(output, on_error=lambda e: None, on_first_packet=lambda: None,
                          max_packets=8)
    sender.start()
    assert nginx.proc is not None
    nginx.proc.send_signal(signal.SIGSTOP)
    try:
        longest_put = 0.0
        for image, pts in frames(1500):
            started = time.monotonic()
            for packet in video.encode(image, pts):
                sender.put(packet, True, pts)
            longest_put = max(longest_put, time.monotonic() - started)
            if sender.stats().dropped_frames > PLAN.gop_frames:
                break
        stats = sender.stats()
    finally:
        nginx.proc.send_signal(signal.SIGCONT)
        sender.stop()
    assert stats.dropped_frames > PLAN.gop_frames
    assert stats.queue_depth == 8 and stats.backlog_ms > 0
    assert longest_put < 0.5  # encode + put never waited for the network


def test_a_stale_drop_asks_for_a_key_frame_and_the_picture_resumes_at_it(
        nginx: NginxRtmp) -> None:
    """A server that stalls for 1.5 s leaves frames queued in the box that are stale when
    it resumes; the sender drops them and asks for a key frame (once), and the picture
    resumes at that key frame, not at the GOP's next one 5 s later. Before any of that it
    said the delay had passed the alarm (the bitrate control ticks at once)."""
    video = PyAvVideoEncoder(VideoPlan(320, 180, 30, 150, 200, 4000, True))
    output = RtmpOutput(video.params, None)
    output.open(nginx.url("stale"))
    asked: list[float] = []
    late: list[float] = []
    sender = PacketSender(output, on_error=lambda e: None, on_first_packet=lambda: None,
                          want_key_frame=lambda: asked.append(time.monotonic()),
                          late_alarm_ms=200, on_late=lambda: late.append(time.monotonic()))
    sender.start()
    assert nginx.proc is not None
    start = time.monotonic()
    wanted = 0
    for n, (image, pts) in enumerate(frames(120)):  # 4 s at 30 fps, in real time
        time.sleep(max(0.0, start + pts / 1000 - time.monotonic()))
        if n == 15:
            nginx.proc.send_signal(signal.SIGSTOP)
        if n == 60:
            nginx.proc.send_signal(signal.SIGCONT)
        if len(asked) > wanted:  # what the pusher's capture thread does
            wanted = len(asked)
            video.force_keyframe()
        for packet in video.encode(image, pts):
            sender.put(packet, True, pts)
    time.sleep(0.5)
    stats = sender.stats()
    sender.stop()
    output.close()
    video.close()
    recorded = probe(nginx.recordings("stale")[-1])
    keys = recorded.packet_times("video", key_only=True)
    after = [t for t in recorded.packet_times("video") if t > 2.0]
    assert len(asked) == 1 and stats.stale_frames > 0
    assert len(late) == 1 and late[0] < asked[0]  # once: the delay stayed up until the drop
    assert len(keys) == 2 and 2.0 < keys[1] < 3.0, keys  # the GOP's next is at 5 s
    assert len(after) >= 25, after  # the picture went on after the stall


def test_an_unexpected_failure_in_the_sender_ends_the_session_instead_of_the_thread(
        nginx: NginxRtmp, encoders, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug below the sender (here mux() raising what it never should) is reported as a
    broken session, which the pusher redoes; a dead thread would leave it 'pushing' into
    a queue nobody empties."""
    video, _ = encoders
    output, sender, errors, began = sending(nginx.url("bug"), video.params, None)
    for sent, (image, pts) in enumerate(frames(60), start=1):
        for packet in video.encode(image, pts):
            sender.put(packet, True, pts)
        if sent == 5:
            assert began.wait(5)
            monkeypatch.setattr(output, "mux", lambda *_: int("not a number"))
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    sender.stop()
    output.close()
    assert [e.code for e in errors] == [Code.PUSH_WARNING_SOCKET_BROKEN]
    assert "sending failed" in str(errors[0]) and "not a number" in str(errors[0])
