"""Pause without reconnecting, display presence (fake sysfs), and backup-src."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edgelive.codes import Code
from edgelive.hw.display_status import DisplayStatus, DisplayWatcher, read_status
from tests.servers import NginxRtmp, free_port
from tests.test_player_e2e import ffmpeg_http_flv, ffmpeg_push, play, players, stop  # noqa: F401


def is_slate(pixels: np.ndarray) -> bool:
    """The grey "connecting"/"unavailable" slate, not a picture (testsrc2 is colourful)."""
    return float(pixels.std()) < 25 and abs(float(pixels.mean()) - 40) < 15


@pytest.mark.slow
def test_pause_keeps_the_connection_and_picture_resume_is_live_within_a_gop(
        nginx: NginxRtmp, players) -> None:  # noqa: F811
    shown: list[tuple[float, np.ndarray]] = []
    pusher = ffmpeg_push(nginx.url("cam"), audio=False)
    try:
        p = play(players, nginx.url("cam"), screen_size="320x180",
                 on_present=lambda px, ms: shown.append((time.monotonic(), px)))
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        time.sleep(1.0)
        assert p.player is not None and p.player.main is not None
        assert p.player.request("pause")["result"]["state"] == "paused"
        paused_at = time.monotonic()
        bytes_at_pause = p.player.main.feed.bytes_received
        time.sleep(2.0)
        during = [px for t, px in shown if t > paused_at + 0.2]
        assert len(during) <= 2, "a paused player does not keep drawing new pictures"
        assert p.player.main.feed.bytes_received > bytes_at_pause  # still connected
        resumed_at = time.monotonic()
        assert p.player.request("resume")["result"]["state"] == "playing"
        time.sleep(2.0)
    finally:
        stop(pusher)
    after = [(t, px) for t, px in shown if t > resumed_at]
    assert after and after[0][0] - resumed_at < 1.3, "live again within a GOP (1 s)"
    assert len(after) > 15  # moving again at about 25 fps
    assert not any(is_slate(px) for _, px in shown[1:])
    assert p.codes().count(Code.PLAY_EVT_CONNECT_SUCC) == 1
    assert Code.PLAY_WARNING_RECONNECT not in p.codes()


def fake_drm(root: Path, status: str, dpms: str) -> None:
    for name, st in (("card0-HDMI-A-1", status), ("card0-HDMI-A-2", "disconnected")):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "status").write_text(st + "\n")
        (root / name / "dpms").write_text((dpms if st == "connected" else "Off") + "\n")
    (root / "card0").mkdir(exist_ok=True)  # the card itself is not a connector


def test_display_status_from_sysfs_and_watcher_reports_changes(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None  # no connectors: nothing to watch
    fake_drm(tmp_path, "connected", "On")
    assert read_status(tmp_path) == DisplayStatus(plugged=True, on=True)
    seen: list[DisplayStatus] = []
    with DisplayWatcher(seen.append, root=tmp_path, interval=0.05):
        time.sleep(0.2)
        fake_drm(tmp_path, "connected", "Standby")
        time.sleep(0.2)
        fake_drm(tmp_path, "disconnected", "Off")
        time.sleep(0.2)
    assert seen == [DisplayStatus(True, True), DisplayStatus(True, False),
                    DisplayStatus(False, False)]


@pytest.mark.slow
def test_display_off_pauses_and_mutes_then_resumes_without_reconnect(
        nginx: NginxRtmp, players, monkeypatch) -> None:  # noqa: F811
    from edgelive.hw.speaker import Speaker

    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    pusher = ffmpeg_push(nginx.url("cam"))
    try:
        p = play(players, nginx.url("cam"), background_mute=True,
                 auto_pause_if_open_native=False, speaker=lambda: Speaker("speaker"))
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        player = p.player
        assert player is not None
        player.display_changed(DisplayStatus(plugged=True, on=True))
        time.sleep(0.3)
        player.display_changed(DisplayStatus(plugged=True, on=False))  # standby
        p.wait_for(Code.DISPLAY_OFF, timeout=5)
        state = player.request("mute", muted=False)["result"]
        assert state["state"] == "playing" and state["audible"] is False  # background-mute
        player.display_changed(DisplayStatus(plugged=False, on=False))  # unplugged
        time.sleep(0.3)
        assert player.play_state() == "paused"  # auto-pause-if-navigate
        player.display_changed(DisplayStatus(plugged=True, on=True))
        p.wait_for(Code.DISPLAY_ON, timeout=5)
        time.sleep(0.3)
        state = player.state()
        assert state["state"] == "playing" and state["audible"] is True
    finally:
        stop(pusher)
    assert p.codes().count(Code.PLAY_EVT_CONNECT_SUCC) == 1


@pytest.mark.slow
def test_backup_src_plays_while_src_is_unreachable_and_src_takes_over_again(
        nginx: NginxRtmp, players) -> None:  # noqa: F811
    shown: list[tuple[float, np.ndarray]] = []
    port = free_port()
    backup = ffmpeg_push(nginx.url("backup"), audio=False)
    server = None
    try:
        p = play(players, f"http://127.0.0.1:{port}/live.flv", backup_src=nginx.url("backup"),
                 screen_size="320x180",
                 reconnect={"attempts": 2, "first-delay": 0.2, "max-delay": 1.0},
                 on_present=lambda px, ms: shown.append((time.monotonic(), px)))
        p.wait_for(Code.PLAY_ERR_NET_DISCONNECT)
        on = p.wait_for(Code.PLAY_BACKUP_ON, timeout=5)
        begin = p.wait_for(Code.PLAY_EVT_PLAY_BEGIN, timeout=15)
        assert begin.detail["role"] == "backup" and begin.seq > on.seq
        time.sleep(1.0)
        assert p.player is not None and p.player.play_state() == "playing"
        assert not is_slate(shown[-1][1])
        server = ffmpeg_http_flv(port)  # src comes back
        off = p.wait_for(Code.PLAY_BACKUP_OFF, timeout=15)
        mains = [e for e in p.events if e.code == Code.PLAY_EVT_PLAY_BEGIN
                 and e.detail["role"] == "main"]
        assert mains and mains[0].seq < off.seq
        time.sleep(0.5)
        assert p.player.backup is None and p.player.state()["feed"] == "playing"
    finally:
        stop(backup)
        if server is not None:
            stop(server)


def test_render_loop_wakes_about_once_per_picture(nginx: NginxRtmp, players) -> None:  # noqa: F811
    """A picture queued for later is taken when the loop wakes for the one before it: the
    feed does not wake the loop for each arrival as well (CPU: one wake-up per picture)."""
    shown: list[int] = []
    pusher = ffmpeg_push(nginx.url("wakes"), audio=False)
    try:
        p = play(players, nginx.url("wakes"), on_present=lambda px, ms: shown.append(ms))
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        time.sleep(1.0)
        assert p.player is not None
        wakes: list[float] = []
        wait = p.player._wake.wait

        def counted(timeout: float | None = None) -> bool:
            wakes.append(time.monotonic())
            return wait(timeout)

        p.player._wake.wait = counted  # type: ignore[method-assign]
        before = len(shown)
        time.sleep(3.0)
        pictures = len(shown) - before
    finally:
        stop(pusher)
    assert pictures >= 60, pictures  # 25 fps
    assert len(wakes) <= 1.25 * pictures, (len(wakes), pictures)
