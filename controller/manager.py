"""The manager: runs the controllers, as a daemon or as one pass.

The daemon (``run``) serves the ops endpoints from start to finish and runs the work only in
leadership terms: each term builds a controller for apps and one for registries, the source
of their keys (relists and the event stream) and the watcher, and stops them in order
(controller-runtime's ``engageStopProcedure``). The one-shot pass (``run_once``) is the same
controllers drained once: publish every registry, relist, queue every app, drain, with the
same reconcilers and the same policies, its deployments followed by polling instead of events.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from controller.appindex import AppIndex
from controller.appreconciler import AppPolicy, AppReconciler, OutcomeListener
from controller.backoff import Backoff
from controller.election import Election, no_fence
from controller.errors import ConfigError
from controller.gcpause import collector_paused
from controller.handler import Controller
from controller.listedplanning import listed_planning
from controller.model import AppId
from controller.passreport import PassReport
from controller.plan import Ownership, Planner, RegistryRule, location_of
from controller.registryreconciler import RegistryReconciler, VerificationRequests
from controller.settings import Settings
from controller.wiring import Components, Uncounted, build, leader_election
from controller.workqueue import WorkQueue

if TYPE_CHECKING:
    # The daemon's alone, imported where it is built (make_term, _Daemon, run): a one-shot
    # pass (reconcile --once, plan) starts without them.
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from controller.events import EventWatcher
    from controller.metrics import Metrics
    from controller.remediation import PullRemediator
    from controller.source import AppSource
    from controller.statusbook import AppPage, StatusBook

__all__ = ["Term", "make_term", "planner", "run", "run_once"]

log = structlog.get_logger(component="manager")

APP_BACKOFF = Backoff(1.0, 300.0)
REGISTRY_BACKOFF = Backoff(5.0, 300.0)
"""A failed refresh keeps the last good bundle; it is tried again from 5 s to 5 min."""
_ONE_SHOT_CONFLICTS = 3
"""A one-shot pass waits for an app's locking deployment this often before giving up on it."""
_DEPLOYMENT_POLL_SECONDS = 1.0
_SOURCES = ("events", "resync", "filewatch", "presence")
"""A term's root tasks that bring work (stopped first); the others are its workers."""


def planner(settings: Settings, home: str) -> Planner:
    """The planning rules of ``settings``, for a store whose bundles live at ``home``."""
    homes = (home, *settings.storage.previous_locations)
    return Planner(
        label=settings.selector.label,
        rules=tuple(RegistryRule(registry=r.registry, apps=r.apps) for r in settings.registries),
        ownership=Ownership(owner=settings.controller.name,
                            homes=tuple(location_of(f"{h.rstrip('/')}/x") for h in homes)))


def app_index(settings: Settings) -> AppIndex:
    rc = settings.reconcile
    return AppIndex(fight_limit=rc.fight_limit, fight_window=rc.fight_window)


def _app_reconciler(parts: Components, index: AppIndex, observer: Metrics | Uncounted, *,
                    wait_for_budget: bool, max_conflicts: int | None = None,
                    listeners: tuple[OutcomeListener, ...]) -> AppReconciler:
    settings = parts.settings
    policy = AppPolicy(planner=planner(settings, parts.bundles.home),
                       wait_for_budget=wait_for_budget, max_conflicts=max_conflicts,
                       rescue_stuck=settings.remediation.rescue_stuck_deployments)
    return AppReconciler(marathon=parts.marathon, bundles=parts.bundles, images=parts.images,
                         gate=parts.gate, index=index, observer=observer, policy=policy,
                         listeners=listeners)


def _registry_workers(parts: Components) -> int:
    return max(1, min(parts.settings.reconcile.workers, len(parts.bundles.states)))


async def run_once(parts: Components, *, every_app: bool = False,
                   report: PassReport | None = None) -> PassReport:
    """Publish every registry's bundle, then converge every app that carries the opt-in label
    (whatever its value), or every app at all (``uninstall``: an app whose label was deleted
    may still carry an entry).

    One app or registry failing never stops the pass: its error is recorded and the rest go on.
    ``report`` (a new one if not given) fills in as the pass goes, so that a caller whose pass
    is interrupted can still say what it wrote. A pass that writes first makes sure no other
    controller runs under this name (``NameTakenError``); a dry run, which has no name to
    claim, does not wait to find out.
    """
    if not parts.dry_run:
        await parts.presence.check()
    rc = parts.settings.reconcile
    report = report if report is not None else PassReport()
    uncounted = Uncounted()  # a one-shot pass's figures are in its report
    index = app_index(parts.settings)
    registry_queue: WorkQueue[str] = WorkQueue(backoff=REGISTRY_BACKOFF)
    requests = VerificationRequests(parts.bundles, registry_queue.add_after)
    registries = Controller("registry", RegistryReconciler(parts.bundles, index, requests,
                                                           report=report),
                            registry_queue, uncounted, workers=_registry_workers(parts),
                            timeout=None, once=True)
    for registry in parts.bundles.states:
        registries.queue.add(registry)
    await registries.drain()
    reconciler = _app_reconciler(parts, index, uncounted, wait_for_budget=True,
                                 max_conflicts=_ONE_SHOT_CONFLICTS, listeners=(report,))
    app_queue: WorkQueue[AppId] = WorkQueue(backoff=APP_BACKOFF)
    apps = Controller("app", reconciler, app_queue, uncounted,
                      workers=rc.workers, timeout=None, once=True, holds=index.held_for)
    found = await parts.marathon.list_apps(
        label_selector=None if every_app else parts.settings.selector.label)
    planning = await listed_planning(reconciler)
    with collector_paused():
        for app in found:  # an app that needs no write is planned here, without a task
            if not planning.settle(app):
                index.keep_listed(app)
                apps.queue.add(app.id)
    planning.finish()
    del found
    poller = asyncio.create_task(_follow_deployments(parts, reconciler, apps.queue),
                                 name="deployments")
    try:
        await apps.drain()
    finally:
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
    return report


async def _follow_deployments(parts: Components, reconciler: AppReconciler,
                              queue: WorkQueue[AppId]) -> None:
    """Without an event stream, learn from ``/v2/deployments`` when a locking deployment ends,
    so that the apps waiting for it go on as the daemon's would on the end event."""
    while True:
        await asyncio.sleep(_DEPLOYMENT_POLL_SECONDS)  # polling Marathon: nothing to wait on
        waited = reconciler.waited_on
        if not waited:
            continue
        try:
            running = {d["id"] for d in await parts.marathon.list_deployments()}
        except Exception as e:  # noqa: BLE001 - the waiting apps come back after 30 s anyway
            log.warning("deployments_unreadable", error=str(e) or type(e).__name__)
            continue
        for deployment in waited - running:
            for app_id in reconciler.deployment_finished(deployment):
                queue.add(app_id)


async def _guard(coro: Coroutine[Any, Any, None], name: str, stopping: asyncio.Event) -> None:
    """Log a root task's failure or unexpected exit by name; either ends the term."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except ConfigError as e:  # e.g. another controller took this one's name
        log.error("task_refused", task=name, error=e.problems[0])
        raise
    except Exception:
        log.exception("task_crashed", task=name)
        raise
    if not stopping.is_set():
        log.error("task_exited", task=name)


class Term(msgspec.Struct, kw_only=True):
    """The controllers of one leadership term, the sources of their keys and what they learn
    (``index``, seen through ``status``); ``tasks`` are its root tasks once it runs."""

    parts: Components
    index: AppIndex
    status: StatusBook
    source: AppSource
    watcher: EventWatcher
    apps: Controller[AppId]
    registries: Controller[str]
    verification: VerificationRequests
    """Takes ``ask`` calls: evidence that a registry's credential may be wrong."""
    remediator: PullRemediator
    tasks: dict[str, asyncio.Task[None]] = msgspec.field(default_factory=dict)

    def source_changed(self, registry: str) -> None:
        """A file of the registry's credential changed (or SIGHUP asks): refresh that registry
        now, reading its source again."""
        log.info("credential_source_changed", registry=registry)
        self.parts.source_changed(registry)
        self.registries.queue.add(registry)


def make_term(parts: Components, metrics: Metrics) -> Term:
    """The app and registry controllers, wired to their sources of keys (not started).

    Built in the order their parts need each other: the queues, the index, what feeds the
    queues (verification requests, the remediator), the reconcilers, the controllers.
    """
    from controller.events import EventWatcher
    from controller.remediation import PullRemediator
    from controller.source import AppSource
    from controller.statusbook import StatusBook

    rc = parts.settings.reconcile
    app_queue: WorkQueue[AppId] = WorkQueue(backoff=APP_BACKOFF)
    registry_queue: WorkQueue[str] = WorkQueue(backoff=REGISTRY_BACKOFF)
    index = app_index(parts.settings)
    verification = VerificationRequests(parts.bundles, registry_queue.add_after)
    remediator = PullRemediator(
        index=index, observer=metrics, queue=parts.marathon, gate=parts.gate,
        reconcile_app=app_queue.add, verify_registry=verification.ask,
        reset_launch_delay=parts.settings.remediation.reset_launch_delay)

    def retry_failed_apps(registry: str) -> None:
        for app_id in index.apps_of(registry):
            if index.state_of(app_id) == "failed":
                app_queue.add(app_id)

    def published(registry: str) -> None:
        """A new bundle the registry accepted: a fix for apps that failed to pull, and a new
        credential whose images are asked about again."""
        remediator.bundle_published(registry)
        parts.images.forget(registry)
        for app_id in index.apps_of(registry):
            app_queue.add(app_id)

    registry_reconciler = RegistryReconciler(parts.bundles, index, verification,
                                             on_recovered=retry_failed_apps,
                                             on_published=published)
    reconciler = _app_reconciler(parts, index, metrics, wait_for_budget=False,
                                 listeners=(remediator,))
    source = AppSource(parts.marathon, label=parts.settings.selector.label, apps=app_queue,
                       registries=registry_queue, reconciler=reconciler, bundles=parts.bundles,
                       observer=metrics, resync_seconds=rc.resync_seconds)
    apps = Controller("app", reconciler, app_queue, metrics, workers=rc.workers,
                      timeout=rc.timeout_seconds, holds=index.held_for,
                      on_done=source.app_done)
    registries = Controller("registry", registry_reconciler, registry_queue, metrics,
                            workers=_registry_workers(parts), timeout=rc.timeout_seconds,
                            on_done=source.registry_done)
    watcher = EventWatcher(parts.marathon, on_effect=source.on_effect,
                           on_attached=source.request_relist, observer=metrics,
                           on_failed_pull=remediator.pull_failed)
    return Term(parts=parts, index=index, status=StatusBook(index), source=source,
                watcher=watcher, apps=apps, registries=registries, verification=verification,
                remediator=remediator)


class _Daemon:
    """The long-running controller: ops endpoints always, the work only while leading."""

    def __init__(self, settings: Settings, metrics: Metrics, parts: Components,
                 election: Election | None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.parts = parts
        self.election = election
        from controller.localpaths import LocalPaths
        from controller.statusbook import StatusBook

        self.term: Term | None = None
        self.cut_paths = LocalPaths.of(settings)
        self.no_term = StatusBook(app_index(settings))
        """What ``/status`` shows of the apps while no term runs: none."""

    # -- ops endpoints -------------------------------------------------------------------------

    def health(self) -> dict[str, bool]:
        tasks = self.term.tasks if self.term else {}
        return {"loop": True} | {name: not t.done() for name, t in tasks.items()}

    def ready(self) -> dict[str, bool]:
        if self.term is None:  # a standby is ready to take over only while ZooKeeper answers
            return {"standby": self.election is not None and self.election.connected}
        fresh = 2 * self.settings.reconcile.resync_seconds
        now = time.monotonic()
        last_ok, last_relist = self.parts.marathon.last_answered, self.term.source.last_relist
        return {
            "synced": self.term.source.synced.is_set(),
            "marathon": last_ok is not None and now - last_ok < fresh,
            "events": self.term.watcher.connected or (last_relist is not None
                                                      and now - last_relist < fresh),
        }

    def status(self, page: AppPage) -> dict[str, Any]:
        term = self.term
        book = term.status if term else self.no_term
        return book.snapshot(
            self.parts.bundles.states, datetime.now(UTC), page, cut=self.cut_paths,
            leader=term is not None, ready=self.ready(),
            role="leader" if term else "standby" if self.election else "inactive",
            event_stream={"connected": term.watcher.connected if term else False},
            queue={"depth": term.apps.queue.depth, "processing": term.apps.queue.processing}
            if term else None,
            dry_run=self.settings.reconcile.dry_run)

    def reread_sources(self) -> None:
        """SIGHUP: read every registry's credential source again now (on the leader)."""
        log.info("sighup_received", leader=self.term is not None)
        if self.term is not None:
            for registry in self.parts.bundles.states:
                self.term.source_changed(registry)

    # -- terms ---------------------------------------------------------------------------------

    async def lead(self, stop: asyncio.Event, lost: asyncio.Event,
                   started: Callable[[Term], None] | None) -> bool:
        """Run one leadership term until ``stop`` or ``lost``; return True if a task crashed."""
        from controller.filewatch import FileWatch

        rc = self.settings.reconcile
        metrics, parts = self.metrics, self.parts
        term = make_term(parts, metrics)
        source, apps, registries = term.source, term.apps, term.registries
        await parts.presence.claim()  # before any coroutine exists: a refusal leaks none
        roots: dict[str, Coroutine[Any, Any, None]] = {
            f"worker-{i}": apps.worker() for i in range(apps.workers)}
        roots |= {f"registry-worker-{i}": registries.worker()
                  for i in range(registries.workers)}
        roots |= {"resync": source.resync(), "events": term.watcher.run(),
                  "presence": parts.presence.keep()}
        files = FileWatch(parts.source_files(), on_change=term.source_changed)
        files.check_now()  # the baseline, before the first refresh reads a credential
        roots["filewatch"] = files.run()
        stopping = asyncio.Event()
        tasks = term.tasks
        tasks.update((name, asyncio.create_task(_guard(coro, name, stopping), name=name))
                     for name, coro in roots.items())
        self.term = term
        metrics.on_leader(True)
        if started is not None:
            started(self.term)
        waits = [asyncio.create_task(stop.wait(), name="stop"),
                 asyncio.create_task(lost.wait(), name="lost")]
        reason = "cancelled"
        try:
            done, _ = await asyncio.wait([*waits, *tasks.values()],
                                         return_when=asyncio.FIRST_COMPLETED)
            crashed = not (waits[0] in done or waits[1] in done)
            reason = "crash" if crashed else ("signal" if stop.is_set() else "leadership_lost")
        finally:  # also when run() itself is cancelled: no task outlives its term
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            log.info("term_stopping", reason=reason)
            stopping.set()
            await _stop_term(tasks, (apps.queue, registries.queue), drain=reason == "signal",
                             grace_seconds=rc.shutdown_timeout_seconds)
            metrics.on_leader(False)
            self.term = None
        presence = tasks["presence"]
        refused = (presence.exception() if presence.done() and not presence.cancelled()
                   else None)
        if isinstance(refused, ConfigError):
            raise refused  # the name is another controller's: exit 2, as for a bad config
        if reason == "signal":
            await _chore_quietly(parts.presence.release(), "presence_release_failed")
        return crashed


async def _chore_quietly(chore: Coroutine[Any, Any, None], event: str) -> None:
    """Best effort on the way out: a failure is logged, never raised."""
    try:
        await chore
    except Exception as e:  # noqa: BLE001 - shutting down anyway
        log.warning(event, error=str(e) or type(e).__name__)


async def _stop_term(tasks: dict[str, asyncio.Task[None]],
                     queues: tuple[WorkQueue[AppId], WorkQueue[str]], *, drain: bool,
                     grace_seconds: float) -> None:
    """Stop the sources, let workers finish (draining the queues if asked), cancel the rest."""
    for name in _SOURCES:
        tasks[name].cancel()
    for queue in queues:
        queue.shutdown(drain=drain)
    _, pending = await asyncio.wait(tasks.values(), timeout=grace_seconds)
    if pending:
        log.warning("shutdown_timed_out", pending=sorted(t.get_name() for t in pending),
                    queued=sum(q.depth for q in queues))
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


async def _until(awaitable: Coroutine[Any, Any, Any], stop: asyncio.Event) -> bool:
    """Await ``awaitable`` unless ``stop`` is set first; True if it finished."""
    work = asyncio.create_task(awaitable)
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([work, stopping], return_when=asyncio.FIRST_COMPLETED)
    for task in (work, stopping):
        task.cancel()
    await asyncio.gather(work, stopping, return_exceptions=True)
    if work in done:
        work.result()
        return True
    return False


async def run(
    settings: Settings,
    env: Mapping[str, str],
    *,
    stop: asyncio.Event | None = None,
    collectors: CollectorRegistry | None = None,
    started: Callable[[Term], None] | None = None,
    on_stop_signal: Callable[[], None] = lambda: None,
) -> int:
    """The daemon. Returns the exit code: 0 after SIGTERM/SIGINT (or ``stop``), 1 on a crash.

    The HTTP server starts first and stops last. With leader election, a replica serves the
    ops endpoints as a standby and runs the work only while it holds the lock.
    ``on_stop_signal`` is told when SIGTERM or SIGINT asks the daemon to stop (the command line
    arms its hard deadline then).
    """
    # The web server and the metrics: the daemon's alone.
    from prometheus_client import CollectorRegistry

    from controller.metrics import Metrics
    from controller.opsserver import make_app, serve

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    def stop_signal() -> None:
        stop.set()
        on_stop_signal()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_signal)
    metrics = Metrics(collectors or CollectorRegistry())
    metrics.init_registries(r.registry for r in settings.registries)
    election = leader_election(settings)
    crashed = False
    runner: web.AppRunner | None = None
    try:
        async with build(settings, env, metrics=metrics,
                         fence=election.fence if election else no_fence) as parts:
            await parts.presence.check()  # another controller with this name: exit 2 now
            daemon = _Daemon(settings, metrics, parts, election)
            loop.add_signal_handler(signal.SIGHUP, daemon.reread_sources)
            runner = await serve(make_app(collectors=metrics.collectors, health=daemon.health,
                                          ready=daemon.ready, status=daemon.status),
                                 settings.server.host, settings.server.port)
            log.info("controller_started", listen=f"{settings.server.host}:{settings.server.port}",
                     registries=[r.registry for r in settings.registries],
                     dry_run=settings.reconcile.dry_run, leader_election=election is not None)
            try:
                if election is None:
                    crashed = await daemon.lead(stop, asyncio.Event(), started)
                else:
                    crashed = await _elected_terms(daemon, election, stop, started)
            finally:
                if election is not None:
                    await election.stop()
    finally:  # the clients are closed by now: the HTTP server stops last
        if runner is not None:
            await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    log.info("controller_stopped", exit_code=1 if crashed else 0)
    return 1 if crashed else 0


async def _elected_terms(daemon: _Daemon, election: Election, stop: asyncio.Event,
                         started: Callable[[Term], None] | None) -> bool:
    """Stand by, lead when elected, and stand by again when leadership is lost."""
    if not await _until(election.start(), stop):
        return False
    while not stop.is_set():
        log.info("standby_waiting")
        if not await _until(election.acquire(), stop):
            break
        if await daemon.lead(stop, election.lost, started):
            return True
        await election.release()
    return False
