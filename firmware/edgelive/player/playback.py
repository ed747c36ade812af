"""One player's media path: packets from its feed → decoders → the picture due now.

Pacing follows presentation timestamps against a monotonic clock (`PlayoutClock`) whose
rate the latency controller sets. The first key frame of a connection is shown as soon as
it decodes (2004); corrupt data (2101/2102) and timestamp jumps (2107) make the player
wait for the next key frame; an empty buffer is a stall (2007), and long gaps in arrival
or playback are reported as 2104/2105.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import av
import numpy as np

from edgelive.codes import Code
from edgelive.events import EventLog
from edgelive.media.decode import AudioDecoder, DecodeError, VideoDecoder
from edgelive.media.rtmp_in import ArrivedPacket
from edgelive.player.feed import Feed, Session
from edgelive.player.netstatus import NetStats
from edgelive.policy.buffer import (
    RECV_GAP_LAG,
    BufferTargets,
    LagMonitor,
    LatencyController,
    PlayoutClock,
    jump_target,
)

BACKWARD_JUMP = 0.5
FORWARD_JUMP = 5.0
"""Timestamp steps beyond these (s) between video packets are discontinuities (2107)."""
AUDIO_BACKLOG = 0.3
"""Sound queued beyond this (s) is dropped: playback is catching up."""
AUDIO_LEAD = 0.05
"""Sound goes to the device this far (s) ahead of its time, a few packets per wake-up: the
render loop wakes for pictures, and sound rides along unless it is due before the next
picture."""


class AudioOut(Protocol):
    muted: bool

    def queue(self, samples: np.ndarray, rate: int) -> None: ...

    @property
    def queued_seconds(self) -> float: ...


class Playback:
    """Decodes and paces one stream; `step()` says when there is a new picture to show."""

    def __init__(self, feed: Feed, events: EventLog, targets: BufferTargets, *,
                 prefer_hardware: bool, audio: AudioOut | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.feed = feed
        self._events = events
        self._targets = targets
        self._prefer_hardware = prefer_hardware
        self._hw_reported = False
        self.audio = audio
        self._now = now
        self.stats = NetStats()
        self.picture: av.VideoFrame | None = None
        self.decoder_name = ""
        self.paused = False
        self._video: deque[ArrivedPacket] = deque()
        self._audio: deque[ArrivedPacket] = deque()
        self._new_session(None)

    # -- state of the current connection

    def _new_session(self, session: Session | None) -> None:
        self._session = session
        self._video_dec: VideoDecoder | None = None
        self._audio_dec: AudioDecoder | None = None
        self._video.clear()
        self._audio.clear()
        self._restart_timeline(announce=True)
        self._last_video_pts: float | None = None
        self._repeats_until: float | None = None
        self._sound_from = float("-inf")
        self._frame_interval = 0.04
        self._lag = LagMonitor(self._now)
        self.stats.new_session()
        if session is not None and session.input is None:
            self.picture = None  # the stream ended: nothing left to show

    def _take_over(self, session: Session) -> None:
        """A connection to the same stream that has a track the current one lacks (sound
        that began after the open) takes over, on the same timeline: its pictures up to the
        last one received carry the same bytes and are skipped, the rest continues the
        picture decoding as it is; its sound starts from the picture shown."""
        self._session = session
        self._repeats_until = self._last_video_pts
        self._sound_from = self._clock.position() if self._clock.started else float("-inf")
        self._audio_dec = None

    def _restart_timeline(self, announce: bool) -> None:
        self._clock = PlayoutClock(self._now)
        self._controller = LatencyController(self._targets)
        self._need_key = True
        self._shown_first = False
        self._announce_first = announce
        self._video_failing = self._audio_failing = False

    @property
    def active(self) -> bool:
        return self._session is not None and self._session.input is not None

    @property
    def buffered(self) -> float:
        """Seconds of video received but not yet due (the cache)."""
        if self._last_video_pts is None or not self._clock.started:
            return 0.0
        return max(0.0, self._last_video_pts - self._clock.position())

    def set_targets(self, targets: BufferTargets) -> None:
        """A new min/max-cache band, applied from the next step (no reconnect)."""
        self._targets = targets
        self._controller.targets = targets

    def pause(self) -> None:
        """Freeze on the picture shown; the connection stays up, what arrives is dropped."""
        self.paused = True

    def resume(self) -> None:
        """Play live again from the next key frame (within a GOP), without reconnecting."""
        if self.paused:
            self.paused = False
            self._video.clear()
            self._audio.clear()
            self._restart_timeline(announce=False)

    # -- the step the render loop calls

    def step(self) -> bool:
        """Take what arrived and advance; True when `picture` changed."""
        audio = self.audio
        self.feed.wake_on_audio = audio is not None and not audio.muted
        changed = self._advance()
        # With a picture queued the loop wakes when it is due (next_due_in).
        self.feed.wake_on_video(not (self._shown_first and self._video and not self.paused))
        return changed

    def _advance(self) -> bool:
        items = self.feed.drain()
        if items:
            self._take(items)
        if self.paused:
            self._video.clear()
            self._audio.clear()
            return False
        if not self.active:
            return False
        self._report_lags()
        if not self._shown_first:
            return self._show_first()
        self._control()
        return self._play_due()

    def next_due_in(self) -> float:
        """Seconds until the loop must run again for this stream (the next picture, or
        sound due before it); infinite when nothing is queued: the feed wakes the loop
        when data arrives."""
        if not self._clock.started or not self._shown_first:
            return float("inf")
        video = self._video[0].pts if self._video else None
        if self.audio is not None and self._audio:
            # with no picture queued, the next one is expected a frame after the last
            expected = video if video is not None else \
                (self._last_video_pts or 0.0) + self._frame_interval
            sound = self._audio[0].pts
            if sound < expected:
                return self._clock.due_in(sound - AUDIO_LEAD)
        return float("inf") if video is None else self._clock.due_in(video)

    def _take(self, items: deque[Session | ArrivedPacket]) -> None:
        """Queue a batch from the feed (a new session restarts everything)."""
        packet = self.stats.packet
        arrived = False
        for item in items:
            if isinstance(item, Session):
                if item.continues and self.active:
                    self._take_over(item)
                else:
                    self._new_session(item)
                    arrived = False
                continue
            arrived = True
            packet(item.packet.size, item.is_video, item.is_key, item.pts, item.arrived)
            if item.is_video:
                if self._repeats_until is not None:
                    if item.pts <= self._repeats_until:
                        continue
                    self._repeats_until = None
                self._accept_video(item)
            elif item.pts >= self._sound_from:
                self._audio.append(item)
        if arrived:
            self._lag.packet_arrived()

    def _accept_video(self, p: ArrivedPacket) -> None:
        last = self._last_video_pts
        if last is not None and (p.pts < last - BACKWARD_JUMP or p.pts > last + FORWARD_JUMP):
            self._events.emit(Code.PLAY_WARNING_VIDEO_DISCONTINUITY, "timestamps jumped",
                              role=self.feed.role, jump_s=round(p.pts - last, 3))
            self._video.clear()
            self._audio.clear()
            self._restart_timeline(announce=False)
        elif last is not None and 0 < p.pts - last < 2.0:
            self._frame_interval += (p.pts - last - self._frame_interval) * 0.1
        self._last_video_pts = p.pts
        self._video.append(p)

    def _report_lags(self) -> None:
        gap = self._lag.recv_lag(max(RECV_GAP_LAG, 2.5 * self._frame_interval))
        if gap is not None:
            self._events.emit(Code.PLAY_WARNING_RECV_DATA_LAG, "data arrives late",
                              role=self.feed.role, lag_ms=round(gap * 1000))
        stall = self._lag.play_lag()
        if stall is not None:
            self._events.emit(Code.PLAY_WARNING_VIDEO_PLAY_LAG, "playback stalls",
                              role=self.feed.role, lag_ms=round(stall * 1000))

    def _show_first(self) -> bool:
        while self._video and not self._video[0].is_key:
            self._video.popleft()
            self.stats.dropped += 1
        if not self._video:
            while self._audio and len(self._audio) > 50:
                self._audio.popleft()
            return False
        if self._video_dec is None:
            self._open_decoders()
        while self._video:
            p = self._video.popleft()
            frame = self._decode_video(p)
            if frame is not None:
                while self._audio and self._audio[0].pts < p.pts:
                    self._audio.popleft()
                self._clock.start(p.pts, rate=0.0)
                self._shown_first = True
                self._set_picture(frame)
                if self._announce_first:
                    self._events.emit(Code.PLAY_EVT_PLAY_BEGIN, "first picture shown",
                                      role=self.feed.role, decoder=self.decoder_name)
                return True
        return False

    def _open_decoders(self) -> None:
        assert self._session is not None and self._session.input is not None
        stream = self._session.input
        assert stream.video is not None, "called once a video key frame arrived"
        self._video_dec = VideoDecoder(stream.video, self._prefer_hardware)
        self.decoder_name = self._video_dec.name
        if self._video_dec.hardware_error and not self._hw_reported:
            self._hw_reported = True
            self._events.emit(Code.PLAY_WARNING_HW_ACCELERATION_FAIL,
                              f"hardware decoder unavailable ({self._video_dec.hardware_error}),"
                              f" using {self.decoder_name}", role=self.feed.role)

    def _control(self) -> None:
        position = self._clock.position()
        newest = self._last_video_pts if self._last_video_pts is not None else position
        grace = max(0.25, 1.5 * self._frame_interval)
        decision = self._controller.update(newest - position,
                                           has_frames=newest - position > -grace)
        if decision.stall_began:
            self._lag.stall_began()
            self._events.emit(Code.PLAY_EVT_PLAY_LOADING, "buffering", role=self.feed.role)
        elif decision.stall_ended:
            self._lag.stall_ended()
        if decision.jump_to_key:
            self._jump(newest, position)
        self._clock.set_rate(decision.rate)

    def _jump(self, newest: float, position: float) -> None:
        keys = [p.pts for p in self._video if p.is_key]
        target = jump_target(keys, newest, position, keep=self._targets.low)
        if target is None:
            # to the newest picture in RTC mode (low < 0), min-cache behind it in live
            self._decode_through(newest - max(self._targets.low, 0.0))
            return
        while self._video and self._video[0].pts < target:
            self._video.popleft()
            self.stats.dropped += 1
        while self._audio and self._audio[0].pts < target:
            self._audio.popleft()
        self._clock.start(target, rate=1.0)

    def _decode_through(self, until: float) -> None:
        """No key frame to jump to: decode the queued pictures before `until` without
        showing them and play on from the last one (what opening a low-rate stream held
        back, up to a second, goes this way in one step)."""
        video = self._video
        while len(video) > 1 and video[1].pts <= until:
            if self._decode_video(video.popleft()) is not None:
                self.stats.dropped += 1
        if not video or video[0].pts > until:
            return
        start = video[0].pts
        while self._audio and self._audio[0].pts < start:
            self._audio.popleft()
        self._clock.start(start, rate=1.0)

    def _play_due(self) -> bool:
        position = self._clock.position()
        shown = None
        while self._video and self._video[0].pts <= position + 0.002:
            frame = self._decode_video(self._video.popleft())
            if frame is not None:
                if shown is not None:
                    self.stats.dropped += 1
                shown = frame
        audio, horizon = self._audio, position + AUDIO_LEAD
        if audio and audio[0].pts <= horizon:
            due = []
            while audio and audio[0].pts <= horizon:
                due.append(audio.popleft())
            self._play_audio(due)
        if shown is None:
            return False
        self._set_picture(shown)
        return True

    def _decode_video(self, p: ArrivedPacket) -> av.VideoFrame | None:
        assert self._video_dec is not None
        if self._need_key and not p.is_key:
            self.stats.dropped += 1
            return None
        try:
            frames = self._video_dec.decode(p.packet)
        except DecodeError as exc:
            if not self._video_failing:
                self._video_failing = True
                self._events.emit(Code.PLAY_WARNING_VIDEO_DECODE_FAIL,
                                  f"video decode failed: {exc}", role=self.feed.role)
            self._need_key = True
            self._video_dec.reset()
            self.stats.dropped += 1
            return None
        if p.is_key:
            self._need_key = False
            self._video_failing = False
        return frames[-1] if frames else None

    def _play_audio(self, due: list[ArrivedPacket]) -> None:
        """Decode the due audio packets and queue them in one piece; muted, nothing is
        decoded (AAC frames decode independently, so unmuting needs no warm-up) and the
        device plays silence."""
        out = self.audio
        if out is None or out.muted or self._session is None or self._session.input is None:
            return
        decoder = self._audio_dec
        if decoder is None:
            stream = self._session.input.audio
            if stream is None:
                return
            decoder = self._audio_dec = AudioDecoder(stream)
        frames: list[av.AudioFrame] = []
        for p in due:
            try:
                frames += decoder.frames(p.packet)
            except DecodeError as exc:
                if not self._audio_failing:
                    self._audio_failing = True
                    self._events.emit(Code.PLAY_WARNING_AUDIO_DECODE_FAIL,
                                      f"audio decode failed: {exc}", role=self.feed.role)
                continue
            self._audio_failing = False
        if frames and out.queued_seconds < AUDIO_BACKLOG:
            samples = decoder.interleave(frames)
            out.queue(samples, decoder.rate)
            self.stats.played(samples)

    def _set_picture(self, frame: av.VideoFrame) -> None:
        if frame.format.name not in ("yuv420p", "yuvj420p"):
            frame = frame.reformat(format="yuv420p")
        self.picture = frame
        self.stats.shown(frame.width, frame.height)

    def snapshot_state(self) -> dict[str, object]:
        return {"cache": round(self.buffered, 3), "decoder": self.decoder_name,
                "state": self.feed.state, "stalled": self._controller.stalled}
