"""Every MQTT topic name of the fleet API (SPEC §5), in one place.

A box owns the subtree `<prefix>/<id>/`; fleets address groups through `<prefix>/grp/<group>/`
and every box through `<prefix>/all/`. Operators receive MQTT 5 answers under
`<prefix>/reply/<operator client id>/`. `grp`, `all` and `reply` are therefore not box ids.
The broker ACL in docs/mosquitto-acl.md follows exactly these shapes.
"""

from __future__ import annotations

GROUP_LEVEL = "grp"
ALL_LEVEL = "all"
REPLY_LEVEL = "reply"
RESERVED_IDS = frozenset({GROUP_LEVEL, ALL_LEVEL, REPLY_LEVEL})

HA_STATUS = "homeassistant/status"


def ha_discovery(box_id: str) -> str:
    """Home Assistant device-based discovery topic of one box."""
    return f"homeassistant/device/{box_id}/config"


class BoxTopics:
    """The topics of one box under `<prefix>/<id>/`."""

    def __init__(self, prefix: str, box_id: str) -> None:
        self.prefix = prefix.strip("/")
        self.box_id = box_id
        self.root = f"{self.prefix}/{box_id}"
        self.status = f"{self.root}/status"
        self.state = f"{self.root}/state"
        self.desired = f"{self.root}/config/desired"
        self.reported = f"{self.root}/config/reported"
        self.event = f"{self.root}/event"
        self.cmd_root = f"{self.root}/cmd/"
        self.res_root = f"{self.root}/res/"

    def tele(self, src: str) -> str:
        return f"{self.root}/tele/{src}"

    def snapshot(self, target: str) -> str:
        return f"{self.root}/snapshot/{target}"

    def cmd(self, target: str, verb: str) -> str:
        return f"{self.cmd_root}{target}/{verb}"

    def res(self, command_path: str) -> str:
        """The answer topic of a command sent on `…/cmd/<command_path>` (MQTT 3.1.1)."""
        return f"{self.res_root}{command_path}"

    def command_filters(self, groups: list[str]) -> list[str]:
        """Every command filter the box subscribes to: its own, its groups', broadcast."""
        return ([f"{self.cmd_root}#"] + [f"{group_cmd_root(self.prefix, g)}#" for g in groups]
                + [f"{all_cmd_root(self.prefix)}#"])

    def command_path(self, topic: str, groups: list[str]) -> str | None:
        """`<target>/<verb>` (or whatever follows `cmd/`) of a command topic, else None."""
        roots = [self.cmd_root, all_cmd_root(self.prefix)]
        roots += [group_cmd_root(self.prefix, g) for g in groups]
        for root in roots:
            if topic.startswith(root):
                return topic[len(root):]
        return None


def group_cmd_root(prefix: str, group: str) -> str:
    return f"{prefix.strip('/')}/{GROUP_LEVEL}/{group}/cmd/"


def all_cmd_root(prefix: str) -> str:
    return f"{prefix.strip('/')}/{ALL_LEVEL}/cmd/"


def reply_root(prefix: str, client_id: str) -> str:
    """Where an operator asks MQTT 5 boxes to answer (its response topic subtree)."""
    return f"{prefix.strip('/')}/{REPLY_LEVEL}/{client_id}/"


def fleet_filter(prefix: str, leaf: str) -> str:
    """`<prefix>/+/<leaf>`: the same topic of every box (e.g. `status`, `config/reported`)."""
    return f"{prefix.strip('/')}/+/{leaf}"


def split_box_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """`(box id, leaf)` of a topic in some box's subtree, None outside the boxes' subtrees."""
    head = f"{prefix.strip('/')}/"
    if not topic.startswith(head):
        return None
    box_id, _, leaf = topic[len(head):].partition("/")
    if not box_id or not leaf or box_id in RESERVED_IDS:
        return None
    return box_id, leaf
