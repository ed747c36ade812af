"""The image tests' QEMU machine reports why a box never came online: a QEMU that exits
(a missing option ROM or kernel, a bad drive) is named with its exit status and its own
error, not an empty console."""

from __future__ import annotations

from pathlib import Path

from tests.image_machine import Machine


def test_a_qemu_that_exits_is_reported_with_its_own_error(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    # no vmlinuz beside the image: QEMU stops before the guest runs
    machine = Machine(tmp_path / "edgelive-arm64.img", disk, tmp_path)
    assert machine.proc.wait(timeout=60) != 0
    why = machine.not_online()
    assert why.startswith("QEMU exited with code 1 before the box came online:\n"), why
    assert f"could not load kernel '{tmp_path / 'vmlinuz'}'" in why, why
