"""Marathon's apps, deployments and event bus, in memory: the model the HTTP facade serves."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from controller.dialect import Dialect
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
from controller.simulator.deployments import LOCKED, Deployment, DeploymentResult
from controller.simulator.events import Subscriber, encode
from controller.simulator.faults import Fault, FaultKind, WriteRecord
from controller.simulator.pullers import RegistryBook
from controller.simulator.selectors import parse_label_selector
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
        now: Callable[[], datetime] = utcnow,
        deployment_seconds: float | None = 0.0,
        agent: Agent | None = None,
    ) -> None:
        self._version = version
        self.features = Dialect.of(version)
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
        """The app's definition as GET shows it (no counts), or ``None``."""
        app = self._apps.get(canonical(app_id))
        return self._shown(app) if app is not None else None

    def tasks_changed(self, app_id: str) -> None:
        """The agent's word that an app's tasks changed: its cached JSON is stale."""
        self._wire.pop(app_id, None)

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
        deployment = self._change(app_id, definition, force=force, event_uri="/v2/apps",
                                  client_ip=client_ip)
        shown = self._shown(self._apps[app_id])
        del shown["versionInfo"]  # the POST answer has none (facts §2.4)
        return {**shown, "tasksStaged": 0, "tasksRunning": 0, "tasksHealthy": 0,
                "tasksUnhealthy": 0, "deployments": [{"id": deployment.id}]}

    def load_apps(self, apps: Iterable[Mapping[str, Any]]) -> None:
        """Put apps in place as if deployed long ago: no deployment, event or write record."""
        version = self._next_version()
        for app in apps:
            app_id = new_id(app)
            if app_id in self._apps:
                raise ApiError(409, {"message": f"An app with id [{app_id}] already exists."})
            self._store(app_id, complete(app, app_id, self.features), version, "StartApplication")
            if self.agent is not None:
                self.agent.app_changed(app_id, "StartApplication")

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
        deployment = self._change(app_id, target, force=force, event_uri=f"/v2/apps{app_id}",
                                  client_ip=client_ip)
        return DeploymentResult(deployment_id=deployment.id, version=deployment.version,
                                created=current is None)

    def delete_app(self, app_id: str, *, force: bool = True) -> DeploymentResult:
        """``DELETE /v2/apps/{id}``; ``app_terminated_event`` comes when the deployment ends."""
        app_id = canonical(app_id)
        if app_id not in self._apps:
            raise not_found(app_id)
        deployment = self._change(app_id, None, force=force)
        return DeploymentResult(deployment_id=deployment.id, version=deployment.version)

    def restart_app(self, app_id: str, *, force: bool = False) -> DeploymentResult:
        """``POST /v2/apps/{id}/restart``: the same definition as a new version, so every task
        is replaced (409 while a deployment locks the app, unless ``force``)."""
        app_id = canonical(app_id)
        current = self._apps.get(app_id)
        if current is None:
            raise not_found(app_id)
        deployment = self._change(app_id, current, force=force, restart=True)
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
        body.setdefault("timestamp", iso(self._now()))
        event = encode(event_type, body)
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
        client_ip: str = LOCAL, restart: bool = False,
    ) -> Deployment:
        """Make ``target`` (``None``: gone) the app's definition and deploy the difference.

        A no-op still gets a (step-less) deployment with a new plan version, and
        ``api_post_event`` when it came from POST/PUT/PATCH (``event_uri``); only a real change
        needs the app's lock and gets a new app version. ``restart`` deploys ``target`` as a
        change even when it is the same.
        """
        current = self._apps.get(app_id)
        action = "RestartApplication" if restart else deployment_action(current, target)
        if action is not None:
            self._take_lock(app_id, force=force)
        version = self._next_version()
        if action is not None:
            self._store(app_id, target, version, action)
        if event_uri is not None:
            self.publish("api_post_event", {"clientIp": client_ip, "uri": event_uri,
                                            "appDefinition": self._shown(self._apps[app_id])})
        deployment = Deployment(id=str(uuid.uuid4()), version=version, app_id=app_id,
                                 action=action, original=current)
        self._deployments[deployment.id] = deployment
        if action is not None:
            self._locks.setdefault(app_id, []).append(deployment.id)
            self._wire.pop(app_id, None)
            self.publish("deployment_info", {"plan": deployment.plan(),
                                             "currentStep": deployment.steps()[0]})
            if self.agent is not None:
                self.agent.app_changed(app_id, action)
        self._schedule_end(deployment)
        return deployment

    def _take_lock(self, app_id: str, *, force: bool) -> None:
        """409 while deployments run on the app; ``force`` cancels them instead."""
        locking = self._locks.get(app_id)
        if not locking:
            return
        if not force:
            raise ApiError(409, {"message": LOCKED, "deployments": [{"id": d} for d in locking]})
        for deployment_id in list(locking):
            self._end(deployment_id, "deployment_failed")

    def _schedule_end(self, deployment: Deployment) -> None:
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

