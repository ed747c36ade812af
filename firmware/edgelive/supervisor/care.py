"""Remote care of a box: health watch, reboot, logs (SPEC §1, §5; docs/mqtt-api.md).

- `HealthWatch` samples `hw/health.py` in a thread every `health.interval` seconds and
  folds each sample into `policy/health.py`; the supervisor turns the set/clear decisions
  into THERMAL_THROTTLED / DISK_LOW events, an LED flag and `tele/device`.
- Reboot: the supervisor runs unprivileged and cannot reboot. It writes one file, the
  reboot request (`$EDGELIVE_REBOOT_REQUEST`: /var/lib/edgelive/reboot-request), and the
  image's `edgelive-reboot.path` unit, watching that file, starts the root-owned
  `edgelive-reboot.service` (`systemctl reboot`). The service can ask for a reboot and
  nothing else. Without the variable the box says it cannot reboot itself.
- Logs: from the journal (`journalctl -u edgelive -o json`) when systemd runs the box, else
  from `LogRing`, the supervisor's own recent log records. Bounded in lines and bytes,
  every line passed through `redact_text`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgelive.codes import Code
from edgelive.config.schema import EdgeliveConfig
from edgelive.events import EventLog
from edgelive.hw.health import HealthReader, Reading
from edgelive.policy.health import Change, Condition, HealthPolicy, Limits
from edgelive.redact import redact_text
from edgelive.verbs import CommandError

log = logging.getLogger(__name__)

REBOOT_REQUEST_ENV = "EDGELIVE_REBOOT_REQUEST"
REBOOT_DELAY_S = 1.0
"""Between answering `device/reboot` and asking for it: the answer and event go out first."""
JOURNAL_UNIT = "edgelive.service"
JOURNAL_TIMEOUT_S = 10.0
RING_RECORDS = 1000
DEFAULT_LINES = 100
MAX_LINE_CHARS = 500
MAX_ANSWER_CHARS = 48_000
"""Well under the broker's and the box's payload limits, with room for the envelope."""

# level name → (Python logging level, syslog priority as the journal stores it)
LEVELS: dict[str, tuple[int, int]] = {"debug": (logging.DEBUG, 7), "info": (logging.INFO, 6),
                                      "warning": (logging.WARNING, 4),
                                      "error": (logging.ERROR, 3)}
_PRIORITY_NAMES = {0: "error", 1: "error", 2: "error", 3: "error", 4: "warning", 5: "info",
                   6: "info", 7: "debug"}


# -- health


class HealthWatch:
    """Reads health every `interval` s; hands each reading and each set/clear decision on."""

    def __init__(self, reader: HealthReader, limits: Limits, interval: float, *,
                 on_reading: Callable[[Reading], None],
                 on_change: Callable[[Change, Reading], None]) -> None:
        self.reader = reader
        self.policy = HealthPolicy(limits)
        self.interval = interval
        self.last: Reading | None = None
        self._on_reading = on_reading
        self._on_change = on_change

    async def run(self) -> None:
        while True:
            try:
                reading = await asyncio.to_thread(self.reader.read)
            except Exception:  # a broken reading must not end the watch
                log.exception("health reading failed")
            else:
                self.last = reading
                for change in self.policy.update(reading.sample(), time.monotonic()):
                    self._on_change(change, reading)
                self._on_reading(reading)
            await asyncio.sleep(self.interval)


# -- reboot


def reboot_request_path() -> Path | None:
    value = os.environ.get(REBOOT_REQUEST_ENV, "")
    return Path(value) if value else None


def write_reboot_request(path: Path, reason: str) -> None:
    """Blocking (tiny) write; the path unit reacts to the file appearing."""
    path.write_text(reason + "\n")


# -- logs


@dataclass(frozen=True)
class LogLine:
    ts: float
    level: str
    msg: str


class LogRing(logging.Handler):
    """The newest log records of this process, for `device/logs` without a journal."""

    def __init__(self, capacity: int = RING_RECORDS) -> None:
        super().__init__(logging.DEBUG)
        self.records: deque[LogLine] = deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.name}: {record.getMessage()}"
        except Exception:  # a bad format string in someone's log call
            text = f"{record.name}: {record.msg!r}"
        self.records.append(LogLine(record.created, _level_name(record.levelno), text))

    def select(self, since: float, level: str) -> list[LogLine]:
        floor = LEVELS[level][0]
        return [line for line in list(self.records)
                if line.ts >= since and LEVELS[line.level][0] >= floor]


def _level_name(levelno: int) -> str:
    return next((name for name, (number, _) in reversed(LEVELS.items()) if levelno >= number),
                "debug")


async def journal_lines(since: float, level: str, lines: int) -> list[LogLine] | None:
    """Lines of the edgelive unit from the journal, or None where there is no journal to ask
    (not started by systemd, no journalctl, or it failed)."""
    exe = shutil.which("journalctl")
    if exe is None or "INVOCATION_ID" not in os.environ:
        return None
    argv = [exe, "--unit", JOURNAL_UNIT, "--output", "json", "--no-pager", "--quiet",
            "--lines", str(lines), "--priority", str(LEVELS[level][1]),
            "--output-fields", "MESSAGE,PRIORITY"]
    if since > 0:
        argv += ["--since", f"@{int(since)}"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), JOURNAL_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        log.warning("journalctl failed: %s", exc)
        return None
    if proc.returncode != 0:
        log.warning("journalctl failed (%s): %.300s", proc.returncode, err.decode(errors="replace"))
        return None
    return [line for line in map(_journal_line, out.splitlines()) if line is not None]


def _journal_line(raw: bytes) -> LogLine | None:
    try:
        entry = json.loads(raw)
        message = entry.get("MESSAGE", "")
        if isinstance(message, list):  # the journal's form of a non-UTF-8 message
            message = bytes(message).decode(errors="replace")
        return LogLine(int(entry["__REALTIME_TIMESTAMP"]) / 1e6,
                       _PRIORITY_NAMES.get(int(entry.get("PRIORITY", 6)), "info"), str(message))
    except (ValueError, KeyError, TypeError):
        return None


async def read_logs(args: dict[str, Any], ring: LogRing) -> dict[str, Any]:
    """The `device/logs` answer: newest lines last, secrets redacted, bounded in size."""
    since = float(args.get("since", 0))
    level = str(args.get("level", "info"))
    wanted = int(args.get("lines", DEFAULT_LINES))
    found = await journal_lines(since, level, wanted)
    source = "journal"
    if found is None:
        found, source = ring.select(since, level), "ring"
    found = found[-wanted:]
    out: list[dict[str, Any]] = []
    size = 0
    for line in reversed(found):  # keep the newest when the byte budget runs out
        msg = redact_text(line.msg)
        if len(msg) > MAX_LINE_CHARS:
            msg = msg[:MAX_LINE_CHARS] + "…"
        size += len(msg) + 60
        if size > MAX_ANSWER_CHARS:
            break
        out.append({"ts": int(line.ts * 1000), "level": line.level, "msg": msg})
    out.reverse()
    return {"source": source, "lines": out, "truncated": len(out) < len(found)}


# -- the device commands and the health watch, as the supervisor runs them


class CareHost(Protocol):
    """What care needs of the supervisor."""

    events: EventLog
    config: EdgeliveConfig

    def box_id(self) -> str: ...

    async def factory_reset(self, reason: str) -> None: ...

    def health_changed(self, warning: bool) -> None:
        """A health condition was set or cleared: LEDs and the retained state."""

    def publish_telemetry(self, src: str, doc: dict[str, Any]) -> None: ...


VERBS = frozenset({"reboot", "factory-reset", "logs"})


class Care:
    def __init__(self, host: CareHost, state_dir: Path, *, health_root: Path = Path("/"),
                 reboot_request: Path | None = None) -> None:
        self._host = host
        self.ring = LogRing()
        self.reboot_request = reboot_request or reboot_request_path()
        self.watch = self._make_watch(state_dir, health_root)
        self._tasks: set[asyncio.Task[Any]] = set()  # commands finishing after their answer
        self._watch_task: asyncio.Task[None] | None = None

    def _make_watch(self, state_dir: Path, root: Path) -> HealthWatch:
        cfg = self._host.config.health
        limits = Limits(temp_high_c=cfg.temp_high, disk_low_pct=cfg.disk_low_pct,
                        disk_low_mb=cfg.disk_low_mb, clear_after_s=cfg.clear_after)
        return HealthWatch(HealthReader(state_dir, root), limits, cfg.interval,
                           on_reading=self._on_reading, on_change=self._on_change)

    def start(self) -> None:
        logging.getLogger("edgelive").addHandler(self.ring)
        self._watch_task = asyncio.get_running_loop().create_task(self.watch.run())

    def stop(self) -> None:
        logging.getLogger("edgelive").removeHandler(self.ring)
        for task in [*self._tasks, self._watch_task]:
            if task is not None:
                task.cancel()

    def reconfigure(self, state_dir: Path, health_root: Path) -> None:
        """New [health] limits or interval: a new watch (its conditions are re-judged).
        Commands in flight carry on: a factory reset is what may have changed [health]."""
        if self._watch_task is not None:
            self._watch_task.cancel()
        self.watch = self._make_watch(state_dir, health_root)
        self._host.health_changed(False)
        self._watch_task = asyncio.get_running_loop().create_task(self.watch.run())

    def state(self) -> dict[str, bool]:
        active = self.watch.policy.active
        return {"thermal": Condition.THERMAL in active, "disk_low": Condition.DISK_LOW in active}

    # -- health

    def _on_reading(self, reading: Reading) -> None:
        self._host.publish_telemetry("device", reading.to_telemetry())

    def _on_change(self, change: Change, reading: Reading) -> None:
        code = Code.THERMAL_THROTTLED if change.condition == Condition.THERMAL else Code.DISK_LOW
        what = "SoC throttling" if change.condition == Condition.THERMAL else "disk space low"
        self._host.events.emit(code, f"{what}: {change.why}" if change.active
                               else f"{what} cleared: {change.why}",
                               active=change.active, **reading.to_telemetry())
        self._host.health_changed(bool(self.watch.policy.active))

    # -- commands

    async def command(self, verb: str, args: dict[str, Any]) -> dict[str, Any]:
        if verb == "reboot":
            return self._reboot()
        if verb == "factory-reset":
            box = self._host.box_id()
            if args.get("confirm") != box:
                raise CommandError(Code.COMMAND_REJECTED,
                                   f"factory-reset needs args.confirm = \"{box}\" (this box's id)")
            # after the answer: the reset may take the broker settings away
            self._spawn(self._later(0.5, self._host.factory_reset(
                "factory-reset command: configuration reset to defaults")))
            return {"reset": True}
        result = await read_logs(args, self.ring)
        self._host.events.emit(Code.LOGS_SENT, f"{len(result['lines'])} log lines sent "
                               f"({result['source']})", source=result["source"],
                               lines=len(result["lines"]))
        return result

    def _reboot(self) -> dict[str, Any]:
        path = self.reboot_request
        if path is None:
            raise CommandError(Code.COMMAND_REJECTED, "this box cannot reboot itself (no "
                               f"reboot helper: {REBOOT_REQUEST_ENV} is not set)")
        self._host.events.emit(Code.REBOOTING, "reboot requested by command; back in about a "
                               "minute")
        self._spawn(self._later(REBOOT_DELAY_S, asyncio.to_thread(
            write_reboot_request, path, "device/reboot command")))
        return {"rebooting": True, "in": REBOOT_DELAY_S}

    @staticmethod
    async def _later(delay: float, work: Coroutine[Any, Any, Any]) -> None:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            work.close()
            raise
        try:
            await work
        except Exception:
            log.exception("device command failed after its answer")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
