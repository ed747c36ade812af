"""Board detection from fake device-tree files, the shipped profiles, and the device id."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgelive.hw.board import (
    BoardProfile,
    board_serial,
    default_device_id,
    detect_board,
    load_profiles,
)

PI_MODELS = ["pi-zero-2-w", "pi3", "pi4", "pi5", "cm4"]


def model_file(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "model"
    path.write_bytes(model.encode() + b"\x00")  # the device tree NUL-terminates strings
    return path


@pytest.mark.parametrize(("model", "key", "encoder", "decode"), [
    ("Raspberry Pi Zero 2 W Rev 1.0", "pi-zero-2-w", True, ("h264",)),
    ("Raspberry Pi 3 Model B Rev 1.2", "pi3", True, ("h264",)),
    ("Raspberry Pi 3 Model B Plus Rev 1.3", "pi3", True, ("h264",)),
    ("Raspberry Pi 4 Model B Rev 1.4", "pi4", True, ("h264",)),
    ("Raspberry Pi 400 Rev 1.0", "pi4", True, ("h264",)),
    ("Raspberry Pi Compute Module 4 Rev 1.0", "cm4", True, ("h264",)),
    ("Raspberry Pi 5 Model B Rev 1.0", "pi5", False, ("hevc",)),
    ("Raspberry Pi 2 Model B Rev 1.1", "generic", False, ()),
    ("linux,dummy-virt", "generic", False, ()),
])
def test_detect_board_from_model_string(
        tmp_path: Path, model: str, key: str, encoder: bool, decode: tuple[str, ...]) -> None:
    board = detect_board(model_file(tmp_path, model))
    assert (board.key, board.model, board.has_hw_encoder, board.hw_decode) == (
        key, model, encoder, decode)
    assert board.has_hw_h264_decoder == ("h264" in decode)


def test_absent_model_file_is_generic(tmp_path: Path) -> None:
    board = detect_board(tmp_path / "missing")
    assert (board.key, board.model, board.green_led, board.config_txt) == ("generic", "", "", "")


def test_shipped_profiles_cover_every_model() -> None:
    profiles = load_profiles()
    assert set(profiles) == {*PI_MODELS, "generic"}
    for key in PI_MODELS:
        board = profiles[key]
        pins = {board.green_led, board.red_led, board.button}
        assert len(pins) == 3 and all(p.startswith("GPIO") for p in pins), key
        assert board.act_led.startswith("/sys/class/leds/")
        assert "camera_auto_detect=1" in board.config_txt
    assert profiles["pi5"].h264_encoder == profiles["pi5"].h264_decoder == ""
    assert "gpu_mem=" not in profiles["pi5"].config_txt
    assert profiles["generic"] == BoardProfile()


def test_every_profile_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "board-profiles.md").read_text()
    for key in load_profiles():
        assert f"| `{key}` |" in doc, key


def test_profile_dir_from_environment_adds_a_board(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "carrier.toml").write_text(
        'name = "Kiosk carrier"\nmatch = ["Acme Kiosk"]\ngreen-led = "GPIO5"\n')
    monkeypatch.setenv("EDGELIVE_BOARD_DIR", str(tmp_path))
    board = detect_board(model_file(tmp_path, "Acme Kiosk v2"))
    assert (board.key, board.green_led, board.has_hw_encoder) == ("carrier", "GPIO5", False)


def test_profile_with_unknown_key_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "typo.toml").write_text('name = "x"\ngreen-lde = "GPIO5"\n')
    with pytest.raises(ValueError, match="green-lde"):
        load_profiles(tmp_path)


def test_board_serial_sources_in_order(tmp_path: Path) -> None:
    dt, cpuinfo, machine_id = tmp_path / "serial", tmp_path / "cpuinfo", tmp_path / "mid"
    dt.write_bytes(b"10000000A1B2C3D4\x00")
    cpuinfo.write_text("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 00000000deadbeef\n")
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    assert board_serial(dt, cpuinfo, machine_id) == "10000000a1b2c3d4"
    dt.write_bytes(b"0000000000000000\x00")  # emulators report zeros: not an identity
    assert board_serial(dt, cpuinfo, machine_id) == "00000000deadbeef"
    cpuinfo.write_text("processor\t: 0\n")
    assert board_serial(dt, cpuinfo, machine_id) == "0123456789abcdef0123456789abcdef"
    mac = board_serial(tmp_path / "a", tmp_path / "b", tmp_path / "c")
    assert len(mac) == 12 and int(mac, 16) >= 0


def test_default_device_id_uses_serial_tail() -> None:
    assert default_device_id("10000000a1b2c3d4") == "edge-a1b2c3d4"
    generated = default_device_id()
    assert generated.startswith("edge-") and len(generated) == 13
