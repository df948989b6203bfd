"""Failed image pulls as evidence, and getting the apps that failed for want of credentials going.

A task that failed to pull its image (``controller.pullfailure``, from a ``status_update_event``)
is evidence about an app this controller manages: it is counted
(``image_pull_failures_total``), shown in ``/status``, and asks for a reconcile of the app and,
when the registry refused the credentials (``auth``), a verification of them.

Marathon then holds the app back for a launch delay that grows with each failure (up to
``maxLaunchDelaySeconds``: 3600 s up to 1.7, 300 s from 1.8). Marathon keeps that delay per app
*and config version* (``RateLimiter``, keyed by the run spec's id and last config change), so
a write of the app's fetch entry, a config change, starts a version with no delay: it is the
fix and the reset at once. A fix that leaves the definition alone (a new bundle that the
registry accepted, or any new one with ``verify: off``, went out for its registry) leaves the
delay, so then it is reset (``DELETE /v2/queue/{id}/delay``) and the app runs again now. The
rule is the pure ``reset_due``; ``PullRemediator`` keeps the evidence and acts. A reset goes
through the write rate limit and the leadership fence like any write, is never forced, and
kills or restarts no task: it only lets Marathon launch the next one. In a dry run the reset is
only recorded (``WriteRecorded``): it counts as done for that fix, and is logged, not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec
import structlog

from controller.appindex import AppIndex, DelayReset, PullFailureNote
from controller.errors import MarathonError, WriteRecorded
from controller.logthrottle import LogThrottle
from controller.model import AppId, DelayResetOutcome
from controller.outcome import AppOutcome
from controller.plan import Eligibility
from controller.pullfailure import FailedPull, PullFailureReason
from controller.ratelimit import WriteGate

__all__ = ["Evidence", "LaunchQueue", "PullRemediator", "RemediationObserver", "reset_due"]

log = structlog.get_logger(component="remediation")

_WARNING_INTERVAL_SECONDS = 60.0
"""A failing app's ``image_pull_failed`` warning is logged at most this often."""


class RemediationObserver(Protocol):
    """What the remediator counts (``Metrics`` is one)."""

    def on_pull_failure(self, registry: str, reason: PullFailureReason) -> None: ...

    def on_delay_reset(self, result: DelayResetOutcome) -> None: ...


class LaunchQueue(Protocol):
    """Marathon's launch queue: the one operation remediation needs."""

    async def reset_launch_delay(self, app_id: AppId) -> bool: ...


class Evidence(msgspec.Struct, kw_only=True):
    """What is known of one app, as ticks of one counter (an order that no clock can upset)."""

    registry: str
    """The registry of the app's image when its pull failed."""
    failed: int | None = None
    """When its last task failed to pull for ``auth``."""
    fixed: int | None = None
    """When it was last fixed: its fetch entry written, or a new bundle out for its registry."""
    reset: int | None = None
    """When its launch delay was last reset, or found not to need it (a write of the entry
    starts a new config version, which Marathon launches without the old one's delay)."""


def reset_due(evidence: Evidence) -> bool:
    """Whether to reset the app's launch delay: it failed to pull for ``auth``, was fixed since,
    and the delay has not been reset since that failure (so at most once per fix).

    A failure seen after the reset (a task launched before the fix, say) needs a new fix.
    """
    failed, fixed, reset = evidence.failed, evidence.fixed, evidence.reset
    return (failed is not None and fixed is not None and fixed > failed
            and (reset is None or reset < failed))


class PullRemediator:
    """Takes failed pulls from the event stream, fixes from the reconcilers; resets delays.

    ``reconcile_app`` queues an app; ``verify_registry`` asks for a verification of a
    registry's credentials. It is an ``OutcomeListener`` of the app reconciler: the reset runs
    in the app's own reconcile, so it is serialised with the app's writes.
    """

    def __init__(
        self,
        *,
        index: AppIndex,
        observer: RemediationObserver,
        queue: LaunchQueue,
        gate: WriteGate,
        reconcile_app: Callable[[AppId], None],
        verify_registry: Callable[[str], None],
        reset_launch_delay: bool = True,
        warnings: LogThrottle | None = None,
    ) -> None:
        self._index = index
        self._observer = observer
        self._queue = queue
        self._gate = gate
        self._reconcile_app = reconcile_app
        self._verify_registry = verify_registry
        self._reset_enabled = reset_launch_delay
        self._warnings = warnings or LogThrottle(_WARNING_INTERVAL_SECONDS)
        self._ticks = 0
        self._evidence: dict[AppId, Evidence] = {}

    def _tick(self) -> int:
        self._ticks += 1
        return self._ticks

    # -- evidence ------------------------------------------------------------------------------

    def pull_failed(self, failed: FailedPull) -> None:
        """A task failed to pull its image: count it and look again, if the app is ours.

        Ours: the index knows the app's registry from its first plan (opted in and eligible,
        with a bundle or not yet), and it is not claimed by another controller too. A failure
        that names another registry than the app's (its image changed since) is not the
        app's. The warning is logged once a minute per app, with the number held back.
        """
        app_id, failure = failed.app_id, failed.failure
        registry = self._index.registry_of(app_id)
        if registry is None or self._index.state_of(app_id) == "conflict":
            return
        if failure.registry is not None and failure.registry != registry:
            return
        self._observer.on_pull_failure(registry, failure.reason)
        self._index.note_pull_failure(app_id, PullFailureNote(
            reason=failure.reason, at=self._index.now(), task_id=failed.task_id,
            message=failed.summary))
        held = self._warnings.allow(app_id)
        if held is not None:
            log.warning("image_pull_failed", app_id=app_id, registry=registry,
                        reason=failure.reason, task_id=failed.task_id, message=failed.summary,
                        suppressed=held)
        self._index.pull_failed(app_id, failure.reason, failed.version)
        if failure.reason == "auth":
            evidence = self._evidence.get(app_id)
            if evidence is None or evidence.registry != registry:
                evidence = self._evidence[app_id] = Evidence(registry=registry)
            evidence.failed = self._tick()
            self._verify_registry(registry)
        self._reconcile_app(app_id)

    def bundle_published(self, registry: str) -> None:
        """A new bundle went out for ``registry``: a fix for every app that failed on it."""
        tick = self._tick()
        for app_id, evidence in self._evidence.items():
            if evidence.registry == registry:
                evidence.fixed = tick
                if self._reset_enabled and reset_due(evidence):
                    self._reconcile_app(app_id)

    # -- the app reconciler's hook -------------------------------------------------------------

    async def converged(self, outcome: AppOutcome) -> None:
        """Note a write as a fix, forget an app that is no longer ours, reset a delay if due."""
        app_id = outcome.app_id
        evidence = self._evidence.get(app_id)
        if evidence is None:
            return
        registry = outcome.plan.eligibility.registry if outcome.plan is not None else None
        if outcome.action == "gone" or (outcome.plan is not None and registry is None):
            del self._evidence[app_id]  # deleted, opted out or moved to an unmanaged registry
            return
        if outcome.action == "updated":  # a new config version: launched without a delay
            evidence.fixed = evidence.reset = self._tick()
        if self._reset_enabled and reset_due(evidence):
            await self._reset(app_id, evidence)

    async def _reset(self, app_id: AppId, evidence: Evidence) -> None:
        """Reset the launch delay within the write rate limit; an error is tried again at the
        app's next reconcile."""
        await self._gate.write_token()
        result: DelayResetOutcome
        try:
            result = "ok" if await self._queue.reset_launch_delay(app_id) else "not_queued"
        except WriteRecorded:  # a dry run: once per fix, as a reset would be
            evidence.reset = self._tick()
            log.info("launch_delay_reset", app_id=app_id, registry=evidence.registry,
                     result="recorded")
            return
        except MarathonError as e:
            result = "error"
            log.warning("launch_delay_reset", app_id=app_id, registry=evidence.registry,
                        result=result, error=str(e) or type(e).__name__)
        else:
            evidence.reset = self._tick()
            log.info("launch_delay_reset", app_id=app_id, registry=evidence.registry,
                     result=result)
        self._observer.on_delay_reset(result)
        self._index.note_delay_reset(app_id, DelayReset(at=self._index.now(), result=result))

    def settled(self, outcome: AppOutcome) -> None:
        """An app planned inline needs nothing: nothing to reset."""

    def settled_many(self, apps: Sequence[tuple[AppId, Eligibility]]) -> None:
        """Apps that need nothing: nothing to reset."""

    def failed(self, app_id: AppId, error: Exception) -> None:
        """A failed converge fixed nothing: nothing to reset."""
