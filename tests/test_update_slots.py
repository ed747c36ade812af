"""Slots, links and the start guard after power cuts and crash loops (no processes: the
slots are bare directories with a launcher file, which is all the links look at)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgelive.update.bundle import Manifest, box_target, build_bundle, load_private_key
from edgelive.update.slots import CONFIG_SNAPSHOT, MAX_STARTS, InstallError, Record, Slots
from tests.test_release_bundle import edgelive_cli
from tests.test_unit_security import unit_settings


@pytest.fixture
def slots(tmp_path: Path) -> Slots:
    s = Slots(tmp_path / "root")
    for version in ("1.0", "2.0"):
        launcher = s.releases / version / "bin" / "edgelive"
        launcher.parent.mkdir(parents=True)
        launcher.write_text("#!/bin/sh\n")
    s.link("current", "1.0")
    s.link("good", "1.0")
    return s


def test_power_cut_after_the_record_before_the_switch(slots: Slots, tmp_path: Path) -> None:
    slots.write_record(Record("2.0", "1.0"))  # begin() got this far
    assert slots.guard() == "update to 2.0 did not switch; staying on 1.0"
    record = slots.record()
    assert record is not None and record.state == "rolled-back" and not record.reported
    assert slots.current() == "1.0"
    assert slots.guard() == "no release on probation"


def test_start_counter_rolls_back_and_restores_the_config(slots: Slots, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "config.toml").write_text("[pusher]\nurl = 'rtmp://old'\n")
    slots.begin(Record("2.0", "1.0"), state)
    assert slots.current() == "2.0" and slots.good() == "1.0"
    (state / "config.toml").write_text("[new-section]\nkey = 1\n")  # the new release wrote
    for start in range(1, MAX_STARTS + 1):
        assert slots.guard() == f"release 2.0 on probation, start {start} of {MAX_STARTS}"
    assert slots.guard() == "rolled back from 2.0 to 1.0"
    assert slots.current() == "1.0"
    assert (state / "config.toml").read_text() == "[pusher]\nurl = 'rtmp://old'\n"
    record = slots.record()
    assert record is not None and record.state == "rolled-back"
    assert record.reason == f"release 2.0 failed to start and judge itself healthy " \
        f"{MAX_STARTS} times"


def test_commit_moves_good_and_keeps_the_previous_slot(slots: Slots, tmp_path: Path) -> None:
    (slots.releases / "0.9" / "bin").mkdir(parents=True)
    slots.begin(Record("2.0", "1.0"), tmp_path)
    assert not (slots.root / CONFIG_SNAPSHOT).exists()  # no config: nothing to restore
    slots.commit(Record("2.0", "1.0"))
    assert slots.good() == slots.current() == "2.0"
    assert sorted(p.name for p in slots.releases.iterdir()) == ["1.0", "2.0"]
    assert slots.guard() == "no release on probation"


def test_a_new_update_makes_room_from_rolled_back_releases_and_other_downloads(
        slots: Slots, tmp_path: Path) -> None:
    """1.0 → 2.0 committed, 3.0 rolled back, a download of another bundle given up: the next
    update keeps current, good and the way back (1.0), and its own partial download."""
    slots.begin(Record("2.0", "1.0"), tmp_path)
    slots.commit(Record("2.0", "1.0"))
    (slots.releases / "3.0" / "site").mkdir(parents=True)
    slots.begin(Record("3.0", "2.0"), tmp_path)
    slots.roll_back(Record("3.0", "2.0"), "crashed")
    slots.downloads.mkdir()
    (slots.downloads / "aaaa.bundle.part").write_bytes(b"x" * 1000)  # given up
    (slots.downloads / "bbbb.bundle.part").write_bytes(b"x" * 1000)  # this one, resumed
    slots.make_room("bbbb")
    assert sorted(p.name for p in slots.releases.iterdir()) == ["1.0", "2.0"]
    assert [p.name for p in slots.downloads.iterdir()] == ["bbbb.bundle.part"]
    assert slots.current() == slots.good() == "2.0"


def test_a_broken_current_link_boots_the_good_release(slots: Slots) -> None:
    (slots.root / "current").unlink()
    os.symlink("releases/3.0", slots.root / "current")  # a slot that never completed
    assert slots.guard() == "current release missing; back to 1.0"
    assert slots.current() == "1.0"


def test_an_unreadable_record_leaves_the_links_in_charge(slots: Slots) -> None:
    (slots.root / "update.json").write_text("{truncated")
    assert slots.guard() == "no release on probation"
    assert slots.current() == "1.0"


def test_a_bundle_pip_cannot_install_changes_nothing(slots: Slots, tmp_path: Path) -> None:
    assert edgelive_cli("release", "keygen", "--out", str(tmp_path / "k")).returncode == 0
    wheel = tmp_path / "edgelive-3.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("edgelive/__init__.py", "")  # no .dist-info: not a wheel pip takes
    bundle = tmp_path / "b.bundle"
    manifest: Manifest = build_bundle([wheel], "3.0", box_target(),
                                      load_private_key(tmp_path / "k.key"), bundle)
    with pytest.raises(InstallError, match="pip could not install the wheels"):
        slots.install(bundle, manifest)
    assert sorted(p.name for p in slots.releases.iterdir() if not p.name.startswith(".")) \
        == ["1.0", "2.0"]
    assert slots.current() == slots.good() == "1.0"


def test_the_unit_starts_current_after_the_good_release_guard(slots: Slots,
                                                              tmp_path: Path) -> None:
    """systemd/edgelive.service as docs/updates.md says: the guard from `good` before each
    start, then `current`; the guard's command line, run here, rolls a crash loop back."""
    unit = unit_settings("edgelive.service")
    root = unit["Environment"][[e.split("=")[0] for e in unit["Environment"]]
                               .index("EDGELIVE_UPDATE_ROOT")].partition("=")[2]
    [pre] = unit["ExecStartPre"]
    [start] = unit["ExecStart"]
    assert start.startswith(f"{root}/current/bin/edgelive run ")
    assert pre.startswith(f"-{root}/good/bin/edgelive release guard ")
    assert root in unit["ReadWritePaths"] and f"{root}/keys" in unit["ReadOnlyPaths"]
    slots.begin(Record("2.0", "1.0"), tmp_path)
    argv = [sys.executable, "-m", "edgelive", *shlex.split(pre)[1:]]
    argv = [arg.replace(root, str(slots.root)).replace("${STATE_DIRECTORY}", str(tmp_path))
            for arg in argv]
    outputs = [subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
               .stdout.strip() for _ in range(MAX_STARTS + 1)]
    assert outputs[-1] == "rolled back from 2.0 to 1.0" and slots.current() == "1.0"
