"""The daemon's moving parts: relist, event effects, workers and the resync ticker.

Keys are app ids (``/team-a/web``) or ``RegistryKey``s; a worker takes one key at a time from
the work queue, reconciles it from scratch, and decides from the outcome whether and when the
key comes back: transient errors back off per key, a 409 waits for the locking deployment,
a full deployment budget defers the write, bundles come back when they fall due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import structlog
from structlog.contextvars import bound_contextvars

from controller.errors import MarathonConflict, MarathonDeploymentLimit, TerminalError
from controller.events import EventEffect
from controller.metrics import APP_STATES, Metrics
from controller.model import AppId, RawApp
from controller.reconcile import AppOutcome
from controller.status import AppStatus, StatusBook
from controller.workqueue import QueueShutDown, WorkQueue

if TYPE_CHECKING:
    from controller.app import Components

__all__ = ["Engine", "Key", "RegistryKey"]

log = structlog.get_logger(component="engine")

_LOCKED_RECHECK_SECONDS = 30.0
_DEFERRED_SECONDS = 10.0
_REGISTRY_BACKOFF = (5.0, 300.0)
_RELIST_BACKOFF = (1.0, 60.0)
_EVENT_KEYS_FLOOR = 10_000
"""Events may queue this many app ids beyond twice the last relist's count; past that, an event
storm (ids of apps that may not exist) asks for a relist instead of growing the queue."""
_MAX_APP_ID = 1024
_DONE: dict[str | None, str] = {"add": "bundle entry added", "replace": "bundle entry replaced",
                                "remove": "bundle entry removed"}


@dataclass(frozen=True, slots=True)
class RegistryKey:
    registry: str


Key = AppId | RegistryKey
Result = Literal["success", "error", "requeue_after"]


class Engine:
    def __init__(
        self,
        parts: Components,
        queue: WorkQueue[Key],
        metrics: Metrics,
        *,
        status: StatusBook | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.parts = parts
        self.queue = queue
        self.metrics = metrics
        self.status = status or StatusBook()
        self._now = now
        self._waiting_on: defaultdict[str, set[AppId]] = defaultdict(set)
        self._initial: set[Key] | None = None
        self._listed: dict[AppId, RawApp] = {}
        """Apps as the last relist saw them, until a worker or a newer event uses them up."""
        self._events_seen = 0
        self._touched: dict[AppId, int] = {}
        """The event count when each app was last named by an event (see ``relist``)."""
        self._deferred: set[AppId] = set()
        """Apps waiting for a deployment slot; re-added as soon as one frees up."""
        self._relist_wanted = asyncio.Event()
        self._listed_keys = 0
        self.synced = asyncio.Event()
        self._synced_at: float | None = None
        self.last_relist: float | None = None

    # -- sources of keys ---------------------------------------------------------------------

    async def relist(self) -> None:
        """Enqueue every labelled app, every app we know, and every registry."""
        listed_at = self._events_seen
        apps = await self.parts.marathon.list_apps(
            label_selector=self.parts.settings.selector.label)
        keys: set[Key] = set()
        for app in apps:
            app_id = AppId(app["id"])
            keys.add(app_id)
            if self._touched.get(app_id, -1) <= listed_at:  # else an event is newer than it
                self._listed[app_id] = app
        self._touched = {a: seen for a, seen in self._touched.items() if seen > listed_at}
        keys.update(self.status.apps)
        keys.update(RegistryKey(r) for r in self.parts.bundles.states)
        for key in keys:
            self.queue.add(key)
        if self._initial is None:
            self._initial = set(keys)
            self._check_synced()
        self._listed_keys = len(keys)
        self.last_relist = time.monotonic()
        self.metrics.last_resync.set(time.time())
        log.info("relist_finished", apps=len(apps), keys=len(keys))

    def request_relist(self) -> None:
        """Ask for a relist now (the event stream attached: events may have been missed)."""
        self._relist_wanted.set()

    def on_effect(self, effect: EventEffect) -> None:
        self._events_seen += 1
        app_ids = [a for a in effect.app_ids if len(a) <= _MAX_APP_ID]
        if app_ids and self.queue.depth >= 2 * self._listed_keys + _EVENT_KEYS_FLOOR:
            if not self._relist_wanted.is_set():
                log.warning("event_keys_dropped", queued=self.queue.depth, dropped=len(app_ids))
            self.request_relist()  # the relist finds every labelled app the events named
            app_ids = []
        if effect.finished_deployment is not None:
            self.parts.budget.finished(effect.finished_deployment)
            for app_id in self._waiting_on.pop(effect.finished_deployment, ()):
                self.queue.add(app_id)
            for app_id in self._deferred:  # a deployment slot may be free now
                self.queue.add(app_id)
            self._deferred.clear()
        for app_id in app_ids:
            self._listed.pop(app_id, None)  # the listed copy may predate this event
            self._touched[app_id] = self._events_seen
            self.queue.add(app_id)

    async def resync(self) -> None:
        """The initial sync, then a relist every period (±10 % jitter) and whenever one is
        requested. It runs apart from the event stream, which may fail for good (a proxy that
        refuses ``/v2/events``) while ``/v2/apps`` works; a failed relist is retried with
        backoff."""
        period = self.parts.settings.reconcile.resync_seconds
        base, cap = _RELIST_BACKOFF
        failures = 0
        await self._housekeeping(self.parts.bundles.cleanup)
        while True:
            self._relist_wanted.clear()
            try:
                await self.relist()
                failures = 0
                wait = period * random.uniform(0.9, 1.1)  # noqa: S311
                if self._settled(grace=period):
                    await self._housekeeping(self.parts.bundles.prune)
            except Exception as e:  # noqa: BLE001 - any failure: try again, backing off
                failures += 1
                wait = min(cap, period, base * 2 ** min(failures - 1, 16))
                log.warning("relist_failed", error=str(e) or type(e).__name__,
                            failures=failures, retry_in=wait)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._relist_wanted.wait()

    def _settled(self, *, grace: float) -> bool:
        """Whether stale bundles may go: the first sync is ``grace`` seconds old and no app is
        still on its way (its new tasks might still fetch a stale bundle)."""
        counts = self.status.counts()
        return (self._synced_at is not None and time.monotonic() - self._synced_at >= grace
                and not any(counts[s] for s in ("pending", "failed", "locked")))

    @staticmethod
    async def _housekeeping(chore: Callable[[], Awaitable[list[str]]]) -> None:
        """Storage chores (leftover temp files, stale bundles) never stop the resync loop."""
        try:
            await chore()
        except Exception as e:  # noqa: BLE001 - retried at the next relist or term
            log.warning("storage_housekeeping_failed", error=str(e) or type(e).__name__)

    # -- workers -----------------------------------------------------------------------------

    async def worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                await self.process(key)
            finally:
                self.queue.done(key)
                self._mark_initial_done(key)

    async def process(self, key: Key) -> None:
        """Reconcile one key and schedule its return; writes the canonical log line."""
        started = time.perf_counter()
        timeout = self.parts.settings.reconcile.timeout_seconds
        context = ({"registry": key.registry} if isinstance(key, RegistryKey)
                   else {"app_id": key})
        with bound_contextvars(**context, reconcile_id=uuid.uuid4().hex[:12],
                               attempt=self.queue.retries(key) + 1):
            fields: dict[str, object] = {}
            try:
                async with asyncio.timeout(timeout):
                    if isinstance(key, RegistryKey):
                        result = await self._process_registry(key, fields)
                    else:
                        result = await self._process_app(key, fields)
            except MarathonConflict as e:
                result = self._locked(key, e, fields)
            except MarathonDeploymentLimit as e:
                result = self._over_limit(key, e, fields)
            except TerminalError as e:
                result = self._failed(key, e, fields, retry=False)
            except Exception as e:  # noqa: BLE001 - transient, timeouts and bugs: back off
                result = self._failed(key, e, fields, retry=True)
            duration = time.perf_counter() - started
            self.metrics.reconcile_total.labels(result=result).inc()
            if result == "error":
                self.metrics.reconcile_errors.inc()
            self.metrics.reconcile_seconds.observe(duration)
            self._update_app_gauges()
            log.log(logging.WARNING if result == "error" else logging.INFO,
                    "reconcile_finished", outcome=result,
                    duration_ms=round(duration * 1000, 2), **fields)

    async def _process_app(self, app_id: AppId, fields: dict[str, object]) -> Result:
        outcome = await self.parts.reconciler.reconcile(
            app_id, listed=self._listed.pop(app_id, None))
        fields["action"] = outcome.action
        if outcome.plan is not None and outcome.plan.eligibility.reason != "eligible":
            fields["reason"] = outcome.plan.eligibility.reason  # why it gets no bundle
        self._deferred.discard(app_id)
        if outcome.action == "gone":
            self.queue.forget(app_id)
            self.status.forget(app_id)
            return "success"
        if outcome.action == "deferred":  # back when a deployment ends, or to poll the budget
            self._deferred.add(app_id)
            fields["requeue_after"] = _DEFERRED_SECONDS
            self.queue.add_after(app_id, _DEFERRED_SECONDS)
            self._record(outcome, "pending")
            return "requeue_after"
        self.queue.forget(app_id)
        if outcome.requeue_after is not None:
            self.queue.add_after(app_id, outcome.requeue_after)
            fields["requeue_after"] = round(outcome.requeue_after, 1)
        if outcome.action == "updated":
            self.metrics.deployments_triggered.inc()
            fields["deployment_id"] = outcome.deployment_id
            if outcome.plan is not None:
                self.status.note("write", app_id, f"{outcome.plan.change} the bundle entry "
                                 f"(deployment {outcome.deployment_id})", self._now())
        if outcome.plan is not None and outcome.plan.change:
            fields["change"] = outcome.plan.change
        if outcome.plan is not None and outcome.plan.conflict:
            fields["conflict"] = list(outcome.plan.conflict)
        self._record(outcome, "pending" if outcome.action in ("updated", "would_update")
                     else None)
        return "success" if outcome.requeue_after is None else "requeue_after"

    async def _process_registry(self, key: RegistryKey, fields: dict[str, object]) -> Result:
        bundles = self.parts.bundles
        fields["action"] = await bundles.refresh(key.registry)
        due = bundles.refresh_in(key.registry)
        if due is None:
            return "success"
        self.queue.add_after(key, due)
        fields["requeue_after"] = round(due, 1)
        return "requeue_after"

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

    def _locked(self, key: Key, error: MarathonConflict, fields: dict[str, object]) -> Result:
        """Wait for the locking deployments to end (their events re-add the key); never force."""
        assert not isinstance(key, RegistryKey)
        for deployment in error.deployment_ids:
            self._waiting_on[deployment].add(key)
        self.queue.add_after(key, _LOCKED_RECHECK_SECONDS)
        self.status.fail(key, str(error), self._now(), state="locked")
        fields.update(requeue_after=_LOCKED_RECHECK_SECONDS,
                      waiting_on=list(error.deployment_ids))
        return "requeue_after"

    def _over_limit(self, key: Key, error: MarathonDeploymentLimit,
                    fields: dict[str, object]) -> Result:
        """Marathon runs its maximum of deployments: wait like a spent budget, never force."""
        assert not isinstance(key, RegistryKey)
        self.parts.budget.limit_reached()
        self._deferred.add(key)
        self.queue.add_after(key, _DEFERRED_SECONDS)
        self.status.fail(key, str(error), self._now(), state="pending")
        fields.update(action="deferred", requeue_after=_DEFERRED_SECONDS, error=str(error))
        return "requeue_after"

    def _failed(self, key: Key, error: Exception, fields: dict[str, object], *, retry: bool
                ) -> Result:
        message = str(error) or type(error).__name__
        fields.update(error=message, error_type=type(error).__name__, retry=retry)
        if isinstance(key, RegistryKey):  # the last good bundle stays; try again, backing off
            self.status.note("failure", key.registry, message, self._now())
            base, cap = _REGISTRY_BACKOFF
            failures = max(1, self.parts.bundles.states[key.registry].failures)
            delay = min(cap, base * 2 ** (failures - 1))
            self.queue.add_after(key, delay)
            fields["requeue_after"] = delay
        else:
            retry_after = getattr(error, "retry_after", None)  # the server said when
            if retry and retry_after is not None:
                self.queue.add_after(key, retry_after)
                fields["requeue_after"] = retry_after
            elif retry:
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            self.status.fail(key, message, self._now())
        return "error"

    def _update_app_gauges(self) -> None:
        counts = self.status.counts()
        for state in APP_STATES:
            self.metrics.apps.labels(state=state).set(counts.get(state, 0))
        self.metrics.deployments_in_flight.set(self.parts.budget.in_flight)

    def _mark_initial_done(self, key: Key) -> None:
        if self._initial is not None and key in self._initial:
            self._initial.discard(key)
            self._check_synced()

    def _check_synced(self) -> None:
        if self._initial is not None and not self._initial and not self.synced.is_set():
            self.synced.set()
            self._synced_at = time.monotonic()
            log.info("initial_sync_finished")
