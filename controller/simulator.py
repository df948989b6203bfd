"""A Marathon 1.10 API simulator: an in-memory model (``MarathonState``) and its HTTP facade.

It is product code, not a test double: the ``demo`` command and operators' own integration tests
run on it, as moto serves AWS users. It follows ``marathon-facts.md`` (read from Marathon's code),
quirks included: a partial update that omits ``executorResources`` drops it, ``version`` in an
update means "roll back", a 409 names the deployments that lock the app, and ``/v2/events`` is
Jetty's SSE (exact ``Accept``, CRLF framing, blank-line heartbeats, no ids, no resumption).

It schedules nothing: there are no tasks (the counts say every instance runs), and a deployment
is a timer of ``deployment_seconds`` that tests may also end by hand.

Run it alone with ``python -m controller.simulator --listen 127.0.0.1:8080 --apps 1000``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import functools
import hmac
import json
import math
import re
import signal
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple, Protocol, Self, cast
from urllib.parse import urlsplit

from aiohttp import encode_basic_auth, hdrs, web
from aiohttp.typedefs import Handler

from controller.model import version_tuple

__all__ = [
    "DEFAULT_VERSION",
    "STATE_KEY",
    "ApiError",
    "DeploymentResult",
    "Event",
    "Fault",
    "FaultKind",
    "MarathonSimulator",
    "MarathonState",
    "Scheduler",
    "Subscriber",
    "WriteRecord",
    "main",
    "seed_apps",
]

Json = dict[str, Any]
Scheduler = Callable[[float, Callable[[], object]], None]
"""``schedule(delay_seconds, callback)``: how a facade lets deployments end on their own."""

DEFAULT_VERSION: Final = "1.10.26"
_LOCAL: Final = "127.0.0.1"
_EVENT_STREAM: Final = "text/event-stream"
_DEPLOYMENT_HEADER: Final = "Marathon-Deployment-Id"
_WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOCKED: Final = (
    "App is locked by one or more deployments. Override with the option '?force=true'. "
    "View details at '/v2/deployments/<DEPLOYMENT_ID>'."
)

# Every field of RAML ``App``: the rest of a body is ignored, as 1.5+ readers ignore it.
_APP_FIELDS: Final = frozenset({
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
_MAX_VERSIONS: Final = 50  # Marathon's --zk_max_versions default: the rollback horizon
_NETWORK_MODES: Final = {"BRIDGE": "container/bridge", "HOST": "host", "USER": "container"}

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _defaults() -> Json:
    """RAML ``App`` defaults plus the empty collections GET always shows."""
    return {
        "backoffFactor": 1.15, "backoffSeconds": 1, "constraints": [], "cpus": 1,
        "dependencies": [], "disk": 0, "env": {}, "executor": "", "fetch": [], "gpus": 0,
        "healthChecks": [], "instances": 1, "killSelection": "YOUNGEST_FIRST", "labels": {},
        "maxLaunchDelaySeconds": 300, "mem": 128, "readinessChecks": [], "requirePorts": False,
        "secrets": {}, "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
    }


def _utcnow() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=4)
def _second(epoch_second: int) -> str:
    return datetime.fromtimestamp(epoch_second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def _iso(moment: datetime) -> str:
    """Marathon's timestamp format: UTC, milliseconds, ``Z`` (every event needs one: cached)."""
    return f"{_second(math.floor(moment.timestamp()))}{moment.microsecond // 1000:03d}Z"


def _canonical(app_id: str) -> str:
    """``foo/bar/`` and ``/foo/bar`` name the same app."""
    return "/" + app_id.strip("/")


@dataclass(frozen=True, slots=True)
class _Features:
    """What changed between Marathon versions (each flag cites ``marathon-facts.md``)."""

    modern_updates: bool
    """PATCH, ``partialUpdate`` and the Marathon-Deployment-Id header came in 1.4.0 (§1.3, §1.4)."""
    legacy_json: bool
    """≤ 1.4: GET shows ``uris`` beside ``fetch`` and keeps the deprecated network fields (§1.1)."""
    event_filter: bool
    """``event_type`` is honoured since 1.3.7 (§3)."""
    drops_executor_resources: bool
    """A partial update drops ``executorResources``/``resourceLimits`` it omits (1.7+, §1.3)."""

    @classmethod
    def of(cls, version: str) -> _Features:
        v = version_tuple(version)
        return cls(modern_updates=v >= (1, 4), legacy_json=v < (1, 5),
                   event_filter=v >= (1, 3, 7), drops_executor_resources=v >= (1, 7))


class ApiError(Exception):
    """What Marathon answers instead of success: an HTTP status and its JSON body."""

    def __init__(self, status: int, body: Json) -> None:
        super().__init__(f"{status} {body.get('message', '')}")
        self.status = status
        self.body = body


def _no_leader() -> ApiError:
    return ApiError(503, {"message": "Could not determine the current leader"})


def _not_found(app_id: str) -> ApiError:
    return ApiError(404, {"message": f"App '{app_id}' does not exist"})


def _invalid_json(path: str, error: str) -> ApiError:
    return ApiError(422, {"message": "Invalid JSON",
                          "details": [{"path": path, "errors": [error]}]})


def _not_valid(path: str, error: str) -> ApiError:
    return ApiError(422, {"message": "Object is not valid",
                          "details": [{"path": path, "errors": [error]}]})


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRecord:
    """One write request on ``/v2/apps…`` as a facade received it, refused or not (401, 405,
    409, injected faults …)."""

    method: str
    path: str
    body: Any
    """The parsed JSON body; the raw text if it was not JSON; ``None`` if empty."""
    client: str
    """The request's ``User-Agent``: which process wrote."""
    status: int
    at: datetime
    query: str = ""
    """The raw query string, e.g. ``force=true``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentResult:
    """What a successful PUT/PATCH/DELETE answers (``types/deploymentResult.raml``)."""

    deployment_id: str
    version: str
    created: bool = False

    def body(self) -> Json:
        return {"deploymentId": self.deployment_id, "version": self.version}


class Event(NamedTuple):
    """A published event; ``frame`` is its SSE encoding, made once for every subscriber.

    A named tuple rather than a frozen dataclass: floods create hundreds of thousands.
    """

    type: str
    payload: Json
    frame: bytes


class Subscriber(Protocol):
    """Receives every published event (filtering is its own business)."""

    def deliver(self, event: Event) -> None: ...

    def close(self) -> None:
        """The stream was cut (``disconnect_streams``, a slow consumer, shutdown)."""


@dataclass(slots=True, kw_only=True)
class _Deployment:
    id: str
    version: str
    app_id: str
    action: str | None
    """``None``: the update changed nothing, so the plan has no steps and locks no app."""
    original: Json | None
    """The definition before, for a rollback (``None``: the app did not exist)."""

    def steps(self) -> list[Json]:
        if self.action is None:
            return []
        return [{"actions": [{"action": self.action, "app": self.app_id}]}]

    def plan(self) -> Json:
        """The light plan format that deployment events carry (§3.1)."""
        return {"id": self.id, "steps": self.steps(), "version": self.version}

    def info(self) -> Json:
        """One item of ``GET /v2/deployments`` (§1.8)."""
        steps = self.steps()
        current = [{**action, "readinessCheckResults": []}
                   for step in steps[:1] for action in step["actions"]]
        return {"id": self.id, "version": self.version,
                "affectedApps": [self.app_id] if steps else [], "affectedPods": [],
                "steps": steps, "currentActions": current, "currentStep": 1 if steps else 0,
                "totalSteps": len(steps)}


FaultKind = Literal["status", "hang", "truncate"]


@dataclass(slots=True, kw_only=True, eq=False)
class Fault:
    """One planned failure for the requests whose path ``pattern`` finds (and ``method``, if set).

    ``status`` answers ``status`` instead of handling the request. ``hang`` holds the request
    for ``seconds`` (``None``: until ``release``), then handles it; with ``landed`` it handles it
    first (a write lands) and then holds the answer. ``truncate`` handles the request and sends
    the first half of the body as if it were all of it (a proxy cut it).
    """

    pattern: re.Pattern[str]
    kind: FaultKind = "status"
    method: str | None = None
    status: int = 503
    remaining: int | None = 1
    """Requests left to spoil; ``None``: every one until ``MarathonState.clear_faults``."""
    seconds: float | None = None
    landed: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def matches(self, method: str, path: str) -> bool:
        return self.method in (None, method) and self.pattern.search(path) is not None

    def release(self) -> None:
        """Let every request this fault holds go on."""
        self.released.set()

    def error(self) -> ApiError:
        return ApiError(self.status, {"message": f"simulated failure ({self.status})"})

    async def hold(self) -> None:
        """Wait ``seconds``, or until released."""
        with suppress(TimeoutError):
            async with asyncio.timeout(self.seconds):
                await self.released.wait()


# -- label selectors (LabelSelector.scala) ---------------------------------------------------

_SELECTOR_TOKEN: Final = re.compile(r"\s*(?:(?P<term>(?:\\.|[-A-Za-z0-9_.])+)|(?P<op>==|!=|[(),]))")
_ESCAPE: Final = re.compile(r"\\(.)")
_END: Final = ("end", "")


def _tokens(query: str) -> list[tuple[str, str]] | None:
    """``("term", unescaped)`` and ``("op", …)`` tokens, then ``_END``; ``None`` if unlexable."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while query[position:].strip():
        match = _SELECTOR_TOKEN.match(query, position)
        if match is None:
            return None
        term = match.group("term")
        tokens.append(("term", _ESCAPE.sub(r"\1", term)) if term is not None
                      else ("op", match.group("op")))
        position = match.end()
    return [*tokens, _END]


def _parse_label_selector(query: str) -> Callable[[Mapping[str, str]], bool]:
    """Compile Marathon's selector grammar (``LabelSelector.scala``, facts §1.1).

    Each clause is ``(key, operator, values)``; every operator needs the label to exist.
    """
    error = ApiError(422, {"message": f"Can not parse label selector {query}"})
    tokens = _tokens(query)
    if tokens is None:
        raise error
    at = 0

    def take(kind: str, value: str | None = None) -> str:
        nonlocal at
        found_kind, found = tokens[at]
        if found_kind != kind or (value is not None and found != value):
            raise error
        at += 1
        return found

    clauses: list[tuple[str, str, frozenset[str]]] = []
    while tokens[at] != _END:
        if clauses:
            take("op", ",")
        key = take("term")
        kind, operator = tokens[at]
        if kind == "op" and operator in ("==", "!="):
            take("op")
            clauses.append((key, operator, frozenset([take("term")])))
        elif kind == "term" and operator in ("in", "notin") and tokens[at + 1] == ("op", "("):
            take("term")
            take("op", "(")
            members: list[str] = []
            while tokens[at] != ("op", ")"):
                if members:
                    take("op", ",")
                members.append(take("term"))
            take("op", ")")
            clauses.append((key, operator, frozenset(members)))
        else:
            clauses.append((key, "exists", frozenset()))

    def matches(labels: Mapping[str, str]) -> bool:
        for key, operator, values in clauses:
            value = labels.get(key)
            if value is None:
                return False
            if operator in ("==", "in") and value not in values:
                return False
            if operator in ("!=", "notin") and value in values:
                return False
        return True

    return matches


# -- app definitions ---------------------------------------------------------------------------


def _artifact(item: Mapping[str, Any]) -> Json:
    """A ``fetch[]`` item with ``artifact.raml`` defaults; ``destPath`` only when given."""
    artifact = {"uri": item["uri"], "extract": item.get("extract", True),
                "executable": item.get("executable", False), "cache": item.get("cache", False)}
    if item.get("destPath") is not None:
        artifact["destPath"] = item["destPath"]
    return artifact


def _check_types(fields: Mapping[str, Any]) -> None:
    """Reject the wrong JSON types in the fields this project cares about (Play's 422)."""
    for name, expected, error in (("labels", dict, "error.expected.jsobject"),
                                  ("env", dict, "error.expected.jsobject"),
                                  ("container", dict, "error.expected.jsobject"),
                                  ("fetch", list, "error.expected.jsarray"),
                                  ("uris", list, "error.expected.jsarray")):
        if name in fields and not isinstance(fields[name], expected):
            raise _invalid_json(f"/{name}", error)
    for index, item in enumerate(fields.get("fetch", ())):
        if not isinstance(item, dict) or not isinstance(item.get("uri"), str):
            raise _invalid_json(f"/fetch({index})/uri", "error.path.missing")
    for index, uri in enumerate(fields.get("uris", ())):
        if not isinstance(uri, str):
            raise _invalid_json(f"/uris({index})", "error.expected.jsstring")
    for key, value in fields.get("labels", {}).items():
        if not isinstance(value, str):
            raise _invalid_json(f"/labels/{key}", "error.expected.jsstring")
    instances = fields.get("instances", 0)
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 0:
        raise _not_valid("/instances", "got " + json.dumps(instances) + ", expected 0 or more")


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


def _action(current: Json | None, target: Json | None) -> str | None:
    """The deployment action a change needs; ``None`` when nothing really changed (§5.3)."""
    if current is None:
        return None if target is None else "StartApplication"
    if target is None:
        return "StopApplication"
    before, after = _config(current), _config(target)
    if before == after:
        return None
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    return "ScaleApplication" if changed == {"instances"} else "RestartApplication"


def _embedded(embed: Iterable[str]) -> str:
    """The JSON members that ``embed`` values add beyond counts and deployments, pre-encoded."""
    wanted = {e.removeprefix("apps.").removeprefix("app.") for e in embed}
    members = []
    if wanted & {"tasks", "failures"}:
        members.append('"tasks":[]')
    if "readiness" in wanted:
        members.append('"readinessCheckResults":[]')
    return ",".join(members)


def _splice(obj: str, members: str) -> str:
    """Add pre-encoded members to an encoded JSON object (cheap for 10,000 cached apps)."""
    return obj[:-1] + "," + members + "}" if members else obj


class MarathonState:
    """Marathon's apps, deployments and event bus, in memory; no I/O, driven directly by tests.

    Operations raise ``ApiError`` with the status and body Marathon would answer. A deployment
    ends after ``deployment_seconds`` once a facade attached its scheduler (``None``: only when a
    test calls ``finish_deployment``). ``now`` must return aware datetimes.
    """

    def __init__(
        self,
        *,
        version: str = DEFAULT_VERSION,
        now: Callable[[], datetime] = _utcnow,
        deployment_seconds: float | None = 0.0,
    ) -> None:
        self._version = version
        self.features = _Features.of(version)
        self.deployment_seconds = deployment_seconds
        self.writes: list[WriteRecord] = []
        """Every write request a facade received; direct calls on the state are not requests."""
        self.unavailable = False
        """When set, every request gets 503, as from a Marathon without a leader."""
        self._now = now
        self._last_version: datetime | None = None
        self._apps: dict[str, Json] = {}
        self._history: dict[str, dict[str, Json]] = {}
        self._wire: dict[str, str] = {}
        """Each app as ``GET /v2/apps`` shows it, encoded; dropped whenever it would change."""
        self._deployments: dict[str, _Deployment] = {}
        self._locks: dict[str, list[str]] = {}
        self._subscribers: tuple[Subscriber, ...] = ()
        self._faults: list[Fault] = []
        self._schedulers: list[Scheduler] = []
        """Facades that can end deployments; the first does, the next takes over from it."""

    @property
    def version(self) -> str:
        """The Marathon version simulated (``/v2/info``); ``features`` says what it changes."""
        return self._version

    # -- apps ----------------------------------------------------------------------------------

    def add_app(
        self, app: Mapping[str, Any], *, force: bool = False, client_ip: str = _LOCAL,
    ) -> Json:
        """``POST /v2/apps``: create and deploy; returns the app as the 201 body shows it."""
        definition = self._complete(app, self._new_id(app))
        app_id = definition["id"]
        if app_id in self._apps:
            raise ApiError(409, {"message": f"An app with id [{app_id}] already exists."})
        deployment = self._change(app_id, definition, force=force, event_uri="/v2/apps",
                                  client_ip=client_ip)
        shown = self._public(self._apps[app_id])
        del shown["versionInfo"]  # the POST answer has none (facts §2.4)
        return {**shown, "tasksStaged": 0, "tasksRunning": 0, "tasksHealthy": 0,
                "tasksUnhealthy": 0, "deployments": [{"id": deployment.id}]}

    def load_apps(self, apps: Iterable[Mapping[str, Any]]) -> None:
        """Put apps in place as if deployed long ago: no deployment, event or write record."""
        version = self._next_version()
        for app in apps:
            app_id = self._new_id(app)
            if app_id in self._apps:
                raise ApiError(409, {"message": f"An app with id [{app_id}] already exists."})
            self._store(app_id, self._complete(app, app_id), version, "StartApplication")

    def get_app(self, app_id: str, *, embed: Iterable[str] = ()) -> Json:
        """``GET /v2/apps/{id}``'s ``app``: always with counts, deployments and tasks."""
        app_id = _canonical(app_id)
        if app_id not in self._apps:
            raise _not_found(app_id)
        extra = _embedded([*embed, "tasks"])
        return cast(Json, json.loads(_splice(self._encoded(app_id), extra)))

    def list_apps(
        self, *, label: str | None = None, id: str | None = None, cmd: str | None = None,
        embed: Iterable[str] = (),
    ) -> list[Json]:
        """``GET /v2/apps``' list (fresh copies, safe to change)."""
        body = self.list_apps_json(label=label, id=id, cmd=cmd, embed=embed)
        return cast(list[Json], json.loads(body)["apps"])

    def list_apps_json(
        self, *, label: str | None = None, id: str | None = None, cmd: str | None = None,
        embed: Iterable[str] = (),
    ) -> str:
        """The ``GET /v2/apps`` body, encoded from per-app caches (what the facade serves).

        ``label`` is a selector, ``id`` and ``cmd`` case-insensitive substrings; all ANDed.
        """
        selector = _parse_label_selector(label) if label else None
        id_part = id.lower() if id else None
        cmd_part = cmd.lower() if cmd else None
        extra = _embedded(embed)
        chosen = [
            _splice(self._encoded(app_id), extra)
            for app_id, app in self._apps.items()
            if (selector is None or selector(app["labels"]))
            and (id_part is None or id_part in app_id.lower())
            and (cmd_part is None or cmd_part in app.get("cmd", "").lower())
        ]
        return '{"apps":[' + ",".join(chosen) + "]}"

    def update_app(
        self,
        app_id: str,
        body: Any,
        *,
        partial: bool = True,
        force: bool = False,
        allow_creation: bool = True,
        client_ip: str = _LOCAL,
    ) -> DeploymentResult:
        """``PUT`` (``allow_creation``) or ``PATCH /v2/apps/{id}``, with Marathon's semantics.

        Partial: the fields given replace the old ones wholesale, ``uris`` replaces ``fetch``,
        and ``version`` alone rolls back to that version. Not partial: a complete replacement,
        omitted fields get defaults. A missing app is created from the body (201).
        """
        app_id = _canonical(app_id)
        if not isinstance(body, Mapping):
            raise _invalid_json("", "error.expected.jsobject")
        current = self._apps.get(app_id)
        if current is None and not allow_creation:
            raise _not_found(app_id)
        rollback = body.get("version") if partial else None
        if rollback is not None:
            if any(body.get(k) is not None for k in _APP_FIELDS - {"id", "version"}):
                raise _not_valid("/version",
                                 "The 'version' field may only be combined with the 'id' field.")
            target = self._history.get(app_id, {}).get(rollback)
            if target is None:
                raise ApiError(404, {"message": f"App '{app_id}' does not exist in version "
                                                f"{rollback}"})
        elif current is None or not partial:
            target = self._complete(body, self._valid_id(app_id))
        else:
            target = self._merge(current, body)
        deployment = self._change(app_id, target, force=force, event_uri=f"/v2/apps{app_id}",
                                  client_ip=client_ip)
        return DeploymentResult(deployment_id=deployment.id, version=deployment.version,
                                created=current is None)

    def delete_app(self, app_id: str, *, force: bool = True) -> DeploymentResult:
        """``DELETE /v2/apps/{id}``; ``app_terminated_event`` comes when the deployment ends."""
        app_id = _canonical(app_id)
        if app_id not in self._apps:
            raise _not_found(app_id)
        deployment = self._change(app_id, None, force=force)
        return DeploymentResult(deployment_id=deployment.id, version=deployment.version)

    # -- deployments ---------------------------------------------------------------------------

    def list_deployments(self) -> list[Json]:
        """``GET /v2/deployments``."""
        return [deployment.info() for deployment in self._deployments.values()]

    def delete_deployment(self, deployment_id: str, *, force: bool = False
                          ) -> DeploymentResult | None:
        """``DELETE /v2/deployments/{id}``: cancel; unless ``force``, deploy the old definition."""
        deployment = self._deployments.get(deployment_id)
        if deployment is None:
            raise ApiError(404, {"message": f"DeploymentPlan {deployment_id} does not exist"})
        self._end(deployment_id, "deployment_failed")
        if force:
            return None
        rollback = self._change(deployment.app_id, deployment.original, force=True)
        return DeploymentResult(deployment_id=rollback.id, version=rollback.version)

    def finish_deployment(self, deployment_id: str) -> None:
        """End a running deployment successfully (``KeyError`` if it is not running)."""
        if not self._end(deployment_id, "deployment_success"):
            raise KeyError(deployment_id)

    def finish_all_deployments(self) -> None:
        for deployment_id in list(self._deployments):
            self._end(deployment_id, "deployment_success")

    def attach_scheduler(self, schedule: Scheduler) -> None:
        """Let ``schedule`` end deployments on their own, unless another one already does
        (then it takes over when that one detaches)."""
        self._schedulers.append(schedule)
        if len(self._schedulers) == 1:
            self._schedule_all()

    def detach_scheduler(self, schedule: Scheduler) -> None:
        """Stop using ``schedule``; a facade still attached ends the running deployments."""
        was_active = self._schedulers[:1] == [schedule]
        self._schedulers = [s for s in self._schedulers if s != schedule]
        if was_active:
            self._schedule_all()  # the detached facade cancels its own timers

    def _schedule_all(self) -> None:
        for deployment in self._deployments.values():
            self._schedule_end(deployment)

    # -- events --------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = (*self._subscribers, subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

    def publish(self, event_type: str, payload: Mapping[str, Any]) -> None:
        """Deliver an event to every subscriber, encoded once.

        ``eventType`` and ``timestamp`` are appended unless the payload has them.
        """
        subscribers = self._subscribers
        if not subscribers:
            return
        body = dict(payload)
        body.setdefault("eventType", event_type)
        body.setdefault("timestamp", _iso(self._now()))
        frame = f"event: {event_type}\r\ndata: {_dumps(body)}\r\n\r\n".encode()
        event = Event(event_type, body, frame)
        for subscriber in subscribers:
            subscriber.deliver(event)

    trigger_event = publish
    """Inject any event, as if Marathon sent it (e.g. a ``status_update_event`` flood)."""

    def disconnect_streams(self) -> None:
        """Cut every subscriber, as a Marathon restart or leader change would."""
        for subscriber in self._subscribers:
            subscriber.close()

    # -- faults and the write log --------------------------------------------------------------

    def fail_next(
        self, target: str, status: int = 503, count: int | None = 1, *, method: str | None = None,
    ) -> Fault:
        """Answer ``status`` to the next ``count`` requests whose path matches ``target``.

        ``target`` is a regex searched in the request path, so an app id such as ``/team/web``
        works as it is (it also matches ``/team/web-2``; end it with ``$`` to be exact).
        ``count=None`` fails every matching request until ``clear_faults``.
        """
        return self.inject(target, "status", status=status, count=count, method=method)

    def inject(
        self, target: str, kind: FaultKind, *, method: str | None = None, status: int = 503,
        count: int | None = 1, seconds: float | None = None, landed: bool = False,
    ) -> Fault:
        """Plan a ``Fault`` of ``kind`` for requests whose path matches the regex ``target``.

        Faults are tried in the order they were planned; each request uses up at most one.
        Keep the returned fault to ``release`` the requests a ``hang`` holds.
        """
        fault = Fault(pattern=re.compile(target), kind=kind, method=method, status=status,
                      remaining=count, seconds=seconds, landed=landed)
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Drop every planned fault and let held requests go on (``unavailable`` stays)."""
        for fault in self._faults:
            fault.release()
        self._faults.clear()

    def claim_fault(self, method: str, path: str) -> Fault | None:
        """The fault this request meets, if any (each request uses up one). The facade asks
        this after ``unavailable``."""
        return self._use_fault(method, path, ("status", "hang", "truncate"))

    def take_fault(self, method: str, path: str) -> ApiError | None:
        """The failure planned for this request, if any (each planned one is used up).

        Failures are ``unavailable`` and ``status`` faults; other kinds are left for
        ``claim_fault``.
        """
        if self.unavailable:
            return _no_leader()
        fault = self._use_fault(method, path, ("status",))
        return fault.error() if fault is not None else None

    def _use_fault(self, method: str, path: str, kinds: tuple[FaultKind, ...]) -> Fault | None:
        for fault in self._faults:
            if fault.kind in kinds and fault.matches(method, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def record_write(self, method: str, path: str, body: Any, client: str, status: int,
                     query: str = "") -> None:
        self.writes.append(WriteRecord(method=method, path=path, body=body, client=client,
                                       status=status, at=self._now(), query=query))

    # -- internals -----------------------------------------------------------------------------

    def _next_version(self) -> str:
        """Now, to the millisecond, but always later than the last version handed out."""
        moment = self._now().astimezone(UTC)
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        if self._last_version is not None and moment <= self._last_version:
            moment = self._last_version + timedelta(milliseconds=1)
        self._last_version = moment
        return _iso(moment)

    def _new_id(self, app: Mapping[str, Any]) -> str:
        if not isinstance(app, Mapping):
            raise _invalid_json("", "error.expected.jsobject")
        if app.get("id") is None:
            raise _invalid_json("/id", "error.path.missing")
        if not isinstance(app["id"], str):
            raise _invalid_json("/id", "error.expected.jsstring")
        return self._valid_id(app["id"])

    @staticmethod
    def _valid_id(raw: str) -> str:
        app_id = _canonical(raw)
        if app_id == "/" or not all(_ID_SEGMENT.fullmatch(s) for s in app_id[1:].split("/")):
            raise _not_valid("/id", f"must fully match regular expression '{_ID_SEGMENT.pattern}'")
        return app_id

    def _fields(self, body: Mapping[str, Any], *, partial: bool) -> Json:
        """The App fields of a body, copied and normalised the way Marathon normalises them."""
        fields = {k: copy.deepcopy(v) for k, v in body.items()
                  if k in _APP_FIELDS and k not in _SERVER_FIELDS and v is not None}
        _check_types(fields)
        uris: list[str] = fields.pop("uris", None) or []
        if uris and fields.get("fetch"):
            if self.features.legacy_json:
                raise ApiError(400, {"message": "Invalid JSON", "details": [
                    {"path": "", "errors": ["You cannot specify both uris and fetch fields"]}]})
            if partial:  # NormalizationException has no mapper, so it is a 500 (§2.2)
                raise ApiError(500, {"message": "cannot specify both uris and fetch fields"})
            raise _not_valid("/uris", "may not be set in conjunction with fetch")
        if uris:
            fields["fetch"] = [
                {"uri": uri, "extract": self.features.legacy_json
                 or urlsplit(uri).path.endswith(_EXTRACTABLE)} for uri in uris]
        if "fetch" in fields:
            fields["fetch"] = [_artifact(item) for item in fields["fetch"]]
        if "container" in fields:
            fields["container"] = _container(fields["container"])
        if not self.features.legacy_json:
            _modernise_networking(fields)
        return fields

    def _complete(self, body: Mapping[str, Any], app_id: str) -> Json:
        """A full definition: the body over the defaults (create, or replace when not partial)."""
        return {"id": app_id, **_defaults(), **self._fields(body, partial=False)}

    def _merge(self, current: Json, body: Mapping[str, Any]) -> Json:
        update = self._fields(body, partial=True)
        merged = {**current, **update}
        if self.features.drops_executor_resources:
            for name in ("executorResources", "resourceLimits"):
                if name not in update:
                    merged.pop(name, None)  # AppConversion does not merge these (facts §1.3)
        return merged

    def _public(self, app: Json) -> Json:
        """The definition as Marathon writes it (≤ 1.4 adds ``uris``)."""
        if self.features.legacy_json:
            return {**app, "uris": [artifact["uri"] for artifact in app["fetch"]]}
        return dict(app)

    def _encoded(self, app_id: str) -> str:
        text = self._wire.get(app_id)
        if text is None:
            app = self._public(self._apps[app_id])
            running = app["instances"]
            text = _dumps({**app, "tasksStaged": 0, "tasksRunning": running,
                           "tasksHealthy": running if app["healthChecks"] else 0,
                           "tasksUnhealthy": 0,
                           "deployments": [{"id": d} for d in self._locks.get(app_id, ())]})
            self._wire[app_id] = text
        return text

    def _store(self, app_id: str, target: Json | None, version: str, action: str) -> None:
        self._wire.pop(app_id, None)
        if target is None:
            del self._apps[app_id]
            self._history.pop(app_id, None)
            return
        previous = self._apps.get(app_id)
        config_changed_at = (previous["versionInfo"]["lastConfigChangeAt"]
                             if previous is not None and action == "ScaleApplication" else version)
        version_info = {"lastScalingAt": version, "lastConfigChangeAt": config_changed_at}
        stored = {**target, "version": version, "versionInfo": version_info}
        self._apps[app_id] = stored
        history = self._history.setdefault(app_id, {})
        history[version] = stored
        if len(history) > _MAX_VERSIONS:
            del history[next(iter(history))]

    def _change(
        self, app_id: str, target: Json | None, *, force: bool, event_uri: str | None = None,
        client_ip: str = _LOCAL,
    ) -> _Deployment:
        """Make ``target`` (``None``: gone) the app's definition and deploy the difference.

        A no-op still gets a (step-less) deployment with a new plan version, and
        ``api_post_event`` when it came from POST/PUT/PATCH (``event_uri``); only a real change
        needs the app's lock and gets a new app version.
        """
        current = self._apps.get(app_id)
        action = _action(current, target)
        if action is not None:
            self._take_lock(app_id, force=force)
        version = self._next_version()
        if action is not None:
            self._store(app_id, target, version, action)
        if event_uri is not None:
            self.publish("api_post_event", {"clientIp": client_ip, "uri": event_uri,
                                            "appDefinition": self._public(self._apps[app_id])})
        deployment = _Deployment(id=str(uuid.uuid4()), version=version, app_id=app_id,
                                 action=action, original=current)
        self._deployments[deployment.id] = deployment
        if action is not None:
            self._locks.setdefault(app_id, []).append(deployment.id)
            self._wire.pop(app_id, None)
            self.publish("deployment_info", {"plan": deployment.plan(),
                                             "currentStep": deployment.steps()[0]})
        self._schedule_end(deployment)
        return deployment

    def _take_lock(self, app_id: str, *, force: bool) -> None:
        """409 while deployments run on the app; ``force`` cancels them instead."""
        locking = self._locks.get(app_id)
        if not locking:
            return
        if not force:
            raise ApiError(409, {"message": _LOCKED, "deployments": [{"id": d} for d in locking]})
        for deployment_id in list(locking):
            self._end(deployment_id, "deployment_failed")

    def _schedule_end(self, deployment: _Deployment) -> None:
        if self._schedulers and self.deployment_seconds is not None:
            deployment_id = deployment.id
            self._schedulers[0](self.deployment_seconds,
                           lambda: self._end(deployment_id, "deployment_success"))

    def _end(self, deployment_id: str, outcome: str) -> bool:
        """Finish or cancel a deployment; ``False`` if it is not running (any more)."""
        deployment = self._deployments.pop(deployment_id, None)
        if deployment is None:
            return False
        if deployment.action is not None:
            locks = self._locks[deployment.app_id]
            locks.remove(deployment_id)
            if not locks:
                del self._locks[deployment.app_id]
            self._wire.pop(deployment.app_id, None)
            if outcome == "deployment_success":
                if deployment.action == "StopApplication":
                    self.publish("app_terminated_event", {"appId": deployment.app_id})
                self.publish("deployment_step_success", {"plan": deployment.plan(),
                                                         "currentStep": deployment.steps()[0]})
        self.publish(outcome, {"id": deployment.id, "plan": deployment.plan()})
        return True


# -- HTTP facade -----------------------------------------------------------------------------

STATE_KEY: Final = web.AppKey("marathon_state", MarathonState)
"""Where a facade's ``web.Application`` keeps its state (for ``aiohttp_client(sim.app)`` users)."""

_EVENTS_405: Final = (
    '<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=ISO-8859-1"/>\n'
    "<title>Error 405 </title>\n</head>\n<body>\n<h2>HTTP ERROR: 405</h2>\n"
    "<p>Problem accessing /v2/events. Reason:\n<pre>    HTTP method GET is not supported by this "
    "URL</pre></p>\n</body>\n</html>\n"
)


class _EventStream:
    """One ``/v2/events`` connection: a bounded queue of encoded frames and its writer.

    Frames queue up synchronously and leave in one write per wake-up, so a burst costs one
    socket write. Past ``max_outstanding`` queued frames the stream is closed, as Marathon
    closes a slow consumer; so is a producer that publishes that many without yielding.
    """

    def __init__(self, response: web.StreamResponse, transport: asyncio.Transport | None,
                 event_types: frozenset[str] | None, max_outstanding: int) -> None:
        self._response = response
        self._transport = transport
        self._event_types = event_types
        self._max_outstanding = max_outstanding
        self._pending: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self._writing = False
        self._cut = False

    def deliver(self, event: Event) -> None:
        if self._closed or (self._event_types is not None and event.type not in self._event_types):
            return
        if len(self._pending) >= self._max_outstanding:
            self.close()
            return
        self._pending.append(event.frame)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._writing and self._transport is not None:
            self._transport.abort()  # a write waiting on a full socket would never see the flag

    def cut_mid_event(self) -> None:
        """Send half of the next frame, then drop the connection."""
        self._cut = True

    async def _write_half(self, frame: bytes) -> None:
        self._closed = True
        await self._response.write(frame[:len(frame) // 2])
        if self._transport is not None:
            self._transport.close()  # flushes the half frame; no chunked-encoding end follows

    async def run(self, heartbeat_seconds: float) -> None:
        """Write frames until closed, with a bare ``\\r\\n`` every ``heartbeat_seconds``."""
        loop = asyncio.get_running_loop()
        beat_at = loop.time() + heartbeat_seconds
        while not self._closed:
            if not self._pending:
                self._wake.clear()
                with suppress(TimeoutError):
                    async with asyncio.timeout_at(beat_at):
                        await self._wake.wait()
                if self._closed:
                    return
            if self._cut and self._pending:
                await self._write_half(self._pending[0])
                return
            chunk = b"".join(self._pending)
            self._pending.clear()
            if loop.time() >= beat_at:
                chunk += b"\r\n"
                beat_at = loop.time() + heartbeat_seconds
            if not chunk:
                continue  # the timer fired within the clock's resolution, a hair early
            self._writing = True
            try:
                await self._response.write(chunk)
            finally:
                self._writing = False


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    return default if value is None else value.lower() == "true"


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.text())
    except ValueError as e:
        raise ApiError(400, {"message": "Invalid JSON", "details": str(e)}) from None


def _json(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
          ) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


class MarathonSimulator:
    """The HTTP API over a ``MarathonState``: ``async with MarathonSimulator(state) as sim``.

    ``credentials`` enables HTTP basic auth and ``token`` DC/OS ``Authorization: token=…`` auth
    (either is accepted) on every path. With ``leader_url`` this instance is a standby: it
    redirects ``/v2/events`` there and answers the rest itself, which models proxying when it
    shares the leader's state. Every response names the leader in ``X-Marathon-Leader``.
    """

    def __init__(
        self,
        state: MarathonState | None = None,
        *,
        credentials: tuple[str, str] | None = None,
        token: str | None = None,
        leader_url: str | None = None,
        heartbeat_seconds: float = 10.0,
        max_outstanding: int = 1024,
    ) -> None:
        self.state = state if state is not None else MarathonState()
        self.credentials = credentials
        self.token = token
        self.leader_url = leader_url.rstrip("/") if leader_url else None
        self.heartbeat_seconds = heartbeat_seconds
        self.max_outstanding = max_outstanding
        self.app = self._make_app()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: set[_EventStream] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def url(self) -> str:
        """``http://host:port`` once started."""
        if self._url is None:
            raise RuntimeError("the simulator is not started")
        return self._url

    async def start(self, host: str = _LOCAL, port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); returns ``url``."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self._url = f"http://[{bound_host}]:{bound_port}" if ":" in bound_host else (
            f"http://{bound_host}:{bound_port}")
        return self._url

    async def stop(self) -> None:
        """Close every event stream, then the server."""
        if self._runner is not None:
            runner, self._runner, self._url = self._runner, None, None
            await runner.cleanup()

    async def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down ``down_seconds``, and serve again on the same address and state
        (a Marathon restart: the state survives in ZooKeeper, every event stream is cut)."""
        split = urlsplit(self.url)
        host, port = split.hostname or _LOCAL, split.port or 0
        await self.stop()
        await asyncio.sleep(down_seconds)
        self.app = self._make_app()  # an aiohttp application runs once
        await self.start(host, port)

    def follow(self, leader_url: str | None) -> None:
        """Become a standby of ``leader_url``, or the leader with ``None`` (a leader change).

        A leader that steps down cuts its event streams; its clients reconnect and are
        redirected to the new leader.
        """
        self.leader_url = leader_url.rstrip("/") if leader_url else None
        if self.leader_url is not None:
            for stream in list(self._streams):
                stream.close()

    def cut_streams_mid_event(self) -> None:
        """Cut each open event stream halfway through the next event it sends.

        The client gets half a frame and then a broken connection, so that event is lost
        to it (only a relist can find what it named).
        """
        for stream in self._streams:
            stream.cut_mid_event()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- wiring --------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_writes, self._answer_errors,
                                           self._authenticate, self._inject_faults])
        app[STATE_KEY] = self.state
        router = app.router
        router.add_get("/ping", self._ping)
        router.add_get("/v2/info", self._info)
        router.add_get("/v2/leader", self._leader)
        router.add_get("/v2/events", self._events, allow_head=False)
        router.add_get("/v2/apps", self._list_apps)
        router.add_post("/v2/apps", self._create_app)
        router.add_get("/v2/apps/{id:.+}", self._get_app)
        router.add_put("/v2/apps/{id:.+}", self._put_app)
        if self.state.features.modern_updates:
            router.add_patch("/v2/apps/{id:.+}", self._patch_app)
        router.add_delete("/v2/apps/{id:.+}", self._delete_app)
        router.add_get("/v2/deployments", self._list_deployments)
        router.add_delete("/v2/deployments/{id}", self._delete_deployment)
        app.on_response_prepare.append(self._name_leader)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self.state.attach_scheduler(self._schedule)

    async def _on_shutdown(self, app: web.Application) -> None:
        for stream in list(self._streams):
            stream.close()

    async def _on_cleanup(self, app: web.Application) -> None:
        self.state.detach_scheduler(self._schedule)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _schedule(self, delay: float, callback: Callable[[], object]) -> None:
        assert self._loop is not None  # attached in _on_startup

        def fire() -> None:
            self._timers.discard(handle)
            callback()

        handle = self._loop.call_later(delay, fire)
        self._timers.add(handle)

    def _leader_address(self, request: web.Request) -> str:
        return urlsplit(self.leader_url).netloc if self.leader_url else request.host

    async def _name_leader(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Marathon-Leader"] = (
            self.leader_url or f"{request.scheme}://{request.host}")

    @web.middleware
    async def _record_writes(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Log every write on ``/v2/apps…`` with its final status, refused ones included."""
        if request.method not in _WRITE_METHODS or not request.path.startswith("/v2/apps"):
            return await handler(request)
        text = await request.text()
        body: Any = None
        if text:
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            self.state.record_write(request.method, request.path, body,
                                    request.headers.get(hdrs.USER_AGENT, ""), status,
                                    request.query_string)

    @web.middleware
    async def _answer_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return _json(e.body, status=e.status)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._authorised(request.headers.get(hdrs.AUTHORIZATION)):
            return await handler(request)
        challenge = {"WWW-Authenticate": 'Basic realm="Mesosphere"'} if self.credentials else {}
        return _json({"message": "Invalid username or password."}, status=401, headers=challenge)

    def _authorised(self, header: str | None) -> bool:
        if self.credentials is None and self.token is None:
            return True
        accepted = [f"token={self.token}"] if self.token is not None else []
        if self.credentials is not None:
            accepted.append(encode_basic_auth(*self.credentials))
        given = (header or "").encode()
        return any(hmac.compare_digest(given, value.encode()) for value in accepted)

    @web.middleware
    async def _inject_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.state.unavailable:
            raise _no_leader()
        fault = self.state.claim_fault(request.method, request.path)
        if fault is None:
            return await handler(request)
        if fault.kind == "status":
            raise fault.error()
        hang = fault.kind == "hang"
        if hang and not fault.landed:
            await fault.hold()
        response = await handler(request)
        if hang and fault.landed:
            await fault.hold()
        if fault.kind == "truncate" and isinstance(response, web.Response) and response.body:
            body = cast(bytes, response.body)
            response.body = body[:len(body) // 2]
        return response

    def _deployed(self, result: DeploymentResult, status: int) -> web.Response:
        headers = ({_DEPLOYMENT_HEADER: result.deployment_id}
                   if self.state.features.modern_updates else None)
        return _json(result.body(), status=status, headers=headers)

    # -- handlers ------------------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def _info(self, request: web.Request) -> web.Response:
        own = request.url
        return _json({
            "name": "marathon", "version": self.state.version, "buildref": "simulator",
            "elected": self.leader_url is None, "leader": self._leader_address(request),
            "frameworkId": "00000000-0000-0000-0000-000000000000-0000",
            "marathon_config": {"checkpoint": True, "executor": "//cmd", "features": [],
                                "framework_name": "marathon", "ha": True, "hostname": own.host,
                                "master": "zk://localhost:2181/mesos", "mesos_role": "*",
                                "mesos_user": "root", "webui_url": str(own.origin())},
            "zookeeper_config": {"zk": "zk://localhost:2181/marathon", "zk_timeout": 10000},
            "http_config": {"http_port": own.port, "https_port": 8443},
        })

    async def _leader(self, request: web.Request) -> web.Response:
        return _json({"leader": self._leader_address(request)})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Jetty's ``EventSourceServlet`` as Marathon uses it (facts §3)."""
        if self.leader_url is not None:
            query = f"?{request.query_string}" if request.query_string else ""
            raise web.HTTPFound(f"{self.leader_url}/v2/events{query}")
        if _EVENT_STREAM not in request.headers.getall(hdrs.ACCEPT, ()):
            return web.Response(status=405, text=_EVENTS_405, content_type="text/html")
        wanted = request.query.getall("event_type", ())
        event_types = frozenset(wanted) if wanted and self.state.features.event_filter else None
        response = web.StreamResponse(
            headers={hdrs.CONTENT_TYPE: f"{_EVENT_STREAM};charset=UTF-8"})
        response.force_close()
        await response.prepare(request)
        stream = _EventStream(response, request.transport, event_types, self.max_outstanding)
        remote = {"remoteAddress": request.remote or ""}
        self._streams.add(stream)
        self.state.subscribe(stream)
        try:
            self.state.publish("event_stream_attached", remote)
            await stream.run(self.heartbeat_seconds)
        except ConnectionError:
            pass  # the client went away
        finally:
            self.state.unsubscribe(stream)
            self._streams.discard(stream)
            self.state.publish("event_stream_detached", remote)
        return response

    async def _list_apps(self, request: web.Request) -> web.Response:
        query = request.query
        body = self.state.list_apps_json(label=query.get("label"), id=query.get("id"),
                                         cmd=query.get("cmd"), embed=query.getall("embed", ()))
        return web.Response(text=body, content_type="application/json")

    async def _create_app(self, request: web.Request) -> web.Response:
        app = self.state.add_app(await _json_body(request), force=_flag(request, "force", False),
                                 client_ip=request.remote or "")
        deployment_id = app["deployments"][0]["id"]
        # Response.created(URI(app.id)): Jersey resolves the bare id against the server root.
        headers = {"Location": f"{request.url.origin()}{app['id']}"}
        if self.state.features.modern_updates:
            headers[_DEPLOYMENT_HEADER] = deployment_id
        return _json(app, status=201, headers=headers)

    async def _get_app(self, request: web.Request) -> web.Response:
        app = self.state.get_app(request.match_info["id"], embed=request.query.getall("embed", ()))
        return _json({"app": app})

    async def _put_app(self, request: web.Request) -> web.Response:
        # ≤ 1.3 had no partialUpdate: PUT was always patch-like.
        partial = (_flag(request, "partialUpdate", True)
                   if self.state.features.modern_updates else True)
        result = self.state.update_app(
            request.match_info["id"], await _json_body(request), partial=partial,
            force=_flag(request, "force", False), client_ip=request.remote or "")
        return self._deployed(result, 201 if result.created else 200)

    async def _patch_app(self, request: web.Request) -> web.Response:
        result = self.state.update_app(
            request.match_info["id"], await _json_body(request), partial=True,
            force=_flag(request, "force", False), allow_creation=False,
            client_ip=request.remote or "")
        return self._deployed(result, 200)

    async def _delete_app(self, request: web.Request) -> web.Response:
        result = self.state.delete_app(request.match_info["id"],
                                       force=_flag(request, "force", True))
        return self._deployed(result, 200)

    async def _list_deployments(self, request: web.Request) -> web.Response:
        return _json(self.state.list_deployments())

    async def _delete_deployment(self, request: web.Request) -> web.Response:
        result = self.state.delete_deployment(request.match_info["id"],
                                              force=_flag(request, "force", False))
        if result is None:
            return web.Response(status=202)
        return self._deployed(result, 200)


# -- seeding and the command line ------------------------------------------------------------

_PUBLIC_IMAGES: Final = ("nginx:1.25", "python:3.12-slim", "redis:7.2", "busybox:1.36",
                         "postgres:16")


def seed_apps(
    state: MarathonState,
    count: int,
    *,
    opted_in_fraction: float = 0.1,
    registry: str = "registry.example.com:5000",
    label: str = "pullsecret.enabled",
) -> list[str]:
    """Load ``count`` deterministic Docker apps across 20 teams; returns their ids.

    Opted-in apps (``label: "true"``, evenly spread) pull from ``registry``; the others use
    public images. Every 7th app already fetches an artifact of its own.
    """
    apps: list[Json] = []
    for i in range(count):
        team = f"team-{i % 20:02d}"
        opted_in = int((i + 1) * opted_in_fraction) > int(i * opted_in_fraction)
        image = (f"{registry}/{team}/app-{i:05d}:1.0" if opted_in
                 else _PUBLIC_IMAGES[i % len(_PUBLIC_IMAGES)])
        app: Json = {
            "id": f"/{team}/app-{i:05d}", "instances": 1 + i % 3, "cpus": 0.1, "mem": 64,
            "container": {"type": "DOCKER", "docker": {"image": image}},
            "labels": {"team": team, **({label: "true"} if opted_in else {})},
        }
        if i % 7 == 0:
            app["fetch"] = [{"uri": f"https://artifacts.example.com/{team}/config-{i}.tgz"}]
        apps.append(app)
    state.load_apps(apps)
    return [app["id"] for app in apps]


def _listen_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


async def _serve(args: argparse.Namespace) -> int:
    state = MarathonState(version=args.marathon_version,
                          deployment_seconds=args.deployment_seconds)
    seed_apps(state, args.apps)
    host, port = args.listen
    simulator = MarathonSimulator(state, heartbeat_seconds=args.heartbeat_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await simulator.start(host, port)
    try:
        print(f"marathon simulator {state.version} listening on {simulator.url}", flush=True)
        await stop.wait()
    finally:
        await simulator.stop()
    return 0


def main(argv: Sequence[str] | None = None,
         prog: str = "pullsecret-controller simulator") -> int:
    """Run the simulator as a process until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve a simulated Marathon API.",
        epilog=f"example:\n  {prog} --listen 127.0.0.1:8080 --apps 100",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=_listen_address, default=(_LOCAL, 8080),
                        metavar="HOST:PORT", help="where to listen (default 127.0.0.1:8080)")
    parser.add_argument("--apps", type=int, default=0, help="seed this many generated apps")
    parser.add_argument("--heartbeat-seconds", type=float, default=10.0,
                        help="event stream heartbeat period (Marathon: 10)")
    parser.add_argument("--deployment-seconds", type=float, default=0.0,
                        help="how long each deployment runs")
    parser.add_argument("--marathon-version", default=DEFAULT_VERSION,
                        help=f"the version to simulate (default {DEFAULT_VERSION})")
    return asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(prog="python -m controller.simulator"))
