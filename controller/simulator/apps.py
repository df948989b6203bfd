"""App definitions as Marathon reads, normalises, diffs and writes them (RAML ``App``, §1-§2)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from controller.simulator.versions import MarathonVersion
from controller.simulator.wire import (
    ApiError,
    Json,
    canonical,
    invalid_json,
    not_valid,
)

# Every field of RAML ``App``: the rest of a body is ignored, as 1.5+ readers ignore it.
APP_FIELDS: Final = frozenset({
    "id", "acceptedResourceRoles", "args", "backoffFactor", "backoffSeconds", "cmd",
    "constraints", "container", "cpus", "dependencies", "disk", "env", "executor",
    "executorResources", "fetch", "healthChecks", "check", "instances", "labels",
    "maxLaunchDelaySeconds", "mem", "gpus", "ipAddress", "networks", "ports", "portDefinitions",
    "readinessChecks", "residency", "resourceLimits", "requirePorts", "secrets",
    "taskKillGracePeriodSeconds", "upgradeStrategy", "uris", "user", "version", "versionInfo",
    "killSelection", "unreachableStrategy", "tty", "role",
})
_SERVER_FIELDS: Final = frozenset({"id", "version", "versionInfo"})
_CONTAINER_FIELDS: Final = frozenset({"type", "docker", "linuxInfo", "volumes", "portMappings"})
_DOCKER_FIELDS: Final = frozenset({
    "credential", "pullConfig", "forcePullImage", "image", "network", "parameters",
    "portMappings", "privileged",
})
_EXTRACTABLE: Final = (".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".gz", ".tgz", ".tbz2", ".txz",
                       ".zip")
_ID_SEGMENT: Final = re.compile(r"(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*"
                                r"([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])")
_NETWORK_MODES: Final = {"BRIDGE": "container/bridge", "HOST": "host", "USER": "container"}
_UNMERGED: Final = ("executorResources", "resourceLimits")
"""What a 1.7+ partial update takes from its body alone (``drops_omitted_resources``)."""


def _defaults() -> Json:
    """RAML ``App`` defaults plus the empty collections GET always shows."""
    return {
        "backoffFactor": 1.15, "backoffSeconds": 1, "constraints": [], "cpus": 1,
        "dependencies": [], "disk": 0, "env": {}, "executor": "", "fetch": [], "gpus": 0,
        "healthChecks": [], "instances": 1, "killSelection": "YOUNGEST_FIRST", "labels": {},
        "maxLaunchDelaySeconds": 300, "mem": 128, "readinessChecks": [], "requirePorts": False,
        "secrets": {}, "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
    }


def _artifact(item: Mapping[str, Any], features: MarathonVersion) -> Json:
    """A ``fetch[]`` item with ``artifact.raml`` defaults. Its output file is kept as ``destPath``
    whatever the version calls it, and only when the version has one and the body gave it (a
    name the version does not know is ignored, as Play's reads ignore it)."""
    artifact = {"uri": item["uri"], "extract": item.get("extract", True),
                "executable": item.get("executable", False), "cache": item.get("cache", False)}
    dest_field = features.fetch_dest_field
    if dest_field is not None and item.get(dest_field) is not None:
        artifact["destPath"] = item[dest_field]
    return artifact


def _check_types(fields: Mapping[str, Any]) -> None:
    """Reject the wrong JSON types in the fields this project cares about (Play's 422)."""
    for name, expected, error in (("labels", dict, "error.expected.jsobject"),
                                  ("env", dict, "error.expected.jsobject"),
                                  ("container", dict, "error.expected.jsobject"),
                                  ("fetch", list, "error.expected.jsarray"),
                                  ("uris", list, "error.expected.jsarray")):
        if name in fields and not isinstance(fields[name], expected):
            raise invalid_json(f"/{name}", error)
    for index, item in enumerate(fields.get("fetch", ())):
        if not isinstance(item, dict) or not isinstance(item.get("uri"), str):
            raise invalid_json(f"/fetch({index})/uri", "error.path.missing")
    for index, uri in enumerate(fields.get("uris", ())):
        if not isinstance(uri, str):
            raise invalid_json(f"/uris({index})", "error.expected.jsstring")
    for key, value in fields.get("labels", {}).items():
        if not isinstance(value, str):
            raise invalid_json(f"/labels/{key}", "error.expected.jsstring")
    instances = fields.get("instances", 0)
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 0:
        raise not_valid("/instances", "got " + json.dumps(instances) + ", expected 0 or more")


def _container(container: Mapping[str, Any]) -> Json:
    """Unknown keys dropped and RAML defaults filled, as Marathon's readers do."""
    result = {k: v for k, v in container.items() if k in _CONTAINER_FIELDS}
    result.setdefault("type", "DOCKER")
    if isinstance(result.get("docker"), dict):
        docker = {k: v for k, v in result["docker"].items() if k in _DOCKER_FIELDS}
        docker.setdefault("forcePullImage", False)
        docker.setdefault("privileged", False)
        result["docker"] = docker
    return result


def _modernise_networking(fields: Json) -> None:
    """1.5+ moved the deprecated network fields: ``docker.network``/``ipAddress`` → ``networks``,
    ``docker.portMappings`` → ``container.portMappings``, ``ports`` → ``portDefinitions``."""
    container = fields.get("container")
    docker = container.get("docker") if container else None
    network = mappings = None
    if isinstance(docker, dict):
        network = docker.pop("network", None)
        mappings = docker.pop("portMappings", None)
    if mappings is not None and container is not None:
        container.setdefault("portMappings", mappings)
    ip_address = fields.pop("ipAddress", None)
    mode = _NETWORK_MODES.get(network or ("USER" if ip_address is not None else ""))
    if "networks" not in fields and mode is not None:
        entry: Json = {"mode": mode}
        if mode == "container" and isinstance(ip_address, dict):
            if "networkName" in ip_address:
                entry["name"] = ip_address["networkName"]
            if "labels" in ip_address:
                entry["labels"] = ip_address["labels"]
        fields["networks"] = [entry]
    ports = fields.pop("ports", None)
    host_networking = all(n.get("mode") == "host" for n in fields.get("networks", ()))
    if ports is not None and host_networking and "portDefinitions" not in fields:
        fields["portDefinitions"] = [{"port": port, "protocol": "tcp"} for port in ports]


def _config(app: Mapping[str, Any]) -> Json:
    return {k: v for k, v in app.items() if k not in ("version", "versionInfo")}


def deployment_action(current: Json | None, target: Json | None, *, restart: bool = False
                      ) -> str | None:
    """The action a change of one app takes in a deployment's dependency-ordered step
    (``DeploymentPlan.dependencyOrderedSteps@v1.10.26``): a new app is scaled up (after a
    ``StartApplication`` step of its own), a scale-only change or a scale to zero is a scale, any
    other change a restart; a removed app is stopped. ``None``: nothing really changed.
    ``restart`` (``POST /v2/apps/{id}/restart``) restarts an unchanged app."""
    if current is None:
        return None if target is None else "ScaleApplication"
    if target is None:
        return "StopApplication"
    before, after = _config(current), _config(target)
    if before == after:
        return "RestartApplication" if restart else None
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    if changed == {"instances"} or after.get("instances") == 0:
        return "ScaleApplication"
    return "RestartApplication"


def embedded(embed: Iterable[str]) -> frozenset[str]:
    """The members ``embed`` values add beyond counts and deployments: ``tasks``,
    ``readiness`` and ``lastTaskFailure``."""
    wanted = {e.removeprefix("apps.").removeprefix("app.") for e in embed}
    members = set()
    if wanted & {"tasks", "failures"}:
        members.add("tasks")
    if wanted & {"lastTaskFailure", "failures"}:
        members.add("lastTaskFailure")
    if "readiness" in wanted:
        members.add("readiness")
    return frozenset(members)


def splice(obj: str, members: str) -> str:
    """Add pre-encoded members to an encoded JSON object (cheap for 10,000 cached apps)."""
    return obj[:-1] + "," + members + "}" if members else obj


def new_id(app: Mapping[str, Any]) -> str:
    """The canonical id of a create body, or Marathon's 422."""
    if not isinstance(app, Mapping):
        raise invalid_json("", "error.expected.jsobject")
    if app.get("id") is None:
        raise invalid_json("/id", "error.path.missing")
    if not isinstance(app["id"], str):
        raise invalid_json("/id", "error.expected.jsstring")
    return valid_id(app["id"])


def valid_id(raw: str) -> str:
    app_id = canonical(raw)
    if app_id == "/" or not all(_ID_SEGMENT.fullmatch(s) for s in app_id[1:].split("/")):
        raise not_valid("/id", f"must fully match regular expression '{_ID_SEGMENT.pattern}'")
    return app_id


def _fields(body: Mapping[str, Any], features: MarathonVersion, *, partial: bool) -> Json:
    """The App fields of a body, copied and normalised the way Marathon normalises them."""
    fields = {k: copy.deepcopy(v) for k, v in body.items()
              if k in APP_FIELDS and k not in _SERVER_FIELDS and v is not None}
    _check_types(fields)
    if not features.has_fetch:
        fields.pop("fetch", None)  # not a field yet: ignored like any unknown one
    uris: list[str] = fields.pop("uris", None) or []
    if uris and fields.get("fetch"):
        if features.shows_uris:
            raise ApiError(400, {"message": "Invalid JSON", "details": [
                {"path": "", "errors": ["You cannot specify both uris and fetch fields"]}]})
        if partial:  # NormalizationException has no mapper, so it is a 500 (§2.2)
            raise ApiError(500, {"message": "cannot specify both uris and fetch fields"})
        raise not_valid("/uris", "may not be set in conjunction with fetch")
    if uris:
        fields["fetch"] = [
            {"uri": uri, "extract": features.shows_uris
             or urlsplit(uri).path.endswith(_EXTRACTABLE)} for uri in uris]
    if "fetch" in fields:
        fields["fetch"] = [_artifact(item, features) for item in fields["fetch"]]
    if "container" in fields:
        fields["container"] = _container(fields["container"])
    if not features.shows_uris:
        _modernise_networking(fields)
    return fields


def complete(body: Mapping[str, Any], app_id: str, features: MarathonVersion) -> Json:
    """A full definition: the body over the defaults (create, or replace when not partial)."""
    return {"id": app_id, **_defaults(), **_fields(body, features, partial=False)}


def merge(current: Json, body: Mapping[str, Any], features: MarathonVersion) -> Json:
    """A partial update: the fields given replace the old ones wholesale."""
    update = _fields(body, features, partial=True)
    merged = {**current, **update}
    if features.drops_omitted_resources:
        for name in _UNMERGED:
            if name not in update:
                merged.pop(name, None)  # AppConversion does not merge these (docs/marathon.md §1.3)
    return merged


def public(app: Json, features: MarathonVersion) -> Json:
    """The definition as Marathon writes it: ≤ 1.4 adds ``uris``, < 0.15 has only ``uris``,
    and 1.3.0-1.4.5 name a fetch item's output file ``outputFile``."""
    if not features.has_fetch:
        return {**{k: v for k, v in app.items() if k != "fetch"},
                "uris": [artifact["uri"] for artifact in app["fetch"]]}
    shown = dict(app)
    if features.fetch_dest_field == "outputFile":
        shown["fetch"] = [
            {("outputFile" if k == "destPath" else k): v for k, v in artifact.items()}
            for artifact in app["fetch"]]
    if features.shows_uris:
        shown["uris"] = [artifact["uri"] for artifact in app["fetch"]]
    return shown
