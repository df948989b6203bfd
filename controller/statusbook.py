"""What the controller knows of each app, for ``/status``, the ``apps_managed`` gauge and resync.

Only ids, states, reasons, URIs and error messages are kept: never a credential. An app's last
image pull failure and last launch delay reset are kept beside its status, which each reconcile
replaces, until the app is forgotten.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.model import AppId, AppState, DelayResetOutcome
from controller.publisher import RegistryState
from controller.pullfailure import PullFailureReason
from controller.registry import ImageCheck

__all__ = ["AppStatus", "DelayReset", "PullFailureNote", "StatusBook"]

_RECENT = 50
"""Writes and failures kept for the status page, newest first."""



@dataclass(slots=True, kw_only=True)
class AppStatus:
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


@dataclass(frozen=True, slots=True, kw_only=True)
class PullFailureNote:
    """An app's last task that failed to pull its image."""

    reason: PullFailureReason
    at: datetime
    """When the controller saw the failure."""
    task_id: str | None
    message: str
    """The failure's summary (``controller.pullfailure.summary``): short, no URL paths."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DelayReset:
    """An app's last launch delay reset, tried after a fix of a pull that failed for ``auth``."""

    at: datetime
    result: DelayResetOutcome


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class StatusBook:
    """Per-app status, with the counts by state kept as it changes (read after every reconcile)."""

    def __init__(self) -> None:
        self.apps: dict[AppId, AppStatus] = {}
        self._counts: Counter[str] = Counter()
        self._recent: deque[dict[str, str]] = deque(maxlen=_RECENT)
        self._pull_failures: dict[AppId, PullFailureNote] = {}
        self._delay_resets: dict[AppId, DelayReset] = {}

    def note(self, kind: str, subject: str, detail: str, at: datetime) -> None:
        """Remember a write or a failure for the status page (a bounded list)."""
        self._recent.appendleft({"at": at.isoformat(), "kind": kind, "subject": subject,
                                 "detail": detail})

    def record(self, app_id: AppId, status: AppStatus) -> None:
        self._uncount(app_id)
        self.apps[app_id] = status
        self._counts[status.state] += 1

    def fail(self, app_id: AppId, error: str, at: datetime, *, state: AppState = "failed"
             ) -> None:
        """Keep what was known of the app; mark the failure."""
        current = self.apps.get(app_id) or AppStatus(state=state)
        self._uncount(app_id)  # before the state changes, so that its count goes down
        current.state = state
        current.last_error = error
        current.last_reconcile = at
        self.record(app_id, current)
        if state == "failed":
            self.note("failure", app_id, error, at)

    def state_of(self, app_id: AppId) -> AppState | None:
        status = self.apps.get(app_id)
        return status.state if status else None

    def pull_failed(self, app_id: AppId, note: PullFailureNote) -> None:
        """Keep an app's last pull failure (only for an app in the book)."""
        if app_id in self.apps:
            self._pull_failures[app_id] = note

    def delay_reset(self, app_id: AppId, reset: DelayReset) -> None:
        """Keep an app's last launch delay reset (only for an app in the book)."""
        if app_id in self.apps:
            self._delay_resets[app_id] = reset

    def forget(self, app_id: AppId) -> None:
        """The app is gone or no longer ours: drop all that is known of it."""
        self._uncount(app_id)
        self._pull_failures.pop(app_id, None)
        self._delay_resets.pop(app_id, None)

    def _uncount(self, app_id: AppId) -> None:
        old = self.apps.pop(app_id, None)
        if old is not None:
            self._counts[old.state] -= 1

    def counts(self) -> Counter[str]:
        return +self._counts

    def snapshot(self, registries: Mapping[str, RegistryState], now: datetime,
                 **extra: Any) -> dict[str, Any]:
        """The ``/status`` document."""
        return {
            **extra,
            "registries": {
                name: {
                    "sha256": s.manifest.sha256 if s.manifest else None,
                    "format": s.manifest.format if s.manifest else None,
                    "created_at": _iso(s.manifest.created_at) if s.manifest else None,
                    "age_seconds": round((now - s.manifest.created_at).total_seconds(), 1)
                    if s.manifest else None,
                    "expires_at": _iso(s.manifest.expires_at) if s.manifest else None,
                    "refresh_at": _iso(s.manifest.refresh_at) if s.manifest else None,
                    "failures": s.failures,
                    "last_error": s.last_error,
                    "damage": s.damage,
                    "repairs": s.repairs,
                    "verify": s.verify,
                    "credentials_rejected": s.credentials_rejected,
                    "login": {"result": s.login.result, "at": _iso(s.login.at),
                              "detail": s.login.detail} if s.login else None,
                }
                for name, s in sorted(registries.items())
            },
            "apps": {
                app_id: {
                    "state": a.state,
                    "detail": a.detail,
                    "registry": a.registry,
                    "last_reconcile": _iso(a.last_reconcile),
                    "last_error": a.last_error,
                    "deployment_id": a.deployment_id,
                    "since": _iso(a.since),
                    "image_check": {"result": a.image_check.result,
                                    "detail": a.image_check.detail}
                    if a.image_check else None,
                    "last_pull_failure": _pull_failure(self._pull_failures.get(app_id)),
                    "last_delay_reset": _delay_reset(self._delay_resets.get(app_id)),
                }
                for app_id, a in sorted(self.apps.items())
            },
            "counts": dict(self.counts()),
            "recent": list(self._recent),
        }


def _pull_failure(note: PullFailureNote | None) -> dict[str, str | None] | None:
    if note is None:
        return None
    return {"reason": note.reason, "at": note.at.isoformat(), "task_id": note.task_id,
            "message": note.message}


def _delay_reset(reset: DelayReset | None) -> dict[str, str] | None:
    return None if reset is None else {"at": reset.at.isoformat(), "result": reset.result}
