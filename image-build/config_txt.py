"""Print the config.txt lines of every board profile, each under its model filter.

The image builder writes this to /etc/default/raspi-firmware-custom, which Debian's
raspi-firmware appends to config.txt; the Pi's boot loader applies a `[pi4]` section only on a
Pi 4, so one image carries the settings of every board.

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


if __name__ == "__main__":
    sys.stdout.write(config_txt(Path(sys.argv[1])))
