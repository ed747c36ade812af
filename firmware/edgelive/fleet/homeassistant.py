"""Home Assistant MQTT device discovery: one retained message describes the whole box.

HA's device-based format (`homeassistant/device/<id>/config`) carries the device (`dev`),
the origin (`o`) and every entity in `cmps`. Entities read the box's own topics (state,
tele, snapshot) and write ordinary commands, so HA needs no rights beyond an operator's.
Command ids come from HA's clock, unique per press, so the duplicate filter lets each through.
"""

from __future__ import annotations

from typing import Any

from edgelive.fleet.topics import BoxTopics

# HA renders this template with `value` = the switch's ON/OFF payload.
_SWITCH_ARGS = '{"on": {{ "true" if value == "ON" else "false" }}}'


def _command(args_template: str = "{}") -> str:
    return ('{"id": "ha-{{ (now().timestamp() * 1000) | int }}", "args": '
            + args_template + "}")


def discovery_payload(topics: BoxTopics, name: str, version: str) -> dict[str, Any]:
    box = topics.box_id
    uid = f"edgelive_{box}"

    def sensor(key: str, label: str, topic: str, template: str, **extra: Any) -> tuple:
        return f"{uid}_{key}", {"p": "sensor", "name": label, "uniq_id": f"{uid}_{key}",
                                "stat_t": topic, "val_tpl": template, **extra}

    def switch(key: str, label: str, template: str, command: str) -> tuple:
        return f"{uid}_{key}", {"p": "switch", "name": label, "uniq_id": f"{uid}_{key}",
                                "stat_t": topics.state, "val_tpl": template,
                                "cmd_t": command, "cmd_tpl": _command(_SWITCH_ARGS)}

    def button(key: str, label: str, command: str) -> tuple:
        return f"{uid}_{key}", {"p": "button", "name": label, "uniq_id": f"{uid}_{key}",
                                "cmd_t": command, "cmd_tpl": _command()}

    components = dict([
        (f"{uid}_camera", {"p": "camera", "name": "Snapshot", "uniq_id": f"{uid}_camera",
                           "t": topics.snapshot("pusher")}),
        sensor("bitrate", "Video bitrate", topics.tele("pusher"),
               "{{ value_json.videoBitrate }}", unit_of_meas="kbit/s", dev_cla="data_rate",
               stat_cla="measurement"),
        sensor("fps", "Video FPS", topics.tele("pusher"), "{{ value_json.videoFPS }}",
               unit_of_meas="fps", stat_cla="measurement"),
        sensor("pusher_state", "Pusher", topics.state, "{{ value_json.pusher.state }}"),
        sensor("player_state", "Player", topics.state, "{{ value_json.player.state }}"),
        switch("privacy", "Privacy", "{{ 'ON' if value_json.privacy else 'OFF' }}",
               topics.cmd("device", "privacy")),
        switch("mute", "Mute", "{{ 'ON' if value_json.player.muted else 'OFF' }}",
               topics.cmd("player", "mute")),
        button("start", "Start push", topics.cmd("pusher", "start")),
        button("stop", "Stop push", topics.cmd("pusher", "stop")),
        button("identify", "Identify", topics.cmd("device", "identify")),
    ])
    return {
        "dev": {"ids": [uid], "name": name or box, "mf": "edgelive", "mdl": "edgelive box",
                "sw": version},
        "o": {"name": "edgelive", "sw": version},
        "avty_t": topics.status,
        "pl_avail": "online",
        "pl_not_avail": "offline",
        "qos": 1,
        "cmps": components,
    }
