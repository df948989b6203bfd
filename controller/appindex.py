"""What one leadership term knows of each app beyond its definition, in one place.

Marathon holds the definitions; this index holds what the controller learnt while converging
them, which no read of Marathon gives back: which registry an app is ours for (from its first
plan, before it has a bundle), the deployments that lock it and since when, the pull failures
its tasks reported, the entries this term wrote and how often another writer took them away,
and the deployments it rescued. The source, the reconciler, the remediator and the status book
read it; only the reconciler and the remediator change it.

Times are the clock's (``time.monotonic`` by default), never wall time: they order events and
bound waits.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from controller.model import AppId
from controller.pullfailure import PullFailureReason

__all__ = ["AppIndex", "AppRecord", "DeploymentLock", "FailedPullNote", "Fight"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentLock:
    """Deployments that lock an app (Marathon's 409), and the definition they roll out."""

    deployment_ids: tuple[str, ...]
    since: float
    version: str | None
    """The app's ``version`` when the lock was met: the definition the deployment rolls out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedPullNote:
    """A task of the app that failed to pull its image."""

    reason: PullFailureReason
    at: float
    version: str | None
    """The app version the task was launched from (``None``: the event did not say)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fight:
    """Another writer keeps removing the entry this controller writes."""

    removals: int
    until: float
    """No write to the app before this (a window after the last removal)."""
    writer: str | None
    """Who removed it last, as Marathon's ``api_post_event`` named the request."""


@dataclass(slots=True)
class AppRecord:
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
    removals: deque[float] = field(default_factory=deque)
    """When another writer removed (or changed) that entry, within the fight window."""
    removal_counted: bool = False
    """The entry's current absence is counted already (it is counted once per write)."""
    remover: str | None = None
    fight_until: float = 0.0
    """While in a fight: no write before this (the window after the removal that started it)."""
    last_writer: str | None = None
    """The last ``api_post_event`` request that wrote the app without that entry."""
    rescued: set[str] = field(default_factory=set)
    """Deployments this term forced a write over (at most once each)."""
    stuck_reported: set[str] = field(default_factory=set)
    """Deployments already logged as stuck (once each)."""


class AppIndex:
    """Per-app facts of one term (see the module docstring)."""

    def __init__(self, *, fight_limit: int = 3, fight_window: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._records: dict[AppId, AppRecord] = {}
        self._fight_limit = fight_limit
        self._fight_window = fight_window
        self.clock = clock

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
        self._records.pop(app_id, None)

    def __iter__(self) -> Iterator[AppId]:
        return iter(list(self._records))

    # -- ownership -----------------------------------------------------------------------------

    def track(self, app_id: AppId, registry: str | None) -> None:
        """The app's plan says which registry it is ours for (``None``: none)."""
        if registry is not None:
            self.record(app_id).registry = registry
        elif (found := self._records.get(app_id)) is not None:
            found.registry = None

    def registry_of(self, app_id: AppId) -> str | None:
        found = self._records.get(app_id)
        return found.registry if found is not None else None

    def apps_of(self, registry: str) -> list[AppId]:
        return [a for a, r in self._records.items() if r.registry == registry]

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
        record.removals.append(now)
        record.remover = record.last_writer
        while record.removals[0] <= now - self._fight_window:
            record.removals.popleft()
        if len(record.removals) >= self._fight_limit:
            record.fight_until = now + self._fight_window
        return self.fight(app_id)

    def fight(self, app_id: AppId) -> Fight | None:
        """The fight the app is in, until the window has passed since the removal that made it
        one; ``None`` when none."""
        found = self._records.get(app_id)
        if found is None or found.fight_until <= self.clock():
            return None
        return Fight(removals=len(found.removals), until=found.fight_until,
                     writer=found.remover)
