"""Home Assistant MQTT device discovery: one retained message describes the whole box.

HA's device-based format (`homeassistant/device/<id>/config`) carries the device (`dev`),
the origin (`o`) and every entity in `cmps`. Entities read the box's own topics (state,
tele, snapshot) and write ordinary commands, so HA needs no rights beyond an operator's.
Command ids come from HA's clock, unique per press, so the duplicate filter lets each through.
The switches and buttons are the verbs that edgelive.verbs marks as Home Assistant entities.
"""

from __future__ import annotations

from typing import Any

from edgelive import verbs
from edgelive.fleet.topics import BoxTopics

# HA renders this template with `value` = the switch's ON/OFF payload.
_SWITCH_ARGS = '{"on": {{ "true" if value == "ON" else "false" }}}'


# The update entity's JSON state from the box's state: installed, latest offered, progress.
# (`value_json['update']`: `.update` would be the dict's method)
_UPDATE_STATE = ('{% set u = value_json["update"] %}{{ {"installed_version": '
                 'value_json.version, "latest_version": u.offered or value_json.version, '
                 '"in_progress": u.busy, "update_percentage": u.percent if u.busy else none} '
                 '| tojson }}')
# HA sends a fixed payload to install: the id repeats, which the box's duplicate filter lets
# through once per run — each install restarts the box, and with it the filter.
UPDATE_INSTALL = '{"id": "ha-install", "args": {"offered": true}}'


def _command(args_template: str = "{}") -> str:
    return ('{"id": "ha-{{ (now().timestamp() * 1000) | int }}", "args": '
            + args_template + "}")


def discovery_payload(topics: BoxTopics, name: str, version: str) -> dict[str, Any]:
    box = topics.box_id
    uid = f"edgelive_{box}"

    def sensor(key: str, label: str, topic: str, template: str, **extra: Any) -> tuple:
        return f"{uid}_{key}", {"p": "sensor", "name": label, "uniq_id": f"{uid}_{key}",
                                "stat_t": topic, "val_tpl": template, **extra}

    def entity(verb: verbs.Verb, ha: verbs.HaSwitch | verbs.HaButton | verbs.HaUpdate
               ) -> tuple:
        key, command = f"{uid}_{ha.key}", topics.cmd(verb.target, verb.name)
        if isinstance(ha, verbs.HaUpdate):  # installed, offered (`fleet update --offer`)
            return key, {"p": "update", "name": ha.name, "uniq_id": key,
                         "stat_t": topics.state, "val_tpl": _UPDATE_STATE, "cmd_t": command,
                         "pl_inst": UPDATE_INSTALL, "ent_cat": "config"}
        if isinstance(ha, verbs.HaButton):
            return key, {"p": "button", "name": ha.name, "uniq_id": key, "cmd_t": command,
                         "cmd_tpl": _command()}
        return key, {"p": "switch", "name": ha.name, "uniq_id": key, "stat_t": topics.state,
                     "val_tpl": f"{{{{ 'ON' if value_json.{ha.state} else 'OFF' }}}}",
                     "cmd_t": command, "cmd_tpl": _command(_SWITCH_ARGS)}

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
        # health (tele/device every health.interval s; the problems from the retained state)
        sensor("soc_temp", "SoC temperature", topics.tele("device"), "{{ value_json.socTemp }}",
               unit_of_meas="°C", dev_cla="temperature", stat_cla="measurement",
               ent_cat="diagnostic"),
        sensor("disk_free", "Free space", topics.tele("device"),
               "{{ value_json.diskFreeMB }}", unit_of_meas="MB", dev_cla="data_size",
               stat_cla="measurement", ent_cat="diagnostic"),
        sensor("mem_available", "Memory available", topics.tele("device"),
               "{{ value_json.memAvailableMB }}", unit_of_meas="MB", dev_cla="data_size",
               stat_cla="measurement", ent_cat="diagnostic"),
        sensor("throttled", "Throttled", topics.state,
               "{{ 'ON' if value_json.health.thermal else 'OFF' }}", p="binary_sensor",
               dev_cla="problem", ent_cat="diagnostic"),
        sensor("disk_low", "Disk low", topics.state,
               "{{ 'ON' if value_json.health.disk_low else 'OFF' }}", p="binary_sensor",
               dev_cla="problem", ent_cat="diagnostic"),
        *(entity(verb, verb.ha) for verb in verbs.VERBS if verb.ha is not None),
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
