"""The settings form, described from the config schema (so it cannot drift from it).

Each key becomes one field: its widget (checkbox, select, number, text, secret), the allowed
values, the default and the description, and the value now in force with secrets redacted.
A secret is write-only: the form shows whether it is set, never what it is, and sends it
only when typed. The browser sends back only the keys the user changed, as the same partial
document MQTT `config/desired` carries.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from edgelive.config.docs import allowed, leaf_fields, sections, type_name
from edgelive.redact import MASK

_NUMBER_BOUNDS = (("ge", "min"), ("gt", "min"), ("le", "max"), ("lt", "max"))


def _base(annotation: Any) -> tuple[Any, bool]:
    """The annotation without `| None`, and whether it was optional."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0], True
    return annotation, False


def _widget(info: FieldInfo) -> dict[str, Any]:
    annotation, optional = _base(info.annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return {"widget": "select", "choices": list(typing.get_args(annotation))}
    if annotation is bool:
        return {"widget": "checkbox"}
    if annotation is SecretStr:
        return {"widget": "secret"}
    if annotation in (int, float):
        out: dict[str, Any] = {"widget": "number", "step": 1 if annotation is int else "any",
                               "optional": optional}
        for meta in info.metadata:
            for attr, name in _NUMBER_BOUNDS:
                if getattr(meta, attr, None) is not None:
                    out[name] = getattr(meta, attr)
        return out
    if origin is list:
        item = typing.get_args(annotation)[0]
        return {"widget": "list", "item": "number" if item in (int, float) else "text"}
    return {"widget": "text"}


def describe(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Form sections for the redacted config `values` (as `redacted()` returns it)."""
    out = []
    for table in sections():
        current: Any = values
        for part in table.name.split("."):
            current = current.get(part, {}) if isinstance(current, dict) else {}
        fields = []
        for key, name, info in leaf_fields(table.model):
            default = getattr(table.model(), name)
            field: dict[str, Any] = {
                "key": f"{table.name}.{key}", "type": type_name(info.annotation),
                "allowed": allowed(info), "description": info.description or "",
                **_widget(info)}
            value = current.get(key) if isinstance(current, dict) else None
            if field["widget"] == "secret":
                field["set"] = bool(value)  # MASK or empty: never the secret itself
            else:
                field["value"] = value
                field["default"] = default
                field["redacted"] = isinstance(value, str) and MASK in value
            fields.append(field)
        out.append({"name": table.name, "fields": fields})
    return out
