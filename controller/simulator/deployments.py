"""Deployment plans as Marathon makes and writes them: steps of actions, the lock, the result.

A plan (``core/deployment/DeploymentPlan.scala@v1.10.26`` ``DeploymentPlan.apply``) has up to
three kinds of step, empty ones dropped: one that stops every removed app, one that starts every
new app with no instance (``StartApplication``, done at once: it exists for compatibility), and
the dependency-ordered steps that scale or restart every new or changed app. The simulator puts
those last actions in one step (it does not order apps by ``dependencies``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from controller.simulator.wire import Json

LOCKED: Final = (
    "App is locked by one or more deployments. Override with the option '?force=true'. "
    "View details at '/v2/deployments/<DEPLOYMENT_ID>'."
)
CANCELLED: Final = "The upgrade has been cancelled"
"""The reason a deployment cancelled by a forced one fails with: ``DeploymentManagerActor``
stops it with ``DeploymentCanceledException("The upgrade has been cancelled")`` and
``MarathonSchedulerActor.deploymentFailed`` publishes its message (both @v1.10.26)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentResult:
    """What a successful PUT/PATCH/DELETE answers (``types/deploymentResult.raml``)."""

    deployment_id: str
    version: str
    created: bool = False

    def body(self) -> Json:
        return {"deploymentId": self.deployment_id, "version": self.version}


@dataclass(frozen=True, slots=True)
class Action:
    """One action of a step: ``StartApplication``, ``ScaleApplication``, ``RestartApplication``
    or ``StopApplication`` on one app."""

    name: str
    app_id: str

    def json(self) -> Json:
        return {"action": self.name, "app": self.app_id}


Step = tuple[Action, ...]


def plan_steps(actions: Mapping[str, str], new: frozenset[str]) -> list[Step]:
    """The steps of a plan, given each changed app's action (``apps.deployment_action``) and
    which of those apps are new."""
    stops = tuple(Action("StopApplication", a) for a, name in actions.items()
                  if name == "StopApplication")
    starts = tuple(Action("StartApplication", a) for a in actions if a in new)
    ordered = tuple(Action(name, a) for a, name in actions.items() if name != "StopApplication")
    return [step for step in (stops, starts, ordered) if step]


@dataclass(slots=True, kw_only=True, eq=False)
class Deployment:
    """A running plan: its steps, which one runs, and what it needs to finish."""

    id: str
    version: str
    steps: list[Step]
    originals: dict[str, Json | None]
    """Each affected app's definition before, for a rollback (``None``: it did not exist)."""
    current: int = 0
    """The index of the running step (``len(steps)``: every step is done)."""
    settled: bool = False
    """Every action counts as done: the timer of an agent-less state fired, or a test ended it."""
    to_start: dict[str, int] = field(default_factory=dict)
    """Per scaled app, how many new instances its scale action waits for (``TaskStartActor``)."""
    roots: Callable[[], tuple[Json, Json]] | None = None
    """Makes ``plan.original`` and ``plan.target`` (the root groups before and after), kept only
    on versions that can write them."""

    @property
    def affected(self) -> list[str]:
        return list(dict.fromkeys(a.app_id for step in self.steps for a in step))

    def step_json(self, step: Step) -> Json:
        return {"actions": [action.json() for action in step]}

    def plan(self) -> Json:
        """The light plan (``raml.DeploymentPlan``: ``DeploymentPlanConversion.scala``)."""
        return {"id": self.id, "steps": [self.step_json(s) for s in self.steps],
                "version": self.version}

    def full_plan(self) -> Json:
        """The heavy plan of ≤ 1.7 (``Formats.scala@v1.7.236`` ``DeploymentPlanWrites``), the
        light one when the roots were not kept."""
        if self.roots is None:
            return self.plan()
        original, target = self.roots()
        return {"id": self.id, "original": original, "target": target,
                "steps": [self.step_json(s) for s in self.steps], "version": self.version}

    def info(self) -> Json:
        """One item of ``GET /v2/deployments`` (``Formats.scala`` ``DeploymentStepInfoWrites``)."""
        step = self.steps[self.current] if self.current < len(self.steps) else ()
        return {"id": self.id, "version": self.version, "affectedApps": self.affected,
                "affectedPods": [], "steps": [self.step_json(s) for s in self.steps],
                "currentActions": [{**a.json(), "readinessCheckResults": []} for a in step],
                "currentStep": min(self.current + 1, len(self.steps)),
                "totalSteps": len(self.steps)}

