"""`edgelive config check|show|defaults`: validate a file, print the effective or default config."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgelive.config import store
from edgelive.config.schema import EdgeliveConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="check and show configuration")
    sub = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")

    check = sub.add_parser("check", help="validate a TOML config file")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_check)

    show = sub.add_parser("show", help="print the effective config, secrets redacted")
    show.add_argument("--state-dir", type=Path, default=None,
                      help="state directory (default: $STATE_DIRECTORY or /var/lib/edgelive)")
    show.add_argument("--boot-file", type=Path, default=None,
                      help="boot partition edgelive.toml (default: /boot/firmware/edgelive.toml)")
    show.add_argument("--format", choices=("toml", "json"), default="toml")
    show.set_defaults(func=_show)

    defaults = sub.add_parser("defaults", help="print the built-in defaults as commented TOML")
    defaults.set_defaults(func=_defaults)


def _summary(cfg: EdgeliveConfig) -> list[str]:
    doc = store.redacted(cfg)
    pusher, player, mqtt = doc["pusher"], doc["player"], doc["mqtt"]
    push = (f"{pusher['url']} (mode {pusher['mode']}, source {pusher['source']}"
            f"{', autopush' if pusher['autopush'] else ''})" if pusher["url"] else "no url")
    play = (f"{player['src']} (mode {player['mode']}{', autoplay' if player['autoplay'] else ''})"
            if player["src"] else "no src")
    fleet = (f"{mqtt['host']}:{mqtt['port']}{' tls' if mqtt['tls'] else ''}, "
             f"prefix {mqtt['prefix']}" if mqtt["host"] else "no broker")
    return [f"pusher: {push}", f"player: {play}", f"mqtt:   {fleet}"]


def _check(args: argparse.Namespace) -> int:
    try:
        cfg = store.load_file(args.file)
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    except UnicodeDecodeError:
        print(f"{args.file}: not UTF-8 text", file=sys.stderr)
        return 1
    except store.ConfigError as exc:
        print(f"{args.file}: {len(exc.errors)} error(s)", file=sys.stderr)
        for error in exc.errors:
            print(f"{error['loc']}: {error['msg']}", file=sys.stderr)
        return 1
    print("OK")
    print("\n".join(_summary(cfg)))
    return 0


def _show(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or store.default_state_dir()
    boot_file = args.boot_file or store.default_boot_file()
    config_store = store.ConfigStore(state_dir, boot_file)
    cfg = config_store.load(provision=False)
    for error in config_store.load_errors:
        print(f"warning: {error['file']}: {error['loc']}: {error['msg']}", file=sys.stderr)
    doc = store.redacted(cfg)
    if args.format == "json":
        print(json.dumps({"rev": config_store.rev, "config": doc}, indent=2))
    else:
        import tomli_w

        print(f"# rev {config_store.rev}")
        print(tomli_w.dumps(store.drop_none(doc)), end="")
    return 0


def _defaults(args: argparse.Namespace) -> int:
    from edgelive.config.docs import annotated_toml

    print(annotated_toml(), end="")
    return 0
