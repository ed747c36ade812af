"""A real kernel camera in the booted image: vivid, the kernel's virtual V4L2 driver, goes
through the same V4L2 path as a USB camera on a Pi (device node, PyAV's v4l2 demuxer,
ENODEV when it goes away).

On the session's QEMU box (tests/image_machine.py): the camera chosen over MQTT streams
its own picture (vivid's colour bars, read back from the ingest), is unplugged (the driver
unbound, as a USB camera's disconnect does: the node goes away under the open handle) and
the box sends its waiting image on the same RTMP session, then is plugged back and the bars
return, still on that session; and `encoder = "hardware"` on a machine without the Pi's
codec says 1103 and streams with x264.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import numpy as np
import pytest

from edgelive.codes import Code
from tests.image_machine import BOX, STREAM_KEY, Machine, fleet
from tests.servers import Mosquitto, NginxRtmp

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 320, 180
VIVID_DRIVER = "/sys/bus/platform/drivers/vivid"
BARS = ("white", "yellow", "cyan", "green", "magenta", "red", "blue", "black")
"""vivid's default test pattern, 75% colour bars, left to right."""


def picture(nginx: NginxRtmp) -> np.ndarray:
    """One picture of the stream as the ingest relays it, RGB at the stream's own size
    (not scaled: a picture of another size fails here)."""
    done = subprocess.run([
        "ffmpeg", "-v", "error", "-rw_timeout", "20000000", "-i", nginx.url(STREAM_KEY),
        "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, timeout=90)
    assert len(done.stdout) == WIDTH * HEIGHT * 3, done.stderr.decode(errors="replace")
    return np.frombuffer(done.stdout, np.uint8).reshape(HEIGHT, WIDTH, 3)


def bar_colours(image: np.ndarray) -> list[str]:
    """The colour name of each eighth of the picture's lower part (below vivid's text)."""
    names = []
    for index in range(8):
        left = index * WIDTH // 8
        r, g, b = (image[HEIGHT * 2 // 3:HEIGHT - 10, left + 8:left + WIDTH // 8 - 8]
                   .reshape(-1, 3).mean(axis=0))
        high = [value > 100 for value in (r, g, b)]
        names.append({(True, True, True): "white", (True, True, False): "yellow",
                      (False, True, True): "cyan", (False, True, False): "green",
                      (True, False, True): "magenta", (True, False, False): "red",
                      (False, False, True): "blue", (False, False, False): "black"}[tuple(high)])
    return names


@pytest.mark.timeout(900)
def test_a_v4l2_camera_streams_goes_away_and_comes_back_on_the_same_session(
        machine: Machine, servers: tuple[Mosquitto, NginxRtmp]) -> None:
    mosquitto, nginx = servers
    seen: dict[str, list[str]] = {}
    took: dict[str, float] = {}

    async def scenario() -> None:
        async with fleet(mosquitto, machine) as view:
            assert "vivid.0" in machine.sh(f"ls {VIVID_DRIVER}")
            start = len(view.events)
            [outcome] = await view.op.set_config(
                BOX, {"pusher": {"source": "v4l2:/dev/video0"}}, timeout=60)
            assert outcome.report["applied"] is True, outcome.report
            opened = await view.wait_event(Code.PUSH_EVT_OPEN_CAMERA_SUCC, 120, after=start)
            assert "/dev/video0" in opened["msg"], opened
            await view.wait_event(Code.PUSH_EVT_PUSH_BEGIN, 120, after=start)
            machine.mark("pushing the V4L2 camera")
            probe = subprocess.run([
                "ffprobe", "-v", "error", "-rw_timeout", "20000000", "-show_entries",
                "stream=codec_name,width,height", "-of", "json", nginx.url(STREAM_KEY)],
                capture_output=True, text=True, timeout=90)
            assert {"codec_name": "h264", "width": WIDTH, "height": HEIGHT} in \
                json.loads(probe.stdout)["streams"], probe.stderr
            seen["camera"] = bar_colours(picture(nginx))
            sessions = nginx.publishers(STREAM_KEY)

            unplugged, cut = len(view.events), time.monotonic()
            machine.sh(f"echo vivid.0 > {VIVID_DRIVER}/unbind; ! test -e /dev/video0")
            lost = await view.wait_event(Code.PUSH_ERR_OPEN_CAMERA_FAIL, 60, after=unplugged)
            await view.wait_event(Code.WAITING_IMAGE_ON, 60, after=unplugged)
            machine.mark("camera unplugged: waiting image")
            took["waiting image"] = time.monotonic() - cut
            seen["unplugged"] = bar_colours(picture(nginx))

            plugged, back = len(view.events), time.monotonic()
            machine.sh(f"echo vivid.0 > {VIVID_DRIVER}/bind; test -e /dev/video0")
            await view.wait_event(Code.WAITING_IMAGE_OFF, 60, after=plugged)
            machine.mark("camera back")
            took["camera back"] = time.monotonic() - back
            seen["back"] = bar_colours(picture(nginx))
            during = view.codes()[unplugged:]
            # the same RTMP session all along: no new connect, publish or reconnect
            assert not {Code.PUSH_EVT_CONNECT_SUCC, Code.PUSH_EVT_PUSH_BEGIN,
                        Code.PUSH_WARNING_RECONNECT} & set(during), view.events[unplugged:]
            assert nginx.publishers(STREAM_KEY) == sessions
            assert "/dev/video0" in lost["msg"], lost

    asyncio.run(scenario())
    print("seconds from unplug to the waiting image, from plug to the camera: "
          + ", ".join(f"{k} {v:.1f}" for k, v in took.items()))
    assert seen["camera"] == list(BARS), seen
    assert seen["unplugged"] != list(BARS), seen  # the waiting image, not a frozen frame
    assert seen["back"] == list(BARS), seen


@pytest.mark.timeout(600)
def test_hardware_encoder_asked_where_there_is_none_falls_back_to_x264(
        machine: Machine, servers: tuple[Mosquitto, NginxRtmp]) -> None:
    mosquitto, nginx = servers

    async def scenario() -> None:
        async with fleet(mosquitto, machine) as view:
            start = len(view.events)
            [outcome] = await view.op.set_config(BOX, {"pusher": {"encoder": "hardware"}},
                                                 timeout=60)
            assert outcome.report["applied"] is True, outcome.report
            fell_back = await view.wait_event(Code.PUSH_WARNING_HW_ACCELERATION_FAIL, 120,
                                              after=start)
            began = await view.wait_event(Code.PUSH_EVT_PUSH_BEGIN, 120, after=start)
            assert fell_back["detail"]["encoder"] == "libx264", fell_back
            assert began["detail"]["encoder"] == "libx264", began
            machine.mark("hardware asked: x264")

    asyncio.run(scenario())
    assert bar_colours(picture(nginx)) == list(BARS)
