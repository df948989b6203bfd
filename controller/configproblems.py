"""The config's problems in words: what the schema refuses, and what it lets pass.

Each problem names its key by path (``registries[1].credentials.password_env``) and says what is
wrong and what is allowed, never with a regex, and never quoting a value that may be a secret.
A valid config is checked by ``controller.schemacheck`` alone; ``jsonschema`` is loaded only to
find and word the problems of one that is not.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

from controller.errors import ConfigError
from controller.settings import DURATION, Pattern, too_short
from controller.settingtables import shown
from controller.settingtree import floor_at, pattern_words

if TYPE_CHECKING:
    import jsonschema

__all__ = ["config_error", "config_schema", "format_path", "join_path", "kind_words",
           "load_schema", "schema_problems", "value_problems"]

_SCHEMA_FILE = "config_schema.json"
_MAX_PROBLEMS = 50  # a hostile file can make thousands; the first ones say enough
_SECRET_KEYS = frozenset({"password", "token", "secret", "auth", "identitytoken",
                          "aws_secret_access_key", "secret_access_key"})
_DURATION_REF = f"#/$defs/{DURATION.name}"
_UNWORDED = Pattern(regex="", noun="valid", rule=f"see {_SCHEMA_FILE} in the controller package")
_LENGTH_UNITS = {"minLength": "characters", "minItems": "items"}
_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "text",
               "number": "a number", "integer": "a whole number", "boolean": "true or false",
               "null": "nothing (null)"}


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (``python -m controller.settings_schema`` writes it)."""
    text = resources.files("controller").joinpath(_SCHEMA_FILE).read_text("utf-8")
    return cast(dict[str, Any], json.loads(text))


@functools.cache
def config_schema() -> dict[str, Any]:
    """The schema the loader validates with: the package's, read once."""
    return load_schema()


def config_error(problems: list[str]) -> ConfigError:
    """The error that reports ``problems``, the first ``_MAX_PROBLEMS`` of them."""
    if len(problems) > _MAX_PROBLEMS:
        more = len(problems) - _MAX_PROBLEMS
        problems = [*problems[:_MAX_PROBLEMS], f"… and {more} more problems"]
    return ConfigError(problems)


def format_path(parts: Iterable[str | int]) -> str:
    """A key's path from its parts, e.g. ``registries[0].host``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def join_path(path: str, key: str) -> str:
    """The path of ``key`` in the mapping at ``path``."""
    return key if path == "(top level)" else f"{path}.{key}"


def kind_words(value: object, *, show: bool = True) -> str:
    """What ``value`` is, in words (never a Python type name); ``show`` quotes a scalar."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return shown(value) if show else "true or false"
    if isinstance(value, int | float):
        return f"the number {shown(value)}" if show else "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a value of another kind"


def value_problems(data: dict[str, Any]) -> list[str]:
    """Keys that are not names and numbers that are not finite: things the schema lets pass.

    Walks with an explicit stack rather than recursion.
    """
    problems: list[str] = []
    stack: list[tuple[tuple[str | int, ...], object]] = [((), data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            items = list(value.items())
            for key, _ in items:
                if not isinstance(key, str):
                    problems.append(f"{format_path(where)}: the key {shown(key)} is not "
                                    "text (put it in quotes if it is meant as a name)")
            stack.extend(((*where, k), v) for k, v in reversed(items) if isinstance(k, str))
        elif isinstance(value, list):
            stack.extend(((*where, i), v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{format_path(where)}: expected a finite number, got "
                            f"{shown(value)}")
    return problems


def schema_problems(data: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every problem ``schema`` finds in ``data``, in words (jsonschema finds them)."""
    import jsonschema

    problems: list[str] = []
    for error in jsonschema.Draft202012Validator(schema).iter_errors(data):
        problems.extend(_schema_problem(format_path(error.absolute_path), error))
    return sorted(set(problems), key=problems.index)


def _schema_problem(path: str, error: jsonschema.ValidationError) -> list[str]:
    """One schema error in words: what is wrong and what is allowed, never a regex."""
    kind, expected, instance = error.validator, error.validator_value, error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if kind == "additionalProperties":
        allowed = set(schema.get("properties", {}))
        return [_unknown_key(join_path(path, key), allowed)
                for key in sorted(set(instance) - allowed)]
    if kind == "required":
        return [f"{join_path(path, key)}: missing required key" for key in expected
                if key not in instance]
    rule = pattern_words().get(schema.get("pattern", ""))
    echo = rule is None or rule.echo
    if kind == "type":
        wanted = rule.noun if rule else " or ".join(
            _TYPE_WORDS[t] for t in (expected if isinstance(expected, list) else [expected]))
        hint = (" (put it in quotes if it is meant as text)"
                if "text" in wanted and isinstance(instance, int | float) else "")
        return [f"{path}: expected {wanted}, got {kind_words(instance, show=echo)}{hint}"]
    if kind == "enum":
        return [f"{path}: must be one of {', '.join(shown(v) for v in expected)}"]
    if kind == "pattern":
        rule = rule or _UNWORDED
        if not echo:
            return [f"{path}: {rule.rule}; the value is not shown, as it may be a secret"]
        return [f"{path}: {shown(instance)} is not {rule.noun}: {rule.rule}"]
    if kind in ("minLength", "minItems"):
        return [f"{path}: must not be empty" if expected == 1 else
                f"{path}: must have at least {expected} {_LENGTH_UNITS[kind]}"]
    if kind == "minimum":
        floor = floor_at(path) if schema.get("$ref") == _DURATION_REF else None
        return [f"{path}: {too_short(floor) if floor else f'must be at least {expected}'}"]
    if kind == "maximum":
        return [f"{path}: must be at most {expected}"]
    if kind == "exclusiveMinimum":
        return [f"{path}: must be more than {expected}"]
    return [f"{path}: not allowed here (see rule {kind} in {_SCHEMA_FILE} in the "
            "controller package)"]


def _unknown_key(path: str, allowed: set[str]) -> str:
    if path.rsplit(".", 1)[-1].lower() in _SECRET_KEYS:
        return (f"{path}: secrets must not be written in the config file; name a file or an "
                "environment variable instead (e.g. password_file, password_env)")
    return f"{path}: unknown key (allowed: {', '.join(sorted(allowed))})"
