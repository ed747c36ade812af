"""The player worker: feeds → playbacks → one screen, driven by commands (SPEC §4).

Rendering happens on one thread, the one that made the sink (SDL requires it); feeds read
the network in their own threads, and commands arriving from any thread are queued and
run between frames. Netstatus goes out every second, events as they happen.
"""

from __future__ import annotations

import base64
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

from edgelive.codes import Code
from edgelive.config.schema import PlayerConfig
from edgelive.events import Event, EventLog, now_ms
from edgelive.hw.display import Layer, VideoSink
from edgelive.ipc import LineWriter
from edgelive.player.feed import Feed
from edgelive.player.playback import AudioOut, Playback
from edgelive.player.render import main_box, picture_layer, pip_box, slate_layer, text_layer
from edgelive.policy.buffer import PLAY_STALL_LAG, targets_for
from edgelive.policy.reconnect import ReconnectPolicy

VERBS = ("play", "stop", "pause", "resume", "mute", "requestFullScreen", "exitFullScreen",
         "snapshot")
NETSTATUS_INTERVAL = 1.0
MAX_SLEEP = 0.01


class CommandError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode_jpeg(frame: av.VideoFrame, quality: int = 5) -> bytes:
    """A JPEG of a decoded picture (MJPEG encoder; `quality` is its qscale, 2 = best)."""
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = frame.width, frame.height
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.qmin = ctx.qmax = quality
    picture = frame.reformat(format="yuvj420p")
    picture.pts = 0
    return b"".join(bytes(p) for p in [*ctx.encode(picture), *ctx.encode(None)])


class Player:
    """Plays `config.src` (and `pip-src`) on `sink`; call `run()` on the rendering thread."""

    def __init__(self, config: PlayerConfig, sink: VideoSink, events: EventLog, *,
                 out: LineWriter | None = None,
                 speaker: Callable[[], AudioOut | None] | None = None,
                 prefer_hardware: bool = True) -> None:
        self.config = config
        self.sink = sink
        self.events = events
        self._out = out
        self._make_speaker = speaker
        self._speaker: AudioOut | None = None
        self._prefer_hardware = prefer_hardware
        self._commands: queue.Queue[tuple[dict[str, Any], Callable[[dict], None]]] = \
            queue.Queue()
        self._stop = threading.Event()
        self.main: Playback | None = None
        self.pip: Playback | None = None
        self.paused = False
        self.fullscreen = not config.layout
        self.shown_ms = 0
        self.netstatus: dict[str, Any] = {}
        self._recent: deque[str] = deque(maxlen=5)
        self._overlay_key: tuple = ()
        events.subscribe(self._on_event)

    # -- thread-safe entry points

    def submit(self, cmd: dict[str, Any], reply: Callable[[dict], None] | None = None) -> None:
        """Queue a command `{"id", "verb", "args"}`; `reply` gets the response dict."""
        self._commands.put((cmd, reply or self._write_response))

    def request(self, verb: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        """Run a command from another thread and wait for its response."""
        done: queue.Queue[dict] = queue.Queue()
        self.submit({"id": verb, "verb": verb, "args": args}, done.put)
        return done.get(timeout=timeout)

    def stop(self) -> None:
        self._stop.set()

    # -- the render loop

    def run(self, duration: float | None = None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        next_stat = time.monotonic() + NETSTATUS_INTERVAL
        last_loop = time.monotonic()
        if self.config.autoplay and self.config.src:
            self._play()
        try:
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                self._run_commands()
                changed = False
                for playback in (self.main, self.pip):
                    if playback is not None:
                        changed |= playback.step()
                overlay = self._overlay_state()
                if changed or overlay != self._overlay_key:
                    self._overlay_key = overlay
                    self._present()
                now = time.monotonic()
                if now - last_loop > PLAY_STALL_LAG:
                    self.events.emit(Code.PLAY_WARNING_VIDEO_PLAY_LAG, "render loop stalled",
                                     lag_ms=round((now - last_loop) * 1000))
                last_loop = now
                if now >= next_stat:
                    next_stat = now + NETSTATUS_INTERVAL
                    self._report_netstatus()
                if not self.sink.pump():
                    break
                waits = [p.next_due_in() for p in (self.main, self.pip) if p is not None]
                self._stop.wait(min([MAX_SLEEP, *waits]) if waits else MAX_SLEEP)
        finally:
            self._stop_feeds()
            self._run_commands()

    def close(self) -> None:
        self._stop_feeds()
        close = getattr(self._speaker, "close", None)
        if close is not None:
            close()
        self.sink.close()

    # -- playing

    def _playback(self, url: str, role: str, audio: AudioOut | None) -> Playback:
        r = self.config.reconnect
        policy = ReconnectPolicy(r.attempts, r.first_delay, r.max_delay, r.give_up)
        feed = Feed(url, self.events, policy, role=role)
        targets = targets_for(self.config.mode, self.config.min_cache, self.config.max_cache)
        playback = Playback(feed, self.events, targets, prefer_hardware=self._prefer_hardware,
                            audio=audio)
        feed.start()
        return playback

    def _play(self) -> None:
        self._stop_feeds()
        if self._speaker is None and self._make_speaker is not None:
            try:
                self._speaker = self._make_speaker()
            except RuntimeError as exc:
                self._make_speaker = None
                self.events.emit(Code.AUDIO_DEVICE_FAIL, f"no sound: {exc}")
        if self._speaker is not None and hasattr(self._speaker, "muted"):
            self._speaker.muted = self.config.muted  # type: ignore[union-attr]
        self.paused = False
        self.main = self._playback(self.config.src, "main", self._speaker)
        if self.config.picture_in_picture_mode != "off" and self.config.pip_src:
            self.pip = self._playback(self.config.pip_src, "pip", None)

    def _stop_feeds(self) -> None:
        for playback in (self.main, self.pip):
            if playback is not None:
                playback.feed.stop()

    # -- commands

    def _run_commands(self) -> None:
        while True:
            try:
                cmd, reply = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                result = self._execute(str(cmd.get("verb")), dict(cmd.get("args") or {}))
                reply({"id": cmd.get("id"), "ok": True, "code": 0, "result": result})
            except CommandError as exc:
                reply({"id": cmd.get("id"), "ok": False, "code": exc.code, "error": str(exc)})

    def _execute(self, verb: str, args: dict[str, Any]) -> dict[str, Any]:
        if verb == "config":  # a live config change from the supervisor
            try:
                self.apply_config(args)
            except ValueError as exc:
                raise CommandError(Code.CONFIG_REJECTED, str(exc)) from None
            return self.state()
        if verb not in VERBS:
            raise CommandError(Code.COMMAND_REJECTED, f"unknown verb {verb!r}")
        if verb == "play":
            if args.get("src"):
                self.config = self.config.model_copy(update={"src": str(args["src"])})
            if not self.config.src:
                raise CommandError(Code.COMMAND_REJECTED, "no src to play")
            self._play()
        elif verb == "stop":
            self._stop_feeds()
            self.main = self.pip = None
            self.events.emit(Code.PLAY_STOPPED, "stopped")
        elif verb == "pause":
            self._stop_feeds()  # the last picture stays on screen
            self.paused = True
        elif verb == "resume":
            if self.paused and self.main is not None:
                self._play()
        elif verb == "mute":
            muted = bool(args.get("muted", True))
            self.config = self.config.model_copy(update={"muted": muted})
            if self._speaker is not None and hasattr(self._speaker, "muted"):
                self._speaker.muted = muted  # type: ignore[union-attr]
        elif verb in ("requestFullScreen", "exitFullScreen"):
            self.fullscreen = verb == "requestFullScreen"
            self._present()
        elif verb == "snapshot":
            return self._snapshot()
        return self.state()

    def apply_config(self, section: dict[str, Any]) -> None:
        """A live config change: restart the streams only when what they play changed."""
        merged = {**self.config.model_dump(by_alias=True), **section}
        new = PlayerConfig.model_validate(merged)
        restart_keys = ("src", "pip_src", "picture_in_picture_mode", "mode", "min_cache",
                        "max_cache", "reconnect")
        restart = any(getattr(new, k) != getattr(self.config, k) for k in restart_keys)
        self.config = new
        self.fullscreen = not new.layout
        running = self.main is not None
        if new.src and ((restart and running) or (new.autoplay and not running)):
            self._play()

    def _snapshot(self) -> dict[str, Any]:
        picture = self.main.picture if self.main is not None else None
        if picture is None:
            raise CommandError(Code.COMMAND_REJECTED, "nothing shown yet")
        jpeg = encode_jpeg(picture)
        self.events.emit(Code.SNAPSHOT_TAKEN, "snapshot", bytes=len(jpeg))
        return {"jpeg": base64.b64encode(jpeg).decode(), "shown_ms": self.shown_ms,
                "width": picture.width, "height": picture.height}

    def state(self) -> dict[str, Any]:
        main = self.main
        return {"playing": main is not None and not self.paused, "paused": self.paused,
                "muted": self.config.muted, "fullscreen": self.fullscreen,
                "src": self.config.src, "mode": self.config.mode,
                "feed": main.feed.state if main else "idle"}

    # -- screen

    def _overlay_state(self) -> tuple:
        main = self.main
        feed_state = main.feed.state if main is not None else "idle"
        ended = main is not None and main.picture is None and feed_state == "ended"
        debug = self.netstatus.get("ts") if self.config.debug else None
        return (feed_state, ended, self.fullscreen, debug)

    def _present(self) -> None:
        screen = self.sink.size
        box = main_box(screen, self.config.layout, self.fullscreen)
        layers: list[Layer] = []
        main = self.main
        state = main.feed.state if main is not None else "idle"
        if main is not None and main.picture is not None and state != "disconnected":
            layers.append(picture_layer("main", main.picture, box, self.config.object_fit,
                                        self.config.orientation))
            if state == "reconnecting":
                layers.append(text_layer("status", ["RECONNECTING..."], box, "center", 3))
        elif main is not None:
            message = {"disconnected": "STREAM UNAVAILABLE - RETRYING",
                       "ended": "STREAM ENDED"}.get(state, "CONNECTING...")
            layers.extend(slate_layer("slate", box, message))
        if self.pip is not None and self.pip.picture is not None:
            layers.append(picture_layer("pip", self.pip.picture,
                                        pip_box(screen, self.config.picture_in_picture_mode),
                                        "contain", self.config.orientation))
        if self.config.debug:
            layers.append(text_layer("debug", self._debug_lines(), box))
        self.shown_ms = self.sink.present(layers)

    def _debug_lines(self) -> list[str]:
        n = self.netstatus
        return [f"{n.get('videoWidth', 0)}x{n.get('videoHeight', 0)} "
                f"{n.get('videoFPS', 0)}FPS {n.get('videoBitrate', 0)}KBPS",
                f"CACHE {n.get('cache', 0)}S JITTER {n.get('netJitter', 0)}MS "
                f"DROP {n.get('droppedFrames', 0)}", *self._recent]

    # -- reporting

    def _on_event(self, event: Event) -> None:
        self._recent.append(f"{event.code} {event.name}"[:40])
        if self._out is not None:
            self._out.write("event", event.to_dict())

    def _write_response(self, response: dict[str, Any]) -> None:
        if self._out is not None:
            self._out.write("response", response)

    def _report_netstatus(self) -> None:
        main = self.main
        if main is None:
            self.netstatus = {"src": "player", "ts": now_ms(), "state": "idle"}
        else:
            self.netstatus = {"src": "player", "ts": now_ms(), **main.stats.snapshot(1.0),
                              **main.snapshot_state()}
            if self.pip is not None:
                self.netstatus["pip"] = {**self.pip.stats.snapshot(1.0),
                                         **self.pip.snapshot_state()}
        if self._out is not None:
            self._out.write("netstatus", self.netstatus)
