"""`edgelive bench …`: each benchmark prints its numbers next to a reference run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks next to a reference run")
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="BENCH")

    push = sub.add_parser("push", help="CPU vs ffmpeg at 720p30, and glass-to-glass latency")
    push.add_argument("--seconds", type=float, default=20.0, help="stream seconds per CPU run")
    push.add_argument("--latency-seconds", type=float, default=10.0)
    push.add_argument("--runs", type=int, default=3, help="alternating ffmpeg/pusher pairs")
    push.set_defaults(func=_push)

    play = sub.add_parser("play", help="decode+render CPU vs ffmpeg, and render latency")
    play.add_argument("url", nargs="?", help="a stream to play (default: a stamped stream on "
                      "a private nginx-rtmp, which measures render latency too)")
    play.add_argument("--seconds", type=float, default=20.0)
    play.add_argument("--size", default="1280x720", help="stamped stream and window size")
    play.add_argument("--runs", type=int, default=3, help="repeats; medians are printed")
    play.set_defaults(func=_play)

    fleet = sub.add_parser("fleet", help="config round trip and a group command to many boxes")
    fleet.add_argument("--host", help="broker (default: a private mosquitto)")
    fleet.add_argument("--port", type=int, default=1883)
    fleet.add_argument("--boxes", type=int, default=500)
    fleet.add_argument("--rounds", type=int, default=200)
    fleet.set_defaults(func=_fleet)

    bitrate = sub.add_parser("bitrate", help="bitrate adaptation over a shaped uplink "
                             "(1500 → 400 → 1500 kbit/s at 360p and 720p, an LTE-like "
                             "trace with 60 ms RTT and 0.5 %% loss; needs root for network "
                             "namespaces)")
    bitrate.add_argument("--scenario", type=int, action="append", metavar="N",
                         help="run only scenario N (1-based, as printed; repeatable; "
                         "default: all)")
    bitrate.add_argument("--plot", type=Path, default=Path("bench-bitrate.png"),
                         help="PNG of the timeline (written when matplotlib is installed)")
    bitrate.set_defaults(func=_bitrate)

    supervisor = sub.add_parser("supervisor", help="memory of the running appliance")
    supervisor.add_argument("--seconds", type=float, default=20.0)
    supervisor.set_defaults(func=_supervisor)

    web = sub.add_parser("web", help="supervisor and pusher CPU with one web preview viewer "
                         "against none")
    web.add_argument("--seconds", type=float, default=10.0, help="seconds per phase")
    web.add_argument("--runs", type=int, default=3, help="alternating no-viewer/viewer pairs")
    web.add_argument("--size", default="1280x720")
    web.add_argument("--fps", type=int, default=30)
    web.set_defaults(func=_web)


def _push(args: argparse.Namespace) -> int:
    from edgelive.bench.push import run

    print(run(args.seconds, args.latency_seconds, args.runs))
    return 0


def _play(args: argparse.Namespace) -> int:
    from edgelive.bench.play import run

    width, height = (int(v) for v in args.size.split("x"))
    print(run(args.url, args.seconds, (width, height), args.runs))
    return 0


def _fleet(args: argparse.Namespace) -> int:
    from edgelive.bench.fleet import print_fleet_bench, run_fleet_bench

    print_fleet_bench(run_fleet_bench(args.host, args.port, args.boxes, args.rounds))
    return 0


def _bitrate(args: argparse.Namespace) -> int:
    import tempfile

    from edgelive.bench.bitrate import SCENARIOS, format_timeline, plot, run, summary

    chosen = args.scenario or range(1, len(SCENARIOS) + 1)
    if unknown := [n for n in chosen if not 1 <= n <= len(SCENARIOS)]:
        names = "; ".join(f"{n}. {s.name}" for n, s in enumerate(SCENARIOS, 1))
        print(f"no scenario {unknown[0]}; there are {names}", file=sys.stderr)
        return 2
    for index in chosen:
        scenario = SCENARIOS[index - 1]
        with tempfile.TemporaryDirectory(prefix="edgelive-bench-") as tmp:
            result = run(Path(tmp), scenario)
        print(f"== {index}. {scenario.name}")
        print(format_timeline(result))
        print(json.dumps(summary(scenario, result)))
        png = args.plot.with_stem(f"{args.plot.stem}-{index}")
        if plot(result, png, scenario.name):
            print(f"plot: {png}")
    return 0


def _supervisor(args: argparse.Namespace) -> int:
    from edgelive.bench.supervisor import report, run

    print(report(run(args.seconds)))
    return 0


def _web(args: argparse.Namespace) -> int:
    from edgelive.bench.web import report, run

    print(report(run(args.seconds, args.runs, args.size, args.fps)))
    return 0
