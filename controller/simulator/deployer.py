"""Running deployment plans for ``MarathonState``: each plan's locks, its steps started and
closed when its tasks say so (without an agent: when the deployment settled), its end or
cancellation, and the deployment events (the package docstring's "Deployments").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from controller.simulator.agent import Agent
from controller.simulator.apps import deployment_action
from controller.simulator.deployments import (
    CANCELLED,
    LOCKED,
    Action,
    Deployment,
    DeploymentResult,
    plan_steps,
)
from controller.simulator.events import EventBus
from controller.simulator.groups import group_tree, parent_of
from controller.simulator.versions import MarathonVersion
from controller.simulator.wire import LOCAL, ApiError, Json, Scheduler


class Deployer(EventBus):
    """``MarathonState``'s deployments: every write deploys through ``_deploy``; the agent's
    ``tasks_changed`` and the timer of an agent-less state move them on."""

    if TYPE_CHECKING:  # what MarathonState provides (its __init__ sets the attributes)
        features: MarathonVersion
        deprecated_features: frozenset[str]
        deployment_seconds: float | None
        agent: Agent | None
        _apps: dict[str, Json]
        _wire: dict[str, str]
        _deployments: dict[str, Deployment]
        _locks: dict[str, list[str]]
        _root_version: str | None
        _advancing: bool
        _stale: dict[str, None]
        _schedulers: list[Scheduler]

        def _next_version(self) -> str: ...

        def _shown(self, app: Json) -> Json: ...

        def _store(self, app_id: str, target: Json | None, version: str, action: str
                   ) -> None: ...

    # -- the agent's word ----------------------------------------------------------------------

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

    # -- running a plan ------------------------------------------------------------------------

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
