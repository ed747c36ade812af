"""`edgelive` command line: one module per command group, each with `register(subparsers)`.

Command modules import their heavy dependencies (PyAV, SDL, paho) inside the handlers, so
`edgelive --help` and `edgelive config check` start fast on a Pi Zero.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgelive import __version__

# Each name is a module edgelive.cli.<name> exposing register(subparsers).
COMMAND_MODULES = ["run_cmd", "push_cmd", "play_cmd", "config_cmd", "fleet_cmd", "bench_cmd",
                   "demo_cmd", "web_cmd", "release_cmd"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgelive", description="Raspberry Pi live camera box: RTMP pusher, HDMI player, "
        "MQTT fleet control, status LEDs.")
    parser.add_argument("--version", action="version", version=f"edgelive {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"edgelive.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
