"""Documentation generated from the schema, so it cannot drift from the code.

`python -m edgelive.config.docs` prints the Markdown reference (docs/config.md);
`annotated_toml()` is the defaults as TOML with each key's description as a comment
(`edgelive config defaults`).
"""

from __future__ import annotations

import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
import tomli_w
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from edgelive.config.schema import EdgeliveConfig

_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string",
               SecretStr: "string (secret)"}
_BOUNDS = ((annotated_types.Gt, "gt", "<"), (annotated_types.Ge, "ge", "≤"))
_UPPER = ((annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "≤"))


@dataclass(frozen=True)
class Table:
    """One TOML table: its dotted name, model and current values."""

    name: str
    model: type[BaseModel]
    values: BaseModel


def sections(cfg: BaseModel | None = None, prefix: str = "") -> Iterator[Table]:
    """Every table of the document, depth first (`pusher`, `pusher.reconnect`, `player`, …)."""
    cfg = cfg if cfg is not None else EdgeliveConfig()
    for name, info in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            dotted = f"{prefix}{info.alias}"
            yield Table(dotted, type(value), value)
            yield from sections(value, f"{dotted}.")


def leaf_fields(model: type[BaseModel]) -> Iterator[tuple[str, str, FieldInfo]]:
    """(kebab key, attribute name, field) for the keys of one table, sub-tables excluded."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            yield info.alias or name, name, info


def type_name(annotation: Any) -> str:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return type_name(type(args[0]))
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return f"{' or '.join(type_name(a) for a in inner)} (optional)"
    if origin is list:
        return f"list of {type_name(args[0])}s"
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def allowed(info: FieldInfo) -> str:
    """Allowed values: the choices of a Literal, a numeric range, or a pattern."""
    if typing.get_origin(info.annotation) is Literal:
        return ", ".join(_toml_value(v) for v in typing.get_args(info.annotation))
    low = next((f"{getattr(m, attr)} {op} " for m in info.metadata
                for kind, attr, op in _BOUNDS if isinstance(m, kind)), "")
    high = next((f" {op} {getattr(m, attr)}" for m in info.metadata
                 for kind, attr, op in _UPPER if isinstance(m, kind)), "")
    if low or high:
        return f"{low}x{high}"
    pattern = next((m.pattern for m in info.metadata if getattr(m, "pattern", None)), None)
    return f"pattern `{pattern}`" if pattern else ""


def _toml_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `firmware/edgelive/config/schema.py` by "
        "`python -m edgelive.config.docs`; do not edit by hand.",
        "",
        "One TOML document, layered: built-in defaults < `edgelive.toml` on the boot partition "
        "(first boot only; then rewritten without secrets as `edgelive.imported.toml`) < the "
        "state directory's `config.toml` (last good, mode 0600) < the fleet's retained "
        "`config/desired`. A document with unknown keys, wrong types or out-of-range values "
        "is rejected as a whole, each error with its location. Check a file with "
        "`edgelive config check FILE`; print these defaults as TOML with "
        "`edgelive config defaults`.",
    ]
    for section in sections():
        lines += ["", f"## [{section.name}]", "",
                  "| key | type | default | allowed | description |",
                  "|---|---|---|---|---|"]
        for key, name, info in leaf_fields(section.model):
            value = getattr(section.values, name)
            default = "unset" if value is None else f"`{_toml_value(value)}`"
            lines.append(f"| `{key}` | {type_name(info.annotation)} | {_cell(default)} | "
                         f"{_cell(allowed(info))} | {_cell(info.description or '')} |")
    return "\n".join(lines) + "\n"


def annotated_toml(cfg: EdgeliveConfig | None = None) -> str:
    """`cfg` (default: the built-in defaults) as TOML, each key preceded by its description."""
    out = ["# edgelive configuration: built-in defaults. Keep only the keys you change.",
           "# Reference: docs/config.md."]
    for section in sections(cfg):
        out += ["", f"[{section.name}]"]
        for key, name, info in leaf_fields(section.model):
            out += textwrap.wrap(info.description or "", 96, initial_indent="# ",
                                 subsequent_indent="# ")
            if choices := allowed(info):
                out.append(f"# allowed: {choices}")
            value = getattr(section.values, name)
            out.append(f"# {key} = (unset)" if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
