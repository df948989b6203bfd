"""The reconciler: app id in, converged app out.

Level-triggered: it reads the app, asks the pure planner what the fetch list should be, and
writes only when that differs from what Marathon has, planning the write again from a read made
once the write slot is held. Every write goes through the write gate
(rate limit + deployment budget) and the leadership fence. Errors are raised for the caller
(the work queue, or the one-shot pass) to classify: transient ones are retried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from controller.bundles import BundleManager, Fence, no_fence
from controller.errors import MarathonNotFound
from controller.marathon import MarathonAPI
from controller.model import AppId, BundleLocation, RawApp
from controller.plan import (
    DEFAULT_OWNER,
    AppPlan,
    RegistryRule,
    eligibility,
    plan_app,
    update_body,
)
from controller.ratelimit import DeploymentBudget, TokenBucket

__all__ = ["Action", "AppOutcome", "Reconciler", "WriteGate", "WriteSlot"]

Action = Literal["updated", "would_update", "unchanged", "gone", "deferred"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppOutcome:
    app_id: AppId
    action: Action
    plan: AppPlan | None = None
    deployment_id: str | None = None
    requeue_after: float | None = None
    """Come back then even if nothing happens (the bundle URI expires)."""


class WriteGate:
    """Every Marathon write passes here: a deployment slot first, then a rate token."""

    def __init__(self, bucket: TokenBucket, budget: DeploymentBudget) -> None:
        self._bucket = bucket
        self._budget = budget

    @asynccontextmanager
    async def write(self, *, wait: bool) -> AsyncIterator[WriteSlot | None]:
        """Yield a slot to record the deployment in, or ``None`` when the budget is spent and
        ``wait`` is false. The slot is given back if the write starts no deployment."""
        if wait:
            await self._budget.acquire()
        elif not await self._budget.try_acquire():
            yield None
            return
        slot = WriteSlot()
        try:
            await self._bucket.acquire()
            yield slot
        finally:
            self._budget.commit(slot.deployment_id)


@dataclass(slots=True)
class WriteSlot:
    deployment_id: str | None = None


class Reconciler:
    """``wait_for_budget=False`` (the daemon) defers a write when the deployment budget is
    spent instead of holding a worker; the one-shot pass waits."""

    def __init__(
        self,
        *,
        marathon: MarathonAPI,
        bundles: BundleManager,
        label: str,
        rules: Sequence[RegistryRule],
        gate: WriteGate,
        owner: str = DEFAULT_OWNER,
        fence: Fence = no_fence,
        dry_run: bool = False,
        wait_for_budget: bool = True,
    ) -> None:
        self._marathon = marathon
        self._bundles = bundles
        self._label = label
        self._rules = tuple(rules)
        self._gate = gate
        self._owner = owner
        self._fence = fence
        self._dry_run = dry_run
        self._wait_for_budget = wait_for_budget

    async def reconcile(self, app_id: AppId, *, listed: RawApp | None = None) -> AppOutcome:
        """Converge ``app_id``; a deleted app is ``gone``.

        A copy from a relist saves a GET when it needs no change (as an informer cache would).
        A write is planned again from a read made once its write slot is held: waiting for a
        rate token or a deployment slot can take minutes, and an entry a user added meanwhile
        must not be lost. Between that read and the write nothing else is awaited, so only an
        edit landing within the same round trip can race it (Marathon has no compare-and-set).
        """
        app = listed if listed is not None else await self._get(app_id)
        if app is None:
            return AppOutcome(app_id=app_id, action="gone")
        plan, location = await self.desired(app)
        if not plan.changed:
            return _unchanged(plan, location)
        if self._dry_run:
            return AppOutcome(app_id=app_id, action="would_update", plan=plan)
        async with self._gate.write(wait=self._wait_for_budget) as slot:
            if slot is None:
                return AppOutcome(app_id=app_id, action="deferred", plan=plan)
            await self._fence()
            fresh = await self._get(app_id)
            if fresh is None:
                return AppOutcome(app_id=app_id, action="gone")
            decision = eligibility(fresh, label=self._label, rules=self._rules)
            if decision.registry == plan.eligibility.registry:
                plan = plan_app(fresh, decision, location, owner=self._owner)
            else:  # the image moved to another registry meanwhile (rare): find its bundle
                plan, location = await self.desired(fresh)
            if not plan.changed:
                return _unchanged(plan, location)
            slot.deployment_id = await self._marathon.update_app(app_id,
                                                                 update_body(fresh, plan))
            deployment_id = slot.deployment_id
        return AppOutcome(app_id=app_id, action="updated", plan=plan,
                          deployment_id=deployment_id, requeue_after=_renew_in(location))

    async def desired(self, app: RawApp) -> tuple[AppPlan, BundleLocation | None]:
        """What ``app``'s fetch list should be, publishing its registry's bundle if needed."""
        decision = eligibility(app, label=self._label, rules=self._rules)
        location = (await self._bundles.location(decision.registry)
                    if decision.registry is not None else None)
        return plan_app(app, decision, location, owner=self._owner), location

    async def _get(self, app_id: AppId) -> RawApp | None:
        try:
            return await self._marathon.get_app(app_id)
        except MarathonNotFound:
            return None


def _renew_in(location: BundleLocation | None) -> float | None:
    return location.renew_in if location is not None else None


def _unchanged(plan: AppPlan, location: BundleLocation | None) -> AppOutcome:
    return AppOutcome(app_id=plan.app_id, action="unchanged", plan=plan,
                      requeue_after=_renew_in(location))
