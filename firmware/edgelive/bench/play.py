"""`edgelive bench play`: the player's CPU per stream second against FFmpeg's, and its latency.

Two pairs run side by side on one stream, each pair over the same measuring window:
decode — `edgelive play --sink none` (sound to SDL's dummy device) against
`ffmpeg -i URL -f null -` (both decode video and sound); render — `edgelive play --sink
offscreen --muted` against `ffmpeg -an -f sdl` on SDL's offscreen driver with the same
software renderer, both in a window of the stream's size. CPU is read with psutil after a
warm-up, so Python's and FFmpeg's start-up and the stream's open are left out. Without a
URL the bench runs its own nginx-rtmp and publishes a stream carrying the wall-clock stamp
(media/stamp.py) from a PyAV thread, and also measures render latency from the pixels an
in-process player showed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgelive.testbed import NginxRtmp

WARM_UP = 4.0
SIZE = (1280, 720)
"""A kiosk's usual stream (and the pusher bench's size)."""
FPS = 30


def stamped_publisher(url: str, stop: threading.Event, size: tuple[int, int] = (320, 180),
                      fps: int = FPS) -> threading.Thread:
    """A PyAV publisher drawing the wall-clock stamp into each frame as it is made."""
    import av

    from edgelive.media import stamp

    def run() -> None:
        out = av.open(url, "w", format="flv")
        video = out.add_stream("libx264", rate=fps, options={
            "preset": "ultrafast", "tune": "zerolatency", "g": str(fps), "bf": "0"})
        w, h = size
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        yuv = np.full((h * 3 // 2, w), 128, dtype=np.uint8)
        start, n = time.monotonic(), 0
        try:
            while not stop.is_set():
                time.sleep(max(0.0, start + n / fps - time.monotonic()))
                yuv[:h] = 90
                stamp.draw(yuv[:h], time.time_ns() // 1_000_000)
                frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                frame.pts = n
                for packet in video.encode(frame):
                    out.mux(packet)
                n += 1
        finally:
            out.close()

    thread = threading.Thread(target=run, name="stamped-publisher", daemon=True)
    thread.start()
    return thread


def steady_cpu(runs: dict[str, list[str]], seconds: float, env: dict[str, str],
               warm_up: float = WARM_UP) -> dict[str, float]:
    """CPU-s per second of each command, all started together and measured over the same
    window after `warm_up` s."""
    import psutil

    procs = {name: psutil.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, env=env)
             for name, argv in runs.items()}
    try:
        time.sleep(warm_up)
        before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
        time.sleep(seconds)
        after = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
    return {name: (after[name] - before[name]) / seconds for name in runs}


def render_latency(url: str, seconds: float, size: tuple[int, int]) -> dict[str, float]:
    """p50/p95 ms from the stamp in each shown frame to the wall-clock time it was shown."""
    from edgelive.codes import Source
    from edgelive.config.schema import PlayerConfig
    from edgelive.events import EventLog
    from edgelive.hw.display import open_sink
    from edgelive.media import stamp
    from edgelive.player.worker import Player

    ages: list[int] = []
    config = PlayerConfig.model_validate({"src": url, "mode": "RTC", "autoplay": True,
                                          "muted": True})
    sink = open_sink("offscreen", size, fullscreen=False)
    sink.on_present = lambda px, ms: ages.append(stamp.age_ms(stamp.decode(px), ms))
    player = Player(config, sink, EventLog(Source.PLAYER), prefer_hardware=False)
    timer = threading.Timer(WARM_UP, ages.clear)  # leave out the start-up catch-up
    timer.start()
    try:
        player.run(WARM_UP + seconds)
    finally:
        timer.cancel()
        player.close()
    if not ages:
        return {"frames": 0}
    arr = np.array(ages)
    return {"frames": int(arr.size), "p50_ms": float(np.percentile(arr, 50)),
            "p95_ms": float(np.percentile(arr, 95))}


def run_play_bench(url: str, seconds: float = 20.0, size: tuple[int, int] = SIZE,
                   stamped: bool = False) -> dict[str, Any]:
    """The decode and render pairs (CPU-s per stream second, ratios), plus latency when
    `stamped` (then this publishes the stream at `url`, an RTMP server's publish URL)."""
    stop = threading.Event()
    publisher = stamped_publisher(url, stop, size) if stamped else None
    # ffmpeg's SDL window gets what the offscreen sink sets itself: the software renderer
    # with no OpenGL-emulated framebuffer (hw/display.py).
    env = {**os.environ, "SDL_AUDIODRIVER": "dummy", "SDL_VIDEODRIVER": "offscreen",
           "SDL_RENDER_DRIVER": "software", "SDL_FRAMEBUFFER_ACCELERATION": "0"}
    player = [sys.executable, "-m", "edgelive", "play", url, "--mode", "RTC",
              "--decoder", "software", "--screen-size", f"{size[0]}x{size[1]}"]
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-fflags", "nobuffer", "-i", url]
    try:
        if publisher is not None:
            time.sleep(1.0)
        decode = steady_cpu({"player": [*player, "--sink", "none"],
                             "ffmpeg": [*ffmpeg, "-f", "null", "-"]}, seconds, env)
        render = steady_cpu({"player": [*player, "--sink", "offscreen", "--muted"],
                             "ffmpeg": [*ffmpeg, "-an", "-f", "sdl", "-window_size",
                                        f"{size[0]}x{size[1]}", "edgelive"]}, seconds, env)
        report: dict[str, Any] = {"seconds": seconds, "size": size}
        for name, pair in (("decode", decode), ("render", render)):
            report[name] = {**pair, "ratio": pair["player"] / max(pair["ffmpeg"], 1e-6)}
        # the yardstick: the player's decode+render next to FFmpeg decoding to null
        report["render_vs_null"] = render["player"] / max(decode["ffmpeg"], 1e-6)
        if publisher is not None:
            report["latency"] = render_latency(url, min(seconds, 10.0), size)
    finally:
        stop.set()
        if publisher is not None:
            publisher.join(5)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"play bench, {report['size'][0]}x{report['size'][1]}, "
             f"{report['seconds']:.0f} s steady state (CPU-s per stream second):"]
    for name, label in (("decode", "decode  (sink none vs ffmpeg -f null)"),
                        ("render", "render  (offscreen vs ffmpeg -f sdl)")):
        pair = report[name]
        lines.append(f"  {label}: player {pair['player']:.3f}, ffmpeg {pair['ffmpeg']:.3f}, "
                     f"ratio {pair['ratio']:.2f}x")
    lines.append(f"  decode+render vs ffmpeg -f null: ratio {report['render_vs_null']:.2f}x")
    latency = report.get("latency")
    if latency and latency.get("frames"):
        lines.append(f"  render latency p50 {latency['p50_ms']:.0f} ms, "
                     f"p95 {latency['p95_ms']:.0f} ms over {latency['frames']} frames")
    return "\n".join(lines)


def format_medians(reports: list[dict[str, Any]]) -> str:
    """Median and range of each ratio over several runs."""
    lines = [f"over {len(reports)} runs:"]
    for name, pick in (("decode", lambda r: r["decode"]["ratio"]),
                       ("render", lambda r: r["render"]["ratio"]),
                       ("decode+render vs null", lambda r: r["render_vs_null"])):
        ratios = [pick(r) for r in reports]
        lines.append(f"  {name}: median {float(np.median(ratios)):.2f}x "
                     f"(range {min(ratios):.2f}-{max(ratios):.2f})")
    return "\n".join(lines)


def run(url: str | None, seconds: float, size: tuple[int, int], runs: int) -> str:
    """Prints `runs` reports and returns their medians; without `url`, on a private
    nginx-rtmp with a stamped stream (which adds render latency)."""
    with contextlib.ExitStack() as stack:
        if url is None:
            nginx = NginxRtmp(Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="edgelive-bench-"))) / "nginx")
            nginx.start()
            stack.callback(nginx.stop)
        reports = []
        for n in range(runs):
            target = url or nginx.url(f"play{n}")
            reports.append(run_play_bench(target, seconds, size, stamped=url is None))
            print(format_report(reports[-1]), flush=True)
    return format_medians(reports) if runs > 1 else ""
