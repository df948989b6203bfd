"""Where keys come from: relists of Marathon's app list and the event stream's effects.

Level-triggered: a relist looks at every labelled app, every app the status book knows and every
registry; an event only queues the apps it names. A listed app is planned inline, with no task
and no GET, and only an app that needs I/O (a write, a bundle, a malformed definition to
report) goes to the workers, its listed copy kept as an informer's cache would until a worker
or a newer event uses it up. Relists run on their own loop (the first one is the initial sync),
apart from the event stream, which may fail for good while ``/v2/apps`` works; the stream only
adds keys and asks for a relist when it (re)attaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

import structlog

from controller.appreconciler import AppReconciler
from controller.backoff import Backoff
from controller.bundles import BundleManager
from controller.events import EventEffect
from controller.gcpause import collector_paused
from controller.listedplanning import listed_planning
from controller.marathon.api import MarathonAPI
from controller.model import AppId
from controller.workqueue import WorkQueue

__all__ = ["AppSource", "RelistObserver"]

log = structlog.get_logger(component="source")

_RELIST_BACKOFF = Backoff(1.0, 60.0)
_EVENT_KEYS_FLOOR = 10_000
"""Events may queue this many app ids beyond twice the last relist's count; past that, an event
storm (ids of apps that may not exist) asks for a relist instead of growing the queue."""
_MAX_APP_ID = 1024
_INLINE_BATCH = 1000
"""Apps planned inline between two yields to the event loop."""


class RelistObserver(Protocol):
    """What the source counts (``Metrics`` is one)."""

    def on_relisted(self, at: float) -> None:
        """A full relist finished, at this wall time."""


class AppSource:
    """Relists and event effects, turned into keys of the two queues; listed copies of apps
    that go to a worker are kept in the index until a worker or a newer event uses them up."""

    def __init__(
        self,
        marathon: MarathonAPI,
        *,
        label: str,
        apps: WorkQueue[AppId],
        registries: WorkQueue[str],
        reconciler: AppReconciler,
        bundles: BundleManager,
        observer: RelistObserver,
        resync_seconds: float,
    ) -> None:
        self._marathon = marathon
        self._label = label
        self._apps = apps
        self._registries = registries
        self._reconciler = reconciler
        self._index = reconciler.index
        self._bundles = bundles
        self._observer = observer
        self._resync_seconds = resync_seconds
        self._events_seen = 0
        self._touched: dict[AppId, int] = {}
        """The event count when each app was last named by an event (see ``relist``)."""
        self._initial: set[Hashable] | None = None
        self._relist_wanted = asyncio.Event()
        self._listed_keys = 0
        self._synced_at: float | None = None
        self.synced = asyncio.Event()
        self.last_relist: float | None = None

    # -- relists ---------------------------------------------------------------------------

    async def relist(self) -> None:
        """Plan every labelled app inline; queue those that need I/O, every app we know that
        the list lacks (it may be gone), and every registry."""
        listed_at = self._events_seen
        apps = await self._marathon.list_apps(label_selector=self._label)
        planning = await listed_planning(self._reconciler, requeue=self._apps.add_after)
        listed_ids: set[AppId] = set()
        app_ids: set[AppId] = set()
        touched, queued = self._touched, self._apps
        for start in range(0, len(apps), _INLINE_BATCH):
            if start:
                await asyncio.sleep(0)  # a long list must not hold up the event stream
            with collector_paused():
                for app in apps[start:start + _INLINE_BATCH]:
                    app_id: AppId = app.id
                    listed_ids.add(app_id)
                    if touched.get(app_id, -1) > listed_at:  # an event is newer
                        app_ids.add(app_id)
                    elif app_id in queued or not planning.settle(app):
                        self._index.keep_listed(app)
                        app_ids.add(app_id)
        count = len(apps)
        del apps  # only the copies of apps that need a worker are kept
        settled = planning.finish()
        self._touched = {a: seen for a, seen in self._touched.items() if seen > listed_at}
        app_ids.update(a for a in self._index.statuses if a not in listed_ids)
        registries = set(self._bundles.states)
        for app_id in app_ids:
            self._apps.add(app_id)
        for registry in registries:
            self._registries.add(registry)
        if self._initial is None:
            self._initial = {*app_ids, *(("registry", r) for r in registries)}
            self._check_synced()
        self._listed_keys = len(listed_ids | app_ids) + len(registries)
        self.last_relist = time.monotonic()
        self._observer.on_relisted(time.time())
        log.info("relist_finished", apps=count, keys=self._listed_keys, settled=settled)

    def request_relist(self) -> None:
        """Ask for a relist now (the event stream attached: events may have been missed)."""
        self._relist_wanted.set()

    async def resync(self) -> None:
        """The initial sync, then a relist every period (±10 % jitter) and whenever one is
        requested; a failed relist is retried with backoff. Before each relist, leftovers of
        interrupted writes (temp files, which hold a credential) are removed; after it, stale
        bundles, once the sync has settled."""
        period = self._resync_seconds
        failures = 0
        while True:
            self._relist_wanted.clear()
            await _chore(self._bundles.cleanup)
            try:
                await self.relist()
                failures = 0
                wait = period * random.uniform(0.9, 1.1)  # noqa: S311
                if self._may_prune(grace=period):
                    await _chore(self._bundles.prune)
            except Exception as e:  # noqa: BLE001 - any failure: try again, backing off
                failures += 1
                wait = min(period, _RELIST_BACKOFF.delay(failures))
                log.warning("relist_failed", error=str(e) or type(e).__name__,
                            failures=failures, retry_in=wait)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._relist_wanted.wait()

    def _may_prune(self, *, grace: float) -> bool:
        """Whether stale bundles may go: the first sync is ``grace`` seconds old and no app is
        still on its way (its new tasks might still fetch a stale bundle)."""
        counts = self._index.counts()
        return (self._synced_at is not None and time.monotonic() - self._synced_at >= grace
                and not any(counts[s] for s in ("pending", "failed", "locked", "stuck")))

    # -- events ----------------------------------------------------------------------------

    def on_effect(self, effect: EventEffect) -> None:
        """Queue the apps an event names, and those a finished deployment releases."""
        self._events_seen += 1
        app_ids = [a for a in effect.app_ids if len(a) <= _MAX_APP_ID]
        if app_ids and self._apps.depth >= 2 * self._listed_keys + _EVENT_KEYS_FLOOR:
            if not self._relist_wanted.is_set():
                log.warning("event_keys_dropped", queued=self._apps.depth,
                            dropped=len(app_ids))
            self.request_relist()  # the relist finds every labelled app the events named
            app_ids = []
        if effect.posted is not None:
            posted = effect.posted
            self._index.posted(posted.app_id, posted.writer, posted.uris)
        if effect.finished_deployment is not None:
            for app_id in self._reconciler.deployment_finished(effect.finished_deployment):
                self._apps.add(app_id)
        for app_id in app_ids:
            self._index.spoil_listed(app_id)  # the listed copy may predate this event
            self._touched[app_id] = self._events_seen
            self._apps.add(app_id)

    # -- the initial sync ------------------------------------------------------------------

    def app_done(self, app_id: AppId) -> None:
        self._initial_done(app_id)

    def registry_done(self, registry: str) -> None:
        self._initial_done(("registry", registry))

    def _initial_done(self, key: Hashable) -> None:
        if self._initial is not None and key in self._initial:
            self._initial.discard(key)
            self._check_synced()

    def _check_synced(self) -> None:
        if self._initial is not None and not self._initial and not self.synced.is_set():
            self.synced.set()
            self._synced_at = time.monotonic()
            log.info("initial_sync_finished")


async def _chore(chore: Callable[[], Awaitable[list[str]]]) -> None:
    """Storage chores (leftover temp files, stale bundles) never stop the resync loop."""
    try:
        await chore()
    except Exception as e:  # noqa: BLE001 - retried at the next relist or term
        log.warning("storage_housekeeping_failed", error=str(e) or type(e).__name__)
