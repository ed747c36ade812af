"""Print the config.txt lines of every board profile, each under its model filter.

On the Debian base the image builder writes this to /etc/default/raspi-firmware-custom, which
Debian's raspi-firmware appends to config.txt; on Raspberry Pi OS it goes into
/boot/firmware/config.txt itself, as a marked block (`with_block`). The Pi's boot loader
applies a `[pi4]` section only on a Pi 4, so one image carries the settings of every board.

    python image-build/config_txt.py board/
"""

import sys
from pathlib import Path

from edgelive.hw.board import load_profiles


def config_txt(board_dir: Path) -> str:
    sections = [f"[{p.config_txt_filter}]\n{p.config_txt.strip()}\n"
                for p in load_profiles(board_dir).values()
                if p.config_txt_filter and p.config_txt.strip()]
    return "\n".join([*sections, "[all]\n"])


BEGIN = "# --- edgelive board profiles (image-build/config_txt.py) ---\n"
END = "# --- end of edgelive board profiles ---\n"


def with_block(text: str, block: str) -> str:
    """`text` (a config.txt) with `block` at its end between markers, replacing an earlier one,
    so that customizing an image twice leaves one copy."""
    head, _, rest = text.partition(BEGIN)
    tail = rest.partition(END)[2] if rest else ""
    head = head if head.endswith("\n") or not head else head + "\n"
    return head + tail + BEGIN + block + END


if __name__ == "__main__":
    sys.stdout.write(config_txt(Path(sys.argv[1])))
