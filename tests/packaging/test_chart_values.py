"""The values an operator gets wrong on the first day, as one table: what values.schema.json
refuses (before anything renders), next to the good neighbours it must let through.

A refused value is one the controller refuses (``check-config`` of the rendered config with that
value put back says so), one the API server refuses, or one the controller would mishandle. A
value that passes renders a config the real controller accepts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from controller.config import parse_duration
from controller.settings import Floor, duration_text
from tests.packaging.test_packaging import (
    CHART,
    CUSTOM_VALUES,
    DEFAULT_VALUES,
    ROOT,
    _rendered,
    check_rendered_config,
    ci_values,
    registries_with,
    render,
    rendered_config,
    values_with,
)

MAX_SECONDS = 365 * 86400


@dataclass(frozen=True, slots=True)
class Case:
    change: dict[str, Any]
    refused_at: str | None
    """The values path the schema names, or None for a value that must pass."""
    config: tuple[tuple[str | int, ...], Any] | None = None
    """Where the value goes in the controller's config, and as what, for a value the controller
    itself refuses (so the test shows that it does)."""


def group(gid: Any) -> dict[str, Any]:
    return {"storage": {"filesystem": {"group": gid}}}


def zookeeper(servers: str) -> dict[str, Any]:
    return {"leaderElection": {"zookeeper": servers}}


def previous(*locations: str) -> dict[str, Any]:
    return {"storage": {"previousLocations": list(locations)}}


MAX_AGE = ("registries", 0, "max_age")
RESYNC = ("reconcile", "resync_seconds")
FIGHT_LIMIT = ("reconcile", "fight_limit")
PREVIOUS = ("storage", "previous_locations")
GROUP = ("storage", "filesystem", "group")
ZOOKEEPER = ("leader_election", "zookeeper")

CASES = {
    # durations: more than 0, at most 365d, in the controller's grammar
    "duration-400d": Case(registries_with(maxAge="400d"), "/registries/0/maxAge",
                          (MAX_AGE, "400d")),
    "duration-8761h": Case(registries_with(maxAge="8761h"), "/registries/0/maxAge",
                           (MAX_AGE, "8761h")),
    "duration-365.5d": Case(registries_with(maxAge="365.5d"), "/registries/0/maxAge",
                            (MAX_AGE, "365.5d")),
    "seconds-above-365d": Case({"reconcile": {"resyncSeconds": MAX_SECONDS + 1}},
                               "/reconcile/resyncSeconds", (RESYNC, MAX_SECONDS + 1)),
    "duration-365d": Case(registries_with(maxAge="365d"), None),
    "duration-8760h": Case(registries_with(maxAge="8760h"), None),
    "duration-364d23h59m": Case(registries_with(maxAge="364d23h59m"), None),
    "seconds-365d": Case({"reconcile": {"resyncSeconds": MAX_SECONDS}}, None),
    # durations: at least the controller's floor (1s for resyncSeconds; every key's floor is
    # checked by test_every_duration_floor_is_the_controllers)
    "duration-1ms": Case({"reconcile": {"resyncSeconds": "1ms"}}, "/reconcile/resyncSeconds",
                         (RESYNC, "1ms")),
    "duration-999ms": Case({"reconcile": {"resyncSeconds": "999ms"}}, "/reconcile/resyncSeconds",
                           (RESYNC, "999ms")),
    "seconds-0.5": Case({"reconcile": {"resyncSeconds": 0.5}}, "/reconcile/resyncSeconds",
                        (RESYNC, 0.5)),
    "duration-1000ms": Case({"reconcile": {"resyncSeconds": "1000ms"}}, None),
    "seconds-1": Case({"reconcile": {"resyncSeconds": 1}}, None),
    # reconcile.fightLimit: 1 to 1000
    "fight-limit-0": Case({"reconcile": {"fightLimit": 0}}, "/reconcile/fightLimit",
                          (FIGHT_LIMIT, 0)),
    "fight-limit-1001": Case({"reconcile": {"fightLimit": 1001}}, "/reconcile/fightLimit",
                             (FIGHT_LIMIT, 1001)),
    "fight-limit-as-text": Case({"reconcile": {"fightLimit": "3"}}, "/reconcile/fightLimit",
                                (FIGHT_LIMIT, "3")),
    "fight-limit-1": Case({"reconcile": {"fightLimit": 1}}, None),
    "fight-limit-1000": Case({"reconcile": {"fightLimit": 1000}}, None),
    # storage.previousLocations: URI prefixes with a scheme, no user or password
    "previous-location-without-scheme": Case(
        previous("/mnt/old/pullsecrets"), "/storage/previousLocations/0",
        (PREVIOUS, ["/mnt/old/pullsecrets"])),
    "previous-location-with-a-password": Case(
        previous("https://ops:secret@bundles.example.com/ps"), "/storage/previousLocations/0",
        (PREVIOUS, ["https://ops:secret@bundles.example.com/ps"])),
    "previous-location-empty": Case(previous(""), "/storage/previousLocations/0",
                                    (PREVIOUS, [""])),
    "previous-locations-file-and-s3a": Case(
        previous("file:///mnt/old/pullsecrets", "s3a://old-bucket/marathon"), None),
    # storage.filesystem.group: a numeric gid the API server takes for supplementalGroups
    "gid-negative": Case(group(-1), "/storage/filesystem/group", (GROUP, -1)),
    "gid-as-text": Case(group("2000"), "/storage/filesystem/group", (GROUP, "2000")),
    "gid-as-a-name": Case(group("pullsecret-readers"), "/storage/filesystem/group",
                          (GROUP, "pullsecret-readers")),
    "gid-above-the-api-server-limit": Case(group(2**31), "/storage/filesystem/group"),
    "gid-2000": Case(group(2000), None),
    "gid-0": Case(group(0), None),
    "gid-largest": Case(group(2**31 - 1), None),
    # ZooKeeper ports 1 to 65535
    "zookeeper-port-99999": Case(zookeeper("zk-1:99999"), "/leaderElection/zookeeper",
                                 (ZOOKEEPER, "zk-1:99999")),
    "zookeeper-port-0": Case(zookeeper("zk-1:0/pullsecret"), "/leaderElection/zookeeper",
                             (ZOOKEEPER, "zk-1:0/pullsecret")),
    "zookeeper-second-port-65536": Case(zookeeper("zk-1:2181,zk-2:65536"),
                                        "/leaderElection/zookeeper",
                                        (ZOOKEEPER, "zk-1:2181,zk-2:65536")),
    "zookeeper-ports-1-and-65535": Case(zookeeper("zk-1:1,[::1]:65535/pullsecret"), None),
    # registry ports 1 to 65535 (the controller's parser takes any digits, and then logs in to
    # a port that cannot exist)
    "registry-port-0": Case(registries_with(host="registry.example.com:0"), "/registries/0/host"),
    "registry-port-70000": Case(registries_with(host="registry.example.com:70000"),
                                "/registries/0/host"),
    "registry-port-1": Case(registries_with(host="registry.example.com:1"), None),
    "registry-port-65535": Case(registries_with(host="registry.example.com:65535"), None),
}


def config_with(text: str, where: tuple[str | int, ...], value: Any) -> str:
    """The config ``text`` with ``value`` put at ``where``."""
    config = yaml.safe_load(text)
    node = config
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return yaml.safe_dump(config)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_schema_refuses_what_the_controller_refuses(case: Case, tmp_path: Path) -> None:
    """A refused value fails validation naming its path; a good neighbour renders a config the
    controller accepts. Where the controller is what refuses, its check-config says so too."""
    if case.refused_at is not None:
        with pytest.raises(helm.HelmValuesError, match=re.escape(f"at '{case.refused_at}'")):
            render(values_with(case.change))
    else:
        result = check_rendered_config(render(values_with(case.change)), tmp_path)
        assert result.returncode == 0, result.stderr
    if case.config is not None:
        docs = _rendered(DEFAULT_VALUES)
        text = config_with(one_config(docs), *case.config)
        result = check_rendered_config(docs, tmp_path, text)
        assert result.returncode == 2, result.stderr
        assert re.search(rf"\b{case.config[0][-1]}(\[[0-9]+\])?:", result.stderr), result.stderr


def one_config(docs: tuple[dict[str, Any], ...]) -> str:
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"]]
    text: str = configmap["data"]["config.yaml"]
    return text


# -- durations whose parts add up past 365d: the render refuses them ------------------------------


@pytest.mark.parametrize(("change", "message"), [
    pytest.param(registries_with(maxAge="300d100d"),
                 r"registries\[0\]\.maxAge \(300d100d\) must be at most 365d", id="sum-of-days"),
    pytest.param(registries_with(minValidity="364d25h"),
                 r"registries\[0\]\.minValidity \(364d25h\) must be at most 365d",
                 id="days-and-hours"),
    pytest.param({"leaderElection": {"sessionTimeoutSeconds": "1s500ms"}},
                 r"leaderElection\.sessionTimeoutSeconds \(1s500ms\) must be at least 2s, the "
                 r"controller's floor for leader_election\.session_timeout_seconds",
                 id="session-timeout-parts-under-2s"),
    pytest.param(registries_with(refusedLoginInterval="2s2s"),
                 r"registries\[0\]\.refusedLoginInterval \(2s2s\) must be at least 5s",
                 id="parts-under-a-floor"),
    pytest.param(registries_with(verifyTimeout="1m"),
                 r"registries\[0\]\.verifyTimeout \(1m\) must be less than "
                 r"reconcile\.timeoutSeconds \(60\)", id="login-outlasts-the-reconcile"),
])
def test_render_refuses_what_the_schema_cannot_see(change: dict[str, Any], message: str) -> None:
    """Rules a pattern cannot state (a sum of parts, rules between keys) fail the render with a
    message naming the value."""
    with pytest.raises(helm.HelmRenderError, match=message):
        render(values_with(change))


def test_render_takes_parts_that_add_up_to_365d(tmp_path: Path) -> None:
    """364d24h is 365d: it renders, and the controller takes it."""
    docs = render(values_with(registries_with(maxAge="364d24h")))
    assert check_rendered_config(docs, tmp_path).returncode == 0


# -- the duration pattern is the controller's ------------------------------------------------------


def duration_schema() -> dict[str, Any]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    return {"$ref": "#/definitions/duration", "definitions": schema["definitions"]}


LIMITS = {"d": 365, "h": 365 * 24, "m": 365 * 24 * 60, "s": MAX_SECONDS, "ms": MAX_SECONDS * 1000}


def boundary_durations() -> list[str | float]:
    """One-part durations around every unit's limit and around 0, written several ways."""
    out: list[str | float] = []
    for unit, limit in LIMITS.items():
        for number in (0, 1, limit - 1, limit, limit + 1, 10 * limit, 99 * limit):
            out += [f"{number}{unit}", f"00{number}{unit}", f"{number}.0{unit}",
                    f"{number}.5{unit}", f"{number}.000{unit}"]
        out += [f"{limit - 1}.999{unit}", f"{limit}.0001{unit}"]
    return [*out, 0, 0.5, 1, MAX_SECONDS, MAX_SECONDS + 0.5, -1, "1h30m", "0h0m", "1.5.5s",
            "5 m", "5", "m", ".5s", "1y"]


@pytest.mark.parametrize("value", boundary_durations())
def test_duration_pattern_agrees_with_the_controller(value: str | float) -> None:
    """For one-part durations, the schema accepts exactly what the controller's parser does."""
    try:
        parse_duration(value)
        accepted = True
    except ValueError:
        accepted = False
    assert jsonschema.Draft7Validator(duration_schema()).is_valid(value) == accepted


# -- each duration's floor is the controller's -----------------------------------------------------


CONTROLLER_SCHEMA = ROOT / "controller" / "config_schema.json"
GENERATOR = ROOT / "charts" / "generate_durations.py"
UNITS = {"ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60), "h": Fraction(3600),
         "d": Fraction(86400)}


def config_keys(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every key in the controller's own config schema, ``[]`` standing for
    each item of a list (``registries[].max_age``)."""
    for name, child in schema.get("properties", {}).items():
        yield f"{path}.{name}".lstrip("."), child
        yield from config_keys(child, f"{path}.{name}".lstrip("."))
    if "items" in schema:
        yield f"{path}[]", schema["items"]
        yield from config_keys(schema["items"], f"{path}[]")


CONFIG_KEYS = dict(config_keys(json.loads(CONTROLLER_SCHEMA.read_text())))
FLOORS = {path: key["minimum"] for path, key in CONFIG_KEYS.items()
          if key.get("$ref") == "#/$defs/duration"}
"""Every duration key of the controller and its floor (its schema's ``minimum``)."""


def camel(config_path: str) -> str:
    """The chart's name for a config key: resync_seconds is resyncSeconds."""
    return re.sub(r"_([a-z])", lambda m: m[1].upper(), config_path)


def chart_schema(config_path: str) -> dict[str, Any]:
    """The values schema of the chart value that sets ``config_path``, with the definitions it
    refers to."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    node = schema
    for part in camel(config_path).split("."):
        node = node["properties"][part.removesuffix("[]")]
        node = node["items"] if part.endswith("[]") else node
    return node | {"definitions": schema["definitions"]}


@dataclass(frozen=True, slots=True)
class DurationValue:
    """One duration key as the chart sets it: which values file renders it (S3 keys need the S3
    backend), and where it is in the values and in the config."""

    config_path: str

    @property
    def values_file(self) -> str:
        section = self.config_path.rpartition(".")[0]
        return CUSTOM_VALUES if section.startswith("storage.s3") else DEFAULT_VALUES

    def change(self, value: Any) -> dict[str, Any]:
        """A values change that sets the key (in the first item of a list) to ``value``."""
        parts = camel(self.config_path).split(".")
        if parts[0].endswith("[]"):
            name = parts[0].removesuffix("[]")
            return {name: [ci_values(self.values_file)[name][0] | {parts[1]: value}]}
        change: dict[str, Any] = {parts[-1]: value}
        for part in reversed(parts[:-1]):
            change = {part: change}
        return change

    @property
    def schema_path(self) -> str:
        """Where the values schema reports the key: /registries/0/maxAge."""
        return "/" + camel(self.config_path).replace("[]", "/0").replace(".", "/")

    def rendered(self, value: Any) -> tuple[list[dict[str, Any]], Any]:
        """The rendered objects with the key set to ``value``, and the config's value there."""
        docs = render(values_with(self.change(value), self.values_file))
        node: Any = rendered_config(tuple(docs))
        for part in self.config_path.replace("[]", ".0").split("."):
            node = node[int(part)] if part.isdigit() else node[part]
        return docs, node


def test_the_chart_exposes_every_duration_key_of_the_controller() -> None:
    """Every duration key in the controller's schema is a chart value with a floor (so the test
    below covers it), and the generated files are what charts/generate_durations.py makes of
    that schema now."""
    assert len(FLOORS) >= 11, FLOORS
    for config_path, floor in FLOORS.items():
        refs = [item["$ref"] for item in chart_schema(config_path)["allOf"]]
        assert refs == ["#/definitions/duration", f"#/definitions/floor{duration_text(floor)}"]
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True,
                            text=True, cwd=ROOT, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("config_path", FLOORS)
def test_every_duration_floor_is_the_controllers(config_path: str, tmp_path: Path) -> None:
    """For each duration key of the controller's own schema: its floor, written as the largest
    unit it fills and as seconds, renders and the controller accepts it; half of it (which the
    controller refuses), as one part or as seconds, is refused by the values schema; three
    quarters written in two parts is refused by the render, naming the floor."""
    floor = FLOORS[config_path]
    key = DurationValue(config_path)
    docs, rendered = key.rendered(duration_text(floor))
    assert rendered == duration_text(floor)
    assert check_rendered_config(docs, tmp_path).returncode == 0
    assert key.rendered(floor)[1] == floor
    half = duration_text(floor / 2)
    text = config_with(one_config(tuple(docs)), tuple(
        int(p) if p.isdigit() else p for p in config_path.replace("[]", ".0").split(".")), half)
    refused = check_rendered_config(docs, tmp_path, text)
    assert refused.returncode == 2
    assert f"must be at least {duration_text(floor)}" in refused.stderr
    for below in (half, floor / 2):
        with pytest.raises(helm.HelmValuesError, match=re.escape(f"at '{key.schema_path}'")):
            render(values_with(key.change(below), key.values_file))
    parts = duration_text(floor / 2) + duration_text(floor / 4)
    message = (rf"{re.escape(camel(config_path).replace('[]', '[0]'))} \({parts}\) must be at "
               rf"least {duration_text(floor)}, the controller's floor for "
               rf"{re.escape(config_path)}")
    with pytest.raises(helm.HelmRenderError, match=message):
        render(values_with(key.change(parts), key.values_file))


def test_numeric_limits_are_the_controllers() -> None:
    """Each integer or number key of the controller's schema (workers, writeBurst, fightLimit,
    ...) is a chart value of the same type and bounds, so the values schema refuses what the
    controller would."""
    keys = {path: key for path, key in CONFIG_KEYS.items()
            if key.get("type") in ("integer", "number")}
    assert "reconcile.fight_limit" in keys
    bounds = ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    for config_path, controller in keys.items():
        chart = chart_schema(config_path)
        assert {k: chart.get(k) for k in bounds} == {k: controller.get(k) for k in bounds}, (
            config_path)


def around(floor: Fraction, unit: str) -> Iterator[str]:
    """One-part durations in ``unit`` just below, at and just above ``floor`` seconds: the
    floor's decimal digits cut after 0 to 7 places, and those plus one in the last place, with
    and without leading and trailing zeros."""
    target = floor / UNITS[unit]
    for places in range(8):
        scale = 10 ** places
        cut = Fraction(int(target * scale), scale)
        for number in (cut, cut + Fraction(1, scale), max(cut - Fraction(1, scale), Fraction(0))):
            whole, rest = divmod(number, 1)
            text = f"{whole}" if places == 0 else (
                f"{whole}.{int(rest * scale):0{places}d}")
            yield from (f"{text}{unit}", f"0{text}{unit}",
                        f"{text}{'0' if '.' in text else '.0'}{unit}")


@pytest.mark.parametrize("floor", sorted(set(FLOORS.values())))
def test_floor_patterns_agree_with_the_controller(floor: float) -> None:
    """For one-part durations and numbers around each floor, in every unit, the values schema
    of a key with that floor accepts exactly what the controller's parser does with it."""
    config_path = next(path for path, f in FLOORS.items() if f == floor)
    validator = jsonschema.Draft7Validator(chart_schema(config_path))
    exact = Fraction(str(floor))
    values: list[str | float] = [v for unit in UNITS for v in around(exact, unit)]
    values += [floor, floor * 0.999, floor * 1.001, 0, floor / 2]
    disagreements = []
    for value in values:
        try:
            parse_duration(value, Floor(seconds=floor, why="test"))
            accepted = True
        except ValueError:
            accepted = False
        if validator.is_valid(value) != accepted:
            disagreements.append((value, accepted))
    assert disagreements == []
    assert len(values) > 300
