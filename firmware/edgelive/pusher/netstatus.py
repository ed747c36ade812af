"""Netstatus: the seed's per-second report of what the pusher encodes and sends."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import psutil

from edgelive.media.rtmp_out import SenderStats
from edgelive.media.upstream import TcpReadings


class RateMeter:
    """Counts events and bytes over a sliding window (thread-safe, no timer thread)."""

    def __init__(self, window_s: float = 1.0) -> None:
        self._window_s = window_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._lock = threading.Lock()

    def add(self, size: int) -> None:
        with self._lock:
            self._samples.append((time.monotonic(), size))

    def _trim(self) -> None:
        now = time.monotonic()
        while self._samples and now - self._samples[0][0] > self._window_s:
            self._samples.popleft()

    def rate(self) -> tuple[float, float]:
        """(events per second, kbit/s) over the window."""
        with self._lock:
            self._trim()
            count = len(self._samples)
            size = sum(s for _, s in self._samples)
        return count / self._window_s, size * 8 / self._window_s / 1000


class CpuMeter:
    """CPU use of this process in % of one core since the previous call."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)

    def percent(self) -> float:
        return round(self._process.cpu_percent(None), 1)


def netstatus(*, video: RateMeter, audio: RateMeter, gop_s: float,
              width: int, height: int, sender: SenderStats | None, cpu: float,
              encoder: str) -> dict[str, Any]:
    """The seed's keys (videoBitrate … videoHeight) plus the box's own."""
    fps, video_kbps = video.rate()  # one video packet per encoded frame
    return {
        "videoBitrate": round(video_kbps),
        "audioBitrate": round(audio.rate()[1]),
        "videoFPS": round(fps, 1),
        "videoGOP": round(gop_s, 2),
        "netSpeed": round(sender.send_kbps) if sender else 0,
        "netJitter": sender.jitter_ms if sender else 0,
        "videoWidth": width,
        "videoHeight": height,
        "cpu": cpu,
        "droppedFrames": sender.dropped_frames if sender else 0,
        "encoder": encoder,
        "queueDepth": sender.queue_depth if sender else 0,
        "backlogMs": sender.backlog_ms if sender else 0,
        **tcp_keys(sender.tcp if sender else None),
    }


def tcp_keys(tcp: TcpReadings | None) -> dict[str, Any]:
    """The connection's TCP_INFO as the box reports it (zeros while there is none)."""
    if tcp is None:
        return {"rttMs": 0, "minRttMs": 0, "unsentBytes": 0, "unackedBytes": 0,
                "deliveryRate": 0, "retransmits": 0}
    return {"rttMs": round(tcp.rtt_ms, 1), "minRttMs": round(tcp.min_rtt_ms, 1),
            "unsentBytes": tcp.unsent_bytes, "unackedBytes": tcp.unacked_bytes,
            "deliveryRate": round(tcp.delivery_kbps), "retransmits": tcp.retransmits}


def debug_lines(status: dict[str, Any]) -> list[str]:
    """What the `debug` overlay burns into the video, from the latest netstatus."""
    s = status
    return [f"{s['videoWidth']}x{s['videoHeight']} {s['videoFPS']:.0f}FPS "
            f"{s['videoBitrate']}KBPS",
            f"NET {s['netSpeed']}KBPS QUEUE {s['backlogMs']}MS DROP {s['droppedFrames']}",
            f"CPU {s['cpu']:.0f}% {s['encoder']}"]
