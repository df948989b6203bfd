"""The values an operator gets wrong on the first day, as one table: what values.schema.json
refuses (before anything renders), next to the good neighbours it must let through.

A refused value is one the controller refuses (``check-config`` of the rendered config with that
value put back says so), one the API server refuses, or one the controller would mishandle. A
value that passes renders a config the real controller accepts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from controller.config import parse_duration
from tests.packaging.test_packaging import (
    CHART,
    DEFAULT_VALUES,
    _rendered,
    check_rendered_config,
    registries_with,
    render,
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


MAX_AGE = ("registries", 0, "max_age")
RESYNC = ("reconcile", "resync_seconds")
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
    "duration-1ms": Case({"reconcile": {"resyncSeconds": "1ms"}}, None),
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
        assert f"{case.config[0][-1]}:" in result.stderr, result.stderr


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
    pytest.param({"leaderElection": {"sessionTimeoutSeconds": "1500ms"}},
                 r"leaderElection\.sessionTimeoutSeconds \(1500ms\) must be at least 2s",
                 id="session-timeout-under-2s"),
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
