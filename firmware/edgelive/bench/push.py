"""`edgelive bench push`: the pusher's CPU cost against the ffmpeg CLI, and its latency.

(a) CPU seconds per stream second at 720p30 (RTC: libx264 ultrafast/zerolatency, 1 Mbit/s,
1 s GOP, silent 16 kHz AAC): the real `edgelive push` process reading a raw .y4m file as its
camera, against the `ffmpeg` CLI pushing the same file with the same settings to the same
nginx-rtmp. Both are measured in steady state (CPU time between two samples taken after a
warm-up), so start-up (Python imports, ffmpeg's init) is left out of both.
(b) Glass-to-glass latency: testsrc's wall-clock stamp → pusher → nginx-rtmp → a low-delay
PyAV reader that decodes the stamp from each picture.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import psutil

from edgelive.media import stamp
from edgelive.testbed import NginxRtmp

WIDTH, HEIGHT, FPS, KBPS = 1280, 720, 30, 1000
WARMUP_S = 4.0
READER_OPTIONS = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "32768",
                  "analyzeduration": "0", "rtmp_live": "live"}


def make_input(path: Path, frames: int) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", "-frames:v", str(frames),
                    "-pix_fmt", "yuv420p", str(path)], check=True)


def ffmpeg_argv(source: Path, url: str) -> list[str]:
    """The ffmpeg CLI doing what the pusher does in RTC mode with this input."""
    return ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(source),
            "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-b:v", f"{KBPS}k", "-maxrate", f"{KBPS}k", "-bufsize", f"{KBPS}k",
            "-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0", "-bf", "0",
            "-c:a", "aac", "-b:a", "32k", "-f", "flv", url]


def pusher_argv(source: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "edgelive", "push", url, "--source", str(source),
            "--mode", "RTC", "--resolution", f"{WIDTH}x{HEIGHT}", "--fps", str(FPS),
            "--audio-device", "none", "--audio-quality", "low"]


def steady_cpu(argv: list[str], seconds: float) -> float:
    """CPU seconds `argv` spends in `seconds` of steady state (after WARMUP_S)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"})
    try:
        watched = psutil.Process(proc.pid)
        time.sleep(WARMUP_S)
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited early with {proc.returncode}")
        before = watched.cpu_times()
        time.sleep(seconds)
        after = watched.cpu_times()
    finally:
        proc.terminate()
        proc.wait(10)
    return (after.user + after.system) - (before.user + before.system)


def latency(url: str, seconds: float) -> list[int]:
    """Stamp ages (ms) of the pictures a low-delay reader decodes while `edgelive push`
    (its own process, as on a box) pushes testsrc in RTC mode."""
    argv = [sys.executable, "-m", "edgelive", "push", url, "--source", "testsrc",
            "--mode", "RTC", "--resolution", f"{WIDTH}x{HEIGHT}", "--fps", str(FPS),
            "--audio-device", "none"]
    pusher = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ages: list[int] = []
    try:
        reader = _open_when_published(url, timeout=15.0)
        with reader:
            deadline = time.monotonic() + seconds
            for picture in reader.decode(video=0):
                now = time.time_ns() // 1_000_000
                luma = np.frombuffer(picture.planes[0], np.uint8).reshape(
                    -1, picture.planes[0].line_size)[:, :picture.width]
                ages.append(stamp.age_ms(stamp.decode(luma), now))
                if time.monotonic() > deadline:
                    break
    finally:
        pusher.terminate()
        pusher.wait(10)
    return ages[FPS:]  # the first second includes start-up


def _open_when_published(url: str, timeout: float) -> av.container.InputContainer:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return av.open(url, options=READER_OPTIONS, timeout=5.0)
        except (av.FFmpegError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run(seconds: float = 20.0, latency_seconds: float = 10.0, runs: int = 3) -> str:
    """`runs` alternating pairs (ffmpeg, then the pusher): a run's CPU share swings by
    ~10 % with what else the machine does, so the median of the pair ratios is reported."""
    pairs: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="edgelive-bench-") as tmp:
        work = Path(tmp)
        source = work / "input.y4m"
        make_input(source, FPS * 2)
        nginx = NginxRtmp(work / "nginx")
        nginx.start()
        try:
            for n in range(runs):
                ff = steady_cpu(ffmpeg_argv(source, nginx.url(f"ffmpeg{n}")), seconds)
                ours = steady_cpu(pusher_argv(source, nginx.url(f"pusher{n}")), seconds)
                pairs.append((ff / seconds, ours / seconds))
            ages = latency(nginx.url("latency"), latency_seconds)
        finally:
            nginx.stop()
    p50, p95 = (float(np.percentile(ages, q)) for q in (50, 95)) if ages else (0.0, 0.0)
    ratios = [ours / ff for ff, ours in pairs]
    rows = [(f"run {n + 1}: CPU s per stream s, ffmpeg / pusher",
             f"{ff:.3f} / {ours:.3f}", f"{ours / ff:.2f}x") for n, (ff, ours) in enumerate(pairs)]
    rows += [
        ("pusher / ffmpeg, median", f"{float(np.median(ratios)):.2f}",
         f"range {min(ratios):.2f}-{max(ratios):.2f}, target <= 1.05"),
        ("latency p50 (ms), RTC 720p30", f"{p50:.0f}", f"{len(ages)} frames"),
        ("latency p95 (ms), RTC 720p30", f"{p95:.0f}", "target <= 25"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value:>13}  {note}" for name, value, note in rows)
