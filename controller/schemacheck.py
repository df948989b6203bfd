"""Whether a config conforms to its JSON Schema, without importing ``jsonschema``.

Every run validates its config, and ``jsonschema`` (with ``referencing``, ``rpds`` and ``attrs``)
costs tens of milliseconds and megabytes to import: more than the rest of the start-up. The
config schema uses a handful of keywords, so ``conforms`` checks those directly, as
``jsonschema``'s Draft 2020-12 validator does. It is only ever trusted to say *yes*: on any
doubt (a problem, a keyword or value it does not know) it says no, and the caller asks
``jsonschema``, which finds and words every problem. A valid config never loads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["conforms"]

_ANNOTATIONS = frozenset({"$defs", "$id", "$schema", "title", "description", "default"})
_KNOWN = _ANNOTATIONS | {"$ref", "type", "enum", "properties", "additionalProperties",
                         "required", "pattern", "minLength", "minItems", "items", "minimum",
                         "maximum", "exclusiveMinimum"}


def conforms(instance: object, schema: Mapping[str, Any]) -> bool:
    """True only if ``instance`` is valid against ``schema`` (its ``$ref``s local)."""
    return _valid(instance, schema, schema)


def _valid(instance: object, schema: object, root: Mapping[str, Any]) -> bool:
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict) or not schema.keys() <= _KNOWN:
        return False
    ref = schema.get("$ref")
    if ref is not None and not _valid(instance, _resolve(ref, root), root):
        return False
    kinds = schema.get("type")
    if kinds is not None and not any(
            _is(instance, kind) for kind in (kinds if isinstance(kinds, list) else [kinds])):
        return False
    if "enum" in schema and not any(_same(instance, v) for v in schema["enum"]):
        return False
    if isinstance(instance, str):
        return _string(instance, schema)
    if isinstance(instance, int | float) and not isinstance(instance, bool):
        return _number(instance, schema)
    if isinstance(instance, list):
        return (len(instance) >= schema.get("minItems", 0)
                and all(_valid(item, schema.get("items", True), root) for item in instance))
    if isinstance(instance, dict):
        return _object(instance, schema, root)
    return True


def _string(instance: str, schema: Mapping[str, Any]) -> bool:
    pattern = schema.get("pattern")
    return (len(instance) >= schema.get("minLength", 0)
            and (pattern is None or re.search(pattern, instance) is not None))


def _number(instance: float, schema: Mapping[str, Any]) -> bool:
    return (instance >= schema.get("minimum", instance)
            and instance <= schema.get("maximum", instance)
            and ("exclusiveMinimum" not in schema or instance > schema["exclusiveMinimum"]))


def _object(instance: dict[Any, Any], schema: Mapping[str, Any], root: Mapping[str, Any]
            ) -> bool:
    if any(key not in instance for key in schema.get("required", ())):
        return False
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, value in instance.items():
        if not isinstance(key, str):
            return False
        if not _valid(value, properties.get(key, extra), root):
            return False
    return True


def _is(instance: object, kind: object) -> bool:
    """JSON Schema's types: booleans are no numbers, and 1.0 is an integer."""
    if kind == "string":
        return isinstance(instance, str)
    if kind == "boolean":
        return isinstance(instance, bool)
    if kind == "null":
        return instance is None
    if kind == "object":
        return isinstance(instance, dict)
    if kind == "array":
        return isinstance(instance, list)
    if isinstance(instance, bool):
        return False
    if kind == "number":
        return isinstance(instance, int | float)
    if kind == "integer":
        return isinstance(instance, int) or (isinstance(instance, float)
                                             and instance.is_integer())
    return False


def _same(instance: object, value: object) -> bool:
    """Plain equality between values of one type; anything else is left to ``jsonschema``."""
    return type(instance) is type(value) and isinstance(value, str | int | float | bool) and (
        instance == value)


def _resolve(ref: object, root: Mapping[str, Any]) -> object:
    """A local ``#/…`` reference, or ``False`` (which fails) for any other."""
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return False
    target: object = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return target
