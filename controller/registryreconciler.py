"""Keeps each registry's bundle current: registry in, current bundle out.

A registry's key comes back when its bundle falls due; a failure keeps the last good bundle and
is retried with the controller's backoff. Evidence that the credential may be wrong (a task
that failed to pull for ``auth``) asks for a login with it through ``VerificationRequests``,
coalesced, and the ``LoginGate`` still decides whether a refused credential may be tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from controller.appindex import AppIndex
from controller.bundles import BundleManager
from controller.handler import Result
from controller.passreport import PassReport

__all__ = ["RegistryReconciler", "VerificationRequests"]

_VERIFY_REQUEST_INTERVAL_SECONDS = 5.0
"""Asked-for logins with one registry are at least this far apart."""


class VerificationRequests:
    """Asks for the next refresh of a registry to try its current credential at the registry,
    even if the bundle is unchanged (e.g. a task failed to pull for auth).

    Requests are coalesced: at most one such login per ``min_interval``, and none while the
    registry is failing (its backoff retry tries the credential anyway), so a storm of failed
    pulls cannot turn into a storm of logins that may lock the account. A registry that is not
    verified (``verify: off``) only has its source read again; one that is not configured is
    ignored. ``queue_after`` queues a registry key after a delay (the registry queue's).
    """

    def __init__(self, bundles: BundleManager, queue_after: Callable[[str, float], None], *,
                 min_interval: float = _VERIFY_REQUEST_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._bundles = bundles
        self._queue_after = queue_after
        self._min_interval = min_interval
        self._clock = clock
        self._requested: set[str] = set()
        self._last: dict[str, float] = {}

    def ask(self, registry: str) -> None:
        if registry not in self._bundles.states:
            return
        if self._bundles.verifies(registry):
            self._requested.add(registry)
        if self._bundles.states[registry].failures:
            return
        last = self._last.get(registry)
        delay = 0.0 if last is None else last + self._min_interval - self._clock()
        self._queue_after(registry, max(0.0, delay))

    def take(self, registry: str) -> bool:
        """Whether a login with the current credential was asked for (and is now under way)."""
        if registry not in self._requested:
            return False
        self._requested.discard(registry)
        self._last[registry] = self._clock()
        return True

    def owe(self, registry: str) -> None:
        """The refresh that was to log in failed: its retry still owes the login."""
        self._requested.add(registry)


class RegistryReconciler:
    """Keeps one registry's bundle current; comes back when it falls due.

    ``on_recovered`` is told when a failing registry refreshed again; ``on_published`` when a
    new bundle went out whose credential the registry had just accepted (a verified fix), or
    any new bundle of a registry with ``verify: off``.
    """

    key_field = "registry"

    def __init__(self, bundles: BundleManager, index: AppIndex, requests: VerificationRequests,
                 *, report: PassReport | None = None,
                 on_recovered: Callable[[str], None] = lambda registry: None,
                 on_published: Callable[[str], None] = lambda registry: None) -> None:
        self._bundles = bundles
        self._index = index
        self._requests = requests
        self._report = report
        self._on_recovered = on_recovered
        self._on_published = on_published

    async def reconcile(self, registry: str) -> Result:
        failing = self._bundles.states[registry].failures > 0
        requested = self._requests.take(registry)
        try:
            action = await self._bundles.refresh(registry, verify_current=requested)
        except Exception as e:
            if requested:
                self._requests.owe(registry)
            message = str(e) or type(e).__name__
            self._index.note("failure", registry, message)
            if self._report is not None:
                self._report.registry_failures[registry] = message
            raise
        preview = self._bundles.previews.get(registry)
        if self._report is not None and preview is not None:
            self._report.registry_plans[registry] = preview
        if failing:  # apps that failed for want of this bundle need not wait out their backoff
            self._on_recovered(registry)
        # A fix went out: verified, or from a registry the operator chose not to verify.
        trusted = (self._bundles.states[registry].published_verified
                   or not self._bundles.verifies(registry))
        if trusted and action in ("published", "repaired"):
            self._on_published(registry)
        return Result(requeue_after=self._bundles.refresh_in(registry), log={"action": action})
