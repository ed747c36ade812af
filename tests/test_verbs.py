"""The one verb table: its argument checks, the docs and Home Assistant discovery it generates."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import jinja2
import pytest

from edgelive import verbs
from edgelive.fleet.homeassistant import discovery_payload
from edgelive.fleet.messages import Rejected, parse_command, resolve_verb
from edgelive.fleet.topics import BoxTopics

DOC = Path(__file__).resolve().parents[1] / "docs" / "mqtt-api.md"


def command(path: str, args: object) -> dict:
    return parse_command(path, json.dumps({"id": "c1", "args": args}).encode(), 0).args


def ha_render(template: str, **values: object) -> str:
    """Render a template as Home Assistant does (Jinja2 with `now()`)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(now=datetime.datetime.now, **values)


def test_committed_command_table_is_the_generated_one() -> None:
    text = DOC.read_text()
    assert verbs.markdown() in text, "run: python -m edgelive.verbs --write docs/mqtt-api.md"
    assert verbs.replace_section(text) == text


def test_every_verb_is_documented_once() -> None:
    section = verbs.markdown()
    for verb in verbs.VERBS:
        assert section.count(f"| `{verb.path}` |") == 1
    assert len({verb.path for verb in verbs.VERBS}) == len(verbs.VERBS)


@pytest.mark.parametrize(("args", "normalized"), [
    ({"on": True}, {"on": True}),
    ({"on": False}, {"on": False}),
    ({"muted": True}, {"on": True}),  # the documented alias
    ({}, {}),  # toggle
    (None, {}),
])
def test_mute_arguments_are_normalized_to_on(args: object, normalized: dict) -> None:
    assert command("player/mute", args) == normalized


@pytest.mark.parametrize(("path", "args", "reason"), [
    ("player/mute", {"on": "true"}, "player/mute: args.on: Input should be a valid boolean"),
    ("player/mute", {"on": True, "muted": True}, "args.muted: Extra inputs are not permitted"),
    ("device/privacy", {"enabled": True}, "args.enabled: Extra inputs are not permitted"),
    ("pusher/start", {"now": 1}, "args.now: Extra inputs are not permitted"),
    ("pusher/pause", {"reason": "privacy"}, "args.reason"),  # privacy is the box's own word
    ("pusher/switchCamera", {"position": "left"}, "args.position"),
    ("player/play", {"src": ""}, "args.src"),
    ("device/factory-reset", {}, "args.confirm: Field required"),
    ("device/logs", {"lines": 501}, "args.lines: Input should be less than or equal to 500"),
    ("device/logs", {"level": "trace"}, "args.level"),
    ("device/logs", {"since": "yesterday"}, "args.since"),
])
def test_arguments_outside_the_schema_are_refused_with_the_location(
        path: str, args: dict, reason: str) -> None:
    with pytest.raises(Rejected) as refused:
        command(path, args)
    assert reason in refused.value.reason and refused.value.command_id == "c1"


def test_new_device_verbs_are_commands_and_resolve() -> None:
    assert command("device/logs", {"since": 1, "lines": 20, "level": "warning"}) == {
        "since": 1, "lines": 20, "level": "warning"}
    assert command("device/factory-reset", {"confirm": "box1"}) == {"confirm": "box1"}
    assert resolve_verb("factory-reset") == "device/factory-reset"
    assert resolve_verb("mute") == "player/mute"
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_verb("snapshot")


def test_switched_is_on_when_given_else_a_toggle() -> None:
    assert verbs.switched({"on": True}, True) is True
    assert verbs.switched({"on": False}, True) is False
    assert verbs.switched({}, True) is False and verbs.switched({}, False) is True


def test_home_assistant_entities_come_from_the_table_and_their_payloads_parse() -> None:
    topics = BoxTopics("edgelive", "b1")
    components = discovery_payload(topics, "Box", "1.0")["cmps"]
    commands = {c["cmd_t"]: c for c in components.values() if "cmd_t" in c}
    marked = [verb for verb in verbs.VERBS if verb.ha is not None]
    assert sorted(commands) == sorted(topics.cmd(v.target, v.name) for v in marked)
    state = {"player": {"muted": True}, "privacy": False}
    for verb in marked:
        entity = commands[topics.cmd(verb.target, verb.name)]
        assert entity["name"] == verb.ha.name
        if isinstance(verb.ha, verbs.HaButton):
            assert command(verb.path, json.loads(ha_render(entity["cmd_tpl"]))["args"]) == {}
            continue
        if isinstance(verb.ha, verbs.HaUpdate):
            assert parse_command(verb.path, entity["pl_inst"].encode(), 0).args == \
                {"offered": True}
            shown = {"version": "1.0", "update": {"offered": "1.1", "busy": True,
                                                  "percent": 40}}
            assert json.loads(ha_render(entity["val_tpl"], value_json=shown)) == {
                "installed_version": "1.0", "latest_version": "1.1", "in_progress": True,
                "update_percentage": 40}
            idle = {"version": "1.1", "update": {"offered": None, "busy": False, "percent": 0}}
            assert json.loads(ha_render(entity["val_tpl"], value_json=idle)) == {
                "installed_version": "1.1", "latest_version": "1.1", "in_progress": False,
                "update_percentage": None}
            continue
        for value, on in (("ON", True), ("OFF", False)):
            payload = ha_render(entity["cmd_tpl"], value=value).encode()
            assert parse_command(verb.path, payload, 0).args == {"on": on}
        shown = ha_render(entity["val_tpl"], value_json=state)
        assert shown == ("ON" if verb.name == "mute" else "OFF")
