"""Worker processes of the supervisor: spawn, talk JSON lines, restart when crashed or hung.

Pusher and player run as separate processes (as MediaMTX runs its camera) so a crash in
FFmpeg, a camera driver or SDL cannot take the fleet agent down. A worker writes at least
one line a second (netstatus/state); silence longer than `hang_timeout` means it is hung,
and it is killed and restarted like a crashed one. Until its first line it has `start_timeout`
instead (as systemd has TimeoutStartSec beside WatchdogSec): importing FFmpeg, NumPy and
pydantic takes seconds on a Pi Zero 2 W after a cold boot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from edgelive.ipc import parse_line

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, dict[str, Any]], None]
RestartHandler = Callable[[str, str], Awaitable[None] | None]


class WorkerError(Exception):
    """A request to a worker failed: not running, timed out, or answered with an error."""


class WorkerProcess:
    """One supervised worker (`edgelive push --worker` or `edgelive play --worker`)."""

    def __init__(self, name: str, argv: list[str], *, initial_lines: Callable[[], list[dict]],
                 on_message: MessageHandler, on_restart: RestartHandler,
                 hang_timeout: float = 5.0, start_timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self._initial_lines = initial_lines
        self._on_message = on_message
        self._on_restart = on_restart
        self.hang_timeout = hang_timeout
        self.start_timeout = start_timeout
        self._env = env
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._last_line = 0.0
        self._started = False  # this run's worker has written its first line
        self._stopping = False
        self.restarts = 0
        self._heard_at = time.monotonic()  # last line of any run; not reset by a restart

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    @property
    def silent_for(self) -> float:
        """Seconds since the worker last wrote a line, across restarts: a crash loop, or a
        worker that never gets as far as its first line, keeps growing it."""
        return time.monotonic() - self._heard_at

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._heard_at = time.monotonic()
            self._task = asyncio.create_task(self._supervise(), name=f"worker-{self.name}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit (SIGTERM), kill it after `timeout`; safe twice."""
        self._stopping = True
        proc, task = self._proc, self._task
        self._task = None
        if proc and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            raise WorkerError(f"{self.name} is not running")
        proc.stdin.write((json.dumps(message, separators=(",", ":")) + "\n").encode())
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()

    async def request(self, verb: str, args: dict[str, Any] | None = None,
                      timeout: float = 5.0) -> dict[str, Any]:
        """Send a command and wait for its response line (`{"id","ok","code",...}`)."""
        cmd_id = f"{self.name}-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[cmd_id] = future
        try:
            await self.send({"type": "cmd", "id": cmd_id, "verb": verb, "args": args or {}})
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise WorkerError(f"{self.name} did not answer {verb!r} within {timeout} s") from None
        finally:
            self._pending.pop(cmd_id, None)

    async def _supervise(self) -> None:
        backoff = 0.2
        while not self._stopping:
            started = time.monotonic()
            reason = await self._run_once()
            if self._stopping:
                break
            self.restarts += 1
            self._fail_pending(reason)
            # A worker that dies right after start is crash-looping: back off, up to 10 s.
            backoff = 0.2 if time.monotonic() - started > 10 else min(backoff * 2, 10.0)
            log.warning("%s worker %s; restarting in %.1f s", self.name, reason, backoff)
            result = self._on_restart(self.name, reason)
            if asyncio.iscoroutine(result):
                await result
            await asyncio.sleep(backoff)

    async def _run_once(self) -> str:
        env = {**os.environ, **(self._env or {})}
        self._proc = proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=None, env=env, start_new_session=True)
        for line in self._initial_lines():
            # a worker dead on arrival is noticed below like any exit, and restarted
            with contextlib.suppress(WorkerError):
                await self.send(line)
        self._last_line, self._started = time.monotonic(), False
        reader = asyncio.create_task(self._read(proc))
        try:
            while True:
                asked = time.monotonic()
                done, _ = await asyncio.wait({reader}, timeout=0.5)
                if done:
                    break
                if (stalled := time.monotonic() - asked - 0.5) > 1.0:
                    # This process did not run (its loop blocked, the machine paused): the
                    # worker's lines wait in the pipe, unread. Not the worker's silence.
                    self._last_line += stalled
                    continue
                limit = self.hang_timeout if self._started else self.start_timeout
                if time.monotonic() - self._last_line > limit:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
                    phase = "" if self._started else " since it started"
                    return f"hung (silent for {limit:.0f} s{phase}), killed"
            code = await proc.wait()
            return f"exited with code {code}"
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            self._last_line = self._heard_at = time.monotonic()
            self._started = True
            try:
                message = parse_line(line.decode(errors="replace"))
            except ValueError as exc:
                log.warning("%s worker wrote a bad line (%s): %.200r", self.name, exc, line)
                continue
            if message["type"] == "response" and message.get("id") in self._pending:
                future = self._pending[message["id"]]
                if not future.done():
                    future.set_result(message)
                continue
            self._on_message(self.name, message)

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerError(f"{self.name} worker {reason}"))
        self._pending.clear()


def worker_argv(kind: str) -> list[str]:
    """Command line of a worker: the same interpreter and package as the supervisor."""
    return [sys.executable, "-m", "edgelive", kind, "--worker"]
