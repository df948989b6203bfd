"""What the controller knows of each app, for ``/status``, the ``apps_managed`` gauge and resync.

Only ids, states, reasons, URIs and error messages are kept: never a credential.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.model import AppId, AppState
from controller.publisher import RegistryState

__all__ = ["AppStatus", "StatusBook"]

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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class StatusBook:
    """Per-app status, with the counts by state kept as it changes (read after every reconcile)."""

    def __init__(self) -> None:
        self.apps: dict[AppId, AppStatus] = {}
        self._counts: Counter[str] = Counter()
        self._recent: deque[dict[str, str]] = deque(maxlen=_RECENT)

    def note(self, kind: str, subject: str, detail: str, at: datetime) -> None:
        """Remember a write or a failure for the status page (a bounded list)."""
        self._recent.appendleft({"at": at.isoformat(), "kind": kind, "subject": subject,
                                 "detail": detail})

    def record(self, app_id: AppId, status: AppStatus) -> None:
        self.forget(app_id)
        self.apps[app_id] = status
        self._counts[status.state] += 1

    def fail(self, app_id: AppId, error: str, at: datetime, *, state: AppState = "failed"
             ) -> None:
        """Keep what was known of the app; mark the failure."""
        current = self.apps.get(app_id) or AppStatus(state=state)
        self.forget(app_id)  # before the state changes, so that its count goes down
        current.state = state
        current.last_error = error
        current.last_reconcile = at
        self.record(app_id, current)
        if state == "failed":
            self.note("failure", app_id, error, at)

    def state_of(self, app_id: AppId) -> AppState | None:
        status = self.apps.get(app_id)
        return status.state if status else None

    def forget(self, app_id: AppId) -> None:
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
                }
                for app_id, a in sorted(self.apps.items())
            },
            "counts": dict(self.counts()),
            "recent": list(self._recent),
        }
