"""`edgelive run` (the appliance, as systemd starts it) and `edgelive status`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    from edgelive.config.store import default_boot_file, default_state_dir

    run = subparsers.add_parser("run", help="run the box: pusher, player, MQTT agent, LEDs")
    run.add_argument("--state-dir", type=Path, default=default_state_dir(),
                     help="where the config and state live (default: %(default)s)")
    run.add_argument("--boot-file", type=Path, default=default_boot_file(),
                     help="first-boot config on the boot partition (default: %(default)s)")
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    run.set_defaults(func=_run)

    status = subparsers.add_parser("status", help="what the running box is doing")
    status.add_argument("--state-dir", type=Path, default=default_state_dir())
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(func=_status)


def _run(args: argparse.Namespace) -> int:
    import logging

    from edgelive.config.store import ConfigStore

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    run_box(ConfigStore(args.state_dir, args.boot_file), args.state_dir)
    return 0


def run_box(store: Any, state_dir: Path, duration: float | None = None) -> None:
    """Run the supervisor with its status socket until SIGTERM/SIGINT (or `duration`)."""
    import asyncio

    from edgelive.hw.board import detect_board
    from edgelive.supervisor import Supervisor
    from edgelive.supervisor.control import serve_status, socket_path

    async def main() -> None:
        supervisor = Supervisor(store, detect_board())
        server = await serve_status(socket_path(state_dir), supervisor.status_report)
        if duration:
            asyncio.get_running_loop().call_later(duration, supervisor.request_stop)
        try:
            await supervisor.run()
        finally:
            server.close()

    asyncio.run(main())


def _status(args: argparse.Namespace) -> int:
    from edgelive.supervisor.control import read_status, socket_path

    path = socket_path(args.state_dir)
    try:
        status = read_status(path)
    except OSError as exc:
        print(f"edgelive status: no running box answers on {path} ({exc.strerror or exc})",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(_format(status))
    return 0


def _health_line(health: dict[str, Any]) -> str:
    """`health: 52.1 °C | disk 1210 MB free (61.0 %) | memory 610/960 MB free`, then what is
    wrong (THERMAL_THROTTLED, DISK_LOW), each part only when the box can read it."""
    parts = []
    if health.get("socTemp") is not None:
        parts.append(f"{health['socTemp']} °C")
    if health.get("diskFreeMB") is not None:
        parts.append(f"disk {health['diskFreeMB']} MB free ({health.get('diskFreePct')} %)")
    if health.get("memAvailableMB") is not None:
        parts.append(f"memory {health['memAvailableMB']}/{health.get('memTotalMB')} MB free")
    problems = [name for name, on in (("under-voltage", health.get("underVoltage")),
                                      ("throttled", health.get("thermal")),
                                      ("disk low", health.get("disk_low"))) if on]
    return "health: " + (" | ".join(parts) or "not read yet") + (
        "   PROBLEM: " + ", ".join(problems) if problems else "")


def _format(status: dict[str, Any]) -> str:
    lines = [f"edgelive {status['version']} on {status['board']} — up "
             f"{status['uptime']:.0f} s, LEDs: {status['leds']}",
             f"mqtt: {status['mqtt']}   privacy: {'on' if status['privacy'] else 'off'}   "
             f"config rev {status['rev']}"]
    for kind in ("pusher", "player"):
        worker = status[kind]
        line = f"{kind}: {worker['state']}"
        net = worker.get("netstatus") or {}
        if net:
            line += (f" | {net.get('videoWidth')}x{net.get('videoHeight')} "
                     f"{net.get('videoFPS')} fps | video {net.get('videoBitrate')} kbps | "
                     f"net {net.get('netSpeed')} kbps")
        lines.append(line)
    lines.append(_health_line(status.get("health") or {}))
    lines.append("recent events:")
    for event in status["events"][-10:]:
        stamp = time.strftime("%H:%M:%S", time.localtime(event["ts"] / 1000))
        lines.append(f"  {stamp} {event['src']:<6} {event['code']:>6} {event['name']} "
                     f"{event['msg']}")
    return "\n".join(lines)
