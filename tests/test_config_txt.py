"""The board profiles' config.txt sections as customize.sh puts them into Raspberry Pi OS's
own /boot/firmware/config.txt: appended as one marked block, replaced by a second run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("config_txt", REPO / "image-build" / "config_txt.py")
assert _spec and _spec.loader
config_txt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_txt)

# The end of Raspberry Pi OS Lite (bookworm)'s config.txt, without a final newline.
PIOS = "dtparam=audio=on\ncamera_auto_detect=1\ndtoverlay=vc4-kms-v3d\n[cm4]\notg_mode=1\n\n[all]"


def test_block_appended_after_the_base_file_and_ending_in_all() -> None:
    block = config_txt.config_txt(REPO / "board")
    text = config_txt.with_block(PIOS, block)
    assert text.startswith(PIOS + "\n")
    for model in ("[pi02]", "[pi3]", "[pi4]", "[pi5]", "[cm4]"):
        assert model in text.partition(PIOS)[2]
    # Whatever follows the block in the file later applies to every board again.
    assert text.rstrip().splitlines()[-2] == "[all]"


def test_second_run_replaces_the_block() -> None:
    first = config_txt.with_block(PIOS, "[pi4]\ngpu_mem=128\n[all]\n")
    second = config_txt.with_block(first, "[pi4]\ngpu_mem=256\n[all]\n")
    assert second.count(config_txt.BEGIN) == 1
    assert "gpu_mem=128" not in second and "gpu_mem=256" in second
    assert second.startswith(PIOS + "\n")


def test_text_after_an_earlier_block_is_kept() -> None:
    first = config_txt.with_block(PIOS, "[pi4]\ngpu_mem=128\n[all]\n") + "dtoverlay=disable-bt\n"
    second = config_txt.with_block(first, "[pi4]\ngpu_mem=128\n[all]\n")
    assert "dtoverlay=disable-bt" in second.partition(config_txt.BEGIN)[0]
