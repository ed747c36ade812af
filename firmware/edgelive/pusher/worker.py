"""The pusher: camera → H.264/AAC → RTMP, reporting the seed's events and netstatus.

A push session runs in threads that each block on their own I/O (no polling loops):
capture+encode (paced by the camera, or by the waiting image's low rate), audio (paced by
the microphone), the link (`session.Link`: connect, publish, reconnect) and netstatus (once
a second). Capture never waits for the network: without a link its packets are dropped,
and every new link starts at a key frame on the same stream clock, so what a receiver gets
after a reconnect continues the timestamps it had. Which picture is encoded (camera or
waiting image) is decided in one place, `scene.Scene`.

The state the supervisor sees (`state`) is idle → connecting → pushing | waiting, with
reconnecting while the link is down, and stopped / failed at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import av

from edgelive.codes import Code
from edgelive.config.presets import AudioPlan, VideoPlan, audio_plan, video_plan
from edgelive.config.schema import PusherConfig
from edgelive.events import EventLog, now_ms
from edgelive.hw.camera import CameraError, FrameSource, UnsupportedResolution, check_size
from edgelive.media.encode import AudioEncoder, EncoderError, VideoEncoder, open_video_encoder
from edgelive.media.jpeg import encode_jpeg
from edgelive.media.overlay import draw_status
from edgelive.media.picam_encode import FedPicture, PicamVideoEncoder
from edgelive.media.picture import copy_frame, planes
from edgelive.media.preview import PreviewTap
from edgelive.pusher.adapt import Adapter
from edgelive.pusher.netstatus import CpuMeter, RateMeter, debug_lines, netstatus
from edgelive.pusher.scene import WAITING_KBPS, CameraOpener, Picture, Scene, Why
from edgelive.pusher.session import Link, LinkState
from edgelive.verbs import CommandError

if TYPE_CHECKING:
    from edgelive.hw.audio import AudioSource

log = logging.getLogger(__name__)

ADAPT_INTERVAL_S = 0.5
"""The bitrate adaptation ticks twice a second (netstatus goes out once a second): a link
that drops below the stream's rate adds a tenth of a second of delay every few tenths, and
the encoder needs about as long again to follow a new target. A picture that meets a short
link's delay between two ticks brings the next one forward (`_adapt_now`)..."""
MIN_TICK_S = 0.2
"""...but never closer than this to the last: what the link carried is read over the time
between ticks, and a shorter one reads a burst (tbf's bucket, a modem's aggregation)."""

NetstatusCallback = Callable[[dict[str, Any]], None]
StateCallback = Callable[[str], None]


class Pusher:
    """One push session at a time; `start()` returns at once, progress comes as events."""

    def __init__(self, config: PusherConfig, events: EventLog,
                 on_netstatus: NetstatusCallback, *, hardware_available: bool = False,
                 on_state: StateCallback = lambda state: None,
                 open_camera: CameraOpener | None = None) -> None:
        self.config = config
        self.events = events
        self._on_netstatus = on_netstatus
        self._on_state = on_state
        self._hardware_available = hardware_available
        self.video: VideoPlan = video_plan(config)
        self.audio: AudioPlan = audio_plan(config)
        self._open_camera = open_camera
        self.scene = Scene(config, events, open_camera=self._camera,
                           on_change=self._state_changed)
        self._phase = "idle"  # idle | running | stopped | failed
        self._ending = ""  # why a running session ends: stop | handup | fail | gave_up
        self._stop = threading.Event()
        self._session: threading.Thread | None = None
        self._helpers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._encoder: VideoEncoder | None = None
        self._adapter: Adapter | None = None
        self._link: Link | None = None
        self._camera_kbps: int | None = None  # the bitrate to return to after waiting
        self._adapt_now = threading.Event()
        """The sender met a short link's delay: the adaptation ticks now (or on stop)."""
        self._key_wanted = threading.Event()
        """A new session or the end of a stale drop needs a key frame; only the capture
        thread touches the encoder, so a request can never be lost in an encode that is
        running on another thread."""
        self._t0_ms: int | None = None
        self._last_pts = -1
        self._snapshots: list[Future[tuple[bytes, int]]] = []
        self._preview: PreviewTap | None = None
        """While the web console's preview is watched: a copy of each video packet."""
        self._video_rate = RateMeter()
        self._audio_rate = RateMeter()
        self._last_status: dict[str, Any] = {}
        """The latest netstatus, for the `debug` overlay."""
        self._reported_state = ""
        self._state_lock = threading.Lock()
        self.done = threading.Event()
        """Set when the session has ended, by stop(), waiting-timeout or a fatal error."""

    @property
    def state(self) -> str:
        """idle | connecting | pushing | waiting | reconnecting | stopped | failed"""
        if self._phase != "running":
            return self._phase
        if self._ending:  # the session is winding down
            return "failed" if self._ending in ("fail", "gave_up") else "stopped"
        link = self._link
        if link is None or link.state in (LinkState.CONNECTING, LinkState.CLOSED):
            return "connecting"
        if link.state is LinkState.RECONNECTING:
            return "reconnecting"
        if link.state is LinkState.GAVE_UP:
            return "failed"
        return "waiting" if self.scene.waiting else "pushing"

    @property
    def waiting(self) -> bool:
        """The waiting image is sent: its low bitrate is not to be adapted."""
        return self.scene.waiting

    # -- control

    def start(self) -> None:
        with self._lock:
            if self._phase == "running":
                return
            self._phase, self._ending = "running", ""
            self.video, self.audio = video_plan(self.config), audio_plan(self.config)
            self._stop.clear()
            self.done.clear()
            self._t0_ms, self._last_pts, self._camera_kbps = None, -1, None
            self._session = threading.Thread(target=self._run_session, name="capture",
                                             daemon=True)
            self._session.start()
        self._state_changed()

    def stop(self) -> None:
        """End the session and wait for its threads; safe twice."""
        self._end("stop")
        session = self._session
        if session is not None and session is not threading.current_thread():
            session.join(timeout=10)

    def configure(self, config: PusherConfig) -> None:
        """Apply a config change live: bitrate range, mute, camera, waiting image and its
        timeout, camera controls, debug. Keys that shape the stream (url, mode, size,
        source…) take effect at the next start."""
        self.config = config
        plan = video_plan(config)
        self.video = dataclasses.replace(self.video, min_kbps=plan.min_kbps,
                                         max_kbps=plan.max_kbps)
        encoder = self._encoder
        if encoder is not None and not self.scene.waiting:
            encoder.set_bitrate(min(max(encoder.kbps, plan.min_kbps), plan.max_kbps))
        self.scene.configure(config)

    def snapshot(self, timeout: float = 3.0) -> tuple[bytes, int]:
        """JPEG of the next picture sent (camera or waiting image) and its capture time."""
        if self._phase != "running":
            raise CommandError(Code.COMMAND_REJECTED, "not pushing: no picture to take")
        future: Future[tuple[bytes, int]] = Future()
        with self._lock:
            self._snapshots.append(future)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise CommandError(Code.COMMAND_REJECTED, "no picture within the time limit") from None

    def handle_command(self, verb: str, args: dict[str, Any]) -> dict[str, Any]:
        """Carry out one protocol command; returns its result or raises CommandError."""
        privacy = args.get("reason") == "privacy"
        if verb == "start":
            self.start()
        elif verb == "stop":
            self.stop()
        elif verb in ("pause", "resume"):
            self.scene.hold(Why.PRIVACY if privacy else Why.PAUSED, verb == "pause")
        elif verb == "switchCamera":
            try:
                position = self.scene.switch_camera(args.get("position"))
            except ValueError as exc:
                raise CommandError(Code.COMMAND_REJECTED, str(exc)) from None
            except CameraError as exc:
                raise CommandError(Code.PUSH_ERR_OPEN_CAMERA_FAIL, str(exc)) from None
            self.config = self.config.model_copy(update={"device_position": position})
            return {"state": self.state, "position": position}
        elif verb == "preview":  # from the supervisor only: {"socket": path, or "" = off}
            tap, self._preview = self._preview, None
            if tap is not None:
                tap.close()
            if args.get("socket"):
                self._preview = PreviewTap(str(args["socket"]))
            return {"preview": self._preview is not None}
        elif verb == "snapshot":
            jpeg, capture_ms = self.snapshot()
            self.events.emit(Code.SNAPSHOT_TAKEN, "snapshot taken", ts=capture_ms)
            return {"jpeg": jpeg, "ts": capture_ms}
        else:
            raise CommandError(Code.COMMAND_REJECTED, f"unknown command {verb!r}")
        return {"state": self.state, "waiting": self.scene.reasons}

    # -- the session

    def _end(self, why: str) -> None:
        """Ask the session to end; the first reason given is the one reported."""
        with self._lock:
            if self._phase == "running" and not self._ending:
                self._ending = why
        self._stop.set()
        self._adapt_now.set()
        self.scene.wake()

    def _fail(self, code: Code, message: str, **detail: Any) -> None:
        self.events.emit(code, message, **detail)
        self._end("fail")

    def _run_session(self) -> None:
        try:
            self._capture()
        finally:
            self._teardown()

    def _capture(self) -> None:
        plan = self.video
        try:
            check_size(plan.width, plan.height)  # before an encoder refuses it as 1303
        except UnsupportedResolution as exc:
            self._unsupported(exc)
            return
        encoder = self._open_encoder()  # first: a Pi camera opened next feeds it itself
        if encoder is None:
            return
        with encoder:
            self._encoder = encoder
            try:
                self.scene.start(plan)
            except UnsupportedResolution as exc:
                self._unsupported(exc)
                return
            try:
                self._adapter = Adapter(encoder, self.video, self.events,
                                        other_kbps=self.audio.kbps)
                audio_encoder = AudioEncoder(self.audio)
                self._link = Link(self.config.url, (encoder.params, audio_encoder.params),
                                  self.events, self.config.reconnect,
                                  want_key_frame=self._key_wanted.set,
                                  on_late=self._adapt_now.set,
                                  on_change=self._link_changed, live_detail=self._live_detail)
                self._link.start()
                self._spawn(self._report, "netstatus")
                self._spawn(lambda: self._audio_loop(audio_encoder), "audio")
                self._encode_loop(encoder, self._link)
            except EncoderError as exc:
                self._fail(exc.code, str(exc))

    def _unsupported(self, exc: UnsupportedResolution) -> None:
        plan = self.video
        self._fail(Code.PUSH_ERR_UNSUPPORTED_RESOLUTION, str(exc), source=self.config.source,
                   width=plan.width, height=plan.height)

    def _camera(self, spec: str, **kwargs: Any) -> FrameSource:
        """Open a camera; the Pi camera's buffers go to picamera2's encoder when that is the
        encoder in use (no copy into Python)."""
        if self._open_camera is not None:
            source = self._open_camera(spec, **kwargs)
        else:
            from edgelive.hw.camera import open_source  # probes hardware: only when used

            source = open_source(spec, **kwargs)
        encoder = self._encoder
        if isinstance(encoder, PicamVideoEncoder) and (feed := getattr(source, "feed", None)):
            feed(encoder)
        return source

    def _teardown(self) -> None:
        self._end("stop")
        link, self._link = self._link, None
        if link is not None:
            link.close()
        for thread in self._helpers:
            thread.join(timeout=5)
        self._helpers = []
        self.scene.close()
        self._encoder = None
        with self._lock:
            ending = self._ending
            self._phase = "failed" if ending in ("fail", "gave_up") else "stopped"
            waiting, self._snapshots = self._snapshots, []
        for future in waiting:
            future.set_exception(CommandError(Code.COMMAND_REJECTED, "the push ended"))
        if ending == "stop":
            self.events.emit(Code.PUSH_STOPPED, "push stopped")
        self.done.set()
        self._state_changed()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._helpers.append(thread)
        thread.start()

    def _open_encoder(self) -> VideoEncoder | None:
        from edgelive.hw.camera import is_pi_camera  # may probe picamera2: only when used

        wants_hardware = self.config.encoder != "software"
        try:
            encoder, fallbacks = open_video_encoder(
                self.video, self.config.encoder, hardware_available=self._hardware_available,
                camera_feed=wants_hardware and is_pi_camera(self.config.source))
        except EncoderError as exc:
            self._fail(exc.code, str(exc))
            return None
        for why in fallbacks:
            self._hardware_fell_back(why, encoder.name)
        return encoder

    def _hardware_fell_back(self, why: str, encoder: str) -> None:
        self.events.emit(Code.PUSH_WARNING_HW_ACCELERATION_FAIL,
                         f"{why}; using {encoder}", encoder=encoder)

    def _stream_ms(self, capture_ms: int) -> int:
        """Capture time on the stream clock, strictly increasing for the muxer; one clock
        for the whole push, so timestamps continue across reconnects."""
        if self._t0_ms is None:
            self._t0_ms = capture_ms
        pts = max(capture_ms - self._t0_ms, self._last_pts + 1)
        self._last_pts = pts
        return pts

    def _encode_loop(self, encoder: VideoEncoder, link: Link) -> None:
        while not self._stop.is_set():
            picture = self.scene.next_picture()
            if picture is None:
                continue
            if picture.switched:
                self._switch_bitrate(encoder, picture.waiting)
            if picture.waiting and self.scene.waited_s() >= self.config.waiting_timeout:
                self._hang_up()
                return
            if picture.key or self._key_wanted.is_set():
                self._key_wanted.clear()
                encoder.force_keyframe()
            pts = self._stream_ms(picture.capture_ms)
            if self._snapshots:
                self._answer_snapshots(picture)  # the picture as captured, no overlay
            image = self._with_stats(picture.image) if self.config.debug else picture.image
            packets = encoder.encode(image, pts)
            if why := encoder.take_fallback():
                self._hardware_fell_back(why, encoder.name)
            for packet in packets:
                self._video_rate.add(packet.size)
                if (tap := self._preview) is not None:
                    tap.offer(packet, encoder.size.width, encoder.size.height,
                              encoder.params.extradata)
                link.send(packet, True, pts)

    def _with_stats(self, image: av.VideoFrame | FedPicture) -> av.VideoFrame | FedPicture:
        """A copy of `image` with the latest netstatus burned in at the bottom left (the
        top holds testsrc's stamp and clock; the source may hand this frame out again). A
        picture that stays in the camera carries the text to its encoder instead."""
        status = self._last_status
        if not status:
            return image
        if isinstance(image, FedPicture):
            return dataclasses.replace(image, overlay=tuple(debug_lines(status)))
        out = copy_frame(image)
        draw_status(planes(out)[0], debug_lines(status))
        return out

    def _switch_bitrate(self, encoder: VideoEncoder, waiting: bool) -> None:
        """A still picture needs little: drop to WAITING_KBPS, and back when the camera is."""
        if waiting:
            self._camera_kbps = self._camera_kbps or encoder.kbps
            encoder.set_bitrate(WAITING_KBPS)
        elif self._camera_kbps is not None:
            encoder.set_bitrate(self._camera_kbps)
            self._camera_kbps = None

    def _hang_up(self) -> None:
        self.events.emit(Code.PUSH_WARNING_HANDUP_STOP,
                         f"waiting image shown for {self.config.waiting_timeout} s: push "
                         "stopped", reasons=self.scene.reasons)
        self._end("handup")

    def _answer_snapshots(self, picture: Picture) -> None:
        with self._lock:
            waiting, self._snapshots = self._snapshots, []
        image = picture.image
        try:
            jpeg = encode_jpeg(image.still() if isinstance(image, FedPicture) else image)
        except (av.FFmpegError, ValueError, CameraError) as exc:
            for future in waiting:
                future.set_exception(CommandError(Code.COMMAND_REJECTED,
                                                  f"JPEG encoding failed: {exc}"))
            return
        for future in waiting:
            future.set_result((jpeg, picture.capture_ms))

    def _audio_loop(self, encoder: AudioEncoder) -> None:
        from edgelive.hw.audio import MicError, UnsupportedSampleRate, open_audio

        plan = self.audio

        def silence_instead(why: str) -> AudioSource:
            # SPEC: a microphone that fails is -1302 and silence, so the stream keeps its
            # audio track (a receiver's player would otherwise wait for sound or drop it).
            self.events.emit(Code.PUSH_ERR_OPEN_MIC_FAIL, f"{why}; sending silence",
                             device=self.config.audio_device)
            return open_audio("silence", plan.sample_rate, plan.channels)

        try:
            mic = open_audio(self.config.audio_device, plan.sample_rate, plan.channels)
        except UnsupportedSampleRate as exc:
            self.events.emit(Code.PUSH_ERR_UNSUPPORTED_SAMPLERATE, str(exc),
                             rate=plan.sample_rate)
            return
        except MicError as exc:
            mic = silence_instead(str(exc))
        if mic.note:  # "auto" found no microphone: nothing failed, but say so once
            log.warning("pusher: %s", mic.note)
        try:
            while not self._stop.is_set():
                cfg = self.config
                mic.mute = cfg.muted or (cfg.background_mute and self.scene.waiting)
                try:
                    frame = mic.read()
                except MicError as exc:  # unplugged mid-stream
                    mic.close()
                    mic = silence_instead(f"microphone failed: {exc}")
                    continue
                start_ms = now_ms() - (self._t0_ms or now_ms())
                for packet in encoder.encode(frame, start_ms):
                    self._audio_rate.add(packet.size)
                    link = self._link
                    if link is not None:
                        link.send(packet, False, start_ms)
        except EncoderError as exc:
            self.events.emit(exc.code, str(exc))
        finally:
            mic.close()
            encoder.close()

    # -- link and state

    def _live_detail(self) -> dict[str, Any]:
        return {"width": self.video.width, "height": self.video.height,
                "encoder": self._encoder_name()}

    def _link_changed(self) -> None:
        link = self._link
        if link is not None and link.state is LinkState.GAVE_UP:
            self._end("gave_up")
        elif link is not None and link.state is LinkState.UP:
            self.scene.reannounce()  # 1002 ends "waiting" for listeners that track it
        self._state_changed()

    def _state_changed(self) -> None:
        with self._state_lock:
            state = self.state
            if state == self._reported_state:
                return
            self._reported_state = state
        self._on_state(state)

    def _encoder_name(self) -> str:
        return self._encoder.name if self._encoder else ""

    def _report(self) -> None:
        cpu = CpuMeter()
        last_tick = last_netstatus = time.monotonic()
        while True:
            self._adapt_now.wait(ADAPT_INTERVAL_S)
            self._adapt_now.clear()
            if self._stop.wait(max(0.0, last_tick + MIN_TICK_S - time.monotonic())):
                return
            last_tick = time.monotonic()
            link = self._link
            sender = link.stats() if link else None
            status = netstatus(
                video=self._video_rate, audio=self._audio_rate, gop_s=self.video.gop_seconds,
                width=self.video.width, height=self.video.height,
                sender=sender, cpu=cpu.percent(), encoder=self._encoder_name())
            adapter = self._adapter
            if adapter is not None:  # bitrate adaptation: target, size in use
                status.update(adapter.tick(sender, status["videoBitrate"],
                                           waiting=self.scene.waiting, plan=self.video))
                if link is not None:  # what the socket may hold in flight follows it
                    link.limit_rate(adapter.target_kbps + self.audio.kbps)
            self._last_status = status
            if last_tick - last_netstatus >= 1.0 - ADAPT_INTERVAL_S / 2:  # once a second
                last_netstatus = last_tick
                self._on_netstatus(status)
