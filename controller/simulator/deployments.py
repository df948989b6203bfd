"""Deployments as the simulator runs them: one step for one app, a lock, a result (§1.6, §1.8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from controller.simulator.wire import Json

LOCKED: Final = (
    "App is locked by one or more deployments. Override with the option '?force=true'. "
    "View details at '/v2/deployments/<DEPLOYMENT_ID>'."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentResult:
    """What a successful PUT/PATCH/DELETE answers (``types/deploymentResult.raml``)."""

    deployment_id: str
    version: str
    created: bool = False

    def body(self) -> Json:
        return {"deploymentId": self.deployment_id, "version": self.version}


@dataclass(slots=True, kw_only=True)
class Deployment:
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

