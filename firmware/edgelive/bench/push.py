"""`edgelive bench push`: the pusher's CPU cost against the ffmpeg CLI, and its latency.

(a) CPU seconds per stream second, 720p30 libx264 ultrafast/zerolatency 1 Mbit/s, from the
same raw YUV file to the same nginx-rtmp: the pusher's pipeline (reused frame, planes read
straight from the file, encoder, sender thread) against `ffmpeg` doing the same encode.
(b) Glass-to-glass latency: testsrc's wall-clock stamp → pusher → nginx-rtmp → a low-delay
PyAV reader that decodes the stamp from each picture.
"""

from __future__ import annotations

import resource
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np

from edgelive.config.presets import VideoPlan
from edgelive.media import stamp
from edgelive.media.encode import PyAvVideoEncoder
from edgelive.media.rtmp_out import PacketSender, RtmpOutput
from edgelive.testbed import NginxRtmp

WIDTH, HEIGHT, FPS, KBPS = 1280, 720, 30, 1000
PLAN = VideoPlan(WIDTH, HEIGHT, FPS, FPS, KBPS, KBPS, True)
READER_OPTIONS = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "32768",
                  "analyzeduration": "0", "rtmp_live": "live"}


def make_raw_file(path: Path, frames: int) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", "-frames:v", str(frames),
                    "-pix_fmt", "yuv420p", "-f", "rawvideo", str(path)], check=True)


def ffmpeg_cpu(raw: Path, url: str, seconds: float) -> float:
    """CPU seconds the ffmpeg CLI spends pushing `seconds` of the looped raw file."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-f", "rawvideo",
                    "-pix_fmt", "yuv420p", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS),
                    "-i", str(raw), "-t", str(seconds), "-c:v", "libx264",
                    "-preset", "ultrafast", "-tune", "zerolatency", "-b:v", f"{KBPS}k",
                    "-maxrate", f"{KBPS}k", "-bufsize", f"{KBPS}k", "-g", str(FPS),
                    "-keyint_min", str(FPS), "-sc_threshold", "0", "-bf", "0", "-an",
                    "-f", "flv", url], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def pusher_cpu(raw: Path, url: str, seconds: float) -> float:
    """CPU seconds of this process pushing the same input the pusher's way: one frame
    reused, each plane read from the file straight into its buffer (no numpy, no copy)."""
    encoder = PyAvVideoEncoder(PLAN)
    output = RtmpOutput(encoder.params, None)
    output.open(url)
    sender = PacketSender(output, on_error=lambda e: None, on_first_packet=lambda: None)
    sender.start()
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    planes = [memoryview(p).cast("B") for p in frame.planes]
    rows = [(p.line_size, p.width, p.height) for p in frame.planes]
    tight = all(line == width for line, width, _ in rows)
    count, total = 0, int(seconds * FPS)
    start_cpu, start = time.process_time(), time.monotonic()
    with raw.open("rb", buffering=0) as f:
        while count < total:
            for view, (line, width, height) in zip(planes, rows, strict=True):
                if tight:
                    if f.readinto(view) < len(view):
                        f.seek(0)
                        f.readinto(view)
                else:  # padded rows: read each row into place
                    for y in range(height):
                        f.readinto(view[y * line:y * line + width])
            for packet in encoder.encode(frame, count * 1000 // FPS):
                sender.put(packet, True, count * 1000 // FPS)
            count += 1
            delay = start + count / FPS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    used = time.process_time() - start_cpu
    sender.stop()
    encoder.close()
    return used


def latency(url: str, seconds: float) -> list[int]:
    """Stamp ages (ms) of the pictures a low-delay reader decodes while the pusher runs."""
    from edgelive.codes import Code, Source
    from edgelive.config.schema import PusherConfig
    from edgelive.events import EventLog
    from edgelive.pusher import Pusher

    events = EventLog(Source.PUSHER)
    began = threading.Event()
    events.subscribe(lambda e: e.code == Code.PUSH_EVT_PUSH_BEGIN and began.set())
    config = PusherConfig(url=url, mode="RTC", source="testsrc", resolution=f"{WIDTH}x{HEIGHT}",
                          fps=FPS, audio_device="none", max_bitrate=KBPS)
    pusher = Pusher(config, events, lambda status: None)
    pusher.start()
    ages: list[int] = []
    try:
        if not began.wait(10):
            raise RuntimeError("the pusher did not start")
        with av.open(url, options=READER_OPTIONS) as reader:
            deadline = time.monotonic() + seconds
            for picture in reader.decode(video=0):
                now = time.time_ns() // 1_000_000
                luma = np.frombuffer(picture.planes[0], np.uint8).reshape(
                    -1, picture.planes[0].line_size)[:, :picture.width]
                ages.append(stamp.age_ms(stamp.decode(luma), now))
                if time.monotonic() > deadline:
                    break
    finally:
        pusher.stop()
    return ages[FPS:]  # the first second includes start-up


def run(seconds: float = 20.0, latency_seconds: float = 10.0) -> str:
    with tempfile.TemporaryDirectory(prefix="edgelive-bench-") as tmp:
        work = Path(tmp)
        raw = work / "input.yuv"
        make_raw_file(raw, FPS * 2)
        nginx = NginxRtmp(work / "nginx")
        nginx.start()
        try:
            ff = ffmpeg_cpu(raw, nginx.url("ffmpeg"), seconds)
            ours = pusher_cpu(raw, nginx.url("pusher"), seconds)
            ages = latency(nginx.url("latency"), latency_seconds)
        finally:
            nginx.stop()
    p50, p95 = (float(np.percentile(ages, q)) for q in (50, 95)) if ages else (0.0, 0.0)
    rows = [
        ("CPU s per stream s, ffmpeg CLI", f"{ff / seconds:.3f}", ""),
        ("CPU s per stream s, pusher", f"{ours / seconds:.3f}", ""),
        ("pusher / ffmpeg", f"{ours / ff:.2f}", "target <= 1.10"),
        ("latency p50 (ms), RTC 720p30", f"{p50:.0f}", f"{len(ages)} frames"),
        ("latency p95 (ms), RTC 720p30", f"{p95:.0f}", "target <= 100"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value:>8}  {note}" for name, value, note in rows)
