"""Planning a list's apps inline: a relist and the one-shot pass settle each listed app that
needs nothing where it is read, and queue only the others for the workers.

The triage (``controller.applist.Triage``) tells the two usual kinds of app straight from the
decoded struct; every other app is planned as a reconcile would plan it
(``AppReconciler.plan_listed``). Either way the app is recorded as a reconcile would record it.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.applist import ListedApp, Triage, as_raw
from controller.appreconciler import AppReconciler
from controller.model import AppId
from controller.plan import Eligibility

__all__ = ["ListedPlanning", "listed_planning"]


async def listed_planning(reconciler: AppReconciler,
                          requeue: Callable[[AppId, float], None] | None = None
                          ) -> ListedPlanning:
    """Plan a list's apps inline, against the bundle locations that can be had now;
    ``requeue`` is told when a settled app must be looked at again (its bundle URI expires)."""
    return ListedPlanning(reconciler, Triage(reconciler.planner, await reconciler.locations()),
                          requeue)


class ListedPlanning:
    """One list's apps planned inline, without a task (``listed_planning``): ``settle`` each
    app, then ``finish``.

    An app the triage finds needing nothing (``controller.applist.Triage``) costs a few
    microseconds and no plan: not opted in and carrying no entry of ours (it leaves the book),
    or opted in with its entry in place (converged). Any other app is planned as a reconcile
    would plan it (``AppReconciler.plan_listed``)."""

    def __init__(self, reconciler: AppReconciler, triage: Triage,
                 requeue: Callable[[AppId, float], None] | None) -> None:
        self._reconciler = reconciler
        self._index = reconciler.index
        self._triage = triage
        self._requeue = requeue
        self._locations = triage.locations
        self._settled = 0
        self._quiet: list[tuple[AppId, Eligibility]] = []

    def settle(self, app: ListedApp) -> bool:
        """Settle ``app`` inline if it needs no write (recorded as a reconcile would); False
        sends it to a worker: it needs a write, a bundle, a question to the registry, has a
        problem to report, or waits for something (locked, deferred, in a fight)."""
        app_id: AppId = app.id
        if self._index.waiting(app_id):
            return False
        found = self._triage.settled(app)
        if found is None:
            outcome = self._reconciler.plan_listed(as_raw(app), self._locations)
            if outcome is None:
                return False
            self._count(app_id, outcome.requeue_after)
            return True
        decision, location, image = found
        if location is None:
            self._index.not_ours(app_id)
            self._settled += 1
        elif image is None or not self._reconciler.settle_converged(app_id, decision, image):
            return False
        else:
            self._count(app_id, location.renew_in)
        self._quiet.append((app_id, decision))
        return True

    def _count(self, app_id: AppId, requeue_after: float | None) -> None:
        self._settled += 1
        if requeue_after is not None and self._requeue is not None:
            self._requeue(app_id, requeue_after)

    def finish(self) -> int:
        """Count the apps settled, tell the listeners, set the gauges; returns the count."""
        self._reconciler.count_planned(self._settled, self._quiet)
        settled, self._settled, self._quiet = self._settled, 0, []
        return settled
