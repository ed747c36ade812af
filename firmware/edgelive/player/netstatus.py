"""Per-second network and playback statistics of one player (the seed's netstatus keys).

`audioVolume` stands in for the seed's bindaudiovolumenotify: how loud the sound played in
the last second was (its loudest sample, % of full scale; 0 while muted or silent).
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Any

import numpy as np


class NetStats:
    """Counts what arrived and what was shown; `snapshot()` reports and restarts the second."""

    def __init__(self) -> None:
        self._video_bytes = 0
        self._audio_bytes = 0
        self._shown = 0
        self._transit: deque[float] = deque(maxlen=120)
        self._last_key_pts: float | None = None
        self.gop = 0.0
        self.width = 0
        self.height = 0
        self.dropped = 0
        self._peak = 0.0

    def packet(self, size: int, is_video: bool, is_key: bool, pts: float, arrived: float) -> None:
        if is_video:
            self._video_bytes += size
            self._transit.append(arrived - pts)
            if is_key:
                if self._last_key_pts is not None and pts > self._last_key_pts:
                    self.gop = pts - self._last_key_pts
                self._last_key_pts = pts
        else:
            self._audio_bytes += size

    def shown(self, width: int, height: int) -> None:
        self._shown += 1
        self.width, self.height = width, height

    def played(self, samples: np.ndarray) -> None:
        """Sound sent to the output (float samples, full scale 1.0)."""
        if samples.size:
            self._peak = max(self._peak, float(np.abs(samples).max()))

    def new_session(self) -> None:
        self._transit.clear()
        self._last_key_pts = None

    def snapshot(self, interval: float) -> dict[str, Any]:
        """The seed's keys for the last `interval` seconds: kbit/s, fps, s, ms, pixels."""
        transit = list(self._transit)
        jitter = statistics.pstdev(transit) * 1000 if len(transit) > 1 else 0.0
        video_kbps = self._video_bytes * 8 / 1000 / interval
        audio_kbps = self._audio_bytes * 8 / 1000 / interval
        report = {
            "videoBitrate": round(video_kbps), "audioBitrate": round(audio_kbps),
            "videoFPS": round(self._shown / interval, 1), "videoGOP": round(self.gop, 2),
            "netSpeed": round(video_kbps + audio_kbps), "netJitter": round(jitter, 1),
            "videoWidth": self.width, "videoHeight": self.height,
            "droppedFrames": self.dropped, "audioVolume": round(min(1.0, self._peak) * 100),
        }
        self._video_bytes = self._audio_bytes = self._shown = 0
        self._peak = 0.0
        return report
