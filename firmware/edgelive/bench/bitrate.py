"""`edgelive bench bitrate`: bitrate adaptation over a shaped uplink, second by second.

The real `edgelive push` (testsrc with its wall-clock stamp, RTC mode, 150–1500 kbit/s) runs
in a network namespace behind a tbf-shaped veth (`netlab.ShapedLink`, `tcp_notsent_lowat`
left unset as on any stock Linux); nginx-rtmp runs in another. A low-delay PyAV reader in the
root namespace decodes the stamp of every picture, which gives glass-to-glass latency. The
timeline holds, per second: the link rate, the pusher's target, what it handed the socket,
what the server acknowledged (its netstatus), the latency, the frame rate and the events.

Scenarios (`SCENARIOS`): the link dropping 1500 → 400 kbit/s for 30 s and coming back, at
640x360 and at 1280x720 (content that needs more than the short link), and an LTE-like
trace of rates stepping between 300 and 3000 kbit/s every 5–10 s with a 60 ms round trip
and 0.5 % loss. This kernel has no sch_netem: the round trip and the loss come from
`wire.Wire` (a TUN pair and a forwarder that holds each packet 30 ms each way and drops
0.5 % of them in each direction), the rates from tbf on the box's side of it.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from edgelive.bench.netlab import ShapedLink
from edgelive.media import stamp

READER_OPTIONS = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "32768",
                  "analyzeduration": "0", "rtmp_live": "live"}
MISREAD_MS = 60_000
"""A stamp older than this is a misread, not a latency."""
PUSHER_CONFIG = """[pusher]
source = "testsrc"
resolution = "{width}x{height}"
fps = {fps}
{extra}
min-bitrate = {min_kbps}
max-bitrate = {max_kbps}
audio-device = "tone"
audio-quality = "low"
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    width: int
    height: int
    schedule: tuple[tuple[float, int], ...]
    duration: float
    fps: int = 30
    min_kbps: int = 150
    max_kbps: int = 1500
    extra: str = 'mode = "RTC"'
    rtt_ms: int = 0
    """The uplink's added round trip (0: the plain veth)."""
    loss: float = 0.0
    """The fraction of packets the uplink drops, in each direction."""

    def config(self) -> str:
        return PUSHER_CONFIG.format(width=self.width, height=self.height, fps=self.fps,
                                    extra=self.extra, min_kbps=self.min_kbps,
                                    max_kbps=self.max_kbps)


def lte_trace(duration: float, seed: int = 7) -> tuple[tuple[float, int], ...]:
    """Rates between 300 and 3000 kbit/s, each held 5–10 s (the same trace every run)."""
    rng = random.Random(seed)
    steps, t = [], 0.0
    while t < duration:
        steps.append((t, rng.choice((300, 500, 800, 1200, 2000, 3000))))
        t += rng.uniform(5, 10)
    return tuple(steps)


DROP = ((0.0, 1500), (15.0, 400), (45.0, 1500))
"""(seconds from the first picture, link kbit/s): a short link for 30 s, then a good one."""
SCENARIOS = (
    Scenario("640x360, 1500 → 400 → 1500", 640, 360, DROP, 75.0),
    Scenario("1280x720, 1500 → 400 → 1500", 1280, 720, DROP, 75.0),
    Scenario("LTE-like trace, 640x360, 60 ms RTT, 0.5 % loss", 640, 360, lte_trace(90.0),
             90.0, rtt_ms=60, loss=0.005),
)


@dataclass
class Second:
    t: int
    link_kbps: int
    target_kbps: int | None = None
    send_kbps: int | None = None
    delivered_kbps: int | None = None
    """What the server acknowledged (netstatus linkRate)."""
    video_kbps: int | None = None
    width: int | None = None
    latency_ms: int | None = None
    frames: int = 0
    events: list[int] = field(default_factory=list)


@dataclass
class Run:
    seconds: list[Second]
    events: list[dict[str, Any]]
    publishes: int
    """Publish sessions nginx recorded: 1 means no reconnect."""


class _Reader(threading.Thread):
    """Decodes the stream and keeps (monotonic time, stamp age ms) per picture."""

    def __init__(self, url: str, drawn_width: int) -> None:
        super().__init__(name="reader", daemon=True)
        self.url = url
        self.drawn_width = drawn_width
        """The stamp's squares follow the configured width: a smaller rung scales them."""
        self.ages: list[tuple[float, int | None, int]] = []  # (time, age ms, width)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with av.open(self.url, options=READER_OPTIONS, timeout=5.0) as container:
                    for picture in container.decode(video=0):
                        self._add(picture)
                        if self.stop.is_set():
                            return
            except (av.FFmpegError, OSError):
                self.stop.wait(0.2)  # not published yet, or the stream ended

    def _add(self, picture: av.VideoFrame) -> None:
        now_ms = time.time_ns() // 1_000_000
        plane = picture.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:, :picture.width]
        age = stamp.age_ms(stamp.decode(luma, self.drawn_width), now_ms)
        # A picture encoded at a few hundred kbit/s can blur a square of the stamp; a
        # misread high bit reads as hours (or a negative age, wrapped): shown, not timed.
        self.ages.append((time.monotonic(), age if age < MISREAD_MS else None, picture.width))


def _link_at(t: float, schedule: Sequence[tuple[float, int]]) -> int:
    return [kbps for start, kbps in schedule if start <= t][-1]


def run(workdir: Path, scenario: Scenario) -> Run:
    """Build the shaped link, run the scenario on it, remove the link."""
    with ShapedLink(workdir, kbps=scenario.schedule[0][1], rtt_ms=scenario.rtt_ms,
                    loss=scenario.loss) as link:
        return run_on(link, workdir, scenario)


def run_on(link: ShapedLink, workdir: Path, scenario: Scenario) -> Run:
    """Push through `link` for the scenario's duration, shaping it as its schedule says."""
    assert link.nginx is not None
    schedule, duration = scenario.schedule, scenario.duration
    config = workdir / "edgelive.toml"
    config.write_text(scenario.config())
    link.shape(schedule[0][1])
    argv = link.box_argv([sys.executable, "-m", "edgelive", "push",
                          link.box_url("bitrate"), "--config", str(config)])
    pusher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, text=True)
    lines: list[tuple[float, dict[str, Any]]] = []
    collector = threading.Thread(target=_collect, args=(pusher, lines), daemon=True)
    collector.start()
    reader = _Reader(link.nginx.url("bitrate"), scenario.width)
    reader.start()
    try:
        t0 = _first_picture(reader, timeout=20.0)
        for start, kbps in schedule[1:]:
            time.sleep(max(0.0, t0 + start - time.monotonic()))
            link.shape(kbps)
        time.sleep(max(0.0, t0 + duration - time.monotonic()))
    finally:
        pusher.terminate()
        pusher.wait(15)
        reader.stop.set()
        reader.join(10)
    publishes = len(link.nginx.recordings("bitrate"))  # one file per publish
    events = [line for _, line in lines if line["type"] == "event"]
    return Run(_timeline(t0, duration, schedule, lines, reader.ages), events, publishes)


def _collect(pusher: subprocess.Popen[str], lines: list[tuple[float, dict[str, Any]]]) -> None:
    assert pusher.stdout is not None
    for line in pusher.stdout:
        if line.strip():
            lines.append((time.monotonic(), json.loads(line)))


def _first_picture(reader: _Reader, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not reader.ages:
        if time.monotonic() > deadline:
            raise TimeoutError("the reader got no picture from the pusher")
        time.sleep(0.05)
    return reader.ages[0][0]


def _timeline(t0: float, duration: float, schedule: Sequence[tuple[float, int]],
              lines: list[tuple[float, dict[str, Any]]],
              ages: list[tuple[float, int | None, int]]) -> list[Second]:
    seconds = [Second(t, _link_at(t, schedule)) for t in range(int(duration))]

    def slot(at: float) -> Second | None:
        index = int(at - t0)
        return seconds[index] if 0 <= index < len(seconds) else None

    for at, line in lines:
        row = slot(at)
        if row is None:
            continue
        if line["type"] == "netstatus":
            row.target_kbps = line.get("targetBitrate")
            row.send_kbps = line.get("netSpeed")
            row.delivered_kbps = line.get("linkRate")
            row.video_kbps = line.get("videoBitrate")
            row.width = line.get("videoWidth")
        elif line["type"] == "event":
            row.events.append(line["code"])
    per_second: dict[int, list[int | None]] = {}
    for at, age, _ in ages:
        if (row := slot(at)) is not None:
            per_second.setdefault(row.t, []).append(age)
    for row in seconds:
        found = per_second.get(row.t, [])
        row.frames = len(found)
        timed = [age for age in found if age is not None]
        row.latency_ms = round(statistics.median(timed)) if timed else None
    return seconds


def format_timeline(result: Run) -> str:
    head = f"{'t s':>4} {'link':>6} {'target':>6} {'send':>6} {'acked':>6} {'width':>5} " \
           f"{'lat ms':>7} {'fps':>3}  events"
    rows = [head]
    for s in result.seconds:
        rows.append(f"{s.t:>4} {s.link_kbps:>6} {_n(s.target_kbps):>6} {_n(s.send_kbps):>6} "
                    f"{_n(s.delivered_kbps):>6} {_n(s.width):>5} {_n(s.latency_ms):>7} "
                    f"{s.frames:>3}  "
                    f"{' '.join(map(str, s.events))}")
    rows.append(f"publish sessions seen by nginx: {result.publishes}")
    return "\n".join(rows)


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def summary(scenario: Scenario, result: Run) -> dict[str, Any]:
    """The issue's figures for one run: latency, frame rate, events, recovery."""
    rows = result.seconds
    codes = [e["code"] for e in result.events]
    reconnects = sum(code in (1102, 3004, 3005) for code in codes)
    out: dict[str, Any] = {"publishes": result.publishes, "reconnect_events": reconnects,
                           "net_busy_1101": codes.count(1101)}
    latencies = sorted(r.latency_ms for r in rows if r.latency_ms is not None)
    if scenario.schedule == DROP:
        drop, back = DROP[1][0], DROP[2][0]
        short = [r for r in rows if drop <= r.t < back]
        lat = [(r.t, r.latency_ms) for r in short if r.latency_ms is not None]
        out["peak_latency_ms"] = max(ms for _, ms in lat)
        over = [t for t, ms in lat if ms >= 200]
        out["under_200ms_after_s"] = (over[-1] + 1 - drop) if over else 0
        out["min_fps_short"] = min(r.frames for r in short)
        out["median_fps_short"] = statistics.median(r.frames for r in short)
        need = statistics.median(r.video_kbps for r in rows
                                 if 5 <= r.t < drop and r.video_kbps is not None)
        out["content_needs_kbps"] = need
        back_at = next((r.t for r in rows if r.t >= back and r.target_kbps is not None
                        and r.target_kbps >= 0.9 * need), None)
        out["target_90pct_after_return_s"] = None if back_at is None else back_at - back
    else:
        out["median_latency_ms"] = statistics.median(latencies)
        out["p95_latency_ms"] = latencies[int(0.95 * (len(latencies) - 1))]
        out["median_fps"] = statistics.median(r.frames for r in rows)
    return out


def plot(result: Run, path: Path, title: str = "") -> bool:
    """Write a PNG of the timeline; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = [s.t for s in result.seconds]
    fig, rate = plt.subplots(figsize=(10, 4))
    rate.step(t, [s.link_kbps for s in result.seconds], where="post", label="link")
    rate.plot(t, [s.target_kbps for s in result.seconds], label="target (video)")
    rate.plot(t, [s.send_kbps for s in result.seconds], label="sent")
    rate.plot(t, [s.delivered_kbps for s in result.seconds], label="delivered (acked)")
    rate.set_xlabel("s")
    rate.set_ylabel("kbit/s")
    latency = rate.twinx()
    latency.plot(t, [s.latency_ms for s in result.seconds], "k:", label="latency")
    latency.set_ylabel("latency ms")
    rate.legend(loc="upper left")
    latency.legend(loc="upper right")
    if title:
        rate.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
