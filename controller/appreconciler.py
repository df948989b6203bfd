"""The app reconciler: app id in, converged app out.

Level-triggered: ``AppReconciler`` reads the app, asks the pure planner what the fetch list
should be, and writes only when that differs from what Marathon has, planning the write again
from a read made once the write slot is held. Every write goes through the write gate (rate
limit, deployment budget, leadership fence). What it learns of an app beyond its definition
(its registry, the deployments that lock it, fights with other writers, its status) goes to
the term's ``AppIndex``. Failures are raised for the handler to retry (``controller.handler``).

A write is never forced, with one exception (``remediation.rescue_stuck_deployments``): a
deployment that rolls out a definition without this controller's entry and whose tasks fail to
pull is *stuck* (Marathon ends a deployment only when its new tasks run, and has no timeout), so
the controller forces one write that adds the entry to exactly that definition, once per
deployment, and only when the deployment changes this app alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Literal, Protocol

import msgspec
import structlog

from controller.appindex import AppIndex, AppStatus
from controller.bundles import BundleManager
from controller.dialect import Dialect
from controller.errors import (
    MarathonConflict,
    MarathonDeploymentLimit,
    MarathonNotFound,
    MarathonRejected,
    WriteRecorded,
)
from controller.handler import Result
from controller.imagecheck import UNPULLABLE, ImageChecks
from controller.marathon.api import MarathonAPI
from controller.model import AppId, AppState, BundleLocation, RawApp, RescueOutcome
from controller.outcome import AppOutcome
from controller.plan import AppPlan, Change, Eligibility, Planner, update_body
from controller.pullfailure import classify_status_update
from controller.ratelimit import WriteGate
from controller.registryapi.results import ImageCheck

__all__ = ["AppObserver", "AppPolicy", "AppReconciler", "OutcomeListener"]

log = structlog.get_logger(component="reconcile")

LOCKED_RECHECK_SECONDS = 30.0
"""A locked app is looked at again this often, unless its deployment ends (or a failed pull
says it may be stuck) first."""
_DEFERRED_SECONDS = 10.0
_CONCURRENT_LOCATIONS = 4
"""Registries whose bundles are looked up (and refreshed, the first time) at once."""
_DONE: dict[str | None, str] = {"add": "bundle entry added", "replace": "bundle entry replaced",
                                "remove": "bundle entry removed"}


class AppObserver(Protocol):
    """What the app reconciler counts (``Metrics`` is one)."""

    def on_settled(self, count: int) -> None: ...

    def on_deployment_started(self) -> None: ...

    def on_rescue(self, result: RescueOutcome) -> None: ...

    def on_withheld(self, reason: str) -> None: ...

    def on_apps(self, counts: Mapping[str, int], deployments_in_flight: int) -> None: ...


class OutcomeListener(Protocol):
    """Told what each converge did: the remediator (which may reset a launch delay, within the
    app's own reconcile, so serialised with its writes) and a one-shot pass's report."""

    async def converged(self, outcome: AppOutcome) -> None:
        """A worker's converge ended without raising (whatever its action)."""

    def settled(self, outcome: AppOutcome) -> None:
        """A listed app was planned inline and needs nothing."""

    def settled_many(self, apps: Sequence[tuple[AppId, Eligibility]]) -> None:
        """Listed apps found to need nothing without a plan (``controller.applist.Triage``),
        once per list: each with its decision, which is all there is to tell of it."""

    def failed(self, app_id: AppId, error: Exception) -> None:
        """A converge raised, or a one-shot pass gave up on a locked app."""


class AppPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The controller's planning rules, where the daemon and a one-shot pass act differently,
    and what the operator chose."""

    planner: Planner
    wait_for_budget: bool = True
    """Wait for a deployment slot (a one-shot pass) or defer the app (the daemon)."""
    max_conflicts: int | None = None
    """Give up on an app after this many 409s in a row (a one-shot pass)."""
    rescue_stuck: bool = True
    """``remediation.rescue_stuck_deployments``."""


class _Stuck(msgspec.Struct, frozen=True, kw_only=True):
    deployment_ids: tuple[str, ...]
    version: str | None
    reason: str
    """The failed pull's reason (``auth``...)."""


class AppReconciler:
    """Converges one app per call, and records what it learns in the term's ``AppIndex``;
    tells its ``listeners`` what each converge did."""

    key_field = "app_id"

    def __init__(
        self,
        *,
        marathon: MarathonAPI,
        bundles: BundleManager,
        images: ImageChecks | None,
        gate: WriteGate,
        index: AppIndex,
        observer: AppObserver,
        policy: AppPolicy,
        listeners: Sequence[OutcomeListener] = (),
    ) -> None:
        self._marathon = marathon
        self._bundles = bundles
        self._images = images
        self._gate = gate
        self.index = index
        self._observer = observer
        self._policy = policy
        self._planner = policy.planner
        self._listeners = tuple(listeners)

    @property
    def planner(self) -> Planner:
        return self._planner

    # -- the Reconciler protocol ---------------------------------------------------------------

    async def reconcile(self, app_id: AppId) -> Result:
        try:
            outcome = await self.converge(app_id, listed=self.index.take_listed(app_id))
            for listener in self._listeners:
                await listener.converged(outcome)
        except MarathonDeploymentLimit as e:
            result = self._over_limit(app_id, e)
        except Exception as e:
            self.index.fail(app_id, str(e) or type(e).__name__)
            for listener in self._listeners:
                listener.failed(app_id, e)
            raise
        else:
            result = self._result(outcome)
        finally:
            self._update_gauges()  # after the book has the outcome
        return result

    def deployment_finished(self, deployment_id: str) -> set[AppId]:
        """A deployment ended: the apps it locked, and every app waiting for a slot, may go on.
        Returns them, for the caller to queue."""
        self._gate.budget.finished(deployment_id)
        return self.index.deployment_finished(deployment_id)

    @property
    def waited_on(self) -> set[str]:
        """The deployments some app waits for (a one-shot pass polls Marathon for them)."""
        return self.index.waited_on()

    # -- converging one app --------------------------------------------------------------------

    async def converge(self, app_id: AppId, *, listed: RawApp | None = None) -> AppOutcome:
        """Converge ``app_id``; a deleted app is ``gone``.

        A copy from a relist saves a GET when it needs no change (as an informer cache would).
        A write is planned again from a read made once its write slot is held: waiting for a
        rate token or a deployment slot can take minutes, and an entry a user added meanwhile
        must not be lost. Between that read and the write nothing else is awaited but, for a
        stuck deployment, the look at what it changes, so only an edit landing within that
        round trip can race it (Marathon has no compare-and-set). That plan, and the body,
        follow the client's ``Dialect``, learnt before the read; the first plan reads the
        app's own fields, so that an app that needs nothing costs no ``/v2/info``.
        """
        app = listed if listed is not None else await self._get(app_id)
        if app is None:
            return AppOutcome(app_id=app_id, action="gone")
        outcome = await self._converge(app_id, app)
        registry = outcome.plan.eligibility.registry if outcome.plan is not None else None
        image = _image(app)
        if registry is None or image is None or self._images is None:
            return outcome
        check = await self._images.check(registry, image)
        return outcome if check is None else msgspec.structs.replace(outcome, image_check=check)

    async def _converge(self, app_id: AppId, app: RawApp) -> AppOutcome:
        plan, location = await self.desired(app)
        if not plan.changed:
            return _unchanged(plan, location)
        if self.index.fight(app_id) is not None:
            return self._withheld(app_id, plan)
        async with self._gate.write(wait=self._policy.wait_for_budget) as slot:
            if slot is None:
                return AppOutcome(app_id=app_id, action="deferred", plan=plan)
            dialect = await self._marathon.dialect()
            fresh = await self._get(app_id)
            if fresh is None:
                return AppOutcome(app_id=app_id, action="gone")
            decision = self._planner.eligibility(fresh)
            if decision.registry == plan.eligibility.registry:
                plan = self._planner.plan(fresh, decision, location, dialect)
            else:  # the image moved to another registry meanwhile (rare): find its bundle
                plan, location = await self.desired(fresh, dialect)
            if not plan.changed:
                return _unchanged(plan, location)
            if self._entry_taken(app_id, plan, location):
                return self._withheld(app_id, plan)
            version = fresh.get("version")
            stuck = self._stuck(app_id, fresh)
            if stuck is not None:
                refused = await self._rescue_refused(app_id, stuck, plan)
                if refused is not None:
                    return refused
            try:
                slot.deployment_id = await self._marathon.update_app(
                    app_id, update_body(fresh, plan, dialect), force=stuck is not None)
            except WriteRecorded:  # a dry run: the write was recorded, not sent
                return AppOutcome(app_id=app_id, action="would_update", plan=plan)
            except MarathonConflict as e:
                return AppOutcome(app_id=app_id, action="locked", plan=plan,
                                  locked_by=e.deployment_ids, version=version, detail=str(e))
            except MarathonRejected as e:
                if stuck is not None:
                    self._rescued(app_id, stuck, "error", error=str(e))
                raise
            if stuck is not None:
                self._rescued(app_id, stuck, "ok", deployment_id=slot.deployment_id)
            deployment_id = slot.deployment_id
        self.index.wrote(app_id, location.uri if plan.eligibility.registry and location
                         else None)
        return AppOutcome(app_id=app_id, action="updated", plan=plan, forced=stuck is not None,
                          deployment_id=deployment_id, requeue_after=_renew_in(location))

    async def desired(self, app: RawApp, dialect: Dialect | None = None
                      ) -> tuple[AppPlan, BundleLocation | None]:
        """What ``app``'s fetch list should be, publishing its registry's bundle if needed;
        without a ``dialect``, the app's own fields say which list carries it.

        The app is ours for its registry from this first plan on, bundle or not: its failed
        pulls count even before a bundle could be published."""
        decision = self._planner.eligibility(app)
        self.index.track(AppId(app["id"]), decision.registry)
        location = (await self._bundles.location(decision.registry)
                    if decision.registry is not None else None)
        return self._planner.plan(app, decision, location, dialect or Dialect()), location

    # -- other writers: fights and stuck deployments -------------------------------------------

    def _entry_taken(self, app_id: AppId, plan: AppPlan, location: BundleLocation | None
                     ) -> bool:
        """Whether the app is now in a fight: a fresh read shows the entry this term wrote gone
        or changed (the plan wants that very entry back), which counts as one removal by
        another writer, and removals reached ``reconcile.fight_limit`` within the window."""
        written = self.index.written(app_id)
        if (written is None or location is None or written != location.uri
                or plan.change not in ("add", "replace")):
            return False
        fight = self.index.removed(app_id)
        if fight is not None:
            until = self.index.now() + timedelta(seconds=max(0.0, fight.until - self.index.clock()))
            log.warning("app_fight_detected", app_id=app_id, removals=fight.removals,
                        writer=fight.writer, until=until.isoformat())
        return fight is not None

    def _withheld(self, app_id: AppId, plan: AppPlan) -> AppOutcome:
        """No write while the app is in a fight: count it, and say why and until when."""
        fight = self.index.fight(app_id)
        assert fight is not None
        self._observer.on_withheld("fight")
        left = max(0.0, fight.until - self.index.clock())
        until = self.index.now() + timedelta(seconds=left)
        who = f" (last: {fight.writer})" if fight.writer else ""
        return AppOutcome(
            app_id=app_id, action="withheld", plan=plan, requeue_after=max(1.0, left),
            detail=f"another writer keeps removing the entry{who}: {fight.removals} times within "
                   f"reconcile.fight_window; no write before {until:%Y-%m-%d %H:%M:%S} UTC. Let "
                   "the other writer carry the entry (pullsecret-controller inject), or stop it")

    def _stuck(self, app_id: AppId, fresh: RawApp) -> _Stuck | None:
        """The deployments that lock ``fresh`` if they are stuck: the definition they roll out
        (``fresh``, which lacks our entry) has tasks that failed to pull since (an event the
        index kept, or the app's ``lastTaskFailure``)."""
        deployments = tuple(d["id"] for d in fresh.get("deployments") or ()
                            if isinstance(d, dict) and isinstance(d.get("id"), str))
        if not deployments:
            return None
        version = fresh.get("version")
        note = self.index.stuck_evidence(app_id, version)
        if note is not None:
            return _Stuck(deployment_ids=deployments, version=version, reason=note.reason)
        failure = fresh.get("lastTaskFailure")
        if isinstance(failure, dict) and failure.get("version") == version:
            pull = classify_status_update({"taskStatus": failure.get("state"),
                                           "message": failure.get("message")})
            if pull is not None:
                return _Stuck(deployment_ids=deployments, version=version, reason=pull.reason)
        return None

    async def _rescue_refused(self, app_id: AppId, stuck: _Stuck, plan: AppPlan
                              ) -> AppOutcome | None:
        """Whether the stuck deployment may be rescued; the ``stuck`` outcome if not."""
        first = self.index.first_report_of_stuck(app_id, stuck.deployment_ids)
        if first:
            log.warning("deployment_stuck", app_id=app_id, deployments=list(stuck.deployment_ids),
                        reason=stuck.reason, rescue=self._policy.rescue_stuck)
        others = await self._others_in(stuck.deployment_ids, app_id) if (
            self._policy.rescue_stuck) else set()
        shown = ", ".join(stuck.deployment_ids)
        if not self._policy.rescue_stuck:
            why = ("remediation.rescue_stuck_deployments is off: deploy the definition with the "
                   "entry (pullsecret-controller inject), cancel the deployment "
                   f"(DELETE /v2/deployments/{stuck.deployment_ids[0]}), or turn rescue on")
        elif others:
            if first:
                self._observer.on_rescue("not_alone")
            why = (f"deployment {shown} also changes {', '.join(sorted(others)[:5])}: forcing a "
                   "write would cancel it for them too; deploy the group with the entry "
                   "(pullsecret-controller inject), or cancel the deployment")
        elif not self.index.record(app_id).rescued.isdisjoint(stuck.deployment_ids):
            why = ("the controller already forced one write over this deployment; cancel it, "
                   "or deploy a definition with the entry")
        else:
            return None
        return AppOutcome(
            app_id=app_id, action="stuck", plan=plan, locked_by=stuck.deployment_ids,
            version=stuck.version,
            detail=f"deployment {shown} rolls out a definition without this controller's entry "
                   f"and its tasks fail to pull ({stuck.reason}): {why}")

    async def _others_in(self, deployment_ids: tuple[str, ...], app_id: AppId) -> set[str]:
        """The other apps and pods the deployments change (a deployment already gone changes
        none: the write will tell)."""
        others: set[str] = set()
        for deployment in await self._marathon.list_deployments():
            if deployment["id"] in deployment_ids:
                others.update(a for a in deployment.get("affectedApps") or () if a != app_id)
                others.update(deployment.get("affectedPods") or ())
        return others

    def _rescued(self, app_id: AppId, stuck: _Stuck, result: RescueOutcome, *,
                 deployment_id: str | None = None, error: str | None = None) -> None:
        self.index.rescued(app_id, stuck.deployment_ids)
        self._observer.on_rescue(result)
        fields = {"app_id": app_id, "stuck": list(stuck.deployment_ids), "result": result}
        if result == "ok":
            log.warning("deployment_rescued", deployment_id=deployment_id, **fields)
            self.index.note("write", app_id, f"forced the bundle entry over stuck deployment "
                             f"{', '.join(stuck.deployment_ids)} (deployment {deployment_id})")
        else:
            log.error("deployment_rescued", error=error, **fields)

    # -- planning listed apps inline ---------------------------------------------------------

    async def locations(self) -> dict[str, BundleLocation]:
        """Every configured registry's bundle location that can be had now, read once for a
        whole list; a registry whose bundle cannot be had is left out (its apps go to workers,
        which report it)."""
        slots = asyncio.Semaphore(_CONCURRENT_LOCATIONS)

        async def location(registry: str) -> BundleLocation | None:
            async with slots:  # one slow registry must not hold up the others
                try:
                    return await self._bundles.location(registry)
                except Exception:  # noqa: BLE001 - a worker meets and reports it per app
                    return None

        registries = [rule.registry for rule in self._planner.rules]
        found = await asyncio.gather(*(location(r) for r in registries))
        return {r: loc for r, loc in zip(registries, found, strict=True) if loc is not None}

    def plan_listed(self, app: RawApp, locations: Mapping[str, BundleLocation]
                    ) -> AppOutcome | None:
        """Plan a listed app inline with the planner: if it needs no write, record it as a
        reconcile would and return the outcome; else ``None``, and the app goes to a worker.
        So does a malformed app, and one whose bundle location is not in ``locations``."""
        app_id = AppId(app["id"])
        try:
            decision = self._planner.eligibility(app)
            location = None
            if decision.registry is not None:
                location = locations.get(decision.registry)
                if location is None:
                    return None
            plan = self._planner.plan(app, decision, location)
        except Exception:  # noqa: BLE001 - a malformed app: a worker meets and reports it
            return None
        if plan.changed:
            return None
        image = _image(app)
        check = None
        if decision.registry is not None and image is not None:
            known = self._known_check(decision.registry, image)
            if isinstance(known, bool):
                return None  # a worker asks the registry
            check = known
        self.index.track(app_id, decision.registry)
        outcome = msgspec.structs.replace(_unchanged(plan, location), image_check=check)
        for listener in self._listeners:
            listener.settled(outcome)
        self._record(outcome, None)
        return outcome

    def settle_converged(self, app_id: AppId, decision: Eligibility, image: str) -> bool:
        """An opted-in app whose entry is in place (the triage found it so): record it as a
        reconcile would; False when its image must first be asked about (a worker's job)."""
        assert decision.registry is not None
        check = self._known_check(decision.registry, image)
        if isinstance(check, bool):
            return False
        self.index.track(app_id, decision.registry)
        self._record_status(app_id, decision, check=check)
        return True

    def count_planned(self, count: int, quiet: Sequence[tuple[AppId, Eligibility]]) -> None:
        """``count`` apps were planned inline and needed nothing, ``quiet`` of them without a
        plan: tell the listeners of those, count them all as reconciles, and set the gauges."""
        if quiet:
            for listener in self._listeners:
                listener.settled_many(quiet)
        if count:
            self._observer.on_settled(count)
        self._update_gauges()

    def _known_check(self, registry: str, image: str) -> ImageCheck | Literal[False] | None:
        """What is known of the image with the registry's credential (``None``: nothing to
        know); False when a worker must ask the registry first."""
        if self._images is None:
            return None
        if self._images.needs_asking(registry, image):
            return False
        return self._images.known(registry, image)

    async def _get(self, app_id: AppId) -> RawApp | None:
        try:
            return await self._marathon.get_app(app_id)
        except MarathonNotFound:
            return None

    # -- bookkeeping ---------------------------------------------------------------------------

    def _result(self, outcome: AppOutcome) -> Result:
        app_id, plan, action = outcome.app_id, outcome.plan, outcome.action
        fields: dict[str, object] = {"action": action}
        if plan is not None and plan.eligibility.reason != "eligible":
            fields["reason"] = plan.eligibility.reason  # why it gets no bundle
        if plan is not None and plan.change:
            fields["change"] = plan.change
        if action == "gone":
            self.index.forget(app_id)
            return Result(log=fields)
        if action in ("locked", "stuck"):
            return self._locked(outcome, fields)
        if action == "deferred":  # back when a deployment ends, or to poll the budget
            self.index.deferred(app_id)
            self._record(outcome, "pending")
            return Result(requeue_after=_DEFERRED_SECONDS, waiting=True, log=fields)
        self.index.went_through(app_id)
        if action == "withheld":
            self.index.set_status(app_id, AppStatus(
                state="conflict", registry=plan.eligibility.registry if plan else None,
                detail=outcome.detail, last_reconcile=self.index.now()))
            fields["withheld"] = "fight"
            return Result(requeue_after=outcome.requeue_after, waiting=True, log=fields)
        if action == "updated":
            self._observer.on_deployment_started()
            fields["deployment_id"] = outcome.deployment_id
            if outcome.forced:
                fields["forced"] = True
            if plan is not None:
                self.index.note("write", app_id, f"{plan.change} the bundle entry "
                                f"(deployment {outcome.deployment_id})")
        if plan is not None and plan.conflict:
            fields["conflict"] = list(plan.conflict)
        self._record(outcome, "pending" if action in ("updated", "would_update") else None)
        return Result(requeue_after=outcome.requeue_after, log=fields)

    def _locked(self, outcome: AppOutcome, fields: dict[str, object]) -> Result:
        """Wait for the locking deployments to end (their end re-adds the app), or for a failed
        pull to show they are stuck; a one-shot pass gives up after ``max_conflicts``."""
        app_id = outcome.app_id
        state: AppState = "stuck" if outcome.action == "stuck" else "locked"
        lock = self.index.locked(app_id, outcome.locked_by, outcome.version,
                                 recheck=LOCKED_RECHECK_SECONDS)
        record = self.index.record(app_id)
        limit = self._policy.max_conflicts
        if limit is not None and record.conflicts > limit:
            self.index.went_through(app_id)
            message = outcome.detail or f"locked by deployment {', '.join(outcome.locked_by)}"
            error = MarathonConflict(message, deployment_ids=outcome.locked_by)
            for listener in self._listeners:
                listener.failed(app_id, error)
            self.index.fail(app_id, message, state=state)
            raise error
        if (outcome.action == "locked"
                and self.index.stuck_evidence(app_id, outcome.version) is not None):
            # a task failed to pull while the write was refused: the deployment may be stuck,
            # so look again now rather than at the lock's recheck
            self.index.release(app_id)
            return Result(requeue_after=0.0, waiting=True,
                          log={**fields, "waiting_on": list(outcome.locked_by)})
        since = self.index.now() - timedelta(seconds=max(0.0, self.index.clock() - lock.since))
        registry = outcome.plan.eligibility.registry if outcome.plan is not None else None
        self.index.set_status(app_id, AppStatus(
            state=state, registry=registry, last_reconcile=self.index.now(), since=since,
            deployment_id=outcome.locked_by[0] if outcome.locked_by else None,
            detail=outcome.detail if outcome.action == "stuck" else
            f"waiting for deployment {', '.join(outcome.locked_by)} to end (never forced)",
            last_error=outcome.detail if outcome.action == "locked" else None))
        return Result(requeue_after=LOCKED_RECHECK_SECONDS, waiting=True,
                      log={**fields, "waiting_on": list(outcome.locked_by)})

    def _record(self, outcome: AppOutcome, state: Literal["pending"] | None) -> None:
        plan = outcome.plan
        if plan is not None:
            self._record_status(outcome.app_id, plan.eligibility, change=plan.change,
                                conflict=plan.conflict, check=outcome.image_check,
                                deployment_id=outcome.deployment_id, state=state)

    def _record_status(self, app_id: AppId, decision: Eligibility, *,
                       change: Change | None = None, conflict: tuple[str, ...] = (),
                       check: ImageCheck | None = None, deployment_id: str | None = None,
                       state: Literal["pending"] | None = None) -> None:
        """The app's status after a plan (``change``, ``conflict``) and what came of it."""
        if decision.reason == "not_opted_in" and change is None:
            self.index.clear_status(app_id)  # not ours: keep the book to opted-in apps
            return
        if conflict:
            others = "; ".join(conflict)
            if self.index.state_of(app_id) != "conflict":
                log.warning("app_ownership_conflict", app_id=app_id, others=others)
            self.index.set_status(app_id, AppStatus(
                state="conflict", registry=decision.registry, last_reconcile=self.index.now(),
                detail=f"also managed by {others}: neither changes it; give this app's "
                       "registry to one controller only"))
            return
        if check is not None and check.result in UNPULLABLE:
            self.index.set_status(app_id, AppStatus(
                state="image_unpullable", registry=decision.registry,
                detail=f"its credential cannot pull its image: {check.result} ({check.detail})",
                last_reconcile=self.index.now(), deployment_id=deployment_id,
                image_check=check))
            return
        self.index.set_status(app_id, AppStatus(
            state=state or ("converged" if decision.registry else "skipped"),
            detail=decision.detail or _DONE.get(change, "its bundle entry is in place"),
            registry=decision.registry,
            last_reconcile=self.index.now(),
            deployment_id=deployment_id,
            image_check=check,
        ))

    def _over_limit(self, app_id: AppId, error: MarathonDeploymentLimit) -> Result:
        """Marathon runs its maximum of deployments: wait like a spent budget, never force."""
        self._gate.budget.limit_reached()
        self.index.deferred(app_id)
        self.index.fail(app_id, str(error), state="pending")
        return Result(requeue_after=_DEFERRED_SECONDS, waiting=True,
                      log={"action": "deferred", "error": str(error)})

    def _update_gauges(self) -> None:
        self._observer.on_apps(self.index.counts(), self._gate.budget.in_flight)




def _image(app: RawApp) -> str | None:
    """The app's Docker image, if it names one (the planner has checked the shapes)."""
    container = app.get("container") or {}
    docker = container.get("docker") if isinstance(container, dict) else None
    image = docker.get("image") if isinstance(docker, dict) else None
    return image if isinstance(image, str) else None


def _renew_in(location: BundleLocation | None) -> float | None:
    return location.renew_in if location is not None else None


def _unchanged(plan: AppPlan, location: BundleLocation | None) -> AppOutcome:
    return AppOutcome(app_id=plan.app_id, action="unchanged", plan=plan,
                      requeue_after=_renew_in(location))
