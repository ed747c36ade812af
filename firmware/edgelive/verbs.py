"""The one table of commands: every `cmd/<target>/<verb>`, its arguments and what it does.

The fleet's parser, the supervisor's routing, the simulated box, Home Assistant discovery
and the command list in docs/mqtt-api.md all read this table, so a verb cannot mean one thing
on the wire and another in a worker. Arguments are pydantic models (like the config schema):
unknown keys and wrong types are refused with their location, and what passes on to the
host is the normalized dict (`Verb.parse`), never the raw payload.

`python -m edgelive.verbs` prints the generated section of docs/mqtt-api.md;
`--write FILE` replaces it in place.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)

from edgelive.codes import Code

Target = Literal["pusher", "player", "device"]
TARGETS: tuple[Target, ...] = ("pusher", "player", "device")


class Args(BaseModel):
    """Base of every argument model: unknown keys are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(Args):
    """No arguments (`args` absent, null or `{}`)."""


class SwitchArgs(Args):
    on: StrictBool | None = Field(None, description="true = on, false = off; absent = "
                                  "toggle.")


class MuteArgs(Args):
    on: StrictBool | None = Field(
        None, validation_alias=AliasChoices("on", "muted"),
        description="true = sound off (muted), false = sound on; absent = toggle. `muted` is "
        "accepted for `on` (the name of the `player.muted` key); give one of them.")


class PlayArgs(Args):
    src: str | None = Field(None, min_length=1, description="Play this URL instead of "
                            "`player.src` (rtmp://… or http(s)://….flv); absent = "
                            "`player.src`.")


class SwitchCameraArgs(Args):
    position: Literal["front", "back"] | None = Field(
        None, description="Camera to use; absent = the other one.")


class FactoryResetArgs(Args):
    confirm: str = Field(description="The box id, so a reset cannot reach the wrong box "
                         "(or a whole group) by mistake.")


class LogsArgs(Args):
    since: StrictInt | None = Field(None, ge=0, description="Only lines logged at or after "
                                    "this unix time, s.")
    lines: StrictInt | None = Field(None, ge=1, le=500, description="At most this many of "
                                    "the newest lines.")
    level: Literal["debug", "info", "warning", "error"] | None = Field(
        None, description="Lowest level included.")


class UpdateArgs(Args):
    url: str | None = Field(None, min_length=1, pattern=r"^https?://", description="Where "
                            "the release bundle is (http:// or https://).")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="SHA-256 of "
                               "the bundle, hex.")
    version: str | None = Field(None, min_length=1, max_length=64,
                                pattern=r"^[0-9A-Za-z.+_-]+$", description="The release's "
                                "version, as its signed manifest says.")
    health_timeout: StrictInt | None = Field(None, ge=10, le=3600, description="Seconds the "
                                             "new release has to be healthy; absent = "
                                             "`update.health-timeout`.")
    install: StrictBool | None = Field(None, description="false = only offer the release "
                                       "(the state's `update.offered`, Home Assistant's latest "
                                       "version); absent = install now.")
    offered: StrictBool | None = Field(None, description="true, alone: install the release "
                                       "offered before (Home Assistant's Install).")

    @model_validator(mode="after")
    def _one_shape(self) -> UpdateArgs:
        release = (self.url, self.sha256, self.version)
        if self.offered:
            if any(v is not None for v in (*release, self.install, self.health_timeout)):
                raise ValueError("offered: true goes alone")
        elif None in release:
            raise ValueError("url, sha256 and version are required (or offered: true)")
        return self


@dataclass(frozen=True)
class HaSwitch:
    """A Home Assistant switch: ON/OFF is sent as `{"on": true|false}`; its state is the
    boolean at `state` (a dotted path) in the box's `state` message. `key` ends the entity's
    unique id, so it never changes once released."""

    key: str
    name: str
    state: str


@dataclass(frozen=True)
class HaButton:
    """A Home Assistant button: each press sends the command with no arguments."""

    key: str
    name: str


@dataclass(frozen=True)
class HaUpdate:
    """A Home Assistant update entity: installed and offered versions from the state, and
    Install, which sends the command with `{"offered": true}`."""

    key: str
    name: str


@dataclass(frozen=True)
class Verb:
    target: Target
    name: str
    args: type[Args]
    doc: str
    ha: HaSwitch | HaButton | HaUpdate | None = None

    @property
    def path(self) -> str:
        return f"{self.target}/{self.name}"

    def parse(self, args: dict[str, Any] | None) -> dict[str, Any]:
        """The arguments checked and normalized (absent optional keys left out); raises
        ValueError with every problem's location (`args.on: …`)."""
        try:
            model = self.args.model_validate(args or {})
        except ValidationError as exc:
            raise ValueError("; ".join(
                "args" + "".join(f".{part}" for part in err["loc"]) + f": {err['msg']}"
                for err in exc.errors(include_url=False))) from None
        return model.model_dump(exclude_none=True)


VERBS: tuple[Verb, ...] = (
    Verb("pusher", "start", NoArgs, "Start pushing to `pusher.url`.",
         HaButton("start", "Start push")),
    Verb("pusher", "stop", NoArgs, "Stop pushing.", HaButton("stop", "Stop push")),
    Verb("pusher", "pause", NoArgs, "Push the waiting image instead of the camera (same "
         "session)."),
    Verb("pusher", "resume", NoArgs, "Back to the camera, with a key frame and no "
         "reconnect."),
    Verb("pusher", "switchCamera", SwitchCameraArgs, "Use the other camera (or `position`); "
         "a camera that cannot open leaves the current one in use."),
    Verb("pusher", "snapshot", NoArgs, "JPEG of the next picture sent, on "
         "`snapshot/pusher`."),
    Verb("player", "play", PlayArgs, "Play `player.src` (or `src`); resumes when paused."),
    Verb("player", "stop", NoArgs, "Stop playing."),
    Verb("player", "pause", NoArgs, "Hold the picture and the sound."),
    Verb("player", "resume", NoArgs, "Continue after `pause`."),
    Verb("player", "mute", MuteArgs, "Turn the player's sound off or on; the state's "
         "`player.muted` says what the player does.",
         HaSwitch("mute", "Mute", "player.muted")),
    Verb("player", "requestFullScreen", NoArgs, "Show the stream over the whole screen."),
    Verb("player", "exitFullScreen", NoArgs, "Back to `player.layout`."),
    Verb("player", "snapshot", NoArgs, "JPEG of the picture on screen, on "
         "`snapshot/player`."),
    Verb("device", "identify", NoArgs, "Blink both LEDs at 5 Hz for 10 s.",
         HaButton("identify", "Identify")),
    Verb("device", "privacy", SwitchArgs, "Privacy on: the pusher sends the waiting image "
         "instead of the camera.", HaSwitch("privacy", "Privacy", "privacy")),
    Verb("device", "restart", NoArgs, "Restart the pusher and player worker processes; they "
         "resume what they were doing. The supervisor, its MQTT session and the config stay."),
    Verb("device", "reboot", NoArgs, "Reboot the box: it answers, sends 6028 REBOOTING, goes "
         "offline and comes back online (about a minute on a Pi). Refused on a box without "
         "the image's reboot helper."),
    Verb("device", "update", UpdateArgs, "Download, verify and install a signed release, "
         "restart into it and keep it only if the box is healthy again within the health "
         "timeout (docs/updates.md). Answered at once; progress comes as events.",
         HaUpdate("update", "Firmware")),
    Verb("device", "factory-reset", FactoryResetArgs, "Reset the config to the defaults, as "
         "holding the button does."),
    Verb("device", "logs", LogsArgs, "The box's recent log lines (from the journal under systemd, "
         "else the box's own log ring), newest last, secrets redacted, at most about 48 KB."),
)

_BY_PATH = {verb.path: verb for verb in VERBS}


def find(target: str, name: str) -> Verb | None:
    """The verb `target/name`, or None when there is no such command."""
    return _BY_PATH.get(f"{target}/{name}")


class CommandError(Exception):
    """A command is refused or fails: answered with `code` and the message (by the agent,
    the web console and the workers alike)."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code


def checked(target: str, name: str, args: dict[str, Any] | None) -> dict[str, Any]:
    """The arguments of `target/name` checked and normalized (`Verb.parse`); an unknown
    command or a bad argument raises CommandError (COMMAND_REJECTED)."""
    verb = find(target, name)
    if verb is None:
        raise CommandError(Code.COMMAND_REJECTED, f"unknown command {target}/{name}")
    try:
        return verb.parse(args)
    except ValueError as exc:
        raise CommandError(Code.COMMAND_REJECTED, str(exc)) from None


def names(target: str) -> frozenset[str]:
    """The verbs of one target."""
    return frozenset(verb.name for verb in VERBS if verb.target == target)


def switched(args: dict[str, Any], current: bool) -> bool:
    """What an on/off verb (`privacy`, `mute`) turns its switch to, from its normalized
    args: `on` when given, else the opposite of `current`."""
    on = args.get("on")
    return not current if on is None else bool(on)


# -- documentation

BEGIN_MARK = "<!-- generated by `python -m edgelive.verbs`: begin -->"
END_MARK = "<!-- generated by `python -m edgelive.verbs`: end -->"
_TYPE_NAMES = {bool: "boolean", int: "integer", str: "string"}


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return " \\| ".join(_type_name(a) for a in args if a is not type(None))
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in args)
    if origin is typing.Annotated:  # StrictBool, StrictInt
        return _type_name(args[0])
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(info: Any) -> str:
    lo = next((m.ge for m in info.metadata if getattr(m, "ge", None) is not None), None)
    hi = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
    return f" {lo}–{hi}" if lo is not None and hi is not None else \
        f" ≥ {lo}" if lo is not None else ""


def _args_doc(model: type[Args]) -> str:
    if not model.model_fields:
        return "—"
    out = []
    for name, info in model.model_fields.items():
        optional = "" if info.is_required() else ", optional"
        out.append(f"`{name}` ({_type_name(info.annotation)}{_bounds(info)}{optional}): "
                   f"{info.description}")
    return "<br>".join(out)


def _ha_doc(verb: Verb) -> str:
    if isinstance(verb.ha, HaSwitch):
        return f"switch “{verb.ha.name}” (ON = `{{\"on\": true}}`)"
    if isinstance(verb.ha, HaButton):
        return f"button “{verb.ha.name}”"
    if isinstance(verb.ha, HaUpdate):
        return f"update “{verb.ha.name}” (Install = `{{\"offered\": true}}`)"
    return ""


def markdown() -> str:
    """The command table of docs/mqtt-api.md, markers included."""
    lines = [BEGIN_MARK, "", "| command | args | what it does | Home Assistant |",
             "|---|---|---|---|"]
    for verb in VERBS:
        lines.append(f"| `{verb.path}` | {_args_doc(verb.args)} | {verb.doc} | "
                     f"{_ha_doc(verb)} |")
    lines += ["", END_MARK]
    return "\n".join(lines) + "\n"


def replace_section(text: str) -> str:
    """`text` (a Markdown file) with its generated section replaced by `markdown()`."""
    head, begin, rest = text.partition(BEGIN_MARK)
    _, end, tail = rest.partition(END_MARK + "\n")
    if not begin or not end:
        raise ValueError("the file has no generated command section")
    return head + markdown() + tail


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="print or write the command table")
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="replace the generated section of FILE (docs/mqtt-api.md)")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(markdown())
    else:
        args.write.write_text(replace_section(args.write.read_text()))


if __name__ == "__main__":
    main()
