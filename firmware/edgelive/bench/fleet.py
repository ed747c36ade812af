"""Fleet bench: config round trip latency and a group command to hundreds of boxes.

Targets (SPEC §5 in practice): desired → reported p99 ≤ 50 ms, and a group command to 500
boxes on one broker answered by all within 2 s. The boxes are simulated boxes (real agent,
real config store, real MQTT connections, one per box) sharing this process's event loop.
Without a broker address a private mosquitto is started on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from edgelive.config.schema import MqttConfig
from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import SessionSettings
from edgelive.fleet.simulated import running, simulated_box
from edgelive.testbed import Mosquitto

GROUP = "bench"


@contextlib.contextmanager
def _private_broker(workdir: Path) -> Iterator[int]:
    broker = Mosquitto(workdir)
    broker.start()
    try:
        yield broker.port
    finally:
        broker.stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.asynccontextmanager
async def _fleet(mqtt: MqttConfig, workdir: Path, count: int) -> AsyncIterator[list[str]]:
    ids = [f"sim{i:04d}" for i in range(count)]
    agents = [simulated_box(box, mqtt, workdir / box, (GROUP,))[0] for box in ids]
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(running(a, 60)) for a in agents))
        yield ids


async def _bench(host: str, port: int, workdir: Path, boxes: int, rounds: int,
                 commands: int, timeout: float, settle: float) -> dict[str, Any]:
    mqtt = MqttConfig(host=host, port=port, keepalive=60, telemetry_interval=3600)
    settings = SessionSettings(host=host, port=port, client_id=f"bench-{uuid.uuid4().hex[:8]}")
    result: dict[str, Any] = {"boxes": boxes, "rounds": rounds}
    async with FleetOperator(settings, mqtt.prefix) as fleet:
        agent, _ = simulated_box("cfg0", mqtt, workdir / "cfg0")
        async with running(agent):
            await fleet.wait_online(["cfg0"])
            await fleet.sync()
            trips, failures = [], 0
            for i in range(rounds):
                started = time.perf_counter()
                [outcome] = await fleet.set_config("cfg0", {"pusher": {"fps": 20 + i % 10}},
                                                   timeout)
                trips.append((time.perf_counter() - started) * 1000)
                failures += outcome.report is None or not outcome.report["applied"]
        result["config_ms"] = {"p50": _percentile(trips, 0.5), "p99": _percentile(trips, 0.99),
                               "max": max(trips), "failures": failures}

        started = time.perf_counter()
        async with _fleet(mqtt, workdir, boxes) as ids:
            await fleet.wait_online(ids, 60)
            await fleet.wait_until(lambda: len(fleet.members(GROUP)) == boxes, 60)
            result["connect_s"] = time.perf_counter() - started
            runs = []
            for _ in range(commands):
                # Each command leaves 500 state and event messages behind; all boxes share
                # this process, so let them drain as separate boxes would.
                await asyncio.sleep(settle)
                started = time.perf_counter()
                outcome = await fleet.command(GROUP, "device/identify", {}, timeout)
                runs.append({"ms": (time.perf_counter() - started) * 1000,
                             "answered": sum(a.get("ok", False) for a in
                                             outcome.answers.values()),
                             "missing": len(outcome.missing)})
        result["group_command"] = runs
    return result


def run_fleet_bench(host: str | None = None, port: int = 1883, boxes: int = 500,
                    rounds: int = 200, commands: int = 3, timeout: float = 2.0,
                    settle: float = 2.0) -> dict[str, Any]:
    """Measure on `host:port`, or on a private mosquitto when `host` is None."""
    with tempfile.TemporaryDirectory(prefix="edgelive-fleet-bench-") as tmp:
        workdir = Path(tmp)
        with contextlib.ExitStack() as stack:
            if host is None:
                host, port = "127.0.0.1", stack.enter_context(_private_broker(workdir))
            return asyncio.run(_bench(host, port, workdir, boxes, rounds, commands, timeout,
                                      settle))


def print_fleet_bench(result: dict[str, Any]) -> None:
    cfg = result["config_ms"]
    print(f"config desired → reported ({result['rounds']} rounds): p50 {cfg['p50']:.1f} ms, "
          f"p99 {cfg['p99']:.1f} ms, max {cfg['max']:.1f} ms, failures {cfg['failures']} "
          f"(target p99 ≤ 50 ms)")
    print(f"{result['boxes']} boxes connected in {result['connect_s']:.1f} s")
    for i, run in enumerate(result["group_command"], 1):
        print(f"group command #{i}: {run['answered']}/{result['boxes']} answered in "
              f"{run['ms']:.0f} ms, {run['missing']} missing (target: all within 2 s)")
