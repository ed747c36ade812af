"""WorkerProcess against real child processes: requests, crash restart, hang detection."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from edgelive.workers import WorkerError, WorkerProcess

# A minimal worker speaking the JSON-lines protocol: heartbeat each 0.2 s, answers "echo",
# exits on "crash", stops writing on "hang".
WORKER = r"""
import json, sys, threading, time, os
silent = threading.Event()
lock = threading.Lock()
def out(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
def beat():
    while True:
        if not silent.is_set():
            out({"type": "state", "pid": os.getpid()})
        time.sleep(0.2)
threading.Thread(target=beat, daemon=True).start()
for line in sys.stdin:
    msg = json.loads(line)
    if msg["type"] == "config":
        out({"type": "state", "config": msg["config"]})
    elif msg["verb"] == "echo":
        out({"type": "response", "id": msg["id"], "ok": True, "code": 0,
             "result": msg["args"]})
    elif msg["verb"] == "crash":
        os._exit(3)
    elif msg["verb"] == "hang":
        silent.set()
"""


def make_worker(messages: list, restarts: list, hang_timeout: float = 5.0,
                start_timeout: float = 60.0, startup_delay: float = 0.0) -> WorkerProcess:
    return WorkerProcess(
        "test", [sys.executable, "-c", f"import time; time.sleep({startup_delay})\n" + WORKER],
        initial_lines=lambda: [{"type": "config", "config": {"n": len(restarts)}}],
        on_message=lambda name, m: messages.append((time.monotonic(), m)),
        on_restart=lambda name, reason: restarts.append((time.monotonic(), reason)),
        hang_timeout=hang_timeout, start_timeout=start_timeout,
    )


def test_request_response_and_initial_config() -> None:
    async def scenario() -> None:
        messages: list = []
        worker = make_worker(messages, [])
        worker.start()
        try:
            await asyncio.sleep(0.5)
            answer = await worker.request("echo", {"x": 1})
            assert answer["ok"] is True and answer["result"] == {"x": 1}
            assert any(m.get("config") == {"n": 0} for _, m in messages)
        finally:
            await worker.stop()
            await worker.stop()  # safe twice
        assert worker.pid is None

    asyncio.run(scenario())


def test_crashed_worker_restarts_within_one_second() -> None:
    async def scenario() -> None:
        messages: list = []
        restarts: list = []
        worker = make_worker(messages, restarts)
        worker.start()
        try:
            await asyncio.sleep(0.5)
            first_pid = worker.pid
            with pytest.raises(WorkerError):
                await worker.request("crash", timeout=2)
            crashed_at = time.monotonic()
            while worker.pid in (None, first_pid):
                await asyncio.sleep(0.02)
                assert time.monotonic() - crashed_at < 1.0, "not restarted within 1 s"
            assert restarts and "exited with code 3" in restarts[0][1]
            # the restarted worker got its config again and answers
            assert (await worker.request("echo", {"again": True}))["ok"]
        finally:
            await worker.stop()

    asyncio.run(scenario())


async def seconds_until_any(items: list, limit: float = 4.0) -> float:
    """How long until something lands in `items`; fails after `limit` seconds."""
    t0 = time.monotonic()
    while not items:
        await asyncio.sleep(0.05)
        assert time.monotonic() - t0 < limit
    return time.monotonic() - t0


def test_silent_worker_is_killed_and_restarted() -> None:
    async def scenario() -> None:
        restarts: list = []
        worker = make_worker([], restarts, hang_timeout=1.0)
        worker.start()
        try:
            await asyncio.sleep(0.5)
            first_pid = worker.pid
            await worker.send({"type": "cmd", "id": "h", "verb": "hang", "args": {}})
            await seconds_until_any(restarts)
            assert "hung" in restarts[0][1]
            while worker.pid in (None, first_pid):
                await asyncio.sleep(0.02)
        finally:
            await worker.stop()

    asyncio.run(scenario())


def test_a_stall_of_the_supervisors_own_loop_is_not_the_workers_silence() -> None:
    """A supervisor whose loop is blocked longer than hang_timeout (a slow import on a Pi)
    does not read its workers' lines meanwhile; they are in the pipe, not missing. The
    worker keeps running; one that really stops speaking afterwards is still caught."""
    async def scenario() -> None:
        messages: list = []
        restarts: list = []
        worker = make_worker(messages, restarts, hang_timeout=1.0)
        worker.start()
        try:
            await asyncio.sleep(0.5)
            pid = worker.pid
            time.sleep(3.0)  # the loop blocked three hang timeouts long
            await asyncio.sleep(1.0)
            assert restarts == [] and worker.pid == pid
            count = len(messages)
            await asyncio.sleep(0.5)
            assert len(messages) > count  # still heard
            await worker.send({"type": "cmd", "id": "h", "verb": "hang", "args": {}})
            await seconds_until_any(restarts)
            assert "hung" in restarts[0][1]
        finally:
            await worker.stop()

    asyncio.run(scenario())


def test_a_slow_start_is_not_a_hang_but_a_worker_that_never_speaks_is() -> None:
    """Before its first line a worker has start_timeout (imports on a cold Pi Zero take
    seconds); after it, hang_timeout."""
    async def scenario() -> None:
        messages: list = []
        restarts: list = []
        slow = make_worker(messages, restarts, hang_timeout=0.5, start_timeout=5.0,
                           startup_delay=1.5)
        slow.start()
        try:
            assert await seconds_until_any(messages) >= 1.4 and not restarts
        finally:
            await slow.stop()

        mute = make_worker([], restarts, hang_timeout=0.5, start_timeout=1.0,
                           startup_delay=30.0)
        mute.start()
        try:
            assert await seconds_until_any(restarts) >= 0.9
            assert restarts[0][1] == "hung (silent for 1 s since it started), killed"
        finally:
            await mute.stop()

    asyncio.run(scenario())
