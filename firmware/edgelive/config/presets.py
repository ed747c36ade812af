"""Mode presets (the seed's table) resolved into the numbers the pusher encodes with.

Pure: a `PusherConfig` in, a `VideoPlan` out, so the sizes per mode/orientation/aspect are
tested without a camera.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgelive.config.schema import PusherConfig


@dataclass(frozen=True)
class Preset:
    min_kbps: int
    max_kbps: int
    long_side: int
    gop_s: float
    low_latency: bool


PRESETS: dict[str, Preset] = {
    "SD": Preset(300, 800, 640, 2.0, False),
    "HD": Preset(600, 1200, 960, 2.0, False),
    "FHD": Preset(600, 1800, 1280, 2.0, False),
    "RTC": Preset(200, 1000, 640, 1.0, True),
}

AUDIO = {"low": (16000, 1, 32), "high": (48000, 2, 128)}  # rate, channels, kbps


@dataclass(frozen=True)
class VideoPlan:
    width: int
    height: int
    fps: int
    gop_frames: int
    min_kbps: int
    max_kbps: int
    low_latency: bool

    @property
    def gop_seconds(self) -> float:
        return self.gop_frames / self.fps


@dataclass(frozen=True)
class AudioPlan:
    sample_rate: int
    channels: int
    kbps: int


def _even(x: float) -> int:
    return max(2, round(x / 2) * 2)


def output_size(cfg: PusherConfig) -> tuple[int, int]:
    """Width and height: explicit `resolution`, else the preset's long side with the
    aspect's short side, turned by orientation."""
    if cfg.resolution:
        w, h = (int(v) for v in cfg.resolution.split("x"))
        return w, h
    long_side = PRESETS[cfg.mode].long_side
    short_side = _even(long_side * (9 / 16 if cfg.aspect == "9:16" else 3 / 4))
    if cfg.orientation == "horizontal":
        return long_side, short_side
    return short_side, long_side


def video_plan(cfg: PusherConfig) -> VideoPlan:
    preset = PRESETS[cfg.mode]
    width, height = output_size(cfg)
    min_kbps = cfg.min_bitrate if cfg.min_bitrate is not None else preset.min_kbps
    max_kbps = cfg.max_bitrate if cfg.max_bitrate is not None else preset.max_kbps
    # One explicit bound may cross the other's preset: keep the pair ordered.
    if cfg.min_bitrate is not None and cfg.max_bitrate is None:
        max_kbps = max(max_kbps, min_kbps)
    if cfg.max_bitrate is not None and cfg.min_bitrate is None:
        min_kbps = min(min_kbps, max_kbps)
    gop_s = cfg.gop if cfg.gop is not None else preset.gop_s
    return VideoPlan(
        width=width,
        height=height,
        fps=cfg.fps,
        gop_frames=max(1, round(gop_s * cfg.fps)),
        min_kbps=min_kbps,
        max_kbps=max_kbps,
        low_latency=preset.low_latency,
    )


def audio_plan(cfg: PusherConfig) -> AudioPlan:
    rate, channels, kbps = AUDIO[cfg.audio_quality]
    return AudioPlan(rate, channels, kbps)
