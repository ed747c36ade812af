"""`device/update` and the probation watch, as the supervisor runs them (docs/updates.md).

The command is answered at once; the work goes on in a task: download (UPDATE_STARTED
with `percent`), verify, install into a new slot, record the update, switch `current`, and
stop the supervisor so systemd starts the new release. That release, finding itself on
probation in the record, judges its health with `policy.probation` and commits
(UPDATE_DONE) or switches back and stops; the release it returns to reports
UPDATE_ROLLED_BACK with the reason, as it does after a rollback by the start guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

from edgelive import __version__
from edgelive.codes import Code
from edgelive.config.schema import EdgeliveConfig
from edgelive.events import Event, EventLog
from edgelive.policy.probation import Expect, Probation, Signals, Verdict
from edgelive.update.slots import InstallError, Record, Slots, atomic_write

log = logging.getLogger(__name__)

ROOT_ENV = "EDGELIVE_UPDATE_ROOT"
OFFER = "offer.json"  # the release offered last (install: false), in the update root
DOWNLOAD_TIMEOUT_S = 1800.0
PROBATION_TICK_S = 1.0
REPORT_WAIT_S = 60.0
"""How long a release that was rolled back to waits for MQTT before reporting it anyway
(events are queued while offline, so the report is not lost either way)."""


class UpdateRefused(Exception):
    """The update command cannot start (no update root, one in progress)."""


class UpdateHost(Protocol):
    events: EventLog
    config: EdgeliveConfig
    started: float  # monotonic time the supervisor started

    def mqtt_online(self) -> bool: ...

    def request_stop(self) -> None: ...

    def update_state_changed(self) -> None:
        """The `update` block of the state changed: republish it."""

    def worker_state(self, kind: str) -> str:
        """The pusher's or player's state as the worker last reported it."""


class LiveTracker:
    """Whether the pusher is live (1002 seen, and pushing the camera or the waiting image)
    and the player plays (2004 seen, and playing). A restart of the worker forgets its
    begin event; an error that leaves the stream up (a microphone's -1302) does not count."""

    BEGIN: ClassVar[dict[str, Code]] = {"pusher": Code.PUSH_EVT_PUSH_BEGIN,
                                        "player": Code.PLAY_EVT_PLAY_BEGIN}
    LIVE_STATES: ClassVar[dict[str, frozenset[str]]] = {
        "pusher": frozenset({"pushing", "waiting"}), "player": frozenset({"playing"})}

    def __init__(self, worker_state: Callable[[str], str]) -> None:
        self._worker_state = worker_state
        self._began: set[str] = set()

    def observe(self, event: Event) -> None:
        if event.src in self.BEGIN and event.code == self.BEGIN[event.src]:
            self._began.add(event.src)
        elif event.code == Code.WORKER_RESTARTED:
            self._began.discard(str(event.detail.get("worker")))

    def live(self, kind: str) -> bool:
        return kind in self._began and self._worker_state(kind) in self.LIVE_STATES[kind]


class Updater:
    def __init__(self, host: UpdateHost, state_dir: Path, root: Path | None = None) -> None:
        root = root or (Path(os.environ[ROOT_ENV]) if os.environ.get(ROOT_ENV) else None)
        self._host = host
        self._state_dir = state_dir
        self.slots = Slots(root) if root is not None else None
        self.tracker = LiveTracker(host.worker_state)
        host.events.subscribe(self.tracker.observe)
        self._task: asyncio.Task[None] | None = None
        self._stage = ""  # download, verify, install, switch, probation; "" = idle
        self._percent = 0
        self._offer = self._load_offer()

    def start(self) -> None:
        """After READY: judge this release if it is on probation; report a rollback to it."""
        record = self.slots.record() if self.slots else None
        if record is None or self.slots is None:
            return
        if record.state == "probation" and record.version == __version__:
            self._spawn(self._probation(record))
        elif record.state == "rolled-back" and not record.reported:
            self._spawn(self._report_rollback(record))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def state(self) -> dict[str, Any]:
        """The state's `update` block (Home Assistant's update entity reads it)."""
        busy = self.busy() and self._stage != ""
        return {"offered": (self._offer or {}).get("version"), "busy": busy,
                "stage": self._stage if busy else "", "percent": self._percent if busy else 0}

    def _set_stage(self, stage: str, percent: int = 0) -> None:
        if (stage, percent) != (self._stage, self._percent):
            self._stage, self._percent = stage, percent
            self._host.update_state_changed()

    def _load_offer(self) -> dict[str, Any] | None:
        if self.slots is None:
            return None
        try:
            offer = json.loads((self.slots.root / OFFER).read_text())
        except (OSError, ValueError):
            return None
        return offer if isinstance(offer, dict) else None

    # -- the command

    def command(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.slots is None:
            raise UpdateRefused(f"this box has no update root ({ROOT_ENV} is not set)")
        if self.busy():
            raise UpdateRefused("an update or a probation is in progress")
        if args.get("offered"):
            if self._offer is None:
                raise UpdateRefused("no release has been offered to this box")
            args = self._offer
        elif args.get("install") is False:
            self._offer = {k: args[k] for k in ("url", "sha256", "version", "health_timeout")
                           if k in args}
            atomic_write(self.slots.root / OFFER, json.dumps(self._offer).encode())
            self._host.update_state_changed()
            return {"offered": args["version"]}
        self._spawn(self._update(self.slots, args))
        return {"accepted": True, "version": args["version"], "from": __version__}

    async def _update(self, slots: Slots, args: dict[str, Any]) -> None:
        # Imported when an update runs: aiohttp and cryptography would otherwise add about
        # 20 MB to every supervisor for a command it takes a few times a year. In a thread:
        # the import takes 7 s on an emulated Pi, which on the loop stalled every worker's
        # pipe and systemd's watchdog ping.
        for module in ("edgelive.update.bundle", "edgelive.update.fetch"):
            await asyncio.to_thread(importlib.import_module, module)
        from edgelive.update.bundle import (
            MAX_BUNDLE_BYTES,
            BundleError,
            load_public_keys,
            verify_bundle,
        )
        from edgelive.update.fetch import DownloadError, download

        version, sha256 = str(args["version"]), str(args["sha256"]).lower()
        events = self._host.events
        stage = "download"
        last = [-1]

        def progress(done: int, total: int | None) -> None:
            percent = int(done * 100 / total) if total else 0
            if percent // 10 > last[0]:  # every 10 %
                self._set_stage(stage, percent)
                last[0] = percent // 10
                events.emit(Code.UPDATE_STARTED, f"update to {version}: downloading "
                            f"{percent} %", version=version, percent=percent, stage=stage)

        try:
            await asyncio.to_thread(slots.make_room, sha256)
            bundle = await download(
                str(args["url"]), slots.downloads / f"{sha256}.bundle.part",
                max_bytes=MAX_BUNDLE_BYTES, timeout=DOWNLOAD_TIMEOUT_S, progress=progress)
            stage = "verify"
            self._set_stage(stage, 100)
            manifest = await asyncio.to_thread(
                verify_bundle, bundle, load_public_keys(slots.public_keys()), sha256=sha256)
            if manifest.version != version:
                raise BundleError(f"bundle is version {manifest.version}, the command says "
                                  f"{version}")
            stage = "install"
            self._set_stage(stage, 100)
            events.emit(Code.UPDATE_STARTED, f"update to {version}: verified; installing",
                        version=version, percent=100, stage=stage)
            await asyncio.to_thread(slots.install, bundle, manifest)
            record = Record(version, __version__, health_timeout=float(args.get(
                "health_timeout", self._host.config.update.health_timeout)),
                expect=self._expect())
            await asyncio.to_thread(slots.begin, record, self._state_dir)
        except (DownloadError, BundleError, InstallError, ValueError, OSError,
                subprocess.SubprocessError) as exc:
            reason = str(exc) if not isinstance(exc, OSError) else f"{stage} failed: {exc}"
            events.emit(Code.UPDATE_ROLLED_BACK, f"update to {version} refused at {stage}: "
                        f"{reason}; staying on {__version__}", version=version,
                        stage=stage, reason=reason, running=__version__)
            self._set_stage("")
            if stage != "download":  # a refused bundle is not kept (a partial one is)
                with contextlib.suppress(OSError):
                    (slots.downloads / f"{sha256}.bundle").unlink()
            return
        with contextlib.suppress(OSError):
            bundle.unlink()
        events.emit(Code.UPDATE_STARTED, f"update to {version}: switched; restarting into it",
                    version=version, percent=100, stage="switch")
        self._set_stage("switch", 100)
        self._host.request_stop()  # systemd starts `current`, the new release

    def _expect(self) -> dict[str, bool]:
        return {"mqtt": bool(self._host.config.mqtt.host),
                "pusher": self.tracker.live("pusher"), "player": self.tracker.live("player")}

    # -- after the switch

    async def _probation(self, record: Record) -> None:
        assert self.slots is not None
        policy = Probation(Expect(**record.expect), record.health_timeout, self._host.started)
        log.info("release %s on probation for up to %.0f s (expecting %s)", record.version,
                 record.health_timeout, record.expect)
        self._set_stage("probation", 100)
        while True:
            decision = policy.decide(Signals(
                ready=True, mqtt_online=self._host.mqtt_online(),
                pusher_live=self.tracker.live("pusher"),
                player_live=self.tracker.live("player")), time.monotonic())
            if decision.verdict is Verdict.COMMIT:
                await asyncio.to_thread(self.slots.commit, record)
                self._host.events.emit(Code.UPDATE_DONE, f"updated to {record.version} "
                                       f"(from {record.previous}): {decision.reason}",
                                       version=record.version, previous=record.previous)
                self._set_stage("")
                return
            if decision.verdict is Verdict.ROLL_BACK:
                log.warning("release %s rolls back: %s", record.version, decision.reason)
                await asyncio.to_thread(self.slots.roll_back, record, decision.reason)
                self._host.request_stop()  # systemd starts `current`, the good release
                return
            await asyncio.sleep(PROBATION_TICK_S)

    async def _report_rollback(self, record: Record) -> None:
        assert self.slots is not None
        deadline = time.monotonic() + REPORT_WAIT_S
        while (self._host.config.mqtt.host and not self._host.mqtt_online()
               and time.monotonic() < deadline):
            await asyncio.sleep(0.5)
        self._host.events.emit(Code.UPDATE_ROLLED_BACK, f"update to {record.version} rolled "
                               f"back: {record.reason}; running {__version__}",
                               version=record.version, reason=record.reason,
                               running=__version__, stage="probation")
        await asyncio.to_thread(self.slots.write_record, replace(record, reported=True))

    def _spawn(self, coro: Any) -> None:
        self._task = asyncio.get_running_loop().create_task(coro, name="update")
