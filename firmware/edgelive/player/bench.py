"""`edgelive bench play`: the player's CPU per stream second against FFmpeg's, and latency.

Both run at the same time on the same stream: `ffmpeg -i URL -f null -` (decode only, the
floor) and `edgelive play URL` (decode + pace + render). Render latency needs a stream
carrying the wall-clock stamp (media/stamp.py); it is measured in-process from the pixels
the offscreen sink showed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np


def _cpu_seconds(argv: list[str], seconds: float, env: dict[str, str]) -> float:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env)
    try:
        _, _, usage = os.wait4(proc.pid, 0) if seconds <= 0 else _wait_then_stop(proc, seconds)
    finally:
        if proc.poll() is None:
            proc.kill()
    return usage.ru_utime + usage.ru_stime


def _wait_then_stop(proc: subprocess.Popen[bytes], seconds: float) -> tuple[int, int, Any]:
    time.sleep(seconds)
    proc.terminate()
    return os.wait4(proc.pid, 0)


def render_latency(url: str, seconds: float, sink: str = "offscreen") -> dict[str, float]:
    """p50/p95 ms from stamp in the shown frame to the wall-clock time it was shown."""
    from edgelive.codes import Source
    from edgelive.config.schema import PlayerConfig
    from edgelive.events import EventLog
    from edgelive.hw.display import open_sink
    from edgelive.media import stamp
    from edgelive.player.worker import Player

    ages: list[int] = []
    config = PlayerConfig.model_validate({"src": url, "mode": "RTC", "autoplay": True,
                                          "muted": True, "screen-size": "640x360"})
    sink_obj = open_sink(sink, (640, 360), fullscreen=False)
    sink_obj.on_present = lambda px, ms: ages.append(stamp.age_ms(stamp.decode(px), ms))
    player = Player(config, sink_obj, EventLog(Source.PLAYER))
    threading.Timer(1.0, ages.clear).start()  # leave out the start-up catch-up
    try:
        player.run(seconds + 1.0)
    finally:
        player.close()
    if not ages:
        return {"frames": 0}
    arr = np.array(ages)
    return {"frames": int(arr.size), "p50_ms": float(np.percentile(arr, 50)),
            "p95_ms": float(np.percentile(arr, 95))}


def run_play_bench(url: str, seconds: float = 20.0, sink: str = "offscreen",
                   stamped: bool = False) -> dict[str, Any]:
    """CPU-s per stream second of the player and of `ffmpeg -f null`, run side by side."""
    env = {**os.environ, "SDL_AUDIODRIVER": os.environ.get("SDL_AUDIODRIVER", "dummy")}
    results: dict[str, float] = {}
    runs = {
        "ffmpeg": ["ffmpeg", "-loglevel", "error", "-fflags", "nobuffer", "-i", url,
                   "-f", "null", "-"],
        "player": [sys.executable, "-m", "edgelive", "play", url, "--sink", sink,
                   "--mode", "RTC", "--muted", "--duration", str(seconds + 1)],
    }
    threads = [threading.Thread(target=lambda k=k, a=a: results.__setitem__(
        k, _cpu_seconds(a, seconds, env))) for k, a in runs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report: dict[str, Any] = {
        "seconds": seconds,
        "ffmpeg_cpu_per_s": results["ffmpeg"] / seconds,
        "player_cpu_per_s": results["player"] / seconds,
        "ratio": results["player"] / max(results["ffmpeg"], 1e-6),
    }
    if stamped:
        report["latency"] = render_latency(url, min(seconds, 10.0), sink)
    return report


def print_play_bench(report: dict[str, Any]) -> None:
    print(f"play bench over {report['seconds']:.0f} s: player "
          f"{report['player_cpu_per_s']:.3f} CPU-s/s, ffmpeg {report['ffmpeg_cpu_per_s']:.3f} "
          f"CPU-s/s, ratio {report['ratio']:.2f}x (target <= 1.2x)")
    latency = report.get("latency")
    if latency and latency.get("frames"):
        print(f"render latency p50 {latency['p50_ms']:.0f} ms, p95 {latency['p95_ms']:.0f} ms "
              f"over {latency['frames']} frames")
