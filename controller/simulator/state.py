"""Marathon's apps, deployments and event bus, in memory: the model the HTTP facade serves.

``MarathonState`` keeps the apps, their versions and the groups here; it runs deployments
with ``deployer``, publishes with ``events``' bus, and plans faults and logs writes with
``faults``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from controller.simulator.agent import Agent
from controller.simulator.apps import (
    APP_FIELDS,
    complete,
    embedded,
    merge,
    new_id,
    public,
    splice,
    valid_id,
)
from controller.simulator.deployer import Deployer
from controller.simulator.deployments import Deployment, DeploymentResult
from controller.simulator.events import Subscriber
from controller.simulator.faults import Fault, FaultsAndWrites, WriteRecord
from controller.simulator.groups import (
    group_targets,
    group_tree,
    missing_group,
    parent_of,
    resolve,
)
from controller.simulator.pullers import RegistryBook
from controller.simulator.selectors import parse_label_selector
from controller.simulator.versions import MarathonVersion
from controller.simulator.wire import (
    DEFAULT_VERSION,
    LOCAL,
    ApiError,
    Json,
    Scheduler,
    canonical,
    dumps,
    invalid_json,
    iso,
    not_found,
    not_valid,
    utcnow,
)

_MAX_VERSIONS: Final = 50  # Marathon's --zk_max_versions default: the rollback horizon


def _unscaled(app: Json) -> Json:
    """An app's configuration apart from its instance count (a scale keeps its config ref)."""
    return {k: v for k, v in app.items() if k not in ("instances", "version", "versionInfo")}


class MarathonState(Deployer, FaultsAndWrites):
    """Marathon's apps, deployments and event bus, in memory; no I/O, driven directly by tests.

    Operations raise ``ApiError`` with the status and body Marathon would answer. With an agent
    a deployment's steps end when its tasks run (``deployer``, ``agent``); without
    one, a deployment ends after ``deployment_seconds`` once a facade attached its scheduler
    (``None``: only when a test calls ``finish_deployment``). ``now`` must return aware
    datetimes. ``deprecated_features`` are Marathon's ``--deprecated_features`` that change what
    the simulator does (``api_heavy_events``, ``proxy_events``: 1.7 only).
    """

    def __init__(
        self,
        *,
        version: str = DEFAULT_VERSION,
        now: Callable[[], datetime] = utcnow,
        deployment_seconds: float | None = 0.0,
        agent: Agent | None = None,
        deprecated_features: Iterable[str] = (),
    ) -> None:
        self._version = version
        self.features = MarathonVersion.of(version)
        self.deprecated_features = frozenset(deprecated_features)
        self.features.check_deprecated_features(self.deprecated_features)
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
        self._deployments: dict[str, Deployment] = {}
        self._locks: dict[str, list[str]] = {}
        self._root_version: str | None = None
        self._advancing = False
        self._stale: dict[str, None] = {}
        """Apps whose tasks changed while deployments were being advanced (done next)."""
        self._subscribers: tuple[Subscriber, ...] = ()
        self._faults: list[Fault] = []
        self._spent_hangs: list[Fault] = []
        self._schedulers: list[Scheduler] = []
        """Facades that can end deployments; the first does, the next takes over from it."""
        self.registries = RegistryBook()
        """Which credentials each registry accepts, for the agent's built-in puller."""
        self.agent = agent
        """The simulated Mesos agent; ``None``: no tasks, the counts say every instance runs."""
        if agent is not None:
            agent.bind(self)

    @property
    def version(self) -> str:
        """The Marathon version simulated (``/v2/info``); ``features`` says what it changes."""
        return self._version

    def now(self) -> datetime:
        """The state's clock (the ``now`` it was given)."""
        return self._now()

    # -- registries, tasks and the launch queue (with an agent) --------------------------------

    def accept_credentials(self, registry: str, username: str, password: str) -> None:
        """``registry`` is private from now on and accepts these credentials (a new password
        for ``username`` replaces its old one). Registries never named here are public."""
        self.registries.accept_credentials(registry, username, password)

    def revoke_credentials(self, registry: str, username: str) -> None:
        """``username`` can no longer pull from ``registry``."""
        self.registries.revoke_credentials(registry, username)

    def app(self, app_id: str) -> Json | None:
        """The app's definition as stored (whatever the version calls a fetch item's output file,
        it is ``destPath`` here), or ``None``. Do not change it."""
        return self._apps.get(canonical(app_id))

    def list_all_tasks(self, statuses: Iterable[str] = ()) -> list[Json]:
        """``GET /v2/tasks``' ``tasks``: every app's tasks; ``status`` (``running``,
        ``staging``, any case; others ignored) keeps those states (``TasksResource@v1.10.26``)."""
        if self.agent is None:
            return []
        states = {f"TASK_{s.upper()}" for s in statuses if s.lower() in ("running", "staging")}
        return [task for app_id in self._apps for task in self.agent.tasks(app_id)
                if not states or task["state"] in states]

    def list_tasks(self, app_id: str) -> list[Json]:
        """``GET /v2/apps/{id}/tasks``' ``tasks`` (none without an agent)."""
        app_id = canonical(app_id)
        if app_id not in self._apps:
            raise not_found(app_id)
        return self.agent.tasks(app_id) if self.agent is not None else []

    def queue(self) -> list[Json]:
        """``GET /v2/queue``' ``queue``: apps with instances waiting to launch, their delay."""
        if self.agent is None:
            return []
        return [{**entry, "app": self._shown(self._apps[app_id])}
                for app_id, entry in self.agent.queue() if app_id in self._apps]

    def reset_delay(self, app_id: str) -> None:
        """``DELETE /v2/queue/{id}/delay``: launch the app's waiting instances now, or 404."""
        app_id = canonical(app_id)
        if self.agent is None or not self.agent.reset_delay(app_id):
            raise ApiError(404, {"message": f"Application {app_id} not found in tasks queue."})

    # -- apps ----------------------------------------------------------------------------------

    def add_app(
        self, app: Mapping[str, Any], *, force: bool = False, client_ip: str = LOCAL,
    ) -> Json:
        """``POST /v2/apps``: create and deploy; returns the app as the 201 body shows it."""
        definition = complete(app, new_id(app), self.features)
        app_id = definition["id"]
        if app_id in self._apps:
            raise ApiError(409, {"message": f"An app with id [{app_id}] already exists."})
        deployment = self._deploy({app_id: definition}, force=force, event_uri="/v2/apps",
                                  client_ip=client_ip)
        shown = self._shown(self._apps[app_id])
        del shown["versionInfo"]  # the POST answer has none (docs/marathon.md §1.2, §2.4)
        return {**shown, "tasksStaged": 0, "tasksRunning": 0, "tasksHealthy": 0,
                "tasksUnhealthy": 0, "deployments": [{"id": deployment.id}]}

    def load_apps(self, apps: Iterable[Mapping[str, Any]]) -> None:
        """Put apps in place as if deployed long ago: no deployment, event or write record."""
        version = self._next_version()
        for app in apps:
            app_id = new_id(app)
            if app_id in self._apps:
                raise ApiError(409, {"message": f"An app with id [{app_id}] already exists."})
            self._store(app_id, complete(app, app_id, self.features), version, "ScaleApplication")
            if self.agent is not None:
                self.agent.scale(app_id)

    def get_app(self, app_id: str, *, embed: Iterable[str] = ()) -> Json:
        """``GET /v2/apps/{id}``'s ``app``: always with counts, deployments, tasks and the last
        task failure (if any)."""
        app_id = canonical(app_id)
        if app_id not in self._apps:
            raise not_found(app_id)
        extra = self._members(app_id, embedded([*embed, "tasks", "lastTaskFailure"]))
        return cast(Json, json.loads(splice(self._encoded(app_id), extra)))

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
        selector = parse_label_selector(label) if label else None
        id_part = id.lower() if id else None
        cmd_part = cmd.lower() if cmd else None
        wanted = embedded(embed)
        shared = self._members(None, wanted) if self.agent is None else None
        chosen = [
            splice(self._encoded(app_id),
                   shared if shared is not None else self._members(app_id, wanted))
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
        client_ip: str = LOCAL,
    ) -> DeploymentResult:
        """``PUT`` (``allow_creation``) or ``PATCH /v2/apps/{id}``, with Marathon's semantics.

        Partial: the fields given replace the old ones wholesale, ``uris`` replaces ``fetch``,
        and ``version`` alone rolls back to that version. Not partial: a complete replacement,
        omitted fields get defaults. A missing app is created from the body (201).
        """
        app_id = canonical(app_id)
        current = self._apps.get(app_id)
        target = self._updated(app_id, body, partial=partial, allow_creation=allow_creation)
        deployment = self._deploy({app_id: target}, force=force, event_uri=f"/v2/apps{app_id}",
                                  client_ip=client_ip)
        return DeploymentResult(deployment_id=deployment.id, version=deployment.version,
                                created=current is None)

    def update_apps(self, bodies: Any, *, partial: bool = True, force: bool = False,
                    allow_creation: bool = True) -> DeploymentResult:
        """``PUT`` or ``PATCH /v2/apps`` with a list of apps: one deployment for all of them
        (``AppsResource.updateMultiple@v1.10.26``: one root update); each item needs its
        ``id``, and publishes no ``api_post_event``."""
        if not isinstance(bodies, list):
            raise invalid_json("", "error.expected.jsarray")
        targets: dict[str, Json | None] = {}
        for body in bodies:
            if not isinstance(body, Mapping) or not isinstance(body.get("id"), str):
                raise ApiError(422, {"message": "requirement failed: App Update must have app "
                                                "id set"})
            app_id = canonical(body["id"])
            targets[app_id] = self._updated(app_id, body, partial=partial,
                                            allow_creation=allow_creation)
        deployment = self._deploy(targets, force=force, group_id="/")
        return DeploymentResult(deployment_id=deployment.id, version=deployment.version)

    def _updated(self, app_id: str, body: Any, *, partial: bool, allow_creation: bool) -> Json:
        """The definition an update body makes of an app (``AppHelpers.updateOrCreate``)."""
        if not isinstance(body, Mapping):
            raise invalid_json("", "error.expected.jsobject")
        current = self._apps.get(app_id)
        if current is None and not allow_creation:
            raise not_found(app_id)
        rollback = body.get("version") if partial else None
        if rollback is not None:
            if any(body.get(k) is not None for k in APP_FIELDS - {"id", "version"}):
                raise not_valid("/version",
                                 "The 'version' field may only be combined with the 'id' field.")
            target = self._history.get(app_id, {}).get(rollback)
            if target is None:
                raise ApiError(404, {"message": f"App '{app_id}' does not exist in version "
                                                f"{rollback}"})
        elif current is None or not partial:
            target = complete(body, valid_id(app_id), self.features)
        else:
            target = merge(current, body, self.features)
        return target

    def delete_app(self, app_id: str, *, force: bool = True) -> DeploymentResult:
        """``DELETE /v2/apps/{id}``; ``app_terminated_event`` comes when the deployment ends."""
        app_id = canonical(app_id)
        if app_id not in self._apps:
            raise not_found(app_id)
        deployment = self._deploy({app_id: None}, force=force)
        return DeploymentResult(deployment_id=deployment.id, version=deployment.version)

    def restart_app(self, app_id: str, *, force: bool = False) -> DeploymentResult:
        """``POST /v2/apps/{id}/restart``: the same definition as a new version, so every task
        is replaced (409 while a deployment locks the app, unless ``force``)."""
        app_id = canonical(app_id)
        current = self._apps.get(app_id)
        if current is None:
            raise not_found(app_id)
        deployment = self._deploy({app_id: current}, force=force, restart=True)
        return DeploymentResult(deployment_id=deployment.id, version=deployment.version)

    # -- groups --------------------------------------------------------------------------------

    def get_group(self, group_id: str = "/") -> Json:
        """``GET /v2/groups[/{id}]``: the group and its subgroups, apps as definitions (the
        default embeds: ``GroupsResource@v1.10.26``); 404 for a group no app is in."""
        group_id = canonical(group_id)
        version = self._root_version or iso(self._now())
        shown = (self._shown(app) for app in self._apps.values())
        tree = group_tree(shown, group_id, version, pods=self.features.groups_have_pods)
        if tree is None:
            raise missing_group(group_id)
        return tree

    def update_group(self, group_id: str, body: Any, *, force: bool = False,
                     create: bool = False) -> DeploymentResult:
        """``PUT /v2/groups/{id}`` (``create``: ``POST /v2/groups[/{id}]``) with a
        ``GroupUpdate``: one deployment for every app it adds, changes or removes
        (``GroupsResource.update``/``createWithPath``, ``GroupApiService.updateGroup``)."""
        base = canonical(group_id)
        if not isinstance(body, Mapping):
            raise invalid_json("", "error.expected.jsobject")
        raw_id = body.get("id")
        effective = resolve(raw_id, base) if isinstance(raw_id, str) else base
        if create:
            if any(parent_of(a) == effective or parent_of(a).startswith(effective + "/")
                   for a in self._apps) or effective == "/":
                raise ApiError(409, {"message": f"Group {effective} is already created. Use PUT "
                                                "to change this group."})
            if effective in self._apps:
                raise ApiError(409, {"message": f"An app with the path {effective} already "
                                                "exists."})
        targets = group_targets(self._apps, effective, body,
                                lambda app, app_id: complete(app, valid_id(app_id), self.features))
        deployment = self._deploy(targets, force=force, group_id=parent_of(base))
        return DeploymentResult(deployment_id=deployment.id, version=deployment.version,
                                created=create)

    # -- internals -----------------------------------------------------------------------------

    def _next_version(self) -> str:
        """Now, to the millisecond, but always later than the last version handed out."""
        moment = self._now().astimezone(UTC)
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        if self._last_version is not None and moment <= self._last_version:
            moment = self._last_version + timedelta(milliseconds=1)
        self._last_version = moment
        return iso(moment)

    def _shown(self, app: Json) -> Json:
        return public(app, self.features)

    def _members(self, app_id: str | None, wanted: frozenset[str]) -> str:
        """The JSON members ``embedded`` asks for, pre-encoded; ``app_id`` ``None``: the ones
        every app shares (without an agent)."""
        agent = self.agent if app_id is not None else None
        members = []
        if "tasks" in wanted:
            members.append('"tasks":' + (dumps(agent.tasks(app_id)) if agent and app_id else "[]"))
        if "readiness" in wanted:
            members.append('"readinessCheckResults":[]')
        if "lastTaskFailure" in wanted and agent and app_id:
            failure = agent.last_failure(app_id)
            if failure is not None:
                members.append('"lastTaskFailure":' + dumps(failure))
        return ",".join(members)

    def _encoded(self, app_id: str) -> str:
        text = self._wire.get(app_id)
        if text is None:
            app = self._shown(self._apps[app_id])
            staged, running = (self.agent.counts(app_id) if self.agent is not None
                               else (0, app["instances"]))
            text = dumps({**app, "tasksStaged": staged, "tasksRunning": running,
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
        scaled_only = previous is not None and action == "ScaleApplication" and _unscaled(
            previous) == _unscaled(target)
        config_changed_at = (previous["versionInfo"]["lastConfigChangeAt"]
                             if previous is not None and scaled_only else version)
        version_info = {"lastScalingAt": version, "lastConfigChangeAt": config_changed_at}
        stored = {**target, "version": version, "versionInfo": version_info}
        self._apps[app_id] = stored
        history = self._history.setdefault(app_id, {})
        history[version] = stored
        if len(history) > _MAX_VERSIONS:
            del history[next(iter(history))]
