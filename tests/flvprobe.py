"""ffprobe as an independent peer: what a recorded or live stream really contains."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Probe:
    streams: list[dict]
    packets: list[dict]

    def stream(self, kind: str) -> dict:
        return next(s for s in self.streams if s["codec_type"] == kind)

    def packet_times(self, kind: str, key_only: bool = False,
                     field: str = "pts_time") -> list[float]:
        index = self.stream(kind)["index"]
        return [float(p[field]) for p in self.packets
                if p["stream_index"] == index and (not key_only or "K" in p["flags"])]


def probe(target: Path | str, timeout: float = 30) -> Probe:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_streams", "-show_packets",
         "-show_entries", "packet=stream_index,pts_time,dts_time,flags", str(target)],
        capture_output=True, text=True, timeout=timeout, check=True)
    doc = json.loads(out.stdout)
    return Probe(doc.get("streams", []), doc.get("packets", []))
