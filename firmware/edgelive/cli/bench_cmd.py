"""`edgelive bench push`: measure the pusher against the ffmpeg CLI and its latency."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks")
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    push = sub.add_parser("push", help="CPU vs ffmpeg at 720p30, and glass-to-glass latency")
    push.add_argument("--seconds", type=float, default=20.0, help="stream seconds per CPU run")
    push.add_argument("--latency-seconds", type=float, default=10.0)
    push.set_defaults(func=_push)


def _push(args: argparse.Namespace) -> int:
    from edgelive.bench.push import run

    print(run(args.seconds, args.latency_seconds))
    return 0
