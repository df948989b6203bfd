"""Generates the chart's duration checks from the controller's config schema.

Run ``python charts/generate_durations.py`` after a duration key or its floor changes in
``controller/settings.py`` (and so in ``controller/config_schema.json``). It rewrites, in the
chart ``marathon-pullsecret-controller``:

- ``values.schema.json``: each duration value (the camelCase twin of a controller key, e.g.
  ``reconcile.resyncSeconds`` for ``reconcile.resync_seconds``) refers to a ``floor<text>``
  definition that refuses a number, or a one-part duration such as ``500ms``, below the
  controller's floor, before anything renders;
- ``templates/_durations.tpl``: the list of those keys with their floors, from which the render
  checks what a pattern cannot, a duration of several parts (``0.5s0.4s``).

A controller duration key that the chart does not expose stops the generator, so a new key (or
floor) cannot be missed. ``--check`` writes nothing and exits 1 when either file is stale; the
test suite runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONTROLLER_SCHEMA = ROOT / "controller" / "config_schema.json"
CHART = ROOT / "charts" / "marathon-pullsecret-controller"
VALUES_SCHEMA = CHART / "values.schema.json"
DURATIONS_TEMPLATE = CHART / "templates" / "_durations.tpl"
DURATION_REF = "#/$defs/duration"
UNIT_SECONDS = {"ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60),
                "h": Fraction(3600), "d": Fraction(86400)}
"""The controller's duration units (controller.config reads the same)."""


@dataclass(frozen=True, slots=True)
class DurationKey:
    """One duration key of the controller's config and the chart value that sets it."""

    config: str
    """Its path in the controller's config, ``[]`` for any list item: ``registries[].max_age``."""
    floor: Fraction | None
    """The least the controller takes, in seconds (its schema's ``minimum``)."""

    @property
    def values(self) -> str:
        """The chart value: each part of ``config`` in camelCase (``registries[].maxAge``)."""
        return re.sub(r"_([a-z])", lambda m: m[1].upper(), self.config)

    @property
    def floor_text(self) -> str | None:
        return None if self.floor is None else duration_text(self.floor)


def duration_text(seconds: Fraction) -> str:
    """``seconds`` in the largest unit that divides it: 100ms, 1s, 1m, 1h."""
    for unit, size in sorted(UNIT_SECONDS.items(), key=lambda item: -item[1]):
        if (seconds / size).denominator == 1:
            return f"{seconds / size}{unit}"
    return f"{float(seconds):g}s"


def controller_duration_keys(schema: dict[str, Any], path: str = "") -> Iterator[DurationKey]:
    """Every duration key in the controller's config schema, in the schema's order."""
    if schema.get("$ref") == DURATION_REF:
        minimum = schema.get("minimum")
        yield DurationKey(path, None if minimum is None else Fraction(str(minimum)))
    for name, child in schema.get("properties", {}).items():
        yield from controller_duration_keys(child, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from controller_duration_keys(schema["items"], f"{path}[]")


def values_node(values_schema: dict[str, Any], values_path: str) -> dict[str, Any] | None:
    """The values schema's property at ``values_path`` (``registries[].maxAge``), or None."""
    node: dict[str, Any] | None = values_schema
    for part in values_path.split("."):
        name, is_list = part.removesuffix("[]"), part.endswith("[]")
        node = (node or {}).get("properties", {}).get(name)
        if node is not None and is_list:
            node = node.get("items")
    return node


# -- one-part durations below a floor, as a pattern ----------------------------------------------


def _any_digits(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _digit_range(lowest: int, highest: int) -> str:
    return str(lowest) if lowest == highest else f"[{lowest}-{highest}]"


def _digits(upper: int) -> str:
    """A pattern of the whole numbers from 0 to ``upper``, without leading zeros."""
    text, alternatives = str(upper), []
    for length in range(1, len(text)):
        alternatives.append("[0-9]" if length == 1 else "[1-9]" + _any_digits(length - 1))
    for i, digit in enumerate(int(d) for d in text):
        lowest = 1 if i == 0 and len(text) > 1 else 0
        if digit > lowest:
            alternatives.append(text[:i] + _digit_range(lowest, digit - 1)
                                + _any_digits(len(text) - i - 1))
    alternatives.append(text)
    return "|".join(alternatives)


def _expansion(fraction: Fraction) -> tuple[str, str]:
    """The decimal digits of ``fraction`` (0 < fraction < 1) as (preperiod, period): 1/60 is
    ("01", "6"), 1/10 is ("1", "0")."""
    seen: dict[int, int] = {}
    digits: list[str] = []
    remainder, denominator = fraction.numerator, fraction.denominator
    while remainder not in seen:
        seen[remainder] = len(digits)
        remainder *= 10
        digits.append(str(remainder // denominator))
        remainder %= denominator
    start = seen[remainder]
    return "".join(digits[:start]), "".join(digits[start:])


def _smaller_digit(prefix: str, digit: str) -> str | None:
    """``prefix``, then a digit below ``digit``, then any digits; None below 0."""
    return None if digit == "0" else f"{prefix}{_digit_range(0, int(digit) - 1)}[0-9]*"


def _fractions_below(fraction: Fraction) -> str:
    """A pattern of the digits after the point of the numbers below ``fraction`` whose part
    before the point is ``fraction``'s: smaller at some digit, or a shorter prefix (and so
    smaller) of a longer expansion."""
    preperiod, period = _expansion(fraction)
    repeat = f"({period})*"
    alternatives: list[str | None] = [
        *(_smaller_digit(preperiod[:i], d) for i, d in enumerate(preperiod)),
        *(_smaller_digit(preperiod + repeat + period[:j], d) for j, d in enumerate(period))]
    if period == "0":  # it ends: only shorter prefixes are smaller (its last digit is not 0)
        alternatives += [preperiod[:k] for k in range(1, len(preperiod))]
    else:  # it never ends: every prefix is smaller
        alternatives += [preperiod[:k] for k in range(1, len(preperiod))]
        alternatives += [preperiod + repeat + period[:j] for j in range(len(period))]
    return "|".join(a for a in alternatives if a)


def _numbers_below(bound: Fraction) -> str:
    """A pattern of the decimal numbers (digits, optionally a point and digits; leading zeros
    allowed) below ``bound`` > 0."""
    whole, rest = divmod(bound, 1)
    alternatives = []
    if whole > 0:
        alternatives.append(f"0*({_digits(int(whole) - 1)})(\\.[0-9]+)?")
    if rest:
        before = "0+" if whole == 0 else f"0*{whole}"
        alternatives.append(f"{before}(\\.({_fractions_below(rest)}))?")
    return "|".join(alternatives)


def below_pattern(floor: Fraction) -> str:
    """A pattern of the one-part durations (``500ms``, ``0.5s``, ``0.01m``) shorter than
    ``floor`` seconds."""
    parts = [f"({_numbers_below(floor / size)}){unit}" for unit, size in UNIT_SECONDS.items()]
    return "^(" + "|".join(parts) + ")$"


# -- the generated files ---------------------------------------------------------------------------


def floor_definition(floor: Fraction) -> dict[str, Any]:
    text = duration_text(floor)
    return {
        "description": f"At least {text}, as the controller requires of this key: a number of "
                       f"seconds from {float(floor):g}, or a duration not shorter than {text}. "
                       "The render checks a duration of several parts. Generated from "
                       "controller/config_schema.json by charts/generate_durations.py.",
        "minimum": float(floor) if floor.denominator != 1 else int(floor),
        "not": {"type": "string", "pattern": below_pattern(floor)},
    }


def floor_name(floor: Fraction) -> str:
    return f"floor{duration_text(floor)}"


def exposed_keys() -> list[DurationKey]:
    """The controller's duration keys; each must be a value of the chart."""
    keys = list(controller_duration_keys(json.loads(CONTROLLER_SCHEMA.read_text())))
    values_schema = json.loads(VALUES_SCHEMA.read_text())
    missing = [key for key in keys if values_node(values_schema, key.values) is None]
    if missing:
        raise SystemExit("the chart has no value for the controller's duration key(s) "
                         + ", ".join(f"{k.config} (expected {k.values})" for k in missing)
                         + ": add them to values.yaml, values.schema.json and the config "
                         "template, then run this again")
    return keys


def values_schema_text(keys: list[DurationKey]) -> str:
    """values.schema.json with each duration key referring to its floor's definition."""
    schema = json.loads(VALUES_SCHEMA.read_text())
    definitions = schema["definitions"]
    for name in [n for n in definitions if n.startswith("floor")]:
        del definitions[name]
    for floor in sorted({key.floor for key in keys if key.floor is not None}):
        definitions[floor_name(floor)] = floor_definition(floor)
    for key in keys:
        node = values_node(schema, key.values)
        assert node is not None  # exposed_keys checked it
        refs = [{"$ref": "#/definitions/duration"}]
        if key.floor is not None:
            refs.append({"$ref": f"#/definitions/{floor_name(key.floor)}"})
        description = node.get("description")
        node.clear()
        node["allOf"] = refs
        if description:
            node["description"] = description
    return json.dumps(schema, indent=2) + "\n"


def template_text(keys: list[DurationKey]) -> str:
    """_durations.tpl: the keys and their floors as a JSON list."""
    rows = [json.dumps({"values": k.values, "config": k.config,
                        "floor": None if k.floor is None else float(k.floor),
                        "floorText": k.floor_text}) for k in keys]
    return (
        "{{/*\n"
        "Generated from controller/config_schema.json by charts/generate_durations.py: do not "
        "edit.\nEvery duration key of the controller's config, as the chart value that sets it "
        "(\"[]\": each\nitem of the list), with the controller's floor in seconds. checkDurations "
        "(_helpers.tpl) reads it.\n*/}}\n"
        "{{- define \"pullsecret-controller.durationKeys\" -}}\n"
        "[\n  " + ",\n  ".join(rows) + "\n]\n"
        "{{- end }}\n")


def generated() -> dict[Path, str]:
    keys = exposed_keys()
    return {VALUES_SCHEMA: values_schema_text(keys), DURATIONS_TEMPLATE: template_text(keys)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python charts/generate_durations.py",
        description="Rewrite the chart's duration floors from controller/config_schema.json.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a generated file is stale")
    args = parser.parse_args(argv)
    stale = [path for path, text in generated().items()
             if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run python charts/generate_durations.py",
                  file=sys.stderr)
        return 1 if stale else 0
    for path, text in generated().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
