"""`edgelive demo`: the whole appliance on one PC, to see what a box does.

A local MQTT broker and RTMP server (the same ones the tests use), and the supervisor
configured to push its test source to that server and to play the stream back.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

BOX = "demo-box"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="local broker + RTMP server + a box pushing "
                                   "its test source and playing it back")
    parser.add_argument("--dir", type=Path, default=Path("demo-run"),
                        help="working directory for the servers and the box's state")
    parser.add_argument("--sink", default="", help="player sink (default: sdl with a "
                        "desktop, else offscreen)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.set_defaults(func=_run)


def demo_config(rtmp_url: str, mqtt_port: int, sink: str) -> dict:
    return {
        "pusher": {"url": rtmp_url, "source": "testsrc", "mode": "HD", "autopush": True,
                   "audio-device": "tone"},
        "player": {"src": rtmp_url, "mode": "RTC", "autoplay": True, "sink": sink,
                   "debug": True},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        "device": {"id": BOX, "name": "edgelive demo box", "groups": ["demo"]},
    }


def _run(args: argparse.Namespace) -> int:
    import logging

    import tomli_w

    from edgelive.cli.run_cmd import run_box
    from edgelive.config.store import ConfigStore
    from edgelive.testbed import Mosquitto, NginxRtmp

    workdir = args.dir.resolve()
    state = workdir / "state"
    state.mkdir(parents=True, exist_ok=True)
    sink = args.sink or ("sdl" if os.environ.get("DISPLAY") or os.environ.get(
        "WAYLAND_DISPLAY") else "offscreen")
    broker, ingest = Mosquitto(workdir), NginxRtmp(workdir / "nginx")
    broker.start()
    ingest.start()
    url = ingest.url("demo")
    (state / "config.toml").write_text(tomli_w.dumps(demo_config(url, broker.port, sink)))
    os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
    exe = Path(sys.executable).parent / "edgelive"
    print(f"""
edgelive demo — a box pushing its test source and playing it back ({sink} display)
  RTMP server   {url}
  MQTT broker   127.0.0.1:{broker.port}   box id: {BOX}

Watch it:
  ffplay -fflags nobuffer {url}
  {exe} status --state-dir {state}
  {exe} fleet --port {broker.port} watch
Change it:
  {exe} fleet --port {broker.port} set {BOX} pusher.max-bitrate=600
  {exe} fleet --port {broker.port} cmd {BOX} device/privacy on=true
  {exe} fleet --port {broker.port} cmd {BOX} pusher/snapshot
Stop with Ctrl-C.
""", flush=True)
    logging.basicConfig(level="INFO", stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        run_box(ConfigStore(state), state, args.duration)
    finally:
        ingest.stop()
        broker.stop()
    return 0
