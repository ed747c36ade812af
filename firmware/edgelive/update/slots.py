"""Release slots on the box, the links that choose one, and the update record.

    <root>/releases/<version>/   one installed release: site/ (its wheels), bin/edgelive
    <root>/current -> releases/V  what systemd starts (ExecStart=<root>/current/bin/edgelive)
    <root>/good    -> releases/V  the last release that judged itself healthy
    <root>/update.json            the update in progress or last finished (the record)
    <root>/rollback-config.toml   the state dir's config.toml as it was before the switch
    <root>/keys/*.pub             release public keys
    <root>/downloads/             bundles being downloaded (resumed by SHA-256)

Every change is a write to a temporary name, fsync, then rename(2), which is atomic: after
a power cut each link points at a complete slot, and the record is the old or the new one.
The guard (`edgelive release guard`, systemd's ExecStartPre, run by the `good` release's
launcher, so never by the code on probation) counts the starts of a release on probation and
switches back to `good` when it keeps failing before it can judge itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the guard runs before every start: no cryptography import for it
    from edgelive.update.bundle import Manifest

MAX_STARTS = 3
"""Starts of a release on probation before the guard rolls it back: a crash at start, a
hang the watchdog ends, or a power cut each count one."""
RECORD = "update.json"
CONFIG_SNAPSHOT = "rollback-config.toml"
CONFIG_NAME = "config.toml"

State = Literal["probation", "committed", "rolled-back"]


class InstallError(Exception):
    """The verified bundle could not be installed; the running release is untouched."""


@dataclass(frozen=True)
class Record:
    """What the box knows of its latest update; survives restarts and power cuts."""

    version: str
    previous: str
    state: State = "probation"
    starts: int = 0
    health_timeout: float = 120.0
    expect: dict[str, bool] = field(default_factory=dict)  # health signals to see again
    state_dir: str = ""
    reason: str = ""
    reported: bool = False  # UPDATE_DONE / UPDATE_ROLLED_BACK published
    ts: float = 0.0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


class Slots:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.downloads = root / "downloads"
        self.keys_dir = root / "keys"

    # -- reading

    def _link(self, name: str) -> str | None:
        try:
            target = os.readlink(self.root / name)
        except OSError:
            return None
        version = Path(target).name
        return version if (self.releases / version / "bin" / "edgelive").exists() else None

    def current(self) -> str | None:
        return self._link("current")

    def good(self) -> str | None:
        return self._link("good")

    def public_keys(self) -> list[Path]:
        return sorted(self.keys_dir.glob("*.pub"))

    def record(self) -> Record | None:
        try:
            doc = json.loads((self.root / RECORD).read_text())
            return Record(**doc)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # unreadable: as if none, the links still decide
            return None

    def write_record(self, record: Record) -> None:
        atomic_write(self.root / RECORD,
                     json.dumps(asdict(replace(record, ts=time.time())), indent=1).encode())

    # -- installing (blocking: the supervisor calls these in a thread)

    def install(self, bundle: Path, manifest: Manifest, python: str = sys.executable) -> Path:
        """The verified bundle unpacked into releases/<version>; the running and the good
        release are never touched (installing over them is refused)."""
        from edgelive.update.bundle import extract_wheels

        version = manifest.version
        if version in (self.current(), self.good()):
            raise ValueError(f"release {version} is already installed and in use")
        self.releases.mkdir(parents=True, exist_ok=True)
        staging = self.releases / f".staging-{version}"
        shutil.rmtree(staging, ignore_errors=True)  # a half install from before a power cut
        wheels = extract_wheels(bundle, manifest, staging / "wheels")
        pip = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-index",
                              "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
                              "--no-compile", "--target", str(staging / "site"),
                              *map(str, wheels)], capture_output=True, text=True, timeout=600)
        if pip.returncode != 0:
            raise InstallError(f"pip could not install the wheels: {pip.stderr.strip()[-500:]}")
        shutil.rmtree(staging / "wheels")
        (staging / "manifest.json").write_bytes(manifest.to_bytes())
        launcher = staging / "bin" / "edgelive"
        launcher.parent.mkdir()
        slot = self.releases / version
        # The release's own packages come first; the interpreter is the one installing it.
        launcher.write_text(f"#!/bin/sh\n# edgelive {version}\nPYTHONPATH={slot}/site "
                            f"exec {python} -m edgelive \"$@\"\n")
        launcher.chmod(0o755)
        subprocess.run(["sync", "-f", str(staging)], check=False)
        shutil.rmtree(slot, ignore_errors=True)  # an older copy of this version, unused
        staging.rename(slot)
        _fsync_dir(self.releases)
        return slot

    def link(self, name: str, version: str) -> None:
        """Point `name` (current, good) at releases/<version> in one rename."""
        tmp = self.root / f".{name}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(Path("releases") / version)
        tmp.replace(self.root / name)
        _fsync_dir(self.root)

    def begin(self, record: Record, state_dir: Path) -> None:
        """Record the update, keep the config the previous release reads, then switch."""
        config = state_dir / CONFIG_NAME
        if config.exists():
            atomic_write(self.root / CONFIG_SNAPSHOT, config.read_bytes())
        else:
            with contextlib.suppress(FileNotFoundError):
                (self.root / CONFIG_SNAPSHOT).unlink()
        self.write_record(replace(record, state_dir=str(state_dir)))
        self.link("current", record.version)

    def commit(self, record: Record) -> Record:
        self.link("good", record.version)
        done = replace(record, state="committed", reported=True)
        self.write_record(done)
        self.prune(keep=record.previous)
        return done

    def roll_back(self, record: Record, reason: str) -> Record:
        """Back to the release the update started from, with its config as it left it."""
        back = replace(record, state="rolled-back", reason=reason, reported=False)
        self.write_record(back)
        snapshot = self.root / CONFIG_SNAPSHOT
        if record.state_dir and snapshot.exists():
            atomic_write(Path(record.state_dir) / CONFIG_NAME, snapshot.read_bytes())
        self.link("current", self.good() or record.previous)
        return back

    def make_room(self, sha256: str) -> None:
        """Before an update: drop what no start will use, the release of the last update
        if it was rolled back, and partial downloads of other bundles (an update given up
        for another). On a 2 GB card the two left too little room to install the next
        release. The way back kept at the last commit stays."""
        record = self.record()
        if (record is not None and record.state == "rolled-back"
                and record.version not in (self.current(), self.good())):
            shutil.rmtree(self.releases / record.version, ignore_errors=True)
        for part in self.downloads.iterdir() if self.downloads.exists() else ():
            if not part.name.startswith(sha256):
                part.unlink(missing_ok=True)

    def prune(self, keep: str) -> None:
        """Keep the current and good releases and `keep` (the one updated from, for a
        manual way back); an SD card is small."""
        kept = {self.current(), self.good(), keep}
        for slot in self.releases.iterdir() if self.releases.exists() else ():
            if slot.name not in kept:
                shutil.rmtree(slot, ignore_errors=True)

    # -- the start guard

    def guard(self, state_dir: Path | None = None) -> str:
        """Run before each start (systemd ExecStartPre); says what it did."""
        record = self.record()
        good = self.good()
        if self.current() is None and good is not None:
            self.link("current", good)  # a missing or broken link: never boot nothing
            return f"current release missing; back to {good}"
        if record is None or record.state != "probation":
            return "no release on probation"
        if self.current() != record.version:  # power cut before the switch
            self.write_record(replace(record, state="rolled-back", reported=False,
                                      reason="the switch did not happen (power cut?)"))
            return f"update to {record.version} did not switch; staying on {self.current()}"
        starts = record.starts + 1
        if starts > MAX_STARTS:
            if state_dir is not None and not record.state_dir:
                record = replace(record, state_dir=str(state_dir))
            self.roll_back(record, f"release {record.version} failed to start and judge "
                           f"itself healthy {MAX_STARTS} times")
            return f"rolled back from {record.version} to {self.current()}"
        self.write_record(replace(record, starts=starts))
        return f"release {record.version} on probation, start {starts} of {MAX_STARTS}"
