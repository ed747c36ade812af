"""`edgelive fleet ls|get|set|cmd|watch|update`: operate a fleet of boxes over MQTT."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

PASSWORD_ENV = "EDGELIVE_MQTT_PASSWORD"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fleet", help="list, configure and command boxes over MQTT")
    parser.add_argument("--host", default="127.0.0.1", help="broker host")
    parser.add_argument("--port", type=int, default=1883, help="broker port")
    parser.add_argument("--prefix", default="edgelive", help="topic prefix")
    parser.add_argument("--username", default="", help="operator user name")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca-file", default="", help="CA certificate to pin (PEM)")
    parser.add_argument("--cert-file", default="", help="client certificate (PEM)")
    parser.add_argument("--key-file", default="", help="client key (PEM)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for boxes")
    sub = parser.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")

    ls = sub.add_parser("ls", help="boxes that are online, with their state")
    ls.add_argument("--all", action="store_true", help="include offline boxes")
    ls.set_defaults(func=_run, action=_ls)
    get = sub.add_parser("get", help="state and reported config of one box (JSON)")
    get.add_argument("box")
    get.set_defaults(func=_run, action=_get)
    set_ = sub.add_parser("set", help="change config of a box or group: section.key=value …")
    set_.add_argument("target", help="box id or group")
    set_.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    set_.set_defaults(func=_run, action=_set)
    cmd = sub.add_parser("cmd", help="run a command on a box, a group or all")
    cmd.add_argument("target", help="box id, group or all")
    cmd.add_argument("verb", help="e.g. pusher/start, player.mute, identify")
    cmd.add_argument("args", nargs="*", metavar="KEY=VALUE")
    cmd.set_defaults(func=_run, action=_cmd)
    watch = sub.add_parser("watch", help="print every box's events as they happen")
    watch.set_defaults(func=_run, action=_watch)
    update = sub.add_parser("update", help="roll a signed release out to a group: canaries "
                            "first, then batches; stops at the first rollback")
    update.add_argument("--group", required=True, help="group (or box id) to update")
    update.add_argument("--url", required=True, help="where the boxes download the bundle")
    update.add_argument("--bundle", type=Path, help="the bundle file, to take its version and "
                        "SHA-256 from (else give --version and --sha256)")
    update.add_argument("--version", dest="release_version")
    update.add_argument("--sha256")
    update.add_argument("--canary", type=int, default=1, help="boxes updated one at a time "
                        "first (default: %(default)s)")
    update.add_argument("--batch", type=int, default=5, help="boxes at a time after the "
                        "canaries (default: %(default)s)")
    update.add_argument("--health-timeout", type=int, help="seconds each box's new release "
                        "has to be healthy (default: each box's "
                        "update.health-timeout)")
    update.add_argument("--wait", type=float, default=900, help="seconds to wait for a batch "
                        "to commit or roll back (default: %(default)s)")
    update.add_argument("--offer", action="store_true", help="only offer the release (Home "
                        "Assistant's update entity installs it)")
    update.set_defaults(func=_run, action=_update)
    parser.epilog = f"The password is read from ${PASSWORD_ENV}."


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, lists), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`["pusher.max-bitrate=900"]` → `{"pusher": {"max-bitrate": 900}}`."""
    doc: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r} is not KEY=VALUE")
        *path, leaf = key.split(".")
        table = doc
        for part in path:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ValueError(f"{key!r} conflicts with another assignment")
        table[leaf] = parse_value(value)
    return doc


def _run(args: argparse.Namespace) -> int:
    from edgelive.fleet.operator import FleetOperator
    from edgelive.fleet.session import SessionSettings

    settings = SessionSettings(
        host=args.host, port=args.port, client_id=f"edgelive-op-{uuid.uuid4().hex[:8]}",
        tls=args.tls, ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
        username=args.username, password=os.environ.get(PASSWORD_ENV, ""))

    async def main() -> int:
        async with FleetOperator(settings, args.prefix) as fleet:
            return await args.action(fleet, args)

    try:
        return asyncio.run(main())
    except TimeoutError:
        print(f"no answer from the broker at {args.host}:{args.port}", file=sys.stderr)
        return 2
    except (LookupError, ValueError) as exc:
        print(exc.args[0] if exc.args else exc, file=sys.stderr)
        return 2


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


async def _ls(fleet: Any, args: argparse.Namespace) -> int:
    rows = [["ID", "STATUS", "PUSHER", "PLAYER", "PRIVACY", "REV", "VERSION", "UPTIME",
             "GROUPS"]]
    for box in sorted(fleet.boxes.values(), key=lambda b: b.id):
        if not (box.online or args.all):
            continue
        state = box.state or {}
        rows.append([box.id, box.status or "?",
                     str((state.get("pusher") or {}).get("state", "?")),
                     str((state.get("player") or {}).get("state", "?")),
                     "on" if state.get("privacy") else "off", str(state.get("rev", "?")),
                     str(state.get("version", "?")), _duration(state.get("uptime")),
                     ",".join(box.groups)])
    _table(rows)
    return 0


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


async def _get(fleet: Any, args: argparse.Namespace) -> int:
    box = fleet.boxes.get(args.box)
    if box is None:
        raise LookupError(f"no box named {args.box!r}")
    print(json.dumps({"id": box.id, "status": box.status, "state": box.state,
                      "reported": box.reported, "desired": box.desired}, indent=2))
    return 0


async def _set(fleet: Any, args: argparse.Namespace) -> int:
    outcomes = await fleet.set_config(args.target, parse_assignments(args.assignments),
                                      args.timeout)
    failed = 0
    for outcome in outcomes:
        report = outcome.report
        if report is None:
            state = "online" if fleet.boxes[outcome.box].online else "offline"
            print(f"{outcome.box}: rev {outcome.rev} sent, no report yet ({state})")
            failed += 1
        elif report["applied"]:
            print(f"{outcome.box}: rev {outcome.rev} applied")
        else:
            failed += 1
            print(f"{outcome.box}: rev {outcome.rev} rejected")
            for error in report.get("errors", []):
                print(f"  {error.get('loc')}: {error.get('msg')}")
    return 1 if failed else 0


async def _cmd(fleet: Any, args: argparse.Namespace) -> int:
    from edgelive.fleet.messages import resolve_verb

    path = resolve_verb(args.verb)
    outcome = await fleet.command(args.target, path, parse_assignments(args.args),
                                  args.timeout)
    failed = 0
    for box, answer in sorted(outcome.answers.items()):
        if answer.get("ok"):
            print(f"{box}: ok {json.dumps(answer.get('result', {}))}")
        else:
            failed += 1
            print(f"{box}: failed {answer.get('code')} {answer.get('error')}")
    if outcome.missing:
        print(f"no answer within {args.timeout:g} s: {', '.join(outcome.missing)}")
    elif not outcome.answers:
        print("no box answered")
    return 1 if failed or outcome.missing or not outcome.answers else 0


def format_event(box: str, event: dict[str, Any]) -> str:
    ts = event.get("ts")
    when = (time.strftime("%H:%M:%S", time.localtime(ts / 1000)) + f".{ts % 1000:03d}"
            if isinstance(ts, int) else "--:--:--.---")
    return (f"{when}  {box}  {event.get('src', '?')}  {event.get('code', '?')}  "
            f"{event.get('name', '?')}  {event.get('msg', '')}")


def release_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `device/update` arguments from the command line (or the bundle file)."""
    version, sha256 = args.release_version, args.sha256
    if args.bundle is not None:
        import tarfile

        from edgelive.update.bundle import MANIFEST, Manifest, sha256_file

        with tarfile.open(args.bundle) as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise ValueError(f"{args.bundle} is not a release bundle")
            version = Manifest.from_bytes(member.read()).version
        sha256 = sha256_file(args.bundle)
    if not version or not sha256:
        raise ValueError("give --bundle, or --version and --sha256")
    out = {"url": args.url, "sha256": sha256, "version": version}
    if args.health_timeout is not None:
        out["health_timeout"] = args.health_timeout
    return out


async def _update(fleet: Any, args: argparse.Namespace) -> int:
    from edgelive.fleet.operator import rollout_plan

    release = release_args(args)
    members = fleet.members(args.group)
    if not members:
        raise LookupError(f"no box or group named {args.group!r}")
    offline = [b for b in members if not fleet.boxes[b].online]
    current = [b for b in members if b not in offline
               and (fleet.boxes[b].state or {}).get("version") == release["version"]]
    todo = [b for b in members if b not in offline and b not in current]
    for box in offline:
        print(f"{box}: offline, skipped")
    for box in current:
        print(f"{box}: already on {release['version']}")
    if args.offer:
        outcome = await fleet.command(args.group, "device/update",
                                      {**release, "install": False}, args.timeout)
        for box, answer in sorted(outcome.answers.items()):
            print(f"{box}: " + (f"offered {release['version']}" if answer.get("ok")
                                else f"failed {answer.get('error')}"))
        return 0 if all(a.get("ok") for a in outcome.answers.values()) else 1
    plan = rollout_plan(todo, args.canary, args.batch)
    for i, batch in enumerate(plan):
        results = await fleet.update(batch, release, args.wait)
        for result in results:
            print(f"{result.box}: " + ("updated" if result.ok else "ROLLED BACK")
                  + f": {result.reason}", flush=True)
        failed = next((r for r in results if not r.ok), None)
        if failed is not None:
            left = [b for rest in plan[i + 1:] for b in rest]
            print(f"rollout of {release['version']} stopped: {failed.box} rolled back "
                  f"({failed.reason}); not updated: {', '.join(left) or 'none'}")
            return 1
    print(f"rollout of {release['version']} done: {len(todo)} updated")
    return 0


async def _watch(fleet: Any, args: argparse.Namespace) -> int:
    async for box, event in fleet.events():
        print(format_event(box, event), flush=True)
    return 0
