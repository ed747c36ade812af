"""The supervisor: one asyncio loop that runs the box (SPEC §1, §2, §5, §6).

It owns the config store, starts the pusher and player as worker processes, relays their
events and netstatus to the log, the LEDs and the fleet agent, and implements the agent's
`AgentHost`: desired config is applied live where the worker can take it and by restarting
only the affected worker otherwise; commands are routed to the worker they name.
Nothing here blocks the loop: file writes go to a thread, workers are separate processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelive import __version__, verbs
from edgelive.codes import Code, Source
from edgelive.config.schema import EdgeliveConfig
from edgelive.config.store import (
    ApplyResult,
    ConfigStore,
    changed_keys,
    redacted,
    to_document,
)
from edgelive.events import Event, EventLog
from edgelive.fleet.agent import AgentIdentity, FleetAgent
from edgelive.hw.board import BoardProfile, default_device_id
from edgelive.sdnotify import Notifier, watchdog_interval
from edgelive.supervisor import care
from edgelive.supervisor.indicators import Indicators
from edgelive.update.service import Updater, UpdateRefused
from edgelive.verbs import CommandError
from edgelive.workers import WorkerError, WorkerProcess, worker_argv

if TYPE_CHECKING:
    from edgelive.web.server import WebConsole

log = logging.getLogger("edgelive")

WORKERS = ("pusher", "player")  # command targets run by a worker process (edgelive.verbs)
START_VERB = {"pusher": "start", "player": "play"}
# Keys a running worker takes without a restart (sent to it as a config line); any other
# change in its section restarts that worker alone.
LIVE_KEYS = {
    "pusher": {"min-bitrate", "max-bitrate", "muted", "enable-camera", "waiting-image",
               "waiting-image-hash", "background-mute", "beauty", "whiteness", "zoom",
               "debug", "waiting-timeout", "autopush"},
    "player": {"muted", "object-fit", "orientation", "layout", "debug", "background-mute",
               "min-cache", "max-cache", "autoplay"},
}
RECENT_EVENTS = 50
WORKER_STALE_AFTER_S = 90.0
"""A configured worker silent this long (start timeout + crash-loop backoff) is beyond the
worker restarts' help: the systemd watchdog ping stops, and systemd restarts the box."""


@dataclass
class WorkerSlot:
    """A worker and what the supervisor wants of it."""

    kind: str
    process: WorkerProcess | None = None
    wanted: bool = False  # started by autopush/autoplay or a command, not stopped since
    state: str = "off"
    muted: bool | None = None  # as the worker reports it (player), None before it has
    netstatus: dict[str, Any] = field(default_factory=dict)


class Supervisor:
    def __init__(self, store: ConfigStore, board: BoardProfile, *,
                 notifier: Notifier | None = None, pin_factory: Any = None,
                 hang_timeout: float = 5.0, health_root: Path = Path("/"),
                 reboot_request: Path | None = None,
                 worker_stale_after: float = WORKER_STALE_AFTER_S) -> None:
        self.store = store
        self.board = board
        self.notifier = notifier or Notifier()
        self.config: EdgeliveConfig = store.load()
        self.events = EventLog(Source.DEVICE)
        self.events.subscribe(self._on_event)
        self.recent: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self.privacy = False
        self.started = time.monotonic()
        self._hang_timeout = hang_timeout
        self._pin_factory = pin_factory
        self._slots = {kind: WorkerSlot(kind) for kind in WORKERS}
        self._player_muted: bool | None = None  # set by cmd/player/mute, over player.muted
        self._agent: FleetAgent | None = None
        self._agent_task: asyncio.Task[None] | None = None
        self._web: WebConsole | None = None
        self._preview_socket: str | None = None  # where the pusher's preview tap writes
        self._local_config = asyncio.Lock()
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.indicators = self._make_indicators()
        self._health_root = health_root
        self._worker_stale_after = worker_stale_after
        self.care = care.Care(self, store.state_dir, health_root=health_root,
                              reboot_request=reboot_request)
        self.updater = Updater(self, store.state_dir)  # $EDGELIVE_UPDATE_ROOT, docs/updates.md

    # -- lifecycle

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        self.indicators.attach(loop)
        self.care.start()  # its log ring from the first line on
        if self.store.load_errors:
            self.indicators.set_flags(boot_config_rejected=True)
            self.events.emit(Code.CONFIG_REJECTED, "stored or boot config rejected; running on "
                             "the last good config", errors=self.store.load_errors)
        self._slots["pusher"].wanted = self.config.pusher.autopush
        self._slots["player"].wanted = self.config.player.autoplay
        for slot in self._slots.values():
            await self._sync_worker(slot)
        self._start_agent()
        await self._start_web()
        self.events.emit(Code.READY, f"edgelive {__version__} ready on {self.board.name}",
                         board=self.board.key)
        self.notifier.ready(self.status_text())
        self.updater.start()  # judges a release on probation, reports a rollback
        watchdog = asyncio.create_task(self._watchdog())
        try:
            await self._stop.wait()
        finally:
            watchdog.cancel()
            self.care.stop()
            self.updater.stop()
            await self.shutdown()

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        self.notifier.stopping()
        for slot in self._slots.values():
            if slot.process is not None:
                await slot.process.stop()
                slot.process = None
        await self._stop_agent()
        await self._stop_web()
        self.indicators.close()

    async def _watchdog(self) -> None:
        interval = watchdog_interval() or 2.0
        while True:
            await asyncio.sleep(interval)
            stale = self.stale_workers()
            if not stale:  # the loop runs and every worker is heard from
                self.notifier.watchdog()
            self.notifier.status(self.status_text() + "".join(
                f"; {kind} worker silent for {self._slots[kind].process.silent_for:.0f} s"
                for kind in stale if self._slots[kind].process))

    def stale_workers(self) -> list[str]:
        """Running workers not heard from in `worker_stale_after` s."""
        return [kind for kind, slot in self._slots.items() if slot.process is not None
                and slot.process.silent_for > self._worker_stale_after]

    def status_text(self) -> str:
        parts = [f"{kind} {slot.state}" for kind, slot in self._slots.items()]
        if self.config.mqtt.host:
            parts.append("mqtt " + ("connected" if self._agent and self._agent.connected
                                    else "offline"))
        return ", ".join(parts)

    # -- workers

    async def _sync_worker(self, slot: WorkerSlot) -> None:
        """Run the worker when its section is configured; stop it when not."""
        section = getattr(self.config, slot.kind)
        configured = bool(section.url if slot.kind == "pusher" else section.src)
        if configured and slot.process is None:
            slot.process = WorkerProcess(
                slot.kind, worker_argv("push" if slot.kind == "pusher" else "play"),
                initial_lines=lambda s=slot: self._initial_lines(s),
                on_message=self._on_worker_message, on_restart=self._on_worker_restart,
                hang_timeout=self._hang_timeout)
            slot.process.start()
            slot.state = "idle"
        elif not configured and slot.process is not None:
            process, slot.process, slot.state = slot.process, None, "off"
            await process.stop()

    def _initial_lines(self, slot: WorkerSlot) -> list[dict[str, Any]]:
        """What a (re)started worker is told: its section, then what it should be doing."""
        lines: list[dict[str, Any]] = [{"type": "config", "config": self._section(slot.kind)}]
        if slot.wanted:
            lines.append({"type": "cmd", "id": f"boot-{slot.kind}",
                          "verb": START_VERB[slot.kind], "args": {}})
        if slot.kind == "pusher" and self._preview_socket:
            lines.append({"type": "cmd", "id": "boot-preview", "verb": "preview",
                          "args": {"socket": self._preview_socket}})
        if slot.kind == "pusher" and self.privacy:
            lines.append({"type": "cmd", "id": "boot-privacy", "verb": "pause",
                          "args": {"reason": "privacy"}})
        return lines

    def _section(self, kind: str) -> dict[str, Any]:
        section = to_document(self.config)[kind]
        if kind == "player" and self._player_muted is not None:
            section["muted"] = self._player_muted  # a restarted player stays as commanded
        return section

    def _on_worker_message(self, kind: str, message: dict[str, Any]) -> None:
        slot = self._slots[kind]
        if message["type"] == "event":
            try:
                event = Event.from_dict(message)
            except (KeyError, TypeError, ValueError):
                log.warning("%s sent a malformed event: %.200r", kind, message)
                return
            self.events.relay(event)  # one seq for the box: a restarted worker counts from 1
        elif message["type"] == "netstatus":
            slot.netstatus = {k: v for k, v in message.items() if k != "type"}
            if self._agent is not None:
                self._agent.update_telemetry(kind, slot.netstatus)
        elif message["type"] == "state":
            state, muted = message.get("state"), message.get("muted")
            changed = False
            if state is not None and state != slot.state:
                slot.state, changed = str(state), True
            if isinstance(muted, bool) and muted != slot.muted:
                slot.muted, changed = muted, True
            if changed:
                self._state_changed()

    def _on_worker_restart(self, kind: str, reason: str) -> None:
        self._slots[kind].state = "restarting"
        self.events.emit(Code.WORKER_RESTARTED, f"{kind} worker {reason}; restarted",
                         worker=kind, reason=reason)

    def _state_changed(self) -> None:
        running = {k: s.state not in ("off", "idle", "stopped", "restarting")
                   for k, s in self._slots.items()}
        self.indicators.set_flags(pusher_on=running["pusher"], player_on=running["player"],
                                  privacy=self.privacy)
        if self._agent is not None:
            self._agent.state_changed()

    # -- events

    def _on_event(self, event: Event) -> None:
        self.recent.append(event)
        level = logging.WARNING if event.code < 0 else logging.INFO
        log.log(level, "[%s] %d %s %s", event.src, event.code, event.name, event.msg)
        self.indicators.observe(event.code, event.src)
        if self._agent is not None:
            self._agent.publish_event(event)

    # -- fleet agent

    def _start_agent(self) -> None:
        mqtt = self.config.mqtt
        if not mqtt.host:
            self.indicators.set_flags(mqtt_lost=False)
            return
        device = self.config.device
        identity = AgentIdentity(self.box_id(), device.name,
                                 tuple(device.groups))
        self._agent = FleetAgent(self, mqtt, identity)
        self._agent_task = asyncio.create_task(self._agent.run(), name="fleet-agent")

    async def _stop_agent(self) -> None:
        agent, task = self._agent, self._agent_task
        self._agent = self._agent_task = None
        if agent is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(agent.close(), 3)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- web console (the same host interface as the agent, plus what a browser needs)

    async def _start_web(self) -> None:
        from edgelive.supervisor.control import socket_path
        from edgelive.web import start_console

        self._web = await start_console(self, self.config.web, self.store.state_dir,
                                        socket_path(self.store.state_dir).parent)

    async def _stop_web(self) -> None:
        web, self._web = self._web, None
        if web is not None:
            await web.close()

    async def apply_local_config(self, partial: dict[str, Any]) -> tuple[int, ApplyResult]:
        """A change made on the box (the console): the next revision, applied as a desired
        config would be and reported to the fleet when it is applied."""
        async with self._local_config:
            rev = self.store.rev + 1
            result = await self.apply_config(rev, partial)
            if result.applied:
                self.events.emit(Code.CONFIG_APPLIED, f"config rev {rev} applied (local "
                                 "console)", rev=rev)
                if self._agent is not None:
                    self._agent.config_applied(rev)
            else:
                self.events.emit(Code.CONFIG_REJECTED, "config from the local console "
                                 "rejected", errors=result.errors)
            return rev if result.applied else self.store.rev, result

    async def set_preview(self, socket_path: str | None) -> None:
        """Start (a socket path) or stop (None) the pusher's preview tap."""
        self._preview_socket = socket_path
        pusher = self._slots["pusher"].process
        if pusher is not None:
            await pusher.request("preview", {"socket": socket_path or ""}, timeout=5)

    def mqtt_online(self) -> bool:
        return self._agent is not None and self._agent.connected

    def update_state_changed(self) -> None:
        if self._agent is not None:
            self._agent.state_changed()

    def worker_state(self, kind: str) -> str:
        return self._slots[kind].state

    def mqtt_connection_changed(self, connected: bool) -> None:
        self.indicators.set_flags(mqtt_lost=not connected)

    # -- AgentHost

    async def apply_config(self, rev: int, partial: dict[str, Any]) -> ApplyResult:
        result = await asyncio.to_thread(self.store.apply, partial, rev)
        if result.applied:
            await self._reconfigure(result.config, result.changed)
        return result

    async def _reconfigure(self, config: EdgeliveConfig, changed: set[str]) -> None:
        self.config = config
        if "player.muted" in changed:
            self._player_muted = None  # the newer word on muting is the config's
        sections = {key.split(".", 1)[0] for key in changed}
        for kind, slot in self._slots.items():
            keys = {key.split(".", 1)[1] for key in changed if key.startswith(kind + ".")}
            if not keys:
                continue
            if slot.process is not None and keys <= LIVE_KEYS[kind]:
                with contextlib.suppress(WorkerError):
                    await slot.process.send({"type": "config", "config": self._section(kind)})
                continue
            if slot.process is not None:  # restart only this worker, with the new section
                await slot.process.stop()
                slot.process = None
            await self._sync_worker(slot)
        if sections & {"mqtt", "device"}:
            await self._stop_agent()
            self._start_agent()
        if "web" in sections:
            await self._stop_web()
            await self._start_web()
        if "health" in sections:
            self.care.reconfigure(self.store.state_dir, self._health_root)
        if sections & {"leds", "button"}:
            self.indicators.close()
            self.indicators = self._make_indicators()
            self.indicators.attach(asyncio.get_running_loop())
            self._state_changed()

    def config_rev(self) -> int:
        return self.store.rev

    def reported_config(self) -> dict[str, Any]:
        return redacted(self.config)

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {kind: {"state": slot.state} for kind, slot in self._slots.items()}
        player = self._slots["player"]
        out["player"]["muted"] = (player.muted if player.process is not None
                                  and player.muted is not None else self.config.player.muted)
        out["pusher"]["muted"] = self.config.pusher.muted
        out["privacy"] = self.privacy
        out["health"] = self.care.state()
        out["leds"] = self.indicators.state.value
        out["update"] = self.updater.state()
        return out

    async def handle_command(self, target: str, verb: str,
                             args: dict[str, Any]) -> dict[str, Any] | None:
        args = verbs.checked(target, verb, args)
        if target == "device":
            return await self._device_command(verb, args)
        slot = self._slots[target]
        if verb in (START_VERB[target], "stop"):
            slot.wanted = verb != "stop"
        if slot.process is None:
            raise CommandError(Code.COMMAND_REJECTED,
                               f"{target} is not configured (set {target}."
                               f"{'url' if target == 'pusher' else 'src'} first)")
        try:
            reply = await slot.process.request(verb, args, timeout=10)
        except WorkerError as exc:
            raise CommandError(Code.COMMAND_REJECTED, str(exc)) from None
        if not reply.get("ok"):
            raise CommandError(reply.get("code", Code.COMMAND_REJECTED),
                               str(reply.get("error", "failed")))
        result = reply.get("result") or {}
        if verb == "mute" and isinstance(result.get("muted"), bool):
            self._player_muted = result["muted"]
        return result

    async def _device_command(self, verb: str, args: dict[str, Any]) -> dict[str, Any]:
        if verb == "identify":
            self.indicators.identify()
            self.events.emit(Code.IDENTIFY, "identify: LEDs blink for 10 s")
            return {"seconds": 10}
        if verb == "privacy":
            await self.set_privacy(verbs.switched(args, self.privacy))
            return {"privacy": self.privacy}
        if verb == "restart":
            for slot in self._slots.values():
                if slot.process is not None:
                    await slot.process.stop()
                    slot.process = None
                    # said before the new process starts: its begin event is a new one
                    self._on_worker_restart(slot.kind, "stopped by device/restart")
                await self._sync_worker(slot)
            return {"restarted": [k for k, s in self._slots.items() if s.process]}
        if verb in care.VERBS:
            return await self.care.command(verb, args)
        if verb == "update":
            try:
                return self.updater.command(args)
            except UpdateRefused as exc:
                raise CommandError(Code.COMMAND_REJECTED, str(exc)) from None
        raise CommandError(Code.COMMAND_REJECTED, f"device/{verb} is not supported on this box")

    async def set_privacy(self, on: bool) -> None:
        if on == self.privacy:
            return
        self.privacy = on
        self.events.emit(Code.PRIVACY_ON if on else Code.PRIVACY_OFF,
                         "privacy on: waiting image instead of the camera" if on
                         else "privacy off: camera back")
        pusher = self._slots["pusher"].process
        if pusher is not None:
            with contextlib.suppress(WorkerError):
                await pusher.request("pause" if on else "resume", {"reason": "privacy"})
        self._state_changed()

    async def snapshot(self, target: str) -> tuple[bytes, int]:
        result = await self.handle_command(target, "snapshot", {})
        if not result or "jpeg" not in result:
            raise CommandError(Code.COMMAND_REJECTED, f"{target} has no picture yet")
        return base64.b64decode(result["jpeg"]), int(result.get("ts", 0))

    def emit(self, code: Code, msg: str, **detail: Any) -> None:
        # a box that never reached the broker (-6027: TLS, credentials) is as lost as one
        # that lost it
        if code in (Code.MQTT_CONNECTED, Code.MQTT_LOST, Code.MQTT_CONNECT_FAILED):
            self.mqtt_connection_changed(code == Code.MQTT_CONNECTED)
        self.events.emit(code, msg, **detail)

    # -- indicators

    def _make_indicators(self) -> Indicators:
        return Indicators(
            self.config.leds, self.config.button, self.board,
            on_short_press=lambda: self._from_thread(self.set_privacy(not self.privacy)),
            on_hold=lambda: self._from_thread(self.factory_reset(
                "button held: configuration reset to defaults")),
            pin_factory=self._pin_factory)

    def _from_thread(self, coro: Coroutine[Any, Any, None]) -> None:
        """Button callbacks run on gpiozero's thread; the work belongs on the loop."""
        if self._loop is None:
            coro.close()
            return
        asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def factory_reset(self, reason: str) -> None:
        self.indicators.identify()
        config = await asyncio.to_thread(self.store.factory_reset)
        self.events.emit(Code.FACTORY_RESET, reason)
        await self._reconfigure(config, changed_keys(self.config, config))

    # -- local status (`edgelive status`)

    def status_report(self) -> dict[str, Any]:
        mqtt = ("not configured" if not self.config.mqtt.host else
                "connected" if self._agent and self._agent.connected else "offline")
        return {
            "version": __version__, "board": self.board.name, "leds": self.indicators.state,
            "uptime": time.monotonic() - self.started, "mqtt": mqtt, "privacy": self.privacy,
            "rev": self.store.rev,
            **{kind: {"state": slot.state, "netstatus": slot.netstatus,
                      "restarts": slot.process.restarts if slot.process else 0}
               for kind, slot in self._slots.items()},
            "events": [event.to_dict() for event in self.recent],
            "health": {**self.care.state(), **(self.care.watch.last.to_telemetry()
                                                if self.care.watch.last else {})},
        }

    # -- CareHost

    def box_id(self) -> str:
        return self.config.device.id or default_device_id()

    def health_changed(self, warning: bool) -> None:
        self.indicators.set_flags(health_warning=warning)
        if self._agent is not None:
            self._agent.state_changed()

    def publish_telemetry(self, src: str, doc: dict[str, Any]) -> None:
        if self._agent is not None:
            self._agent.update_telemetry(src, doc)
