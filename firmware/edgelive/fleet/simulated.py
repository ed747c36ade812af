"""A simulated box: the real fleet agent and config store over an in-memory pusher/player.

The fleet bench runs hundreds of them in one process to load a broker the way a fleet does,
and tests run one as a separate process to kill it (`python -m edgelive.fleet.simulated`).
Only the media side is simulated; MQTT, validation and persistence are the real code, and
commands mean what edgelive.verbs says (the same argument checks and on/off rule as the box).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import signal
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from edgelive import verbs
from edgelive.codes import Code, Source
from edgelive.config.schema import MqttConfig
from edgelive.config.store import ApplyResult, ConfigStore, redacted
from edgelive.events import EventLog, now_ms
from edgelive.fleet.agent import AgentIdentity, FleetAgent
from edgelive.verbs import CommandError

# verb → state it leaves the worker in (None: state unchanged)
_PUSHER = {"start": "pushing", "stop": "idle", "pause": "waiting", "resume": "pushing",
           "switchCamera": None}
_PLAYER = {"play": "playing", "stop": "idle", "pause": "paused", "resume": "playing",
           "requestFullScreen": None, "exitFullScreen": None, "mute": None}


@functools.cache
def _test_jpeg() -> bytes:
    import av  # heavy: only when a snapshot is asked for
    import numpy as np

    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = 64, 36, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(np.full((36, 64, 3), 128, np.uint8), format="rgb24")
    return b"".join(bytes(p) for p in codec.encode(frame.reformat(format="yuvj420p")))


class SimulatedHost:
    """An `AgentHost` whose workers are two state strings; config goes through a real store."""

    def __init__(self, store: ConfigStore) -> None:
        self.store = store
        self.events = EventLog(Source.DEVICE)
        self.commands: list[tuple[str, str, dict[str, Any]]] = []
        self.pusher = "idle"
        self.player = "idle"
        self.privacy = False
        self.muted = False
        self.on_state: Callable[[], None] | None = None
        # device/update: a few progress events, then UPDATE_DONE and the new version in the
        # state — or, when `update_failure` is set, UPDATE_ROLLED_BACK with it as the reason
        self.update_failure = ""
        self.update_seconds = 0.3
        self.offered: dict[str, Any] | None = None
        self._agent: FleetAgent | None = None
        self._updating: asyncio.Task[None] | None = None

    def attach(self, agent: FleetAgent) -> None:
        self.events.subscribe(agent.publish_event)
        self.on_state = agent.state_changed
        self._agent = agent

    async def apply_config(self, rev: int, partial: dict[str, Any]) -> ApplyResult:
        return await asyncio.to_thread(self.store.apply, partial, rev)

    def config_rev(self) -> int:
        return self.store.rev

    def reported_config(self) -> dict[str, Any]:
        return redacted(self.store.current)

    def state(self) -> dict[str, Any]:
        busy = self._updating is not None and not self._updating.done()
        return {"pusher": {"state": self.pusher}, "player": {"state": self.player,
                                                             "muted": self.muted},
                "privacy": self.privacy,
                "update": {"offered": (self.offered or {}).get("version"), "busy": busy,
                           "stage": "download" if busy else "", "percent": 0}}

    async def handle_command(self, target: str, verb: str,
                             args: dict[str, Any]) -> dict[str, Any]:
        args = verbs.checked(target, verb, args)
        if target == "pusher":
            self.pusher = _PUSHER[verb] or self.pusher
        elif target == "player":
            if verb == "mute":
                self.muted = verbs.switched(args, self.muted)
            self.player = _PLAYER[verb] or self.player
        elif verb == "privacy":
            self.privacy = verbs.switched(args, self.privacy)
            self.events.emit(Code.PRIVACY_ON if self.privacy else Code.PRIVACY_OFF,
                             "privacy " + ("on" if self.privacy else "off"))
        elif verb == "identify":
            self.events.emit(Code.IDENTIFY, "identify requested")
        elif verb == "update":
            return self._update(args)
        else:
            raise CommandError(Code.COMMAND_REJECTED, f"{verb} is not available here")
        self.commands.append((target, verb, args))
        if self.on_state is not None:
            self.on_state()
        return {"pusher": self.pusher, "player": self.player, "privacy": self.privacy}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        if self._updating is not None and not self._updating.done():
            raise CommandError(Code.COMMAND_REJECTED, "an update is in progress")
        if args.get("install") is False:
            self.offered = args
            return {"offered": args["version"]}
        if args.get("offered"):
            if self.offered is None:
                raise CommandError(Code.COMMAND_REJECTED, "no release has been offered")
            args = self.offered
        self._updating = asyncio.get_running_loop().create_task(self._install(args))
        return {"accepted": True, "version": args["version"]}

    async def _install(self, args: dict[str, Any]) -> None:
        version = args["version"]
        for percent in (0, 50, 100):
            self.events.emit(Code.UPDATE_STARTED, f"update to {version}: downloading "
                             f"{percent} %", version=version, percent=percent, stage="download")
            await asyncio.sleep(self.update_seconds / 3)
        assert self._agent is not None
        previous = self._agent.identity.version
        if self.update_failure:
            self.events.emit(Code.UPDATE_ROLLED_BACK, f"update to {version} rolled back: "
                             f"{self.update_failure}", version=version,
                             reason=self.update_failure, running=previous, stage="probation")
        else:
            self._agent.identity = dataclasses.replace(self._agent.identity, version=version)
            self.events.emit(Code.UPDATE_DONE, f"updated to {version} (from {previous})",
                             version=version, previous=previous)
        if self.on_state is not None:
            self.on_state()

    async def snapshot(self, target: str) -> tuple[bytes, int]:
        return await asyncio.to_thread(_test_jpeg), now_ms()

    def emit(self, code: Code, msg: str, **detail: Any) -> None:
        self.events.emit(code, msg, **detail)


def simulated_box(box_id: str, mqtt: MqttConfig, state_dir: Path,
                  groups: tuple[str, ...] = (), home_assistant: bool = False,
                  ) -> tuple[FleetAgent, SimulatedHost]:
    store = ConfigStore(state_dir)
    store.load(provision=False)
    host = SimulatedHost(store)
    agent = FleetAgent(host, mqtt, AgentIdentity(box_id, name=f"sim {box_id}", groups=groups),
                       home_assistant=home_assistant)
    host.attach(agent)
    return agent, host


@contextlib.asynccontextmanager
async def running(agent: FleetAgent, timeout: float = 10.0) -> AsyncIterator[FleetAgent]:
    """Run `agent` for the duration of the block (connected on entry, closed on exit)."""
    task = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(timeout):
            while agent.session is None:
                await asyncio.sleep(0.01)
            await agent.session.wait_connected()
        yield agent
    finally:
        await agent.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _serve(args: argparse.Namespace) -> None:
    mqtt = MqttConfig(host=args.host, port=args.port, prefix=args.prefix,
                      protocol=args.protocol, keepalive=args.keepalive)
    agent, host = simulated_box(args.id, mqtt, args.state_dir, tuple(args.group),
                                home_assistant=args.home_assistant)
    host.update_failure = args.fail_update
    loop = asyncio.get_running_loop()
    runner = asyncio.create_task(agent.run())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await agent.close()
    with contextlib.suppress(asyncio.CancelledError):
        await runner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="run one simulated box")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--id", required=True)
    parser.add_argument("--prefix", default="edgelive")
    parser.add_argument("--group", action="append", default=[])
    parser.add_argument("--protocol", default="auto", choices=("auto", "5", "3.1.1"))
    parser.add_argument("--keepalive", type=int, default=30)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--home-assistant", action="store_true")
    parser.add_argument("--fail-update", default="", metavar="REASON",
                        help="roll every update back with this reason")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
