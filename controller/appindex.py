"""What one leadership term knows of each app beyond its definition, in one place.

Marathon holds the definitions; this index holds what the controller learnt while converging
them, which no read of Marathon gives back: the listed copy of an app a worker has yet to use,
which registry an app is ours for (from its first plan, before it has a bundle), the deployments
that lock it and since when, the pull failures its tasks reported, the entries this term wrote
and how often another writer took them away, the deployments it rescued, and each app's status
as ``/status`` shows it (with its last pull failure and launch delay reset, and the recent
writes and failures). The source, the reconcilers, the remediator and the status book read it;
the reconcilers and the remediator change it. It is the truth the engine decides from; the
status book (``controller.statusbook``) is a view of it.

Monotonic times (``clock``) order events and bound waits; wall times (``now``) are shown.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import msgspec

from controller.applist import ListedApp, as_raw
from controller.model import AppId, AppState, DelayResetOutcome, RawApp
from controller.pullfailure import PullFailureReason
from controller.registryapi.results import ImageCheck

__all__ = ["AppIndex", "AppRecord", "AppStatus", "DelayReset", "DeploymentLock",
           "FailedPullNote", "Fight", "PullFailureNote"]

_RECENT = 50
"""Writes and failures kept for the status page, newest first."""


class AppStatus(msgspec.Struct, kw_only=True):
    """Where an app stands, as ``/status`` shows it; each reconcile replaces it."""

    state: AppState
    detail: str = ""
    registry: str | None = None
    last_reconcile: datetime | None = None
    last_error: str | None = None
    deployment_id: str | None = None
    since: datetime | None = None
    """``locked``, ``stuck``: since when the deployment has locked the app."""
    image_check: ImageCheck | None = None
    """What the registry last said of the app's image with the credential it is given."""


class PullFailureNote(msgspec.Struct, frozen=True, kw_only=True):
    """An app's last task that failed to pull its image, as ``/status`` shows it."""

    reason: PullFailureReason
    at: datetime
    """When the controller saw the failure."""
    task_id: str | None
    message: str
    """The failure's summary (``controller.pullfailure.summary``): short, no URL paths."""


class DelayReset(msgspec.Struct, frozen=True, kw_only=True):
    """An app's last launch delay reset, tried after a fix of a pull that failed for ``auth``."""

    at: datetime
    result: DelayResetOutcome


class DeploymentLock(msgspec.Struct, frozen=True, kw_only=True):
    """Deployments that lock an app (Marathon's 409), and the definition they roll out."""

    deployment_ids: tuple[str, ...]
    since: float
    version: str | None
    """The app's ``version`` when the lock was met: the definition the deployment rolls out."""


class FailedPullNote(msgspec.Struct, frozen=True, kw_only=True):
    """A task of the app that failed to pull its image (the evidence the engine decides on)."""

    reason: PullFailureReason
    at: float
    version: str | None
    """The app version the task was launched from (``None``: the event did not say)."""


class Fight(msgspec.Struct, frozen=True, kw_only=True):
    """Another writer keeps removing the entry this controller writes."""

    removals: int
    until: float
    """No write to the app before this (a window after the last removal)."""
    writer: str | None
    """Who removed it last, as Marathon's ``api_post_event`` named the request."""


class AppRecord(msgspec.Struct):
    """The facts of one app; the rarer ones start empty (``None``), as most apps never have
    them, and an index may hold tens of thousands of apps."""

    registry: str | None = None
    """The configured registry the app is ours for, from its first plan (``None``: not ours)."""
    lock: DeploymentLock | None = None
    hold_until: float = 0.0
    """Not tried again before this, unless something releases it (a lock's recheck)."""
    deferred: bool = False
    """Waits for a deployment slot; back as soon as one frees up."""
    conflicts: int = 0
    """409s in a row (a one-shot pass gives up after a few)."""
    last_failed_pull: FailedPullNote | None = None
    written: str | None = None
    """The URI of the entry this term last wrote to the app."""
    removals: deque[float] | None = None
    """When another writer removed (or changed) that entry, within the fight window."""
    removal_counted: bool = False
    """The entry's current absence is counted already (it is counted once per write)."""
    remover: str | None = None
    fight_until: float = 0.0
    """While in a fight: no write before this (the window after the removal that started it)."""
    last_writer: str | None = None
    """The last ``api_post_event`` request that wrote the app without that entry."""
    rescued: frozenset[str] = frozenset()
    """Deployments this term forced a write over (at most once each)."""
    stuck_reported: frozenset[str] = frozenset()
    """Deployments already logged as stuck (once each)."""


class AppIndex:
    """Per-app facts and statuses of one term (see the module docstring)."""

    def __init__(self, *, fight_limit: int = 3, fight_window: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._records: dict[AppId, AppRecord] = {}
        self._listed: dict[AppId, ListedApp] = {}
        self.statuses: dict[AppId, AppStatus] = {}
        """Each app in the book (opted in, or with something to show), by id."""
        self._counts: Counter[str] = Counter()
        self._pull_failures: dict[AppId, PullFailureNote] = {}
        self._delay_resets: dict[AppId, DelayReset] = {}
        self.recent: deque[dict[str, str]] = deque(maxlen=_RECENT)
        """Writes and failures for the status page, newest first."""
        self._fight_limit = fight_limit
        self._fight_window = fight_window
        self.clock = clock
        self.now = now

    def __contains__(self, app_id: object) -> bool:
        return app_id in self._records

    def get(self, app_id: AppId) -> AppRecord | None:
        return self._records.get(app_id)

    def record(self, app_id: AppId) -> AppRecord:
        found = self._records.get(app_id)
        if found is None:
            found = self._records[app_id] = AppRecord()
        return found

    def forget(self, app_id: AppId) -> None:
        """The app is gone: drop everything known of it."""
        self._records.pop(app_id, None)
        self._listed.pop(app_id, None)
        self.clear_status(app_id)

    def __iter__(self) -> Iterator[AppId]:
        return iter(list(self._records))

    # -- listed copies (an informer's cache) ---------------------------------------------------

    def keep_listed(self, app: ListedApp) -> None:
        """Keep a relist's copy of an app that goes to a worker, which then needs no GET."""
        self._listed[app.id] = app

    def take_listed(self, app_id: AppId) -> RawApp | None:
        """The listed copy, used up; ``None`` when there is none, or a newer event spoilt it."""
        listed = self._listed.pop(app_id, None)
        return as_raw(listed) if listed is not None else None

    def spoil_listed(self, app_id: AppId) -> None:
        """An event named the app: the listed copy may predate it."""
        self._listed.pop(app_id, None)

    @property
    def listed_count(self) -> int:
        return len(self._listed)

    # -- ownership -----------------------------------------------------------------------------

    def track(self, app_id: AppId, registry: str | None) -> None:
        """The app's plan says which registry it is ours for (``None``: none)."""
        if registry is not None:
            self.record(app_id).registry = registry
        elif (found := self._records.get(app_id)) is not None:
            found.registry = None

    def not_ours(self, app_id: AppId) -> None:
        """The app is not this controller's (not opted in, and no entry of ours): ``track`` it
        for no registry and clear its status, at the cost of two lookups when it was not ours
        before either (its pull failures and delay resets are kept only while it has a status)."""
        found = self._records.get(app_id)
        if found is not None:
            found.registry = None
        if app_id in self.statuses:
            self.clear_status(app_id)

    def registry_of(self, app_id: AppId) -> str | None:
        found = self._records.get(app_id)
        return found.registry if found is not None else None

    def apps_of(self, registry: str) -> list[AppId]:
        return [a for a, r in self._records.items() if r.registry == registry]

    # -- statuses (what /status shows) ---------------------------------------------------------

    def set_status(self, app_id: AppId, status: AppStatus) -> None:
        self._uncount(app_id)
        self.statuses[app_id] = status
        self._counts[status.state] += 1

    def fail(self, app_id: AppId, error: str, *, state: AppState = "failed") -> None:
        """Keep what was known of the app; mark the failure."""
        current = self.statuses.get(app_id) or AppStatus(state=state)
        self._uncount(app_id)  # before the state changes, so that its count goes down
        current.state = state
        current.last_error = error
        current.last_reconcile = self.now()
        self.set_status(app_id, current)
        if state == "failed":
            self.note("failure", app_id, error)

    def state_of(self, app_id: AppId) -> AppState | None:
        status = self.statuses.get(app_id)
        return status.state if status else None

    def clear_status(self, app_id: AppId) -> None:
        """The app leaves the book (no longer ours): drop what ``/status`` showed of it."""
        self._uncount(app_id)
        self._pull_failures.pop(app_id, None)
        self._delay_resets.pop(app_id, None)

    def _uncount(self, app_id: AppId) -> None:
        old = self.statuses.pop(app_id, None)
        if old is not None:
            self._counts[old.state] -= 1

    def counts(self) -> Counter[str]:
        return +self._counts

    def note(self, kind: str, subject: str, detail: str) -> None:
        """Remember a write or a failure for the status page (a bounded list)."""
        self.recent.appendleft({"at": self.now().isoformat(), "kind": kind, "subject": subject,
                                "detail": detail})

    def note_pull_failure(self, app_id: AppId, note: PullFailureNote) -> None:
        """Keep an app's last pull failure (only for an app in the book)."""
        if app_id in self.statuses:
            self._pull_failures[app_id] = note

    def pull_failure(self, app_id: AppId) -> PullFailureNote | None:
        return self._pull_failures.get(app_id)

    def note_delay_reset(self, app_id: AppId, reset: DelayReset) -> None:
        """Keep an app's last launch delay reset (only for an app in the book)."""
        if app_id in self.statuses:
            self._delay_resets[app_id] = reset

    def delay_reset(self, app_id: AppId) -> DelayReset | None:
        return self._delay_resets.get(app_id)

    # -- holds: locks and deferrals -------------------------------------------------------------

    def held_for(self, app_id: AppId) -> float:
        """Seconds until the app may be tried again (0: now)."""
        found = self._records.get(app_id)
        return max(0.0, found.hold_until - self.clock()) if found is not None else 0.0

    def waiting(self, app_id: AppId) -> bool:
        """Whether the app waits for something (a lock, a slot, a fight's end) and so must go to
        a worker, not be settled inline."""
        found = self._records.get(app_id)
        return found is not None and (found.lock is not None or found.deferred
                                      or found.conflicts > 0 or self.fight(app_id) is not None)

    def locked(self, app_id: AppId, deployment_ids: tuple[str, ...], version: str | None,
               recheck: float) -> DeploymentLock:
        record = self.record(app_id)
        record.conflicts += 1
        previous = record.lock
        since = (previous.since if previous is not None
                 and set(previous.deployment_ids) & set(deployment_ids) else self.clock())
        record.lock = DeploymentLock(deployment_ids=deployment_ids, since=since, version=version)
        record.hold_until = self.clock() + recheck
        return record.lock

    def release(self, app_id: AppId) -> None:
        """Let the app be tried again now, though its lock stands (it may be stuck)."""
        found = self._records.get(app_id)
        if found is not None:
            found.hold_until = 0.0

    def deferred(self, app_id: AppId) -> None:
        self.record(app_id).deferred = True

    def went_through(self, app_id: AppId) -> None:
        """A reconcile ended without a lock or a deferral: nothing holds the app any more."""
        found = self._records.get(app_id)
        if found is not None:
            found.lock = None
            found.hold_until = 0.0
            found.deferred = False
            found.conflicts = 0

    def deployment_finished(self, deployment_id: str) -> set[AppId]:
        """Apps a finished deployment locked, and every app waiting for a slot: they may go on
        now. Their locks are dropped."""
        ready: set[AppId] = set()
        for app_id, found in self._records.items():
            if found.lock is not None and deployment_id in found.lock.deployment_ids:
                found.lock = None
                found.hold_until = 0.0
                ready.add(app_id)
            if found.deferred:
                found.deferred = False
                ready.add(app_id)
        return ready

    def waited_on(self) -> set[str]:
        """The deployments some app waits for."""
        return {d for found in self._records.values() if found.lock is not None
                for d in found.lock.deployment_ids}

    # -- evidence: pull failures and stuck deployments ------------------------------------------

    def pull_failed(self, app_id: AppId, reason: PullFailureReason, version: str | None) -> bool:
        """Note a task's failed pull; True when the app is locked, so that it is looked at now
        (its deployment may be stuck) instead of at its lock's recheck."""
        record = self.record(app_id)
        record.last_failed_pull = FailedPullNote(reason=reason, at=self.clock(), version=version)
        if record.lock is None:
            return False
        self.release(app_id)
        return True

    def stuck_evidence(self, app_id: AppId, version: str | None) -> FailedPullNote | None:
        """A failed pull of a task of the definition at ``version`` (the one a deployment rolls
        out), or, where the event named no version, one seen since the app was locked."""
        found = self._records.get(app_id)
        if found is None or found.last_failed_pull is None:
            return None
        note = found.last_failed_pull
        if note.version is not None:
            return note if version is not None and note.version == version else None
        return note if found.lock is not None and note.at >= found.lock.since else None

    def rescued(self, app_id: AppId, deployment_ids: tuple[str, ...]) -> None:
        record = self.record(app_id)
        record.rescued |= frozenset(deployment_ids)

    def first_report_of_stuck(self, app_id: AppId, deployment_ids: tuple[str, ...]) -> bool:
        """Whether these deployments are reported stuck for the first time (logged once)."""
        record = self.record(app_id)
        first = record.stuck_reported.isdisjoint(deployment_ids)
        record.stuck_reported |= frozenset(deployment_ids)
        return first

    # -- writes and fights ---------------------------------------------------------------------

    def wrote(self, app_id: AppId, uri: str | None) -> None:
        """This term wrote the app: with its entry at ``uri``, or without (``None``)."""
        record = self.record(app_id)
        record.written = uri
        record.removal_counted = False

    def written(self, app_id: AppId) -> str | None:
        found = self._records.get(app_id)
        return found.written if found is not None else None

    def posted(self, app_id: AppId, writer: str, uris: tuple[str, ...]) -> None:
        """Marathon said someone wrote the app (``api_post_event``); remember who, when the
        definition lacks the entry this term wrote."""
        found = self._records.get(app_id)
        if found is not None and found.written is not None and found.written not in uris:
            found.last_writer = writer

    def removed(self, app_id: AppId) -> Fight | None:
        """Another writer removed (or changed) the entry this term wrote; returns the fight if
        this removal reached ``fight_limit`` within ``fight_window``. One absence counts once,
        however often the app is looked at before the entry is written again."""
        record = self.record(app_id)
        if record.removal_counted:
            return self.fight(app_id)
        record.removal_counted = True
        now = self.clock()
        removals = record.removals if record.removals is not None else deque()
        record.removals = removals
        removals.append(now)
        record.remover = record.last_writer
        while removals[0] <= now - self._fight_window:
            removals.popleft()
        if len(removals) >= self._fight_limit:
            record.fight_until = now + self._fight_window
        return self.fight(app_id)

    def fight(self, app_id: AppId) -> Fight | None:
        """The fight the app is in, until the window has passed since the removal that made it
        one; ``None`` when none."""
        found = self._records.get(app_id)
        if found is None or found.fight_until <= self.clock():
            return None
        return Fight(removals=len(found.removals or ()), until=found.fight_until,
                     writer=found.remover)
