"""`edgelive bench web`: what one preview viewer costs the box.

Runs `edgelive run` with the pusher on testsrc at 1280x720@30 and the web console on, then
alternates equal periods with no viewer and with one preview viewer (a WebSocket client in
this process that reads every fragment, as a browser would), measuring the CPU time of the
supervisor (which relays the fragments) and of the pusher worker (whose tap remuxes them).
Goal: the preview adds ≤ 5 % of one core to the supervisor.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import tomli_w

from edgelive.testbed import NginxRtmp, free_port, start_box, wait_port
from edgelive.web.auth import write_passwd

PASSWORD = "bench-password"


def run(seconds: float = 10.0, runs: int = 3, size: str = "1280x720",
        fps: int = 30) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgelive-bench-") as tmp:
        work = Path(tmp)
        ingest = NginxRtmp(work / "nginx")
        ingest.start()
        port = free_port()
        state = work / "state"
        state.mkdir()
        write_passwd(state, PASSWORD)
        (state / "config.toml").write_text(tomli_w.dumps({
            "pusher": {"url": ingest.url("bench"), "source": "testsrc", "resolution": size,
                       "fps": fps, "mode": "FHD", "audio-device": "none", "autopush": True},
            "web": {"enabled": True, "bind": "127.0.0.1", "port": port},
            "device": {"id": "bench-box"}}))
        box = start_box(state)
        try:
            wait_port("127.0.0.1", port, timeout=60)
            phases = asyncio.run(_measure(psutil.Process(box.pid),
                                          f"http://127.0.0.1:{port}", seconds, runs))
        finally:
            box.terminate()
            box.wait(15)
            ingest.stop()
    return {"seconds": seconds, "runs": runs, "size": size, "fps": fps, **phases}


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _pusher(supervisor: psutil.Process) -> psutil.Process:
    for child in supervisor.children():
        if " push " in " ".join(child.cmdline()):
            return child
    raise RuntimeError("the box runs no pusher worker")


async def _measure(supervisor: psutil.Process, base: str, seconds: float,
                   runs: int) -> dict[str, Any]:
    jar = aiohttp.CookieJar(unsafe=True)  # the console is on an IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        await http.post(base + "/login", data={"password": PASSWORD})
        deadline = time.monotonic() + 60
        while (await (await http.get(base + "/api/status")).json())["pusher"]["state"] \
                != "pushing":
            if time.monotonic() > deadline:
                raise RuntimeError("the box never started pushing")
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # past the encoder's start-up
        pusher = _pusher(supervisor)
        result: dict[str, list[float]] = {"idle_sup": [], "view_sup": [], "idle_push": [],
                                          "view_push": [], "fragments_per_s": []}
        for _ in range(runs):
            sup, push = await _period(supervisor, pusher, seconds)
            result["idle_sup"].append(sup)
            result["idle_push"].append(push)
            async with http.ws_connect(base + "/api/preview") as ws:
                received = [0]
                keyed = asyncio.Event()
                reader = asyncio.create_task(_read(ws, received, keyed))
                # measured from the first key frame on: the wait for it (up to a GOP,
                # 2 s in FHD mode) would otherwise count as frames not relayed
                await asyncio.wait_for(keyed.wait(), 30)
                start = received[0]
                sup, push = await _period(supervisor, pusher, seconds)
                result["fragments_per_s"].append((received[0] - start) / seconds)
                reader.cancel()
            result["view_sup"].append(sup)
            result["view_push"].append(push)
            await asyncio.sleep(1.0)  # the tap is off again
    return result


async def _period(supervisor: psutil.Process, pusher: psutil.Process,
                  seconds: float) -> tuple[float, float]:
    """% of one core each process used over `seconds`."""
    sup0, push0, t0 = _cpu_s(supervisor), _cpu_s(pusher), time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    return ((_cpu_s(supervisor) - sup0) / elapsed * 100,
            (_cpu_s(pusher) - push0) / elapsed * 100)


async def _read(ws: aiohttp.ClientWebSocketResponse, received: list[int],
                keyed: asyncio.Event) -> None:
    async for message in ws:
        if message.type == aiohttp.WSMsgType.BINARY:
            received[0] += 1
            if message.data[:1] == b"K":
                keyed.set()


def report(result: dict[str, Any]) -> str:
    med = {k: statistics.median(v) for k, v in result.items() if isinstance(v, list)}
    added = med["view_sup"] - med["idle_sup"]
    return "\n".join([
        f"web preview cost, pusher testsrc {result['size']}@{result['fps']}, "
        f"{result['runs']} × {result['seconds']:.0f} s per phase (medians, % of one core):",
        f"  supervisor  no viewer {med['idle_sup']:5.1f} %   one viewer {med['view_sup']:5.1f} %"
        f"   added {added:+5.1f} %  (goal ≤ 5 %)",
        f"  pusher      no viewer {med['idle_push']:5.1f} %   one viewer "
        f"{med['view_push']:5.1f} %   added {med['view_push'] - med['idle_push']:+5.1f} %",
        f"  fragments relayed: {med['fragments_per_s']:.1f}/s",
    ])
