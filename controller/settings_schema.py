"""Generates the config's JSON Schema from the settings dataclasses (``controller.settings``).

Run ``python -m controller.settings_schema`` after changing a setting or a registration table
(a credential kind, a storage backend): it rewrites
``controller/config_schema.json`` (or writes the path given), which the loader validates with
and operators' tools read; a test checks that the checked-in file is what this module generates.
Types, defaults and constraints come from the fields, descriptions from their docstrings (read
from the source, so this runs when developing, never when the controller loads its config).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
import types
from collections.abc import Mapping
from dataclasses import MISSING, Field, is_dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from controller.settings import (
    DURATION,
    FILE_KEY,
    Floor,
    Limits,
    Pattern,
    Settings,
    ValueKind,
    duration_text,
)
from controller.settingtree import section_fields, type_hints

SCHEMA_FILE = Path(__file__).with_name("config_schema.json")
_WIDTH = 100
"""Columns; a JSON value that fits goes on one line."""
_SIMPLE_TYPES: Mapping[object, Mapping[str, Any]] = {
    str: {"type": "string"}, Path: {"type": "string", "minLength": 1},
    int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"},
}


def json_schema() -> dict[str, Any]:
    """The config file's JSON Schema (draft 2020-12)."""
    defs: dict[str, Any] = {}
    body = _object(Settings, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/marathon-pullsecret-controller/controller/config_schema.json",
        "title": "marathon-pullsecret-controller configuration",
        **body,
        "$defs": dict(sorted(defs.items())),
    }


def schema_text() -> str:
    """``json_schema()`` as the checked-in file holds it."""
    return _json(json_schema(), 0, 0) + "\n"


def _object(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of a settings dataclass: one property per field the file may set, and for a
    section with a registration table, one per entry's key (``controller.settingtree``)."""
    properties: dict[str, Any] = {}
    required = []
    for owner, item in section_fields(cls):
        role = item.metadata.get(FILE_KEY)
        if role == "computed":
            continue
        value = _value(type_hints(owner)[item.name], defs)
        floor = value.get("minimum") if value.get("$ref") == _ref(DURATION) else None
        at_least = f" At least {duration_text(floor)}." if floor is not None else ""
        prop = {"description": field_docs(owner)[item.name] + at_least,
                **{k: v for k, v in value.items() if k != "description"}}
        if item.default is MISSING and role is None and owner is cls:
            required.append(item.name)
        elif (default := _default(item)) is not MISSING:
            prop["default"] = duration_text(default) if prop.get("$ref") == _ref(DURATION) \
                else default
        properties[item.name] = prop
    return {"description": _words(cls.__doc__ or ""), "type": "object",
            "additionalProperties": False, **({"required": required} if required else {}),
            "properties": properties}


def _value(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of a value of type ``hint`` (``X | None`` is an optional ``X``)."""
    metadata: tuple[Any, ...] = ()
    if get_origin(hint) is Annotated:
        hint, metadata = hint.__origin__, hint.__metadata__
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _value(options[0], defs)
        schema: dict[str, Any] = {"type": [_SIMPLE_TYPES[a]["type"] for a in options]}
    elif is_dataclass(hint) and isinstance(hint, type):
        schema = _object(hint, defs)
    elif origin is Literal:
        schema = {"enum": list(args)}
    elif origin is tuple:
        schema = {"type": "array", "items": _value(args[0], defs)}
    else:
        schema = dict(_SIMPLE_TYPES[hint])
    for extra in metadata:
        if isinstance(extra, ValueKind):
            defs[extra.name] = {"description": extra.description,
                                "type": list(extra.types) if len(extra.types) > 1
                                else extra.types[0], "pattern": extra.pattern.regex}
            schema = {"$ref": _ref(extra)}
        elif isinstance(extra, Floor):  # applies to a number of seconds; text is the loader's
            schema["minimum"] = int(extra.seconds) if float(extra.seconds).is_integer() \
                else extra.seconds
        elif isinstance(extra, Pattern):
            schema["pattern"] = extra.regex
        elif isinstance(extra, Limits):
            schema.update(extra.keywords())
    return schema


def _ref(kind: ValueKind) -> str:
    return f"#/$defs/{kind.name}"


def _default(item: Field[Any]) -> Any:
    """The field's default as JSON, or ``MISSING``; ``None`` (not set) and sections have none."""
    if item.default is MISSING or item.default is None or is_dataclass(item.default):
        return MISSING
    return list(item.default) if isinstance(item.default, tuple) else item.default


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of the dataclass ``cls``, as one paragraph."""
    body = ast.parse(inspect.getsource(cls)).body[0]
    assert isinstance(body, ast.ClassDef)
    docs = {}
    for node, after in zip(body.body, body.body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = _words(after.value.value)
    return docs


def _words(docstring: str) -> str:
    return " ".join(docstring.split())


def _json(value: object, indent: int, column: int) -> str:
    """``value`` as JSON starting at ``column``: on one line if it fits, else an item a line."""
    flat = json.dumps(value, ensure_ascii=False)
    if column + len(flat) < _WIDTH or not isinstance(value, dict | list) or not value:
        return flat
    inner = indent + 2
    pad = " " * inner
    if isinstance(value, list):
        lines = [pad + _json(item, inner, inner) for item in value]
        return "[\n" + ",\n".join(lines) + "\n" + " " * indent + "]"
    lines = []
    for key, item in value.items():
        head = f"{pad}{json.dumps(key)}: "
        lines.append(head + _json(item, inner, len(head)))
    return "{\n" + ",\n".join(lines) + "\n" + " " * indent + "}"


def main(argv: list[str]) -> int:
    """Write the schema to the file ``argv`` names (default: ``config_schema.json`` here)."""
    parser = argparse.ArgumentParser(
        prog="python -m controller.settings_schema",
        description="Write the config's JSON Schema, generated from controller/settings.py.")
    parser.add_argument("output", nargs="?", type=Path, default=SCHEMA_FILE, metavar="FILE",
                        help=f"where to write it (default: {SCHEMA_FILE})")
    args = parser.parse_args(argv)
    args.output.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
