"""`edgelive play URL`: the player alone (JSON lines on stdout, a status line on stderr).

`edgelive play --worker` is the same player run by the supervisor: no URL; the first
stdin line is the config section (`{"type": "config", "config": {...}}`), later lines are
live config changes and commands (edgelive/ipc.py). It exits when stdin closes or on
SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("play", help="play an RTMP / HTTP-FLV stream on the screen")
    parser.add_argument("url", nargs="?", help="rtmp://… or http(s)://….flv")
    parser.add_argument("--sink", choices=["auto", "kms", "sdl", "offscreen", "none"])
    parser.add_argument("--mode", choices=["live", "RTC"])
    parser.add_argument("--screen-size", help="window size for sdl/offscreen, e.g. 640x360")
    parser.add_argument("--decoder", choices=["auto", "hardware", "software"])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--muted", action="store_true", help="no sound")
    parser.add_argument("--debug", action="store_true", help="on-screen statistics overlay")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _section(section: Any) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise ValueError('a config line needs a "config" object')
    return section


def _stdin_lines(messages: Iterator[dict[str, Any]], player: Any, writer: Any) -> None:
    """Feed the player the supervisor's lines: commands and live config changes."""
    for message in messages:
        if message["type"] == "cmd":
            player.submit(message)
        elif message["type"] == "config":
            player.submit({"id": None, "verb": "config", "args": message.get("config", {})},
                          lambda response: None if response["ok"] else
                          writer.write("response", response))
    player.stop()


def _open_sink(config: Any, fullscreen: bool) -> tuple[Any, str]:
    """The configured display, or none and the reason when it cannot be opened: the player
    keeps its events, audio and snapshots, and the box keeps running."""
    from edgelive.hw.display import NullSink, open_sink

    w, h = (int(v) for v in config.screen_size.split("x"))
    try:
        return open_sink(config.sink, (w, h), fullscreen=fullscreen), ""
    except Exception as exc:  # no pykms, no DRM device, no SDL video driver…
        return NullSink((w, h)), f"no display ({config.sink}): {exc}"


def _status_line(player: Any) -> None:
    n = player.netstatus
    sys.stderr.write(f"\r{n.get('state', 'idle'):<12} {n.get('videoWidth', 0)}x"
                     f"{n.get('videoHeight', 0)} {n.get('videoFPS', 0):>5} fps "
                     f"{n.get('videoBitrate', 0):>6} kbps cache {n.get('cache', 0):.2f} s "
                     f"dropped {n.get('droppedFrames', 0)}   ")
    sys.stderr.flush()


def _status_ticker(player: Any, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        _status_line(player)


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    section: dict[str, Any] = {"autoplay": bool(args.url)}
    for key, value in (("src", args.url), ("sink", args.sink), ("mode", args.mode),
                       ("screen-size", args.screen_size), ("decoder", args.decoder)):
        if value:
            section[key] = value
    if args.muted:
        section["muted"] = True
    if args.debug:
        section["debug"] = True
    return section


def run(args: argparse.Namespace) -> int:
    from edgelive.codes import Code, Source
    from edgelive.config.schema import PlayerConfig
    from edgelive.events import EventLog
    from edgelive.hw.board import detect_board
    from edgelive.hw.display_status import DisplayWatcher
    from edgelive.hw.speaker import Speaker
    from edgelive.ipc import LineWriter, first_config, read_messages, reject
    from edgelive.player.worker import Player

    writer = LineWriter()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    messages = read_messages(sys.stdin, writer)
    if args.worker:
        section = first_config(messages, writer, _section)
        if section is None or stop.is_set():
            return 0
    else:
        section = _config_from_args(args)
    try:
        config = PlayerConfig.model_validate(section)
    except ValueError as exc:
        reject(writer, None, f"config rejected: {exc}")
        return 2
    prefer_hardware = (detect_board().has_hw_h264_decoder if config.decoder == "auto"
                       else config.decoder == "hardware")
    events = EventLog(Source.PLAYER)
    sink, no_display = _open_sink(config, args.worker)
    player = Player(config, sink, events, out=writer,
                    speaker=lambda: Speaker(config.sound_mode, config.muted),
                    prefer_hardware=prefer_hardware)
    if no_display:
        events.emit(Code.DISPLAY_UNAVAILABLE, no_display)
    signal.signal(signal.SIGTERM, lambda *_: player.stop())
    if stop.is_set():
        player.stop()
    watcher = DisplayWatcher(player.display_changed)
    watcher.start()
    if args.worker:
        threading.Thread(target=_stdin_lines, args=(messages, player, writer),
                         daemon=True).start()
    else:
        threading.Thread(target=_status_ticker, args=(player, stop), daemon=True).start()
    # Everything made so far (modules, pydantic models, SDL) lives as long as the process:
    # moved out of the collector's sight, each collection scans only the per-frame objects.
    gc.freeze()
    try:
        player.run(args.duration)
    finally:
        watcher.stop()
        player.close()
        if not args.worker:
            sys.stderr.write("\n")
    return 0
