"""The one place that decides whether a credential may be tried at its registry now.

A registry that refused a credential may lock the account after a few more refusals, and then
even the corrected password fails. So a credential the registry refused is tried again only
when the source yields a different credential, or once ``interval`` has passed since the
refusal, whoever asks: a failed pull, a relist, a resync, a retry, a verification request or an
image check. A credential the registry accepted (or never saw) is not held back here.

Pure but for the clock: the publisher asks ``withheld_until`` before a login and tells
``record`` what the registry answered; the image checks ask too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec

from controller.registryapi.results import LOGIN_OUTCOMES, LoginOutcome

__all__ = ["LOGIN_ATTEMPTS", "LoginAttempt", "LoginGate", "Refusal"]

LoginAttempt = LoginOutcome | Literal["withheld"]
"""A login's outcome, or ``withheld``: the gate did not let it be tried (the
``registry_login_total`` label)."""
LOGIN_ATTEMPTS: Final[tuple[LoginAttempt, ...]] = (*LOGIN_OUTCOMES, "withheld")


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """The registry refused the credential whose bundle hashes to ``digest`` at ``at``."""

    digest: str
    at: datetime


class LoginGate:
    """Per registry, the last refusal, and when the same credential may be tried again."""

    def __init__(self, *, interval: Callable[[str], float],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """``interval(registry)`` is that registry's ``refused_login_interval`` in seconds."""
        self._interval = interval
        self._now = now
        self._refusals: dict[str, Refusal] = {}

    def withheld_until(self, registry: str, digest: str) -> datetime | None:
        """When the credential ``digest`` may be tried at ``registry`` again; ``None``: now."""
        refusal = self._refusals.get(registry)
        if refusal is None or refusal.digest != digest:
            return None
        until = refusal.at + timedelta(seconds=self._interval(registry))
        return until if self._now() < until else None

    def next_attempt(self, registry: str) -> datetime | None:
        """When the refused credential may be tried again (for ``/status``); ``None`` when no
        refusal holds a login back."""
        refusal = self._refusals.get(registry)
        return None if refusal is None else self.withheld_until(registry, refusal.digest)

    def record(self, registry: str, digest: str, result: LoginOutcome) -> None:
        """What the registry answered to a login with ``digest``: a refusal starts the wait, an
        acceptance ends any."""
        if result == "rejected":
            self._refusals[registry] = Refusal(digest=digest, at=self._now())
        elif result == "accepted":
            self._refusals.pop(registry, None)
