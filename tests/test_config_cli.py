"""`edgelive config …` as a real process, and the generated docs staying in step with the schema."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from edgelive.config.docs import leaf_fields, markdown, sections
from edgelive.config.schema import EdgeliveConfig
from edgelive.config.store import ConfigStore, drop_none, redacted, validate_document

REPO = Path(__file__).resolve().parents[1]
EDGELIVE = [sys.executable, "-c", "import sys; from edgelive.cli import main; sys.exit(main())"]


def edgelive(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGELIVE, *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def test_check_valid_file_prints_ok_and_redacted_summary(tmp_path: Path) -> None:
    path = tmp_path / "edgelive.toml"
    path.write_text('[pusher]\nurl = "rtmp://h/live/key77"\nautopush = true\n'
                    '[mqtt]\nhost = "b.local"\npassword = "pw"\n')
    result = edgelive("config", "check", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "OK",
        "pusher: rtmp://h/live/*** (mode RTC, source auto, autopush)",
        "player: no src",
        "mqtt:   b.local:1883, prefix edgelive",
    ]


def test_check_reports_each_error_with_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[pusher]\nfps = "30"\nmode = "4K"\n[player]\nsink = "kms"\ncolour = 1\n')
    result = edgelive("config", "check", path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: 3 error(s)",
        "pusher.mode: Input should be 'SD', 'HD', 'FHD' or 'RTC'",
        "pusher.fps: Input should be a valid integer",
        "player.colour: unknown key",
    ]


def test_check_syntax_error_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "syntax.toml"
    path.write_text('[pusher]\nurl = "rtmp://h/live/k\n')
    result = edgelive("config", "check", path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[1].startswith("line 2, column ")
    missing = edgelive("config", "check", tmp_path / "nope.toml")
    assert missing.returncode == 1
    assert "cannot read: No such file or directory" in missing.stderr
    assert "Traceback" not in result.stderr + missing.stderr


def test_show_prints_effective_config_redacted(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.load()
    store.apply({"pusher": {"url": "rtmp://h/live/key77?sig=s1"}, "mqtt": {"password": "pw"}},
                rev=5)
    shown = edgelive("config", "show", "--state-dir", tmp_path, "--boot-file",
                     tmp_path / "none.toml", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"rev": 5, "config": redacted(store.current)}
    as_toml = edgelive("config", "show", "--state-dir", tmp_path, "--boot-file",
                       tmp_path / "none.toml")
    assert tomllib.loads(as_toml.stdout) == drop_none(redacted(store.current))
    for secret in ("key77", "s1", '"pw"'):
        assert secret not in shown.stdout + as_toml.stdout


def test_show_warns_about_a_bad_boot_file_and_leaves_it(tmp_path: Path) -> None:
    boot = tmp_path / "edgelive.toml"
    boot.write_text("[leds]\nenabled = 2\n")
    shown = edgelive("config", "show", "--state-dir", tmp_path / "state", "--boot-file", boot)
    assert shown.returncode == 0
    assert shown.stderr == f"warning: {boot}: leds.enabled: Input should be a valid boolean\n"
    assert boot.read_text() == "[leds]\nenabled = 2\n"


def test_defaults_round_trip_and_document_every_key() -> None:
    result = edgelive("config", "defaults")
    assert result.returncode == 0
    assert validate_document(tomllib.loads(result.stdout)) == EdgeliveConfig()
    blocks = {block.split("]\n", 1)[0]: block.splitlines()
              for block in result.stdout.split("\n[")[1:]}
    for table in sections():
        lines = blocks[table.name]
        for key, _, info in leaf_fields(table.model):
            line = next(i for i, text in enumerate(lines)
                        if text.startswith((f"{key} = ", f"# {key} = ")))
            comment = "\n".join(lines[max(0, line - 4):line])
            assert lines[line - 1].startswith("#"), key  # preceded by its description
            assert (info.description or "").split()[0] in comment, key


def test_markdown_has_a_row_per_key() -> None:
    text = markdown()
    for table in sections():
        assert f"## [{table.name}]" in text
        for key, _, _ in leaf_fields(table.model):
            assert f"| `{key}` |" in text
    assert "| `fps` | integer | `30` | 1 ≤ x ≤ 60 | Frames per second. |" in text


def test_docs_config_md_is_up_to_date() -> None:
    generated = subprocess.run([sys.executable, "-m", "edgelive.config.docs"],
                               capture_output=True, text=True, check=True).stdout
    assert (REPO / "docs" / "config.md").read_text() == generated, (
        "docs/config.md is stale: run `make docs`")
