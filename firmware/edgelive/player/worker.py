"""The player worker: feeds → playbacks → one screen, driven by commands (SPEC §4).

Rendering happens on one thread, the one that made the sink (SDL requires it); feeds read
the network in their own threads. The loop sleeps until the next picture is due, data or a
command arrives, or 0.1 s passes; sound rides along with pictures (player/feed.py), so a
steady stream costs about two wake-ups per picture: its arrival and its due time. Commands from
any thread are queued and run between frames. Each second (and on every change) a state
line and the netstatus go out; events as they happen.
"""

from __future__ import annotations

import base64
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edgelive import verbs
from edgelive.codes import Code
from edgelive.config.schema import PlayerConfig
from edgelive.events import Event, EventLog, now_ms
from edgelive.hw.display import VideoSink
from edgelive.hw.display_status import DisplayStatus
from edgelive.ipc import LineWriter
from edgelive.media.jpeg import encode_jpeg
from edgelive.player.backup import BackupSource
from edgelive.player.display_follow import DisplayFollower
from edgelive.player.feed import Feed
from edgelive.player.playback import AudioOut, Playback
from edgelive.player.screen import ScreenState, compose, debug_lines, screen_state
from edgelive.policy.buffer import PLAY_STALL_LAG, targets_for
from edgelive.policy.reconnect import ReconnectPolicy
from edgelive.verbs import CommandError

REPORT_INTERVAL = 1.0
MAX_WAIT = 0.1
"""Longest sleep of the render loop: window events, lag checks and buffer control."""
STREAM_KEYS = ("src", "pip_src", "backup_src", "picture_in_picture_mode", "mode",
               "reconnect", "decoder", "ca_file")
"""Config keys whose change restarts the streams; any other key applies in place."""
_FEED_TO_STATE = {"connecting": "connecting", "playing": "playing", "ended": "connecting",
                  "reconnecting": "reconnecting", "disconnected": "reconnecting",
                  "stopped": "stopped", "idle": "connecting"}


class Player:
    """Plays `config.src` (and `pip-src`, `backup-src`) on `sink`; call `run()` on the
    rendering thread, everything else from any thread."""

    def __init__(self, config: PlayerConfig, sink: VideoSink, events: EventLog, *,
                 out: LineWriter | None = None,
                 speaker: Callable[[], AudioOut | None] | None = None,
                 prefer_hardware: bool | None = None) -> None:
        self.config = config
        self.sink = sink
        self.events = events
        self._out = out
        self._make_speaker = speaker
        self._speaker: AudioOut | None = None
        self._prefer_hardware = prefer_hardware
        self._commands: deque[tuple[dict[str, Any], Callable[[dict], None]]] = deque()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.main: Playback | None = None
        self.pip: Playback | None = None
        self._backup = BackupSource(events, self._start_backup)
        self.paused = False
        self._stopped = False
        self._display = DisplayFollower(events)
        self.fullscreen = not config.layout
        self.shown_ms = 0
        """Wall-clock ms when the picture on screen was first shown."""
        self._on_screen: Any = None
        self.netstatus: dict[str, Any] = {}
        self._recent: deque[str] = deque(maxlen=5)
        self._screen: ScreenState | None = None
        self._reported_state: tuple[str, bool] | None = None
        events.subscribe(self._on_event)

    # -- thread-safe entry points

    def submit(self, cmd: dict[str, Any], reply: Callable[[dict], None] | None = None) -> None:
        """Queue a command `{"id", "verb", "args"}`; `reply` gets the response dict."""
        self._commands.append((cmd, reply or self._write_response))
        self._wake.set()

    def request(self, verb: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        """Run a command from another thread and wait for its response."""
        done: queue.Queue[dict] = queue.Queue()
        self.submit({"id": verb, "verb": verb, "args": args}, done.put)
        return done.get(timeout=timeout)

    def display_changed(self, status: DisplayStatus) -> None:
        """The display was plugged/unplugged or turned on/off (DisplayWatcher callback)."""
        self._display.status = status
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- the render loop

    def run(self, duration: float | None = None) -> None:
        clock, wake = time.monotonic, self._wake
        deadline = math.inf if duration is None else clock() + duration
        next_report = last_loop = clock()
        if self.config.autoplay and self.config.src:
            self._play()
        try:
            while not self._stop.is_set() and clock() < deadline:
                wake.clear()
                if self._commands:
                    self._run_commands()
                if self._display.status is not None:
                    self._follow_display()
                changed = False
                for playback in self._playbacks():
                    changed |= playback.step()
                self._backup.follow(self.main, bool(self.config.backup_src), self.paused)
                state = self._screen_state()
                if changed or state != self._screen:
                    self._screen = state
                    self._present()
                now = clock()
                if now - last_loop > PLAY_STALL_LAG:
                    self.events.emit(Code.PLAY_WARNING_VIDEO_PLAY_LAG, "render loop stalled",
                                     lag_ms=round((now - last_loop) * 1000))
                last_loop = now
                if now >= next_report:
                    next_report = now + REPORT_INTERVAL
                    self._report_netstatus()
                    self._report_state(heartbeat=True)
                else:
                    self._report_state(heartbeat=False)
                if not self.sink.pump():
                    break
                self._sleep(max(0.0, min(MAX_WAIT, next_report - now)))
        finally:
            self._stop_feeds()
            self._run_commands()
            self._report_state(heartbeat=False)

    def _sleep(self, longest: float) -> None:
        """Sleep until the next picture is due, data arrives or `longest` s pass."""
        for playback in self._playbacks():
            longest = min(longest, playback.next_due_in())
        self._wake.wait(max(0.0, longest))

    def close(self) -> None:
        self._stop_feeds()
        close = getattr(self._speaker, "close", None)
        if close is not None:
            close()
        self.sink.close()

    @property
    def backup(self) -> Playback | None:
        """The backup-src playback while it runs."""
        return self._backup.playback

    def _playbacks(self) -> list[Playback]:
        return [p for p in (self.main, self.pip, self._backup.playback) if p is not None]

    # -- playing

    def _playback(self, url: str, role: str, audio: AudioOut | None) -> Playback:
        r = self.config.reconnect
        policy = ReconnectPolicy(r.attempts, r.first_delay, r.max_delay, r.give_up)
        feed = Feed(url, self.events, policy, role=role, on_arrival=self._wake.set,
                    ca_file=self.config.ca_file)
        prefer = (self.config.decoder != "software" if self._prefer_hardware is None
                  else self._prefer_hardware)
        playback = Playback(feed, self.events, self._targets(), prefer_hardware=prefer,
                            audio=audio)
        feed.start()
        return playback

    def _targets(self) -> Any:
        return targets_for(self.config.mode, self.config.min_cache, self.config.max_cache)

    def _play(self) -> None:
        self._stop_feeds()
        if self._speaker is None and self._make_speaker is not None:
            try:
                self._speaker = self._make_speaker()
            except RuntimeError as exc:
                self._make_speaker = None
                self.events.emit(Code.AUDIO_DEVICE_FAIL, f"no sound: {exc}")
        self._apply_mute()
        self.paused = self._stopped = False
        self.main = self._playback(self.config.src, "main", self._speaker)
        if self.config.picture_in_picture_mode != "off" and self.config.pip_src:
            self.pip = self._playback(self.config.pip_src, "pip", None)
        if self._display.paused:
            self._set_paused(True)

    def _start_backup(self) -> Playback:
        return self._playback(self.config.backup_src, "backup", self._speaker)

    def _stop_feeds(self) -> None:
        for playback in self._playbacks():
            playback.feed.stop()
        self.pip = None
        self._backup.stop()

    def _set_paused(self, paused: bool) -> None:
        for playback in self._playbacks():
            if paused:
                playback.pause()
            else:
                playback.resume()

    def _shown(self) -> Playback | None:
        """The playback on the main screen area: src, or backup-src while src is away."""
        return self._backup.playback if self._backup.showing else self.main

    def _follow_display(self) -> None:
        """Apply auto-pause and background-mute when the display's status changed."""
        was_paused = self._display.paused
        if not self._display.follow(self.config):
            return
        if self._display.paused != was_paused and not self.paused:
            self._set_paused(self._display.paused)  # a user's pause stays until resumed
        self._apply_mute()

    def _audible(self) -> bool:
        return self._display.audible(self.config)

    def _apply_mute(self) -> None:
        if self._speaker is not None:
            self._speaker.muted = not self._audible()

    # -- commands

    def _run_commands(self) -> None:
        while self._commands:
            cmd, reply = self._commands.popleft()
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
        args = verbs.checked("player", verb, args)
        if verb == "play":
            src = str(args.get("src") or self.config.src)
            if not src:
                raise CommandError(Code.COMMAND_REJECTED, "no src to play")
            if src != self.config.src or self.main is None:
                self.config = self.config.model_copy(update={"src": src})
                self._play()
            elif self.paused:
                self._user_pause(False)
        elif verb == "stop":
            self._stop_feeds()
            self.main = None
            self.paused, self._stopped = False, True
            self.events.emit(Code.PLAY_STOPPED, "stopped")
        elif verb in ("pause", "resume"):
            self._user_pause(verb == "pause")
        elif verb == "mute":
            muted = verbs.switched(args, self.config.muted)
            self.config = self.config.model_copy(update={"muted": muted})
            self._apply_mute()
        elif verb in ("requestFullScreen", "exitFullScreen"):
            # with no layout box there is nothing smaller to exit to
            self._set_fullscreen(verb == "requestFullScreen" or not self.config.layout)
        elif verb == "snapshot":
            return self._snapshot()
        return self.state()

    def _user_pause(self, paused: bool) -> None:
        if self.main is None or paused == self.paused:
            return
        self.paused = paused
        if not self._display.paused:
            self._set_paused(paused)

    def _set_fullscreen(self, fullscreen: bool) -> None:
        if fullscreen != self.fullscreen:
            self.fullscreen = fullscreen
            self.events.emit(Code.PLAY_FULLSCREEN_CHANGE,
                             "full screen" if fullscreen else "back to the layout box",
                             fullScreen=fullscreen, direction=self.config.orientation)

    def apply_config(self, section: dict[str, Any]) -> None:
        """A live config change: streams restart only when what they play changed."""
        merged = {**self.config.model_dump(by_alias=True), **section}
        new = PlayerConfig.model_validate(merged)
        restart = any(getattr(new, k) != getattr(self.config, k) for k in STREAM_KEYS)
        old, self.config = self.config, new
        if new.layout != old.layout:
            self._set_fullscreen(not new.layout)
        running = self.main is not None
        if new.src and ((restart and running) or (new.autoplay and not running
                                                   and not self._stopped)):
            self._play()
        elif running:
            for playback in self._playbacks():
                playback.set_targets(self._targets())
        self._display.reapply()  # auto-pause and background-mute may have changed
        self._apply_mute()

    def _snapshot(self) -> dict[str, Any]:
        shown = self._shown()
        picture = shown.picture if shown is not None else None
        if picture is None:
            raise CommandError(Code.COMMAND_REJECTED, "nothing shown yet")
        jpeg = encode_jpeg(picture)
        self.events.emit(Code.SNAPSHOT_TAKEN, "snapshot", bytes=len(jpeg))
        return {"jpeg": base64.b64encode(jpeg).decode(), "ts": self.shown_ms,
                "width": picture.width, "height": picture.height}

    def play_state(self) -> str:
        """idle | connecting | playing | paused | reconnecting | stopped"""
        if self.main is None:
            return "stopped" if self._stopped else "idle"
        if self.paused or self._display.paused:
            return "paused"
        if self._backup.showing:
            return "playing"
        return _FEED_TO_STATE.get(self.main.feed.state, "connecting")

    def state(self) -> dict[str, Any]:
        main = self.main
        return {"state": self.play_state(), "playing": main is not None and not self.paused,
                "paused": self.paused, "muted": self.config.muted,
                "fullscreen": self.fullscreen, "src": self.config.src, "mode": self.config.mode,
                "feed": main.feed.state if main else "idle", "backup": self.backup is not None,
                "audible": self._speaker is not None and self._audible()}

    # -- screen

    def _screen_state(self) -> ScreenState:
        shown = self._shown()
        feed_state = shown.feed.state if shown is not None else "idle"
        has_picture = shown is not None and shown.picture is not None
        return screen_state(self.config, feed_state, has_picture, self.fullscreen,
                            self.paused or self._display.paused, self.netstatus)

    def _present(self) -> None:
        assert self._screen is not None
        shown = self._shown()
        pip = self.pip.picture if self.pip is not None else None
        picture = shown.picture if shown is not None else None
        lines = debug_lines(self.netstatus, list(self._recent)) if self.config.debug else []
        layers = compose(self.config, self.sink.size, self._screen, picture, pip, lines)
        flipped = self.sink.present(layers)
        if picture is not self._on_screen:
            self._on_screen, self.shown_ms = picture, flipped

    # -- reporting

    def _on_event(self, event: Event) -> None:
        self._recent.append(f"{event.code} {event.name}"[:40])
        if self._out is not None:
            self._out.write("event", event.to_dict())

    def _write_response(self, response: dict[str, Any]) -> None:
        if self._out is not None:
            self._out.write("response", response)

    def _report_state(self, heartbeat: bool) -> None:
        state = self.play_state()
        if (state, self.config.muted) == self._reported_state and not heartbeat:
            return
        self._reported_state = (state, self.config.muted)
        if self._out is not None:
            self._out.write("state", {"src": "player", "state": state, "ts": now_ms(),
                                      "backup": self.backup is not None,
                                      "muted": self.config.muted})

    def _report_netstatus(self) -> None:
        shown = self._shown()
        self.netstatus = {"src": "player", "ts": now_ms(), "state": self.play_state()}
        if shown is not None:
            self.netstatus.update({**shown.stats.snapshot(1.0), **shown.snapshot_state(),
                                   "state": self.play_state()})
            if shown is self.backup:
                self.netstatus["backup"] = True
        if self.pip is not None:
            self.netstatus["pip"] = {**self.pip.stats.snapshot(1.0),
                                     **self.pip.snapshot_state()}
        if self._out is not None:
            self._out.write("netstatus", self.netstatus)
