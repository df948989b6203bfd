"""Wiring: the only module that names concrete adapters and starts things."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from controller import credentials
from controller.bundles import (
    BundleManager,
    Fence,
    PublishObserver,
    no_fence,
    no_publish_observer,
)
from controller.config import Settings, StorageSettings
from controller.engine import Engine, Key
from controller.errors import MarathonConflict, MarathonDeploymentLimit
from controller.events import EventWatcher
from controller.http import make_app, serve
from controller.marathon import MarathonClient, RequestObserver, no_request_observer
from controller.metrics import Metrics, QueueMetrics
from controller.model import AppId, RawApp
from controller.plan import RegistryRule
from controller.ratelimit import DeploymentBudget, TokenBucket
from controller.reconcile import AppOutcome, Reconciler, WriteGate
from controller.report import PassReport
from controller.status import StatusBook
from controller.storage.base import BundleStore
from controller.workqueue import WorkQueue

if TYPE_CHECKING:
    from controller.leader import ZooKeeperElection

__all__ = ["Components", "DaemonHandle", "build", "run", "run_once", "store_from_settings",
           "user_agent"]

log = structlog.get_logger(component="app")

_CONFLICT_ATTEMPTS = 3
_DEPLOYMENT_POLL_SECONDS = 1.0


def store_from_settings(settings: StorageSettings) -> BundleStore:
    """The configured storage backend, imported only when the config names it."""
    if settings.s3 is not None:
        from controller.storage.s3 import S3Store

        return S3Store(settings.s3)
    if settings.filesystem is None:
        raise ValueError("no storage backend is configured")
    from controller.storage.fs import FilesystemStore

    return FilesystemStore(settings.filesystem)


def user_agent() -> str:
    """Names this process in Marathon's logs (and the simulator's write log)."""
    return (f"marathon-pullsecret-controller/{version('marathon-pullsecret-controller')} "
            f"({socket.gethostname()}/{os.getpid()})")


@dataclass(slots=True, kw_only=True)
class Components:
    settings: Settings
    marathon: MarathonClient
    bundles: BundleManager
    reconciler: Reconciler
    budget: DeploymentBudget


@asynccontextmanager
async def build(
    settings: Settings,
    env: Mapping[str, str],
    *,
    dry_run: bool = False,
    fence: Fence = no_fence,
    observe_request: RequestObserver = no_request_observer,
    observe_publish: PublishObserver = no_publish_observer,
    wait_for_budget: bool = True,
) -> AsyncIterator[Components]:
    """Create every adapter for ``settings``; close them on exit."""
    dry_run = dry_run or settings.reconcile.dry_run
    async with aiohttp.ClientSession() as session:
        marathon = MarathonClient(settings.marathon, session, env=env, user_agent=user_agent(),
                                  observe=observe_request)
        registries = {r.registry: r for r in settings.registries}
        bundles = BundleManager(
            registries,
            {r.registry: credentials.from_settings(r, env) for r in settings.registries},
            store_from_settings(settings.storage),
            fence=fence, dry_run=dry_run, observe=observe_publish,
            owner=settings.controller.name,
        )

        async def running_deployments() -> set[str]:
            return {d["id"] for d in await marathon.list_deployments()}

        rc = settings.reconcile
        budget = DeploymentBudget(rc.max_concurrent_deployments, running=running_deployments,
                                  stall_seconds=rc.timeout_seconds)
        reconciler = Reconciler(
            marathon=marathon, bundles=bundles, label=settings.selector.label,
            rules=[RegistryRule(registry=r.registry, apps=r.apps) for r in settings.registries],
            gate=WriteGate(TokenBucket(rc.max_writes_per_second, rc.write_burst), budget),
            owner=settings.controller.name, fence=fence, dry_run=dry_run,
            wait_for_budget=wait_for_budget,
        )
        yield Components(settings=settings, marathon=marathon, bundles=bundles,
                         reconciler=reconciler, budget=budget)


async def _wait_for_deployments(marathon: MarathonClient, ids: tuple[str, ...]) -> None:
    """Poll Marathon until none of ``ids`` runs any more (the caller bounds the wait)."""
    while {d["id"] for d in await marathon.list_deployments()} & set(ids):  # noqa: ASYNC110
        await asyncio.sleep(_DEPLOYMENT_POLL_SECONDS)  # polling Marathon: nothing to wait on


async def _converge_listed(parts: Components, app: RawApp) -> AppOutcome:
    """Converge one listed app; if a deployment locks it, wait for that and try again."""
    app_id = AppId(app["id"])
    listed: RawApp | None = app
    for attempt in range(_CONFLICT_ATTEMPTS):
        try:
            return await parts.reconciler.reconcile(app_id, listed=listed)
        except MarathonDeploymentLimit:  # the next slot waits for a deployment to end
            if attempt == _CONFLICT_ATTEMPTS - 1:
                raise
            parts.budget.limit_reached()
            log.info("deployment_limit_waiting", app_id=app_id)
            continue
        except MarathonConflict as e:
            if attempt == _CONFLICT_ATTEMPTS - 1:
                raise
            log.info("app_locked_waiting", app_id=app_id, deployments=list(e.deployment_ids))
            async with asyncio.timeout(parts.settings.reconcile.timeout_seconds):
                await _wait_for_deployments(parts.marathon, e.deployment_ids)
            listed = None
    raise AssertionError("unreachable")  # pragma: no cover


async def run_once(parts: Components, *, every_app: bool = False) -> PassReport:
    """Publish every registry's bundle, then one pass over every app that carries the opt-in
    label (whatever its value), or over every app at all (``uninstall``: an app whose label was
    deleted may still carry an entry).

    One app or registry failing never stops the pass: its error is recorded and the rest go on.
    """
    report = PassReport()

    async def publish(registry: str) -> None:
        try:
            await parts.bundles.refresh(registry)
        except Exception as e:  # noqa: BLE001 - recorded; the last good bundle still serves
            report.registry_failures[registry] = str(e) or type(e).__name__

    async with asyncio.TaskGroup() as tasks:
        for registry in parts.bundles.states:
            tasks.create_task(publish(registry), name=f"publish-{registry}")
    apps = await parts.marathon.list_apps(
        label_selector=None if every_app else parts.settings.selector.label)
    limit = asyncio.Semaphore(parts.settings.reconcile.workers)

    async def one(app: RawApp) -> None:
        async with limit:
            try:
                report.outcomes.append(await _converge_listed(parts, app))
            except Exception as e:  # noqa: BLE001 - one app's failure never stops the pass
                report.failures[AppId(app["id"])] = str(e) or type(e).__name__
                log.warning("reconcile_failed", app_id=app["id"], error=str(e),
                            error_type=type(e).__name__)

    async with asyncio.TaskGroup() as tasks:
        for app in apps:
            tasks.create_task(one(app), name=f"reconcile-{app['id']}")
    return report


class _Reachability:
    """Remembers when Marathon last answered (any status below 500), for ``/readyz``."""

    def __init__(self, observe: RequestObserver) -> None:
        self._observe = observe
        self.last_ok: float | None = None

    def __call__(self, method: str, status: str, seconds: float) -> None:
        self._observe(method, status, seconds)
        if status.isdigit() and int(status) < 500:
            self.last_ok = time.monotonic()


async def _guard(coro: Coroutine[Any, Any, None], name: str, stopping: asyncio.Event) -> None:
    """Log a root task's failure or unexpected exit by name; either ends the term."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("task_crashed", task=name)
        raise
    if not stopping.is_set():
        log.error("task_exited", task=name)


@dataclass(slots=True, kw_only=True)
class DaemonHandle:
    """One leadership term's parts, handed to tests and the demo once it started."""

    engine: Engine
    watcher: EventWatcher
    queue: WorkQueue[Key]
    tasks: dict[str, asyncio.Task[None]]


class _Daemon:
    """The long-running controller: ops endpoints always, the work only while leading."""

    def __init__(self, settings: Settings, metrics: Metrics, parts: Components,
                 reachability: _Reachability, election: ZooKeeperElection | None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.parts = parts
        self.reachability = reachability
        self.election = election
        self.term: DaemonHandle | None = None

    # -- ops endpoints -------------------------------------------------------------------------

    def health(self) -> dict[str, bool]:
        tasks = self.term.tasks if self.term else {}
        return {"loop": True} | {name: not t.done() for name, t in tasks.items()}

    def ready(self) -> dict[str, bool]:
        if self.term is None:  # a standby is ready to take over only while ZooKeeper answers
            return {"standby": self.election is not None and self.election.connected}
        fresh = 2 * self.settings.reconcile.resync_seconds
        now = time.monotonic()
        last_ok, last_relist = self.reachability.last_ok, self.term.engine.last_relist
        return {
            "synced": self.term.engine.synced.is_set(),
            "marathon": last_ok is not None and now - last_ok < fresh,
            "events": self.term.watcher.connected or (last_relist is not None
                                                      and now - last_relist < fresh),
        }

    def status(self) -> dict[str, Any]:
        term = self.term
        book = term.engine.status if term else StatusBook()
        return book.snapshot(
            self.parts.bundles.states, datetime.now(UTC),
            leader=term is not None, ready=self.ready(),
            event_stream={"connected": term.watcher.connected if term else False},
            queue={"depth": term.queue.depth, "processing": term.queue.processing}
            if term else None,
            dry_run=self.settings.reconcile.dry_run)

    # -- terms ---------------------------------------------------------------------------------

    async def lead(self, stop: asyncio.Event, lost: asyncio.Event,
                   started: Callable[[DaemonHandle], None] | None) -> bool:
        """Run one leadership term until ``stop`` or ``lost``; return True if a task crashed."""
        rc = self.settings.reconcile
        metrics = self.metrics
        queue: WorkQueue[Key] = WorkQueue(observer=QueueMetrics(metrics))
        engine = Engine(self.parts, queue, metrics)
        watcher = EventWatcher(
            self.parts.marathon, on_effect=engine.on_effect, on_attached=engine.request_relist,
            on_connected=lambda up: metrics.sse_connected.set(1 if up else 0),
            on_event=lambda kind: metrics.events.labels(event_type=kind).inc(),
            on_reconnect=metrics.sse_reconnects.inc,
        )
        roots: dict[str, Coroutine[Any, Any, None]] = {
            f"worker-{i}": engine.worker() for i in range(rc.workers)}
        roots |= {"resync": engine.resync(), "events": watcher.run()}
        stopping = asyncio.Event()
        tasks = {name: asyncio.create_task(_guard(coro, name, stopping), name=name)
                 for name, coro in roots.items()}
        self.term = DaemonHandle(engine=engine, watcher=watcher, queue=queue, tasks=tasks)
        metrics.leader.set(1)
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
            await _stop_term(tasks, queue, drain=reason == "signal",
                             grace_seconds=rc.shutdown_timeout_seconds)
            metrics.leader.set(0)
            metrics.sse_connected.set(0)
            self.term = None
        return crashed


async def _stop_term(tasks: dict[str, asyncio.Task[None]], queue: WorkQueue[Key], *,
                     drain: bool, grace_seconds: float) -> None:
    """Stop the sources, let workers finish (draining the queue if asked), cancel the rest."""
    for name in ("events", "resync"):
        tasks[name].cancel()
    queue.shutdown(drain=drain)
    _, pending = await asyncio.wait(tasks.values(), timeout=grace_seconds)
    if pending:
        log.warning("shutdown_timed_out", pending=sorted(t.get_name() for t in pending),
                    queued=queue.depth)
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
    registry: CollectorRegistry | None = None,
    started: Callable[[DaemonHandle], None] | None = None,
) -> int:
    """The daemon. Returns the exit code: 0 after SIGTERM/SIGINT (or ``stop``), 1 on a crash.

    The HTTP server starts first and stops last. With leader election, a replica serves the
    ops endpoints as a standby and runs the work only while it holds the lock.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics = Metrics(registry or CollectorRegistry())
    metrics.init_registries(r.registry for r in settings.registries)
    reachability = _Reachability(metrics.observe_request)
    election: ZooKeeperElection | None = None
    if settings.leader_election:  # kazoo is loaded only when the config asks for it
        from controller.leader import ZooKeeperElection

        election = ZooKeeperElection(settings.leader_election, user_agent())
    crashed = False
    runner: web.AppRunner | None = None
    try:
        async with build(settings, env, observe_request=reachability,
                         observe_publish=metrics.observe_publish, wait_for_budget=False,
                         fence=election.fence if election else no_fence) as parts:
            daemon = _Daemon(settings, metrics, parts, reachability, election)
            runner = await serve(make_app(registry=metrics.registry, health=daemon.health,
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
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("controller_stopped", exit_code=1 if crashed else 0)
    return 1 if crashed else 0


async def _elected_terms(daemon: _Daemon, election: ZooKeeperElection, stop: asyncio.Event,
                         started: Callable[[DaemonHandle], None] | None) -> bool:
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
