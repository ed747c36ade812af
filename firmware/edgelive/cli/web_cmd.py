"""`edgelive web passwd`: set the web console's password (stored as an scrypt hash)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from edgelive.config.store import default_state_dir

    web = subparsers.add_parser("web", help="the local web console")
    sub = web.add_subparsers(dest="web_command", required=True, metavar="COMMAND")
    passwd = sub.add_parser("passwd", help="set the console password (the console does not "
                            "start without one)")
    passwd.add_argument("--state-dir", type=Path, default=default_state_dir(),
                        help="the box's state directory (default: %(default)s)")
    passwd.add_argument("--stdin", action="store_true",
                        help="read the password from the first line of stdin (no prompt)")
    passwd.set_defaults(func=_passwd)


def _passwd(args: argparse.Namespace) -> int:
    from edgelive.web.auth import write_passwd

    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("New console password: ")
        if getpass.getpass("Again: ") != password:
            print("edgelive web passwd: the two passwords differ; nothing changed",
                  file=sys.stderr)
            return 1
    args.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        path = write_passwd(args.state_dir, password)
    except ValueError as exc:
        print(f"edgelive web passwd: {exc}; nothing changed", file=sys.stderr)
        return 1
    print(f"console password stored in {path}; it counts from the next login (a box "
          "whose console was off for want of a password starts it at its next restart)")
    return 0
