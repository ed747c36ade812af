"""The pusher: camera → H.264/AAC → RTMP, reporting the seed's events and netstatus.

Threads, each blocking on its own I/O (no polling loops): capture+encode (paced by the
camera), audio (paced by the microphone), the link (connects, then hands packets to the
`PacketSender` thread) and netstatus (once a second). Capture never waits for the network:
without a link its packets are simply not sent, and a new link starts at a key frame —
which is what reconnecting and swapping in the waiting image build on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import av

from edgelive.codes import Code
from edgelive.config.presets import AudioPlan, VideoPlan, audio_plan, video_plan
from edgelive.config.schema import PusherConfig
from edgelive.events import EventLog, now_ms
from edgelive.media.encode import (
    AudioEncoder,
    EncoderError,
    VideoEncoder,
    open_video_encoder,
)
from edgelive.media.rtmp_out import PacketSender, PushNetError, RtmpOutput
from edgelive.pusher.netstatus import CpuMeter, RateMeter, netstatus
from edgelive.pusher.snapshot import jpeg_of

NetstatusCallback = Callable[[dict[str, Any]], None]


class CommandError(Exception):
    """A command cannot be carried out; `code` goes into the response."""

    def __init__(self, message: str, code: Code = Code.COMMAND_REJECTED) -> None:
        super().__init__(message)
        self.code = code


class Pusher:
    """One push session at a time; `start()` returns at once, progress comes as events."""

    def __init__(self, config: PusherConfig, events: EventLog,
                 on_netstatus: NetstatusCallback, *, hardware_available: bool = False) -> None:
        self.config = config
        self.events = events
        self._on_netstatus = on_netstatus
        self._hardware_available = hardware_available
        self.video: VideoPlan = video_plan(config)
        self.audio: AudioPlan = audio_plan(config)
        self.state = "idle"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._encoder: VideoEncoder | None = None
        self._audio_encoder: AudioEncoder | None = None
        self._sender: PacketSender | None = None
        self._t0_ms: int | None = None
        self._last_pts = -1
        self._snapshots: list[Future[tuple[bytes, int]]] = []
        self._video_rate = RateMeter()
        self._audio_rate = RateMeter()
        self.done = threading.Event()
        """Set when the session has ended, by stop() or by a fatal error."""

    # -- control

    def start(self) -> None:
        with self._lock:
            if self.state in ("starting", "pushing"):
                return
            self.state = "starting"
            self._stop.clear()
            self.done.clear()
            self._sender, self._t0_ms, self._last_pts = None, None, -1
            self._threads = [threading.Thread(target=self._capture, name="capture",
                                              daemon=True)]
        self._threads[0].start()

    def stop(self) -> None:
        """End the session and wait for its threads; safe twice."""
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._close_link()
        with self._lock:
            if self.state != "failed":
                self.state = "stopped"
        self.done.set()

    def snapshot(self, timeout: float = 3.0) -> tuple[bytes, int]:
        """JPEG of the next captured frame and its capture time (unix ms)."""
        if self.state not in ("starting", "pushing"):
            raise CommandError("not pushing: no camera frame to take")
        future: Future[tuple[bytes, int]] = Future()
        with self._lock:
            self._snapshots.append(future)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise CommandError("no camera frame within the time limit") from None

    def handle_command(self, verb: str, args: dict[str, Any]) -> dict[str, Any]:
        """Carry out one protocol command; returns its result or raises CommandError."""
        if verb == "start":
            self.start()
        elif verb == "stop":
            self.stop()
        elif verb == "snapshot":
            jpeg, capture_ms = self.snapshot()
            return {"jpeg": jpeg, "capture_ms": capture_ms}
        elif verb in ("pause", "resume", "switchCamera"):
            raise CommandError(f"{verb} is not yet supported")
        else:
            raise CommandError(f"unknown command {verb!r}")
        return {"state": self.state}

    # -- capture and encode

    def _fail(self, code: Code, message: str, **detail: Any) -> None:
        self.events.emit(code, message, **detail)
        with self._lock:
            self.state = "failed"
        self._stop.set()
        self.done.set()

    def _capture(self) -> None:
        from edgelive.hw.camera import CameraError, UnsupportedResolution, open_source

        plan, cfg = self.video, self.config
        spec = cfg.back_source if cfg.device_position == "back" and cfg.back_source \
            else cfg.source
        try:
            source = open_source(spec, width=plan.width, height=plan.height, fps=plan.fps,
                                 beauty=cfg.beauty, whiteness=cfg.whiteness, zoom=cfg.zoom,
                                 rotation=cfg.rotation, auto_focus=cfg.auto_focus)
        except UnsupportedResolution as exc:
            self._fail(Code.PUSH_ERR_UNSUPPORTED_RESOLUTION, str(exc), source=spec,
                       width=plan.width, height=plan.height)
            return
        except CameraError as exc:
            self._fail(Code.PUSH_ERR_OPEN_CAMERA_FAIL, str(exc), source=spec)
            return
        try:
            self.events.emit(Code.PUSH_EVT_OPEN_CAMERA_SUCC, f"camera {source.name} opened",
                             source=source.name, width=plan.width, height=plan.height,
                             fps=plan.fps)
            encoder = self._open_encoder()
            if encoder is None:
                return
            with encoder:
                self._encoder = encoder
                self._audio_encoder = AudioEncoder(self.audio)
                self._spawn(self._link, "link")
                self._spawn(self._report, "netstatus")
                self._spawn(self._audio_loop, "audio")
                self._encode_loop(source, encoder)
        except CameraError as exc:
            self._fail(Code.PUSH_ERR_OPEN_CAMERA_FAIL, f"camera failed: {exc}")
        except EncoderError as exc:
            self._fail(exc.code, str(exc))
        finally:
            source.close()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _open_encoder(self) -> VideoEncoder | None:
        try:
            encoder, fallback = open_video_encoder(
                self.video, self.config.encoder, hardware_available=self._hardware_available)
        except EncoderError as exc:
            self._fail(exc.code, str(exc))
            return None
        if fallback:
            self.events.emit(Code.PUSH_WARNING_HW_ACCELERATION_FAIL,
                             f"{fallback}; using the software encoder", encoder=encoder.name)
        return encoder

    def _stream_ms(self, capture_ms: int) -> int:
        """Capture time on the stream clock, strictly increasing for the muxer."""
        if self._t0_ms is None:
            self._t0_ms = capture_ms
        pts = max(capture_ms - self._t0_ms, self._last_pts + 1)
        self._last_pts = pts
        return pts

    def _encode_loop(self, source: Any, encoder: VideoEncoder) -> None:
        while not self._stop.is_set():
            frame = source.read()
            pts = self._stream_ms(frame.capture_ms)
            if self._snapshots:
                self._answer_snapshots(frame.image, frame.capture_ms)
            for packet in encoder.encode(frame.image, pts):
                self._video_rate.add(packet.size)
                sender = self._sender
                if sender is not None:
                    sender.put(packet, True, pts)

    def _answer_snapshots(self, image: av.VideoFrame, capture_ms: int) -> None:
        with self._lock:
            waiting, self._snapshots = self._snapshots, []
        try:
            jpeg = jpeg_of(image)
        except (av.FFmpegError, ValueError) as exc:
            for future in waiting:
                future.set_exception(CommandError(f"JPEG encoding failed: {exc}"))
            return
        for future in waiting:
            future.set_result((jpeg, capture_ms))

    def _audio_loop(self) -> None:
        from edgelive.hw.audio import MicError, UnsupportedSampleRate, open_audio

        plan, encoder = self.audio, self._audio_encoder
        assert encoder is not None
        try:
            mic = open_audio(self.config.audio_device, plan.sample_rate, plan.channels)
        except UnsupportedSampleRate as exc:
            self.events.emit(Code.PUSH_ERR_UNSUPPORTED_SAMPLERATE, str(exc),
                             rate=plan.sample_rate)
            return
        except MicError as exc:
            self.events.emit(Code.PUSH_ERR_OPEN_MIC_FAIL, str(exc))
            return
        mic.mute = self.config.muted
        try:
            while not self._stop.is_set():
                frame = mic.read()
                start_ms = now_ms() - (self._t0_ms or now_ms())
                for packet in encoder.encode(frame, start_ms):
                    self._audio_rate.add(packet.size)
                    sender = self._sender
                    if sender is not None:
                        sender.put(packet, False, start_ms)
        except MicError as exc:
            self.events.emit(Code.PUSH_ERR_OPEN_MIC_FAIL, f"microphone failed: {exc}")
        except EncoderError as exc:
            self.events.emit(exc.code, str(exc))
        finally:
            mic.close()
            encoder.close()

    # -- network

    def _link(self) -> None:
        """Connect and publish (1001); the sender reports the first packet (1002)."""
        assert self._encoder is not None and self._audio_encoder is not None
        output = RtmpOutput(self._encoder.params, self._audio_encoder.params)
        try:
            output.open(self.config.url)
        except PushNetError as exc:
            self._on_link_error(exc)
            return
        if self._stop.is_set():
            output.close()
            return
        self.events.emit(Code.PUSH_EVT_CONNECT_SUCC, "connected to the RTMP server")
        sender = PacketSender(output, on_error=self._on_link_error,
                              on_first_packet=self._on_push_begin)
        sender.start()
        self._encoder.force_keyframe()
        self._sender = sender

    def _on_push_begin(self) -> None:
        with self._lock:
            self.state = "pushing"
        self.events.emit(Code.PUSH_EVT_PUSH_BEGIN, "publishing", width=self.video.width,
                         height=self.video.height, encoder=self._encoder_name())

    def _on_link_error(self, exc: PushNetError) -> None:
        """The session is lost. Reconnecting (1102 …) builds on this hook."""
        self.events.emit(exc.code, str(exc))
        self._fail(Code.PUSH_STOPPED, "push stopped: the RTMP session failed")

    def _close_link(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.stop()

    def _encoder_name(self) -> str:
        return self._encoder.name if self._encoder else ""

    def _report(self) -> None:
        cpu = CpuMeter()
        while not self._stop.wait(1.0):
            sender = self._sender
            self._on_netstatus(netstatus(
                video=self._video_rate, audio=self._audio_rate, gop_s=self.video.gop_seconds,
                width=self.video.width, height=self.video.height,
                sender=sender.stats() if sender else None, cpu=cpu.percent(),
                encoder=self._encoder_name()))
