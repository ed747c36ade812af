"""Bitrate adaptation and the encoder's cheaper path, once a second (SPEC §3).

Glue between what the sender measures (`SenderStats`), the pure `BitrateController` and
`EncoderLoad`, and the encoder: each tick turns the sender's numbers into a `LinkSample`,
sets the bitrate the controller decides, asks the encoder for a smaller picture when the
controller steps the resolution down (applied at the next frame, a key frame, on the same
RTMP session) and reports 1101 once per short-link episode and 1107 when the encoder
cannot keep up. It never touches the link: bitrate changes never reconnect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edgelive.codes import Code
from edgelive.config.presets import VideoPlan
from edgelive.events import EventLog
from edgelive.media.encode import PictureSize, VideoEncoder
from edgelive.media.rtmp_out import SenderStats
from edgelive.policy.bitrate import (
    MIN_FPS,
    BitrateController,
    EncoderLoad,
    LinkSample,
    Rung,
    resolution_ladder,
)

MUX_BLOCKED_MS = 100.0
"""The sender reports the spread of its mux() times; a video packet that waited this long
for the socket means the socket was not writable (it has TCP_NOTSENT_LOWAT). A key frame
over a healthy link takes a few ms."""


class Adapter:
    """Adapts one push's video encoder to the link and to the CPU."""

    def __init__(self, encoder: VideoEncoder, plan: VideoPlan, events: EventLog, *,
                 other_kbps: float, clock: Callable[[], float] = time.monotonic) -> None:
        """`other_kbps`: what shares the link with the video (audio, FLV overhead)."""
        self._encoder = encoder
        self._events = events
        self._other_kbps = other_kbps
        self._clock = clock
        self._plan = plan
        self._controller = self._new_controller(plan, encoder.kbps)
        self._load = EncoderLoad()
        self._delay_ms = 0
        self._stale_before = 0

    def _new_controller(self, plan: VideoPlan, start_kbps: float) -> BitrateController:
        ladder = resolution_ladder(plan.width, plan.height, plan.min_kbps, plan.max_kbps)
        return BitrateController(ladder, other_kbps=self._other_kbps, start_kbps=start_kbps)

    @property
    def target_kbps(self) -> int:
        return self._controller.target_kbps

    def tick(self, stats: SenderStats | None, encoder_kbps: float, *, waiting: bool,
             plan: VideoPlan | None = None) -> dict[str, Any]:
        """One second's decisions. `encoder_kbps` is the video rate encoded over the last
        second; while `waiting` (the waiting image's own low bitrate) or with no session
        (`stats` None) the bitrate is left alone. Returns netstatus keys."""
        now = self._clock()
        if plan is not None and (plan.min_kbps, plan.max_kbps) != (
                self._plan.min_kbps, self._plan.max_kbps):
            self._reconfigure(plan)
        frames, busy_s = self._encoder.take_load()
        if not waiting and self._load.overloaded(now, frames, busy_s, self._encoder.size.fps):
            self._cheaper(now, frames, busy_s)
        if not waiting and stats is not None:
            self._adapt(now, stats, encoder_kbps)
        size = self._encoder.size
        return {"targetBitrate": self._controller.target_kbps,
                "linkRate": round(stats.wire_kbps or 0) if stats else 0,
                "delayMs": self._delay_ms if stats else 0,
                "videoWidth": size.width, "videoHeight": size.height,
                "linkShort": self._controller.link_short}

    def _reconfigure(self, plan: VideoPlan) -> None:
        """A new bitrate range: a new ladder, starting from the rate in use."""
        self._plan = plan
        self._controller = self._new_controller(plan, self._encoder.kbps)
        self._apply_rung(self._controller.rung)

    def _adapt(self, now: float, stats: SenderStats, encoder_kbps: float) -> None:
        backlog_s = stats.backlog_ms / 1000
        tcp = stats.tcp
        # a counter per session: a new session starts it again
        stale = stats.stale_frames - min(self._stale_before, stats.stale_frames)
        self._stale_before = stats.stale_frames
        sample = LinkSample(
            send_kbps=stats.send_kbps,
            encoder_kbps=encoder_kbps,
            # The queued bytes were produced at the encoder's rate plus what shares the link.
            backlog_bytes=round(backlog_s * (encoder_kbps + self._other_kbps) * 125),
            backlog_s=backlog_s,
            mux_blocked=stats.jitter_ms >= MUX_BLOCKED_MS,
            rtt_ms=tcp.rtt_ms if tcp else 0.0,
            min_rtt_ms=tcp.min_rtt_ms if tcp else 0.0,
            unsent_bytes=tcp.unsent_bytes if tcp else 0,
            wire_kbps=stats.wire_kbps,
            overhead=stats.overhead,
            stale_frames=stale,
            app_limited=tcp.app_limited if tcp else False,
            peak_delay_s=stats.peak_delay_ms / 1000,
        )
        self._delay_ms = round(sample.worst_delay_s * 1000)
        decision = self._controller.tick(now, sample)
        if decision.link_short_began:
            self._events.emit(Code.PUSH_WARNING_NET_BUSY,
                              f"the uplink carries {stats.send_kbps:.0f} kbit/s: video "
                              f"lowered to {decision.target_kbps} kbit/s",
                              send_kbps=round(stats.send_kbps), backlog_ms=stats.backlog_ms,
                              target_kbps=decision.target_kbps)
        if decision.resolution_step:
            self._apply_rung(decision.rung)
        if decision.target_kbps != self._encoder.kbps:
            self._encoder.set_bitrate(decision.target_kbps)

    def _apply_rung(self, rung: Rung) -> None:
        fps = self._encoder.size.fps
        self._encoder.request_size(PictureSize(rung.width, rung.height, fps))

    def _cheaper(self, now: float, frames: int, busy_s: float) -> None:
        """1107: a smaller picture, or at the smallest one a lower frame rate."""
        size = self._encoder.size
        per_frame_ms = round(busy_s / frames * 1000, 1)
        if self._controller.step_down_for_encoder(now):
            rung = self._controller.rung
            cheaper = PictureSize(rung.width, rung.height, size.fps)
            self._encoder.set_bitrate(self._controller.target_kbps)
        elif size.fps // 2 >= MIN_FPS:
            cheaper = PictureSize(size.width, size.height, size.fps // 2)
        else:
            return  # nothing cheaper left; the stream goes on as it can
        self._encoder.request_size(cheaper)
        self._load.reset()
        self._events.emit(Code.PUSH_WARNING_SWITCH_SWENC,
                          f"{self._encoder.name} needs {per_frame_ms} ms per frame at "
                          f"{size.fps} fps: encoding {cheaper.width}x{cheaper.height} at "
                          f"{cheaper.fps} fps", encoder=self._encoder.name,
                          encode_ms=per_frame_ms, width=cheaper.width, height=cheaper.height,
                          fps=cheaper.fps)
