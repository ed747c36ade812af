"""Player warnings produced for real: a server that stalls (2007, 2104, 2105), a player
starved of CPU (2105) and a stream whose sound cannot be decoded (2102)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest

from edgelive.codes import Code
from tests.relay import Relay
from tests.servers import NginxRtmp
from tests.test_player_e2e import ffmpeg_push, play, players, stop  # noqa: F401
from tests.test_player_worker import WorkerProc, workers  # noqa: F401

STALL = 1.5
"""How long the relay holds the stream back (s): past the lag thresholds (0.5 s), under the
read timeout (3 s) that would make it a reconnect."""


@pytest.fixture
def relay(nginx: NginxRtmp) -> Iterator[Relay]:
    r = Relay((nginx.host, nginx.port))
    yield r
    r.close()


def test_a_stalled_server_is_loading_then_recv_and_play_lag_then_plays_on(
        nginx: NginxRtmp, relay: Relay, players) -> None:  # noqa: F811
    shown: list[float] = []
    pusher = ffmpeg_push(nginx.url("cam"), audio=False)
    try:
        p = play(players, f"rtmp://127.0.0.1:{relay.port}/live/cam",
                 on_present=lambda px, ms: shown.append(time.monotonic()))
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        time.sleep(1.0)
        assert not {2007, 2104, 2105} & set(p.codes()), "a steady stream has no lag"
        relay.hold()
        held = time.monotonic()
        time.sleep(STALL)
        relay.release()
        time.sleep(1.5)
    finally:
        stop(pusher)
    loading = p.wait_for(Code.PLAY_EVT_PLAY_LOADING, timeout=1)
    recv_lag = p.wait_for(Code.PLAY_WARNING_RECV_DATA_LAG, timeout=1)
    play_lag = p.wait_for(Code.PLAY_WARNING_VIDEO_PLAY_LAG, timeout=1)
    assert loading.seq < play_lag.seq  # SPEC §4: stall → 2007, then 2105/2104
    assert recv_lag.detail["lag_ms"] >= 500 and play_lag.detail["lag_ms"] >= 500
    for code in (2007, 2104, 2105):
        assert p.codes().count(code) == 1, f"one {code} per stall: {p.codes()}"
    assert Code.PLAY_WARNING_RECONNECT not in p.codes()
    assert p.codes().count(Code.PLAY_EVT_CONNECT_SUCC) == 1
    frozen = [t for t in shown if held + 0.3 < t < held + STALL - 0.1]
    assert not frozen, "nothing new to show while the server stalls"
    assert len([t for t in shown if t > held + STALL + 0.5]) > 15  # playing again


def test_a_player_starved_of_cpu_reports_play_lag_and_plays_on(
        nginx: NginxRtmp, workers) -> None:  # noqa: F811
    pusher = ffmpeg_push(nginx.url("cam"), audio=False)
    try:
        w = WorkerProc({"src": nginx.url("cam"), "autoplay": True, "mode": "RTC",
                        "sink": "offscreen", "screen-size": "320x180"})
        workers.append(w)
        w.wait_line({"type": "event", "code": 2004}, timeout=20)
        time.sleep(1.0)
        w.proc.send_signal(signal.SIGSTOP)  # the worker gets no CPU for 1.2 s
        time.sleep(1.2)
        w.proc.send_signal(signal.SIGCONT)
        lag = w.wait_line({"type": "event", "code": Code.PLAY_WARNING_VIDEO_PLAY_LAG}, timeout=5)
        assert lag["detail"]["lag_ms"] >= 1000
        time.sleep(1.5)
    finally:
        stop(pusher)
    assert Code.PLAY_WARNING_RECONNECT not in w.codes()
    assert [line for line in w.lines if line["type"] == "netstatus"][-1]["videoFPS"] >= 15


def test_undecodable_sound_is_audio_decode_fail_and_pictures_go_on(
        nginx: NginxRtmp, players, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The garbled stream's player says 2102 and shows its pictures; then the clean one,
    on the same (dummy) sound device, does not. SDL's dummy driver opens one output device
    at a time, so the two play one after the other."""
    from edgelive.hw.speaker import Speaker

    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    frames: list[np.ndarray] = []
    # the noise bitstream filter garbles the AAC packets on their way into the FLV
    pusher = ffmpeg_push(nginx.url("noisy"), extra=("-bsf:a", "noise=amount=20"))
    clean = ffmpeg_push(nginx.url("clean"))
    try:
        p = play(players, nginx.url("noisy"), speaker=lambda: Speaker("speaker"),
                 on_present=lambda px, ms: frames.append(px))
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        fail = p.wait_for(Code.PLAY_WARNING_AUDIO_DECODE_FAIL, timeout=5)
        assert "audio decode failed" in fail.msg
        before = len(frames)
        time.sleep(2.0)
        p.close()
        good = play(players, nginx.url("clean"), speaker=lambda: Speaker("speaker"))
        good.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        time.sleep(3.0)
    finally:
        stop(pusher)
        stop(clean)
    assert len(frames) - before > 30  # the pictures are unaffected
    assert Code.PLAY_WARNING_VIDEO_DECODE_FAIL not in p.codes()
    assert Code.AUDIO_DEVICE_FAIL not in p.codes() + good.codes()  # both had the device
    assert Code.PLAY_WARNING_AUDIO_DECODE_FAIL not in good.codes()
