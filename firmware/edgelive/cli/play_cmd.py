"""`edgelive play URL`: the player alone (JSON lines on stdout, a status line on stderr).

`edgelive play --worker` is the same player run by the supervisor: no URL, the config
section and commands arrive on stdin as JSON lines.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("play", help="play an RTMP / HTTP-FLV stream on the screen")
    parser.add_argument("url", nargs="?", help="rtmp://… or http(s)://….flv")
    parser.add_argument("--sink", choices=["auto", "kms", "sdl", "offscreen", "none"])
    parser.add_argument("--mode", choices=["live", "RTC"])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--muted", action="store_true", help="no sound")
    parser.add_argument("--debug", action="store_true", help="on-screen statistics overlay")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _stdin_lines(player: Any, writer: Any) -> None:
    """Feed the player the supervisor's lines: commands and live config changes."""
    from edgelive.ipc import parse_line

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = parse_line(line)
        except ValueError as exc:
            writer.write("response", {"id": None, "ok": False, "code": -6018,
                                      "error": str(exc)})
            continue
        if message["type"] == "cmd":
            player.submit(message)
        elif message["type"] == "config":
            player.submit({"id": None, "verb": "config", "args": message.get("config", {})},
                          lambda response: None)
    player.stop()


def _status_line(player: Any) -> None:
    n = player.netstatus
    sys.stderr.write(f"\r{n.get('state', 'idle'):<12} {n.get('videoWidth', 0)}x"
                     f"{n.get('videoHeight', 0)} {n.get('videoFPS', 0):>5} fps "
                     f"{n.get('videoBitrate', 0):>6} kbps cache {n.get('cache', 0):.2f} s "
                     f"dropped {n.get('droppedFrames', 0)}   ")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from edgelive.codes import Source
    from edgelive.config.schema import PlayerConfig
    from edgelive.events import EventLog
    from edgelive.hw.display import open_sink
    from edgelive.hw.speaker import Speaker
    from edgelive.ipc import LineWriter
    from edgelive.player.worker import Player

    overrides: dict[str, Any] = {"autoplay": bool(args.url)}
    for key, value in (("src", args.url), ("sink", args.sink), ("mode", args.mode)):
        if value:
            overrides[key] = value
    if args.muted:
        overrides["muted"] = True
    if args.debug:
        overrides["debug"] = True
    config = PlayerConfig.model_validate(overrides)
    writer = LineWriter()
    events = EventLog(Source.PLAYER)
    w, h = (int(v) for v in config.screen_size.split("x"))
    sink = open_sink(config.sink, (w, h), fullscreen=args.worker)
    player = Player(config, sink, events, out=writer,
                    speaker=lambda: Speaker(config.sound_mode, config.muted))
    signal.signal(signal.SIGTERM, lambda *_: player.stop())
    if args.worker:
        threading.Thread(target=_stdin_lines, args=(player, writer), daemon=True).start()
    else:
        ticker = threading.Event()

        def tick() -> None:
            while not ticker.wait(1.0):
                _status_line(player)

        threading.Thread(target=tick, daemon=True).start()
    try:
        player.run(args.duration)
    finally:
        player.close()
        if not args.worker:
            sys.stderr.write("\n")
    return 0
