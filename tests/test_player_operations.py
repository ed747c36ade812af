"""The player's operations end to end: stop, play another src, full screen and back,
picture-in-picture. Streams of plain, distinct colours are pushed into nginx-rtmp, so the
pixels read back from the offscreen sink say which stream is shown where."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from edgelive.codes import Code
from tests.servers import NginxRtmp
from tests.test_player_e2e import PlayerThread, ffmpeg_push, play, players, stop  # noqa: F401

RED, BLUE, BLACK = (255, 0, 0), (0, 0, 255), (0, 0, 0)


class Screen:
    """What the sink showed, with the time of each picture."""

    def __init__(self) -> None:
        self.shown: list[tuple[float, np.ndarray]] = []
        self._lock = threading.Lock()

    def __call__(self, pixels: np.ndarray, ms: int) -> None:
        with self._lock:
            self.shown.append((time.monotonic(), pixels))

    @property
    def last(self) -> np.ndarray:
        with self._lock:
            return self.shown[-1][1]

    def count_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for when, _ in self.shown if when > t)

    def wait_for(self, check: Callable[[np.ndarray], bool], timeout: float = 10.0) -> np.ndarray:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.shown and check(self.last):
                return self.last
            time.sleep(0.05)
        raise AssertionError(f"the screen never matched; last centre {colour(self.last)}")


def colour(pixels: np.ndarray, x: int = 160, y: int = 90) -> tuple[int, int, int]:
    """Mean colour of a 9x9 patch around (x, y)."""
    patch = pixels[y - 4:y + 5, x - 4:x + 5].reshape(-1, 3).mean(axis=0)
    return tuple(int(v) for v in patch)  # type: ignore[return-value]


def near(actual: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 40
         ) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def viewers(nginx: NginxRtmp, name: str) -> int:
    """Clients playing (not publishing) stream `name` on nginx-rtmp."""
    return sum(1 for stream in nginx.stat().iter("stream") if stream.findtext("name") == name
               for c in stream.iter("client") if c.find("publishing") is None)


def test_stop_closes_the_stream_and_shows_the_idle_screen(nginx: NginxRtmp, players) -> None:  # noqa: F811
    screen = Screen()
    pusher = ffmpeg_push(nginx.url("red"), audio=False, colour="red")
    try:
        p = play(players, nginx.url("red"), on_present=screen)
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        screen.wait_for(lambda px: near(colour(px), RED))
        assert viewers(nginx, "red") == 1
        assert p.player is not None
        response = p.player.request("stop")
        assert response["ok"] and response["result"]["state"] == "stopped"
        stopped = p.wait_for(Code.PLAY_STOPPED)
        idle = screen.wait_for(lambda px: float(px.max()) < 20, timeout=5)
        assert idle.shape == (180, 320, 3)
        settled = time.monotonic()
        time.sleep(1.5)
        assert screen.count_since(settled) == 0, "no pictures after stop"
        assert viewers(nginx, "red") == 0, "the connection is closed"
        assert not [e for e in p.events if e.seq > stopped.seq and e.code in
                    (Code.PLAY_WARNING_RECONNECT, Code.PLAY_EVT_PLAY_BEGIN)]
        assert p.player.play_state() == "stopped"
    finally:
        stop(pusher)


def test_play_with_a_new_src_switches_streams(nginx: NginxRtmp, players) -> None:  # noqa: F811
    screen = Screen()
    red = ffmpeg_push(nginx.url("red"), audio=False, colour="red")
    blue = ffmpeg_push(nginx.url("blue"), audio=False, colour="blue")
    try:
        p = play(players, nginx.url("red"), on_present=screen)
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        screen.wait_for(lambda px: near(colour(px), RED))
        assert p.player is not None
        response = p.player.request("play", src=nginx.url("blue"))
        assert response["ok"] and response["result"]["src"] == nginx.url("blue")
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN, count=2)
        screen.wait_for(lambda px: near(colour(px), BLUE), timeout=5)
        time.sleep(1.0)
        assert near(colour(screen.last), BLUE)
        assert viewers(nginx, "red") == 0 and viewers(nginx, "blue") == 1
    finally:
        stop(red)
        stop(blue)


def test_full_screen_and_back_to_the_layout_box(nginx: NginxRtmp, players) -> None:  # noqa: F811
    screen = Screen()
    pusher = ffmpeg_push(nginx.url("red"), audio=False, colour="red")
    in_box, outside = (40, 22), (240, 135)  # layout box: the top-left quarter
    try:
        p = play(players, nginx.url("red"), layout=[0, 0, 160, 90], on_present=screen)
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        boxed = screen.wait_for(lambda px: near(colour(px, *in_box), RED))
        assert near(colour(boxed, *outside), BLACK)
        assert p.player is not None
        assert p.player.request("requestFullScreen")["result"]["fullscreen"] is True
        full = screen.wait_for(lambda px: near(colour(px, *outside), RED), timeout=5)
        assert near(colour(full, *in_box), RED)
        entered = p.wait_for(Code.PLAY_FULLSCREEN_CHANGE)
        assert entered.detail == {"fullScreen": True, "direction": "horizontal"}
        assert p.player.request("exitFullScreen")["result"]["fullscreen"] is False
        screen.wait_for(lambda px: near(colour(px, *outside), BLACK), timeout=5)
        left = p.wait_for(Code.PLAY_FULLSCREEN_CHANGE, count=2)
        assert left.detail["fullScreen"] is False
        assert near(colour(screen.last, *in_box), RED)
        p.player.request("exitFullScreen")  # already out: nothing changes
        time.sleep(0.3)
        assert p.codes().count(Code.PLAY_FULLSCREEN_CHANGE) == 2
    finally:
        stop(pusher)


def test_picture_in_picture_shows_a_second_live_stream_in_its_corner(
        nginx: NginxRtmp, players) -> None:  # noqa: F811
    screen = Screen()
    red = ffmpeg_push(nginx.url("red"), audio=False, colour="red")
    blue = ffmpeg_push(nginx.url("blue"), audio=False, colour="blue")
    pip_centre = (256, 137)  # bottom-right: 96x54 at (208, 110)
    try:
        p = play(players, nginx.url("red"), pip_src=nginx.url("blue"),
                 picture_in_picture_mode="bottom-right", on_present=screen)
        shown = screen.wait_for(lambda px: near(colour(px, *pip_centre), BLUE)
                                and near(colour(px), RED), timeout=15)
        assert near(colour(shown, 60, 40), RED)
        roles = {e.detail["role"] for e in p.events if e.code == Code.PLAY_EVT_PLAY_BEGIN}
        assert roles == {"main", "pip"}
        time.sleep(2.5)
        assert p.player is not None
        assert p.player.netstatus["pip"]["videoFPS"] >= 15  # live, not one still picture
        assert viewers(nginx, "blue") == 1
        assert near(colour(screen.last, *pip_centre), BLUE)
    finally:
        stop(red)
        stop(blue)
