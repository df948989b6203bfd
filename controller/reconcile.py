"""The reconcilers: app id in, converged app out; registry in, current bundle out.

Level-triggered: ``AppReconciler`` reads the app, asks the pure planner what the fetch list
should be, and writes only when that differs from what Marathon has, planning the write again
from a read made once the write slot is held. Every write goes through the write gate (rate
limit + deployment budget) and the leadership fence. It owns what only apps need: the apps
waiting for a locking deployment, the apps waiting for a deployment slot, and the status book.
``RegistryReconciler`` keeps each registry's bundle current. Failures are raised for the
controller's handler to retry (``controller.controller``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import structlog

from controller.controller import Result
from controller.dialect import Dialect
from controller.errors import (
    MarathonConflict,
    MarathonDeploymentLimit,
    MarathonNotFound,
)
from controller.marathon import MarathonAPI
from controller.metrics import APP_STATES, Metrics
from controller.model import AppId, BundleLocation, RawApp
from controller.passreport import AppOutcome, PassReport
from controller.plan import (
    DEFAULT_OWNER,
    AppPlan,
    RegistryRule,
    eligibility,
    plan_app,
    update_body,
)
from controller.publisher import BundleManager, Fence, no_fence
from controller.ratelimit import DeploymentBudget, TokenBucket
from controller.statusbook import AppStatus, StatusBook

__all__ = ["AppReconciler", "RegistryReconciler", "WriteGate", "WriteSlot"]

log = structlog.get_logger(component="reconcile")

_LOCKED_RECHECK_SECONDS = 30.0
_DEFERRED_SECONDS = 10.0
_VERIFY_REQUEST_INTERVAL_SECONDS = 5.0
"""Asked-for logins with one registry are at least this far apart."""
_DONE: dict[str | None, str] = {"add": "bundle entry added", "replace": "bundle entry replaced",
                                "remove": "bundle entry removed"}

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

    async def write_token(self) -> None:
        """Wait for a rate token only: for a write that starts no deployment (a launch delay
        reset)."""
        await self._bucket.acquire()


@dataclass(slots=True)
class WriteSlot:
    deployment_id: str | None = None


class AppReconciler:
    """Converges one app per call and keeps what the daemon knows of each app.

    ``wait_for_budget=False`` (the daemon) defers a write when the deployment budget is spent
    instead of holding a worker; the one-shot pass waits, and gives up on an app once
    ``max_conflicts`` 409s in a row leave it locked. ``after_converge`` runs after each converge
    that did not raise, within the same reconcile (the daemon's launch delay resets).
    """

    key_field = "app_id"

    def __init__(
        self,
        *,
        marathon: MarathonAPI,
        bundles: BundleManager,
        label: str,
        rules: Sequence[RegistryRule],
        gate: WriteGate,
        budget: DeploymentBudget,
        status: StatusBook,
        metrics: Metrics,
        owner: str = DEFAULT_OWNER,
        fence: Fence = no_fence,
        dry_run: bool = False,
        wait_for_budget: bool = True,
        max_conflicts: int | None = None,
        take_listed: Callable[[AppId], RawApp | None] = lambda app_id: None,
        report: PassReport | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_converge: Callable[[AppOutcome], Awaitable[None]] | None = None,
    ) -> None:
        self._marathon = marathon
        self._bundles = bundles
        self._after_converge = after_converge
        self._label = label
        self._rules = tuple(rules)
        self._gate = gate
        self._budget = budget
        self._owner = owner
        self._fence = fence
        self._dry_run = dry_run
        self._wait_for_budget = wait_for_budget
        self._max_conflicts = max_conflicts
        self._take_listed = take_listed
        self._report = report
        self._metrics = metrics
        self._now = now
        self.status = status
        self._waiting_on: defaultdict[str, set[AppId]] = defaultdict(set)
        """Apps locked by a deployment, by its id: they come back when it ends."""
        self._deferred: set[AppId] = set()
        """Apps waiting for a deployment slot; they come back as soon as one frees up."""
        self._conflicts: Counter[AppId] = Counter()
        self._locked_until: dict[AppId, float] = {}
        """Until when a locked app is not tried again, unless its deployment ends first: a
        relist or an event naming it meanwhile would only earn another 409."""

    # -- the Reconciler protocol ---------------------------------------------------------------

    async def reconcile(self, app_id: AppId) -> Result:
        locked_for = self._locked_until.get(app_id, 0.0) - time.monotonic()
        if locked_for > 0:
            return Result(requeue_after=locked_for, waiting=True, log={"action": "locked"})
        self._locked_until.pop(app_id, None)
        try:
            outcome = await self.converge(app_id, listed=self._take_listed(app_id))
            if self._after_converge is not None:  # remediation: a launch delay reset, say
                await self._after_converge(outcome)
        except MarathonConflict as e:
            return self._locked(app_id, e)
        except MarathonDeploymentLimit as e:
            return self._over_limit(app_id, e)
        except Exception as e:
            self.status.fail(app_id, str(e) or type(e).__name__, self._now())
            if self._report is not None:
                self._report.fail(app_id, e)
            raise
        finally:
            self._update_gauges()
        self._conflicts.pop(app_id, None)
        self._deferred.discard(app_id)
        if self._report is not None and outcome.action != "deferred":
            self._report.outcomes.append(outcome)
        return self._result(outcome)

    def deployment_finished(self, deployment_id: str) -> set[AppId]:
        """A deployment ended: the apps it locked, and every app waiting for a slot, may go on.
        Returns them, for the caller to queue."""
        self._budget.finished(deployment_id)
        released = self._waiting_on.pop(deployment_id, set())
        for app_id in released:
            self._locked_until.pop(app_id, None)
        ready = released | self._deferred
        self._deferred = set()
        return ready

    @property
    def waited_on(self) -> set[str]:
        """The deployments some app waits for (a one-shot pass polls Marathon for them)."""
        return set(self._waiting_on)

    # -- converging one app --------------------------------------------------------------------

    async def converge(self, app_id: AppId, *, listed: RawApp | None = None) -> AppOutcome:
        """Converge ``app_id``; a deleted app is ``gone``.

        A copy from a relist saves a GET when it needs no change (as an informer cache would).
        A write is planned again from a read made once its write slot is held: waiting for a
        rate token or a deployment slot can take minutes, and an entry a user added meanwhile
        must not be lost. Between that read and the write nothing else is awaited, so only an
        edit landing within the same round trip can race it (Marathon has no compare-and-set).
        That plan, and the body, follow the client's ``Dialect``, learnt before the read; the
        first plan reads the app's own fields, so that an app that needs nothing costs no
        ``/v2/info``.
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
            dialect = await self._marathon.dialect()
            fresh = await self._get(app_id)
            if fresh is None:
                return AppOutcome(app_id=app_id, action="gone")
            decision = eligibility(fresh, label=self._label, rules=self._rules)
            if decision.registry == plan.eligibility.registry:
                plan = plan_app(fresh, decision, location, owner=self._owner, dialect=dialect)
            else:  # the image moved to another registry meanwhile (rare): find its bundle
                plan, location = await self.desired(fresh, dialect)
            if not plan.changed:
                return _unchanged(plan, location)
            slot.deployment_id = await self._marathon.update_app(
                app_id, update_body(fresh, plan, dialect))
            deployment_id = slot.deployment_id
        return AppOutcome(app_id=app_id, action="updated", plan=plan,
                          deployment_id=deployment_id, requeue_after=_renew_in(location))

    async def desired(self, app: RawApp, dialect: Dialect | None = None
                      ) -> tuple[AppPlan, BundleLocation | None]:
        """What ``app``'s fetch list should be, publishing its registry's bundle if needed;
        without a ``dialect``, the app's own fields say which list carries it."""
        decision = eligibility(app, label=self._label, rules=self._rules)
        location = (await self._bundles.location(decision.registry)
                    if decision.registry is not None else None)
        return plan_app(app, decision, location, owner=self._owner,
                        dialect=dialect or Dialect()), location

    # -- planning listed apps inline ---------------------------------------------------------

    async def locations(self) -> dict[str, BundleLocation]:
        """Every configured registry's bundle location that can be had now, read once for a
        whole list; a registry whose bundle cannot be had is left out (its apps go to workers,
        which report it)."""
        found: dict[str, BundleLocation] = {}
        for rule in self._rules:
            try:
                found[rule.registry] = await self._bundles.location(rule.registry)
            except Exception:  # noqa: BLE001, S112 - a worker meets and reports it per app
                continue
        return found

    def settle(self, app: RawApp, locations: Mapping[str, BundleLocation]) -> AppOutcome | None:
        """Plan a listed app inline, without a task: if it needs no write, record it as a
        reconcile would and return the outcome (its ``requeue_after`` is the caller's); else
        ``None``, and the app goes to a worker. So does an app this reconciler is waiting
        on (locked, deferred, in conflict), a malformed one, and one whose bundle location is
        not in ``locations``. Pure but for the bookkeeping; call ``settled`` after a list."""
        app_id = AppId(app["id"])
        if app_id in self._locked_until or app_id in self._deferred or app_id in self._conflicts:
            return None
        try:
            decision = eligibility(app, label=self._label, rules=self._rules)
            location = None
            if decision.registry is not None:
                location = locations.get(decision.registry)
                if location is None:
                    return None
            plan = plan_app(app, decision, location, owner=self._owner)
        except Exception:  # noqa: BLE001 - a malformed app: a worker meets and reports it
            return None
        if plan.changed:
            return None
        outcome = _unchanged(plan, location)
        if self._report is not None:
            self._report.outcomes.append(outcome)
        self._record(outcome, None)
        return outcome

    def settled(self, count: int) -> None:
        """``count`` apps were settled inline: count them as reconciles, and set the gauges."""
        if count:
            self._metrics.reconcile_total.labels(result="success").inc(count)
        self._update_gauges()

    async def _get(self, app_id: AppId) -> RawApp | None:
        try:
            return await self._marathon.get_app(app_id)
        except MarathonNotFound:
            return None

    # -- bookkeeping ---------------------------------------------------------------------------

    def _result(self, outcome: AppOutcome) -> Result:
        app_id, plan = outcome.app_id, outcome.plan
        fields: dict[str, object] = {"action": outcome.action}
        if plan is not None and plan.eligibility.reason != "eligible":
            fields["reason"] = plan.eligibility.reason  # why it gets no bundle
        if outcome.action == "gone":
            self.status.forget(app_id)
            return Result(log=fields)
        if outcome.action == "deferred":  # back when a deployment ends, or to poll the budget
            self._deferred.add(app_id)
            self._record(outcome, "pending")
            return Result(requeue_after=_DEFERRED_SECONDS, waiting=True, log=fields)
        if outcome.action == "updated":
            self._metrics.deployments_triggered.inc()
            fields["deployment_id"] = outcome.deployment_id
            if plan is not None:
                self.status.note("write", app_id, f"{plan.change} the bundle entry "
                                 f"(deployment {outcome.deployment_id})", self._now())
        if plan is not None and plan.change:
            fields["change"] = plan.change
        if plan is not None and plan.conflict:
            fields["conflict"] = list(plan.conflict)
        self._record(outcome, "pending" if outcome.action in ("updated", "would_update")
                     else None)
        return Result(requeue_after=outcome.requeue_after, log=fields)

    def _record(self, outcome: AppOutcome, state: Literal["pending"] | None) -> None:
        plan = outcome.plan
        if plan is None:
            return
        decision = plan.eligibility
        if decision.reason == "not_opted_in" and not plan.changed:
            self.status.forget(outcome.app_id)  # not ours: keep the book to opted-in apps
            return
        if plan.conflict:
            others = ", ".join(plan.conflict)
            if self.status.state_of(outcome.app_id) != "conflict":
                log.warning("app_ownership_conflict", app_id=outcome.app_id, others=others)
            self.status.record(outcome.app_id, AppStatus(
                state="conflict", registry=decision.registry, last_reconcile=self._now(),
                detail=f"also managed by controller {others}: neither changes it; give this "
                       "app's registry to one controller only"))
            return
        self.status.record(outcome.app_id, AppStatus(
            state=state or ("converged" if decision.registry else "skipped"),
            detail=decision.detail or _DONE.get(plan.change, "its bundle entry is in place"),
            registry=decision.registry,
            last_reconcile=self._now(),
            deployment_id=outcome.deployment_id,
        ))

    def _locked(self, app_id: AppId, error: MarathonConflict) -> Result:
        """Wait for the locking deployments to end (their end re-adds the app); never force."""
        self._conflicts[app_id] += 1
        if self._max_conflicts is not None and self._conflicts[app_id] > self._max_conflicts:
            self._conflicts.pop(app_id)
            raise error
        for deployment in error.deployment_ids:
            self._waiting_on[deployment].add(app_id)
        self._locked_until[app_id] = time.monotonic() + _LOCKED_RECHECK_SECONDS
        self.status.fail(app_id, str(error), self._now(), state="locked")
        return Result(requeue_after=_LOCKED_RECHECK_SECONDS, waiting=True,
                      log={"action": "locked", "waiting_on": list(error.deployment_ids)})

    def _over_limit(self, app_id: AppId, error: MarathonDeploymentLimit) -> Result:
        """Marathon runs its maximum of deployments: wait like a spent budget, never force."""
        self._budget.limit_reached()
        self._deferred.add(app_id)
        self.status.fail(app_id, str(error), self._now(), state="pending")
        return Result(requeue_after=_DEFERRED_SECONDS, waiting=True,
                      log={"action": "deferred", "error": str(error)})

    def _update_gauges(self) -> None:
        counts = self.status.counts()
        for state in APP_STATES:
            self._metrics.apps.labels(state=state).set(counts.get(state, 0))
        self._metrics.deployments_in_flight.set(self._budget.in_flight)


class RegistryReconciler:
    """Keeps one registry's bundle current; comes back when it falls due. A failure keeps the
    last good bundle and is retried with the controller's backoff.

    ``on_recovered`` is told when a failing registry refreshed again; ``on_published`` when a
    new bundle went out whose credential the registry had just accepted (a verified fix), or
    any new bundle of a registry with ``verify: off``.
    ``enqueue_after`` queues a registry key after a delay (the controller's queue).
    """

    key_field = "registry"

    def __init__(self, bundles: BundleManager, status: StatusBook, *,
                 report: PassReport | None = None,
                 on_recovered: Callable[[str], None] = lambda registry: None,
                 on_published: Callable[[str], None] = lambda registry: None,
                 enqueue_after: Callable[[str, float], None] = lambda registry, delay: None,
                 min_verify_interval: float = _VERIFY_REQUEST_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._bundles = bundles
        self._status = status
        self._report = report
        self._on_recovered = on_recovered
        self._on_published = on_published
        self._enqueue_after = enqueue_after
        self._min_verify_interval = min_verify_interval
        self._clock = clock
        self._now = now
        self._verify_requested: set[str] = set()
        self._last_requested_check: dict[str, float] = {}

    def request_verification(self, registry: str) -> None:
        """Have the next reconcile of ``registry`` try its current credential against the
        registry even if the bundle is unchanged (e.g. a task failed to pull for auth).

        Requests are coalesced: at most one such login per ``min_verify_interval``, and none
        while the registry is failing (its backoff retry tries the credential anyway), so a
        storm of failed pulls cannot turn into a storm of logins that may lock the account.
        A registry that is not verified (``verify: off``) only has its source read again;
        one that is not configured is ignored.
        """
        if registry not in self._bundles.states:
            return
        if self._bundles.verifies(registry):
            self._verify_requested.add(registry)
        if self._bundles.states[registry].failures:
            return
        last = self._last_requested_check.get(registry)
        delay = 0.0 if last is None else last + self._min_verify_interval - self._clock()
        self._enqueue_after(registry, max(0.0, delay))

    async def reconcile(self, registry: str) -> Result:
        failing = self._bundles.states[registry].failures > 0
        requested = registry in self._verify_requested
        if requested:
            self._verify_requested.discard(registry)
            self._last_requested_check[registry] = self._clock()
        try:
            action = await self._bundles.refresh(registry, verify_current=requested)
        except Exception as e:
            if requested:
                self._verify_requested.add(registry)  # the retry still owes the login
            message = str(e) or type(e).__name__
            self._status.note("failure", registry, message, self._now())
            if self._report is not None:
                self._report.registry_failures[registry] = message
            raise
        if failing:  # apps that failed for want of this bundle need not wait out their backoff
            self._on_recovered(registry)
        # A fix went out: verified, or from a registry the operator chose not to verify.
        trusted = (self._bundles.states[registry].published_verified
                   or not self._bundles.verifies(registry))
        if trusted and action in ("published", "repaired"):
            self._on_published(registry)
        return Result(requeue_after=self._bundles.refresh_in(registry), log={"action": action})


def _renew_in(location: BundleLocation | None) -> float | None:
    return location.renew_in if location is not None else None


def _unchanged(plan: AppPlan, location: BundleLocation | None) -> AppOutcome:
    return AppOutcome(app_id=plan.app_id, action="unchanged", plan=plan,
                      requeue_after=_renew_in(location))
