"""`edgelive push URL`: the pusher alone, started at once.

`edgelive push --worker` is the same pusher run by the supervisor: no URL; the first stdin
line is its config section (`{"type": "config", "config": {...}}`), later config lines are
applied live and command lines are answered (edgelive/ipc.py). A worker only pushes after a
`start` command (the supervisor sends it for autopush), writes a state line on every change
and once a second, and exits when stdin closes or on SIGTERM.

stdout carries the JSON-lines protocol (events, netstatus, state, responses); stderr shows
a one-line status refreshed each second for a person at a terminal.
"""

from __future__ import annotations

import argparse
import base64
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

OVERRIDES = ("url", "source", "mode", "resolution", "fps", "encoder", "audio_device",
             "audio_quality", "gop")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("push", help="push the camera to an RTMP server")
    parser.add_argument("url", nargs="?", help="rtmp:// URL (overrides the config's url)")
    parser.add_argument("--config", type=Path, help="edgelive TOML file; its [pusher] is used")
    parser.add_argument("--source", help="auto | picamera2 | testsrc | /dev/videoN | image")
    parser.add_argument("--mode", choices=("SD", "HD", "FHD", "RTC"))
    parser.add_argument("--resolution", help="WIDTHxHEIGHT instead of the mode's size")
    parser.add_argument("--fps", type=int)
    parser.add_argument("--gop", type=float, help="key-frame interval, seconds")
    parser.add_argument("--encoder", choices=("auto", "hardware", "software"))
    parser.add_argument("--audio-device", help="auto | none | tone | ALSA device")
    parser.add_argument("--audio-quality", choices=("low", "high"))
    parser.add_argument("--muted", action="store_true", default=None)
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--worker", action="store_true",
                        help="run under the supervisor: config and commands on stdin")
    parser.set_defaults(func=_run)


def _problems(exc: Any) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'pusher'}: {e['msg']}"
                     for e in exc.errors())


def _load_config(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from edgelive.config import store
    from edgelive.config.schema import PusherConfig

    base = store.load_file(args.config).pusher if args.config else PusherConfig()
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.muted:
        overrides["muted"] = True
    try:
        return PusherConfig.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        raise store.ConfigError([{"loc": "pusher", "msg": _problems(exc)}]) from None


def _validate(section: Any) -> Any:
    """The PusherConfig of a config line's section; raises ValueError saying what is wrong."""
    from pydantic import ValidationError

    from edgelive.config.schema import PusherConfig

    if not isinstance(section, dict):
        raise ValueError("a config line needs a \"config\" object")
    try:
        return PusherConfig.model_validate(section)
    except ValidationError as exc:
        raise ValueError(f"config rejected: {_problems(exc)}") from None


def _hardware_encoder_present() -> bool:
    from edgelive.hw.board import detect_board

    return detect_board().has_hw_encoder


def _status_line(state: str, status: dict[str, Any]) -> str:
    if not status:
        return f"pusher {state}"
    return (f"pusher {state} | {status['videoBitrate']} kbps video, {status['netSpeed']} kbps "
            f"sent | {status['videoFPS']} fps | {status['videoWidth']}x"
            f"{status['videoHeight']} | {status['encoder']} | cpu {status['cpu']}% | "
            f"queue {status['queueDepth']} dropped {status['droppedFrames']}")


def _serve(pusher: Any, messages: Iterator[dict[str, Any]], writer: Any,
           on_eof: Callable[[], None]) -> None:
    """Answer command lines and apply config lines until stdin closes, then `on_eof`."""
    from edgelive.ipc import reject
    from edgelive.pusher import CommandError

    for message in messages:
        if message["type"] == "config":
            try:
                pusher.configure(_validate(message.get("config")))
            except ValueError as exc:
                reject(writer, None, str(exc))
            continue
        if message["type"] != "cmd":
            reject(writer, message.get("id"), f"{message['type']} lines are not taken here")
            continue
        reply: dict[str, Any] = {"id": message.get("id")}
        try:
            args = message.get("args") or {}
            result = pusher.handle_command(str(message.get("verb")),
                                           args if isinstance(args, dict) else {})
            if "jpeg" in result:
                result["jpeg"] = base64.b64encode(result["jpeg"]).decode()
            reply.update(ok=True, code=0, result=result)
        except CommandError as exc:
            reply.update(ok=False, code=int(exc.code), error=str(exc))
        writer.write("response", reply)
    on_eof()


def _run(args: argparse.Namespace) -> int:
    from edgelive.codes import Source
    from edgelive.config.store import ConfigError
    from edgelive.events import EventLog, now_ms
    from edgelive.ipc import LineWriter, first_config, read_messages
    from edgelive.pusher import Pusher

    writer = LineWriter(sys.stdout)
    messages = read_messages(sys.stdin, writer)
    if args.worker:
        config = first_config(messages, writer, _validate)  # SIGTERM here just ends the process
        if config is None:
            return 0
    else:
        try:
            config = _load_config(args)
        except (ConfigError, OSError) as exc:
            print(f"edgelive push: invalid configuration: {exc}", file=sys.stderr)
            return 2
        if not config.url:
            print("edgelive push: no URL (give one, or set pusher.url in --config)",
                  file=sys.stderr)
            return 2

    events = EventLog(Source.PUSHER)
    events.subscribe(lambda event: writer.write("event", event.to_dict()))
    latest: dict[str, Any] = {}

    def on_netstatus(status: dict[str, Any]) -> None:
        latest.clear()
        latest.update(status)
        writer.write("netstatus", {"src": Source.PUSHER.value, "ts": now_ms(), **status})

    def write_state(state: str) -> None:
        writer.write("state", {"src": Source.PUSHER.value, "state": state})

    pusher = Pusher(config, events, on_netstatus, on_state=write_state,
                    hardware_available=_hardware_encoder_present())
    quit_event = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: quit_event.set())
    # A worker whose supervisor is gone (stdin closed) has nobody to report to: it quits.
    on_eof = quit_event.set if args.worker else (lambda: None)
    threading.Thread(target=_serve, args=(pusher, messages, writer, on_eof),
                     name="commands", daemon=True).start()

    if not args.worker:
        pusher.start()
    write_state(pusher.state)
    deadline = None if args.duration is None else now_ms() + int(args.duration * 1000)
    show_status = not args.worker
    while not quit_event.wait(1.0):
        write_state(pusher.state)  # the heartbeat the supervisor's hang check expects
        if show_status:
            end = "\r" if sys.stderr.isatty() else "\n"
            print("\033[K" * sys.stderr.isatty() + _status_line(pusher.state, latest),
                  end=end, file=sys.stderr, flush=True)
        if pusher.done.is_set() and not args.worker:
            break
        if deadline is not None and now_ms() >= deadline:
            break
    pusher.stop()
    write_state(pusher.state)
    if show_status and sys.stderr.isatty():
        print(file=sys.stderr)
    return 1 if pusher.state == "failed" else 0
