"""The layered config store: boot import, validation errors, apply, persistence, redaction."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from edgelive.config.schema import EdgeliveConfig
from edgelive.config.store import (
    PREVIOUS_FILE,
    STATE_FILE,
    ConfigError,
    ConfigStore,
    parse_toml,
    redacted,
    to_toml,
    validate_document,
)
from edgelive.fleet.topics import RESERVED_IDS

BOOT_TOML = """\
[pusher]
url = "rtmp://ingest.example/live/streamkey42?token=tok99"
autopush = true
max-bitrate = 900

[mqtt]
host = "broker.example"
username = "box1"
password = "hunter2"
"""


def errors_of(doc: object) -> list[dict[str, str]]:
    with pytest.raises(ConfigError) as info:
        validate_document(doc)
    return info.value.errors


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    path = tmp_path / "boot" / "edgelive.toml"
    path.parent.mkdir()
    path.write_text(BOOT_TOML)
    return path


def test_no_files_gives_defaults_and_writes_nothing(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "state", tmp_path / "absent.toml")
    assert store.load() == EdgeliveConfig()
    assert (store.rev, store.load_errors) == (0, [])
    assert not (tmp_path / "state").exists()


def test_first_boot_imports_and_retires_boot_file(tmp_path: Path, boot: Path) -> None:
    store = ConfigStore(tmp_path / "state", boot)
    cfg = store.load()
    assert cfg.pusher.url.endswith("streamkey42?token=tok99")
    assert cfg.mqtt.password.get_secret_value() == "hunter2"
    assert store.load_errors == []
    state = tmp_path / "state" / STATE_FILE
    assert state.stat().st_mode & 0o777 == 0o600
    assert "hunter2" in state.read_text()
    assert not boot.exists()
    imported = (boot.parent / "edgelive.imported.toml").read_text()
    for secret in ("hunter2", "streamkey42", "tok99"):
        assert secret not in imported
    assert tomllib.loads(imported)["mqtt"] == {"host": "broker.example", "username": "box1"}
    # Next boot: the state copy alone gives the same config.
    assert ConfigStore(tmp_path / "state", boot).load() == cfg


def test_invalid_boot_file_stays_and_defaults_run(tmp_path: Path, boot: Path) -> None:
    boot.write_text("[pusher]\nfps = 0\nzoom = 'yes'\n")
    store = ConfigStore(tmp_path / "state", boot)
    assert store.load() == EdgeliveConfig()
    assert [(e["file"], e["loc"]) for e in store.load_errors] == [
        (str(boot), "pusher.zoom"), (str(boot), "pusher.fps")]
    assert boot.exists() and not (tmp_path / "state").exists()


def test_boot_file_after_provisioning_is_not_imported(tmp_path: Path, boot: Path) -> None:
    store = ConfigStore(tmp_path / "state", None)
    store.load()
    store.apply({"device": {"name": "lobby"}}, rev=3)
    store = ConfigStore(tmp_path / "state", boot)
    cfg = store.load()
    assert (cfg.device.name, cfg.pusher.url, store.rev) == ("lobby", "", 3)
    assert store.load_errors[0]["msg"].startswith("not imported")
    assert boot.read_text() == BOOT_TOML


def test_load_without_provision_layers_boot_file_read_only(tmp_path: Path, boot: Path) -> None:
    store = ConfigStore(tmp_path / "state", boot)
    assert store.load(provision=False).mqtt.host == "broker.example"
    assert boot.read_text() == BOOT_TOML
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(("doc", "expected"), [
    ({"pusher": {"fps": "30"}}, [("pusher.fps", "Input should be a valid integer")]),
    ({"pusher": {"fps": 61}}, [("pusher.fps", "Input should be less than or equal to 60")]),
    ({"pusher": {"min-bitrate": 900, "max-bitrate": 800}},
     [("pusher.min-bitrate", "min-bitrate must not exceed max-bitrate")]),
    ({"player": {"min-cache": 5.0, "max-cache": 2.0}},
     [("player.min-cache", "min-cache must not exceed max-cache")]),
    ({"pusher": {"reconnect": {"attempts": 0}}, "cam": {}},
     [("pusher.reconnect.attempts", "Input should be greater than or equal to 1"),
      ("cam", "unknown key")]),
    ({"pusher": {"url": "http://x/live/k"}},
     [("pusher.url", "must be an rtmp:// or rtmps:// URL")]),
    ({"player": {"layout": [0, 0, "w", 10]}},
     [("player.layout.2", "Input should be a valid integer")]),
    ({"mqtt": {"password": 1234}}, [("mqtt.password", "Input should be a valid string")]),
    ([1, 2], [("(document)", "Input should be a valid dictionary or instance of "
                              "EdgeliveConfig")]),
])
def test_validation_errors_carry_kebab_locations(
        doc: object, expected: list[tuple[str, str]]) -> None:
    assert [(e["loc"], e["msg"]) for e in errors_of(doc)] == expected


def test_toml_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        parse_toml("[pusher]\nfps = \n")
    assert info.value.errors == [{"loc": "line 2, column 7", "msg": "Invalid value"}]


def test_apply_merges_persists_and_reports_changes(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.load()
    first = store.apply({"pusher": {"url": "rtmp://h/live/k", "max-bitrate": 900}}, rev=1)
    assert first.applied and first.errors == []
    assert first.changed == {"pusher.url", "pusher.max-bitrate"}
    second = store.apply({"pusher": {"max-bitrate": 1200}, "player": {"layout": [0, 0, 4, 4]}},
                         rev=2)
    assert second.changed == {"pusher.max-bitrate", "player.layout"}
    assert second.config.pusher.url == "rtmp://h/live/k"  # kept from rev 1
    assert store.apply({"pusher": {"max-bitrate": 1200}}, rev=2).changed == set()
    reopened = ConfigStore(tmp_path)
    assert reopened.load() == second.config and reopened.rev == 2


def test_rejected_apply_changes_nothing(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.load()
    good = store.apply({"pusher": {"fps": 25}}, rev=1).config
    before = (tmp_path / STATE_FILE).read_bytes()
    result = store.apply({"pusher": {"fps": 20, "min-bitrate": 10}}, rev=2)
    assert not result.applied
    assert result.errors == [{"loc": "pusher.min-bitrate",
                              "msg": "Input should be greater than or equal to 50"}]
    assert (store.current, store.rev, result.config) == (good, 1, good)
    assert (tmp_path / STATE_FILE).read_bytes() == before
    assert store.merge({"pusher": {"fps": 10}}).pusher.fps == 10
    assert store.current.pusher.fps == 25  # merge() is side-effect free


def test_corrupt_state_falls_back_to_previous_then_defaults(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.load()
    store.apply({"device": {"name": "one"}}, rev=1)
    store.apply({"device": {"name": "two"}}, rev=2)
    (tmp_path / STATE_FILE).write_bytes(b"\x00\x00garbage[[")
    store = ConfigStore(tmp_path)
    assert store.load().device.name == "one" and store.rev == 1
    assert store.load_errors[0]["file"] == str(tmp_path / STATE_FILE)
    (tmp_path / PREVIOUS_FILE).write_text("[pusher]\nfps = 1000\n")
    assert store.load() == EdgeliveConfig()
    assert [e["loc"] for e in store.load_errors] == ["line 1, column 1", "pusher.fps"]


def test_write_cut_between_renames_loads_last_committed(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.load()
    store.apply({"device": {"name": "one"}}, rev=1)
    committed = store.apply({"device": {"name": "two"}}, rev=2).config
    # The third write's state when power fails after its first rename: the current copy has
    # become the previous one, and the new one is half written in the temp file.
    os.replace(tmp_path / STATE_FILE, tmp_path / PREVIOUS_FILE)
    (tmp_path / f".{STATE_FILE}.tmp").write_text('rev = 3\n[device]\nna')
    store = ConfigStore(tmp_path)
    assert (store.load(), store.rev, store.load_errors) == (committed, 2, [])
    assert store.apply({"device": {"name": "three"}}, rev=3).applied
    assert ConfigStore(tmp_path).load().device.name == "three"


def test_factory_reset_forgets_state_and_imports_new_boot_file(
        tmp_path: Path, boot: Path) -> None:
    store = ConfigStore(tmp_path / "state", boot)
    store.load()
    store.apply({"device": {"name": "x"}}, rev=7)
    assert store.factory_reset() == EdgeliveConfig() and store.rev == 0
    assert not (tmp_path / "state" / STATE_FILE).exists()
    boot.write_text('[device]\nname = "reprovisioned"\n')
    assert store.factory_reset().device.name == "reprovisioned"


def test_redacted_masks_secrets_only() -> None:
    cfg = validate_document(parse_toml(BOOT_TOML))
    doc = redacted(cfg)
    assert doc["mqtt"]["password"] == "***"
    assert doc["pusher"]["url"] == "rtmp://ingest.example/live/***?token=***"
    assert doc["pusher"]["max-bitrate"] == 900 and doc["pusher"]["min-bitrate"] is None
    assert redacted(EdgeliveConfig())["mqtt"]["password"] == ""
    assert cfg.mqtt.password.get_secret_value() == "hunter2"


def test_to_toml_round_trips() -> None:
    cfg = validate_document({"pusher": {"gop": 1.5, "max-bitrate": 700},
                             "mqtt": {"password": "p"}, "device": {"groups": ["a", "b"]}})
    assert validate_document(parse_toml(to_toml(cfg))) == cfg
    assert validate_document(parse_toml(to_toml(EdgeliveConfig()))) == EdgeliveConfig()


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from edgelive.config.store import ConfigStore
    store = ConfigStore(Path(sys.argv[1]))
    store.load()
    for i in range(1, 1001):
        store.apply({"pusher": {"fps": i % 60 + 1}, "device": {"name": f"w{i}"}}, rev=i)
        print(i, flush=True)
""")


@pytest.mark.slow
def test_kill_during_writes_leaves_a_written_config(tmp_path: Path) -> None:
    """SIGKILL at random moments of 1000 writes: load() always finds one written config."""
    rng = random.Random()
    for run in range(8):
        state = tmp_path / f"run{run}"
        kill_after = rng.randrange(5, 900)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(state)],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None
        done = 0
        while done < kill_after:
            done = int(writer.stdout.readline())
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)
        store = ConfigStore(state)
        cfg = store.load()
        assert store.load_errors == []
        i = store.rev
        assert kill_after <= i <= 1000, (kill_after, i)
        assert cfg == validate_document(
            {"pusher": {"fps": i % 60 + 1}, "device": {"name": f"w{i}"}})


@pytest.mark.parametrize("word", sorted(RESERVED_IDS))
def test_fleet_topic_words_are_refused_as_box_ids(tmp_path: Path, word: str) -> None:
    """`<prefix>/grp/`, `all/` and `reply/` are the fleet's: under the documented ACL
    (`pattern readwrite <prefix>/%u/#`) a box with such an id would own that subtree."""
    store = ConfigStore(tmp_path)
    store.load()
    outcome = store.apply({"device": {"id": word}}, rev=1)
    assert not outcome.applied
    assert outcome.errors == [{"loc": "device.id", "msg": f"'{word}' is a fleet topic word "
                               f"(<prefix>/{word}/…), not a box id"}]
    assert ConfigStore(tmp_path).load().device.id == ""  # the running config is unchanged
    assert store.apply({"device": {"id": f"{word}-1"}}, rev=2).applied  # only the word itself
