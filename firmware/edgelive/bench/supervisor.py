"""`edgelive bench supervisor`: memory of the running appliance, process by process.

Runs `edgelive run` against a local broker and RTMP server with the pusher (testsrc) and
the player (no display) both active, samples the resident memory of the supervisor and of
each worker, and prints it next to a bare Python interpreter that imports the same
libraries, the floor any Python supervisor pays. Target: supervisor RSS ≤ 50 MB.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import tomli_w

from edgelive.testbed import Mosquitto, NginxRtmp, start_box

FLOOR_IMPORTS = "import asyncio, json, paho.mqtt.client, pydantic, gpiozero, time; time.sleep(3)"


def _rss_mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


def _floor_mb() -> float:
    child = subprocess.Popen([sys.executable, "-c", FLOOR_IMPORTS])
    try:
        time.sleep(2.0)
        return _rss_mb(psutil.Process(child.pid))
    finally:
        child.wait()


def run(seconds: float = 20.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgelive-bench-") as tmp:
        work = Path(tmp)
        broker, ingest = Mosquitto(work), NginxRtmp(work / "nginx")
        broker.start()
        ingest.start()
        try:
            state = work / "state"
            state.mkdir()
            url = ingest.url("bench")
            (state / "config.toml").write_text(tomli_w.dumps({
                "pusher": {"url": url, "source": "testsrc", "mode": "SD", "autopush": True},
                "player": {"src": url, "autoplay": True, "sink": "none", "mode": "RTC"},
                "mqtt": {"host": broker.host, "port": broker.port},
                "device": {"id": "bench-box"}}))
            box = start_box(state)
            try:
                samples = _sample(psutil.Process(box.pid), seconds)
            finally:
                box.terminate()
                box.wait(15)
        finally:
            ingest.stop()
            broker.stop()
    return {"seconds": seconds, "floor_mb": _floor_mb(), **samples}


def _sample(supervisor: psutil.Process, seconds: float) -> dict[str, Any]:
    peak: dict[str, float] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.5)
        named = {"supervisor": supervisor}
        for child in supervisor.children():
            with_args = " ".join(child.cmdline())
            named["pusher" if " push " in with_args else "player"] = child
        for name, proc in named.items():
            try:
                peak[name] = max(peak.get(name, 0.0), _rss_mb(proc))
            except psutil.NoSuchProcess:
                continue
    return {"peak_mb": peak}


def report(result: dict[str, Any]) -> str:
    lines = [f"resident memory, peak over {result['seconds']:.0f} s (pusher SD + player "
             "RTC + MQTT):"]
    for name, mb in sorted(result["peak_mb"].items()):
        target = "  (target ≤ 50 MB)" if name == "supervisor" else ""
        lines.append(f"  {name:<11} {mb:6.1f} MB{target}")
    lines.append(f"  {'floor':<11} {result['floor_mb']:6.1f} MB  (bare Python importing "
                 "asyncio, paho, pydantic, gpiozero)")
    return "\n".join(lines)
