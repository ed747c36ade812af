"""Board profiles: what each Raspberry Pi model has (codecs, pins, LEDs, config.txt).

Profiles are data, one TOML file per model in `board/` (see docs/board-profiles.md).
Detection reads the device-tree model string when asked (`detect_board()`), never at import,
so the code runs and is tested on any machine; anything unrecognised gets the `generic`
profile (software codecs, no GPIO).
"""

from __future__ import annotations

import os
import re
import tomllib
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict

MODEL_PATH = Path("/proc/device-tree/model")
SERIAL_PATH = Path("/proc/device-tree/serial-number")
CPUINFO_PATH = Path("/proc/cpuinfo")
MACHINE_ID_PATH = Path("/etc/machine-id")
GENERIC = "generic"

_CPUINFO_SERIAL_RE = re.compile(r"^Serial\s*:\s*(\S+)", re.MULTILINE)


class BoardProfile(BaseModel):
    """One model family; `key` is the profile's file name, `model` the detected string."""

    model_config = ConfigDict(extra="forbid", frozen=True,
                              alias_generator=lambda name: name.replace("_", "-"),
                              populate_by_name=True)

    key: str = GENERIC
    name: str = "Generic computer"
    model: str = ""
    match: tuple[str, ...] = ()  # prefixes of the device-tree model string
    h264_encoder: str = ""  # FFmpeg hardware encoder ("" = software only)
    h264_decoder: str = ""  # FFmpeg hardware decoder ("" = software only)
    hw_decode: tuple[str, ...] = ()  # codecs the board decodes in hardware
    green_led: str = ""  # BCM pin names as gpiozero takes them ("GPIO17"); "" = none
    red_led: str = ""
    button: str = ""
    act_led: str = ""  # sysfs LED directory
    config_txt: str = ""  # fragment appended to config.txt by the image builder
    config_txt_filter: str = ""  # its config.txt section ("pi4"); one image serves all boards

    @property
    def has_hw_encoder(self) -> bool:
        return bool(self.h264_encoder)

    @property
    def has_hw_h264_decoder(self) -> bool:
        return bool(self.h264_decoder)


def profiles_dir() -> Path:
    """$EDGELIVE_BOARD_DIR, else `board/` of a source checkout, else the installed copy."""
    if env := os.environ.get("EDGELIVE_BOARD_DIR"):
        return Path(env)
    checkout = Path(__file__).resolve().parents[3] / "board"
    return checkout if checkout.is_dir() else Path("/usr/share/edgelive/board")


def load_profiles(directory: Path | None = None) -> dict[str, BoardProfile]:
    """Every `*.toml` profile by key; always includes `generic` (built in if no file)."""
    directory = directory or profiles_dir()
    profiles = {GENERIC: BoardProfile()}
    for path in sorted(directory.glob("*.toml")):
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        profiles[path.stem] = BoardProfile.model_validate({**doc, "key": path.stem})
    return profiles


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return ""


def detect_board(model_path: Path = MODEL_PATH,
                 directory: Path | None = None) -> BoardProfile:
    """The profile whose longest `match` prefix starts the model string, else generic."""
    model = _read_text(model_path)
    profiles = load_profiles(directory)
    best, best_len = profiles[GENERIC], 0
    for profile in profiles.values():
        for prefix in profile.match:
            if model.startswith(prefix) and len(prefix) > best_len:
                best, best_len = profile, len(prefix)
    return best.model_copy(update={"model": model})


def _usable_serial(text: str) -> str:
    serial = re.sub(r"[^0-9A-Za-z]", "", text).lower()
    return serial if serial.strip("0") else ""  # all zeros: emulators and some boards


def board_serial(serial_path: Path = SERIAL_PATH, cpuinfo_path: Path = CPUINFO_PATH,
                 machine_id_path: Path = MACHINE_ID_PATH) -> str:
    """The board serial (device tree, then /proc/cpuinfo), else machine-id, else the MAC."""
    cpuinfo = _CPUINFO_SERIAL_RE.search(_read_text(cpuinfo_path))
    candidates = (_read_text(serial_path), cpuinfo[1] if cpuinfo else "",
                  _read_text(machine_id_path))
    for candidate in candidates:
        if serial := _usable_serial(candidate):
            return serial
    return f"{uuid.getnode():012x}"


def default_device_id(serial: str | None = None) -> str:
    """`edge-` + the last 8 characters of the serial: stable, short, unique in a fleet."""
    return f"edge-{(serial or board_serial())[-8:]}"
