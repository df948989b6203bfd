"""Marathon's apps, deployments and event bus, in memory: the model the HTTP facade serves."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from controller.simulator.agent import Agent
from controller.simulator.apps import (
    APP_FIELDS,
    complete,
    deployment_action,
    embedded,
    merge,
    new_id,
    public,
    splice,
    valid_id,
)
from controller.simulator.deployments import (
    CANCELLED,
    LOCKED,
    Action,
    Deployment,
    DeploymentResult,
    plan_steps,
)
from controller.simulator.events import Subscriber, encode
from controller.simulator.faults import Fault, FaultKind, WriteRecord
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
    no_leader,
    not_found,
    not_valid,
    utcnow,
)

_MAX_VERSIONS: Final = 50  # Marathon's --zk_max_versions default: the rollback horizon


def _unscaled(app: Json) -> Json:
    """An app's configuration apart from its instance count (a scale keeps its config ref)."""
    return {k: v for k, v in app.items() if k not in ("instances", "version", "versionInfo")}


class MarathonState:
    """Marathon's apps, deployments and event bus, in memory; no I/O, driven directly by tests.

    Operations raise ``ApiError`` with the status and body Marathon would answer. With an agent
    a deployment's steps end when its tasks run (``deployments`` module, ``agent``); without
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

    def tasks_changed(self, app_id: str) -> None:
        """The agent's word that an app's tasks changed: its cached JSON is stale, and a
        deployment step waiting on them may be done."""
        self._wire.pop(app_id, None)
        self._stale[app_id] = None
        self._drain()

    def _drain(self) -> None:
        """Advance the deployments of every app whose tasks changed, unless deployments are
        being advanced or started already (that caller drains them when it is done)."""
        if self._advancing:
            return
        self._advancing = True
        try:
            while self._stale:
                changed = next(iter(self._stale))
                del self._stale[changed]
                for deployment_id in list(self._locks.get(changed, ())):
                    deployment = self._deployments.get(deployment_id)
                    if deployment is not None:
                        self._advance(deployment)
        finally:
            self._advancing = False

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
        if force:
            self._cancel(deployment)
            return None
        # the reverted root, deployed with force: it cancels this one (DeploymentsResource)
        rollback = self._deploy(dict(deployment.originals), force=True, group_id="/")
        return DeploymentResult(deployment_id=rollback.id, version=rollback.version)

    def finish_deployment(self, deployment_id: str) -> None:
        """End a running deployment successfully, as if its tasks ran (``KeyError`` if it is
        not running)."""
        deployment = self._deployments.get(deployment_id)
        if deployment is None:
            raise KeyError(deployment_id)
        deployment.settled = True
        self._advance(deployment)

    def finish_all_deployments(self) -> None:
        for deployment_id in list(self._deployments):
            self.finish_deployment(deployment_id)

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

    def publish(self, event_type: str, payload: Mapping[str, Any], *,
                full: Mapping[str, Any] | None = None) -> None:
        """Deliver an event to every subscriber, encoded once (``full``: the heavy form of a
        deployment event, for streams that want ``plan.original``/``plan.target``).

        ``eventType`` and ``timestamp`` are appended unless the payload has them.
        """
        subscribers = self._subscribers
        if not subscribers:
            return
        body = dict(payload)
        body.setdefault("eventType", event_type)
        body.setdefault("timestamp", iso(self._now()))
        heavy = (None if full is None else
                 {**full, "eventType": body["eventType"], "timestamp": body["timestamp"]})
        event = encode(event_type, body, heavy)
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
            return no_leader()
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

    def _deploy(
        self, targets: Mapping[str, Json | None], *, force: bool, restart: bool = False,
        group_id: str | None = None, event_uri: str | None = None, client_ip: str = LOCAL,
    ) -> Deployment:
        """Make each target (``None``: gone) its app's definition and deploy the difference as
        one plan (``GroupManagerImpl.updateRootEither@v1.10.26``).

        A no-op still gets a (step-less) deployment with a new plan version; only a real change
        needs the apps' locks and gets a new app version. ``restart`` deploys an unchanged
        target as a restart. ``group_change_success`` names ``group_id`` (by default the one
        app's group), and ``event_uri`` adds the ``api_post_event`` of an app write.
        """
        actions = {}
        for app_id, target in targets.items():
            action = deployment_action(self._apps.get(app_id), target, restart=restart)
            if action is not None:
                actions[app_id] = action
        self._take_locks(actions, force=force)
        version = self._next_version()
        before = dict(self._apps) if self._keeps_roots() else None
        originals = {app_id: self._apps.get(app_id) for app_id in actions}
        new = frozenset(app_id for app_id in actions if app_id not in self._apps)
        for app_id, action in actions.items():
            self._store(app_id, targets[app_id], version, action)
        deployment = Deployment(id=str(uuid.uuid4()), version=version,
                                steps=plan_steps(actions, new), originals=originals)
        if before is not None:
            deployment.roots = self._roots(before, dict(self._apps), version)
        self._root_version = version
        self._deployments[deployment.id] = deployment
        for app_id in deployment.affected:
            self._locks.setdefault(app_id, []).append(deployment.id)
            self._wire.pop(app_id, None)
        if group_id is None:
            group_id = parent_of(next(iter(targets)))
        self.publish("group_change_success", {"groupId": group_id, "version": version})
        if event_uri is not None:
            (app_id,) = targets
            self.publish("api_post_event", {"clientIp": client_ip, "uri": event_uri,
                                            "appDefinition": self._shown(self._apps[app_id])})
        if deployment.steps:
            self._begin_step(deployment)
        self._schedule_end(deployment)
        self._advance(deployment)
        return deployment

    def _keeps_roots(self) -> bool:
        """Whether a stream may want heavy plans: a subscriber, on a version (and with the
        deprecated features) that writes them by default."""
        return bool(self._subscribers) and not self.features.light_plans(
            [], "api_heavy_events" in self.deprecated_features)

    def _roots(self, before: dict[str, Json], after: dict[str, Json], version: str
               ) -> Callable[[], tuple[Json, Json]]:
        """``plan.original`` and ``plan.target``: the root group before and after, built once
        and only if a heavy stream asks (the stored definitions are never changed in place)."""
        previous = self._root_version or version
        pods = self.features.groups_have_pods
        made: list[tuple[Json, Json]] = []

        def roots() -> tuple[Json, Json]:
            if not made:
                original = group_tree((self._shown(a) for a in before.values()), "/", previous,
                                      pods=pods)
                target = group_tree((self._shown(a) for a in after.values()), "/", version,
                                    pods=pods)
                assert original is not None  # the root always exists
                assert target is not None
                made.append((original, target))
            return made[0]

        return roots

    def _take_locks(self, actions: Mapping[str, str], *, force: bool) -> None:
        """409 while deployments run on any of these apps; ``force`` cancels them (every app of
        their plans: the others are left where they are)."""
        locking = list(dict.fromkeys(d for app_id in actions for d in self._locks.get(app_id, ())))
        if not locking:
            return
        if not force:
            raise ApiError(409, {"message": LOCKED, "deployments": [{"id": d} for d in locking]})
        for deployment_id in locking:
            self._cancel(self._deployments[deployment_id])

    def _begin_step(self, deployment: Deployment) -> None:
        """Publish the step's ``deployment_info`` and set its actions going (``DeploymentActor
        .performStep``)."""
        step = deployment.steps[deployment.current]
        self._publish_plan("deployment_info", deployment, currentStep=deployment.step_json(step))
        agent = self.agent
        if agent is None:
            return
        advancing, self._advancing = self._advancing, True  # no step closes half-started
        try:
            for action in step:
                app_id = action.app_id
                if action.name == "StopApplication":
                    agent.stop(app_id)
                elif action.name == "ScaleApplication":
                    app = self._apps[app_id]
                    deployment.to_start[app_id] = max(
                        0, app["instances"] - agent.active_or_scheduled(app_id))
                    agent.scale(app_id)
                elif action.name == "RestartApplication":
                    agent.replace(app_id)
        finally:
            self._advancing = advancing
        self._drain()

    def _done(self, deployment: Deployment, action: Action) -> bool:
        """Whether an action of the running step is done: a start at once; without an agent the
        others once the deployment settled; with one, a stop once its tasks are killed, a scale
        once its new instances of this version run (``TaskStartActor``), a restart once
        ``instances`` of this version run and no other version is left (``TaskReplaceActor``)."""
        if action.name == "StartApplication" or deployment.settled:
            return True
        agent = self.agent
        if agent is None:
            return False
        app_id = action.app_id
        if action.name == "StopApplication":
            return True
        version = deployment.version
        if action.name == "ScaleApplication":
            return agent.running(app_id, version) >= deployment.to_start.get(app_id, 0)
        return (agent.running(app_id, version) >= self._apps[app_id]["instances"]
                and agent.others(app_id, version) == 0)

    def _advance(self, deployment: Deployment) -> None:
        """Close every step that is done, start the next, and end the deployment after the last
        (without an agent, only once it settled)."""
        if self._deployments.get(deployment.id) is not deployment:
            return  # already over
        while deployment.current < len(deployment.steps):
            step = deployment.steps[deployment.current]
            if not all(self._done(deployment, action) for action in step):
                return
            for action in step:
                if action.name == "StopApplication":
                    self.publish("app_terminated_event", {"appId": action.app_id})
            self._publish_plan("deployment_step_success", deployment,
                               currentStep=deployment.step_json(step))
            deployment.current += 1
            if deployment.current < len(deployment.steps):
                self._begin_step(deployment)
        if self.agent is None and not deployment.settled:
            return
        self._release(deployment)
        self._publish_plan("deployment_success", deployment, id=deployment.id)

    def _cancel(self, deployment: Deployment) -> None:
        """Stop a deployment where it is (a forced one replaced it, or ``DELETE``): no step
        event, ``deployment_failed`` with the reason from 1.7 (``MarathonSchedulerActor``)."""
        if self._deployments.get(deployment.id) is not deployment:
            return
        self._release(deployment)
        if self.agent is not None:
            for app_id in deployment.affected:
                self.agent.cancel(app_id)
        reason = {"reason": CANCELLED} if self.features.failure_reasons else {}
        self._publish_plan("deployment_failed", deployment, id=deployment.id, **reason)

    def _release(self, deployment: Deployment) -> None:
        del self._deployments[deployment.id]
        for app_id in deployment.affected:
            locks = self._locks[app_id]
            locks.remove(deployment.id)
            if not locks:
                del self._locks[app_id]
            self._wire.pop(app_id, None)

    def _publish_plan(self, event_type: str, deployment: Deployment, **fields: Any) -> None:
        """A deployment event: ``id`` first when it has one, then ``plan`` (light, and heavy for
        streams that want it), then the rest (``Formats.scala`` writes)."""
        if not self._subscribers:
            return
        head = {"id": fields.pop("id")} if "id" in fields else {}
        light = {**head, "plan": deployment.plan(), **fields}
        full = ({**head, "plan": deployment.full_plan(), **fields}
                if deployment.roots is not None else None)
        self.publish(event_type, light, full=full)

    def _schedule_end(self, deployment: Deployment) -> None:
        """Without an agent, settle the deployment after ``deployment_seconds``."""
        if self.agent is None and self._schedulers and self.deployment_seconds is not None:
            deployment_id = deployment.id
            self._schedulers[0](self.deployment_seconds, lambda: self._settle(deployment_id))

    def _settle(self, deployment_id: str) -> None:
        deployment = self._deployments.get(deployment_id)
        if deployment is not None:
            deployment.settled = True
            self._advance(deployment)
