"""The console's settings form as described from the config schema (no server)."""

from __future__ import annotations

import re
from pathlib import Path

from edgelive.config.schema import EdgeliveConfig
from edgelive.config.store import redacted
from edgelive.web import forms

CONFIG_MD = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def documented_keys() -> set[str]:
    """Every `section.key` docs/config.md lists."""
    keys, section = set(), ""
    for line in CONFIG_MD.read_text().splitlines():
        if heading := re.fullmatch(r"## \[(.+)\]", line):
            section = heading[1]
        elif row := re.match(r"\| `([^`]+)` \|", line):
            keys.add(f"{section}.{row[1]}")
    return keys


def test_form_has_every_documented_key_with_its_rules_and_no_secret() -> None:
    config = EdgeliveConfig.model_validate({
        "pusher": {"url": "rtmp://ingest.example/live/streamKey123", "max-bitrate": 900},
        "mqtt": {"host": "broker.example", "password": "brokerPass123"}})
    sections = forms.describe(redacted(config))
    fields = {f["key"]: f for s in sections for f in s["fields"]}
    assert set(fields) == documented_keys()
    assert all(f["description"] for f in fields.values())
    assert "streamKey123" not in repr(sections) and "brokerPass123" not in repr(sections)

    bitrate = fields["pusher.max-bitrate"]
    assert (bitrate["widget"], bitrate["min"], bitrate["max"]) == ("number", 50, 20000)
    assert bitrate["optional"] is True and bitrate["value"] == 900
    assert bitrate["default"] is None
    mode = fields["pusher.mode"]
    assert (mode["widget"], mode["choices"]) == ("select", ["SD", "HD", "FHD", "RTC"])
    assert (mode["value"], mode["default"]) == ("RTC", "RTC")
    assert fields["pusher.autopush"]["widget"] == "checkbox"
    assert fields["player.layout"]["widget"] == "list"
    url = fields["pusher.url"]
    assert url["redacted"] is True and url["value"].endswith("/***")
    password = fields["mqtt.password"]
    assert password["widget"] == "secret" and password["set"] is True
    assert "value" not in password and "default" not in password
    unset = forms.describe(redacted(EdgeliveConfig()))
    assert next(f for s in unset for f in s["fields"] if f["key"] == "mqtt.password")["set"] \
        is False
