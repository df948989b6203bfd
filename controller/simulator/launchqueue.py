"""Marathon's launch queue in front of the simulated agent (``Agent`` mixes it in): each app's
launcher for its current configuration (the backoff, since when it waits), how many instances
it still has to launch (a restart within its capacity), the launches and the wake-ups when a
backoff ends, and ``GET /v2/queue``. The ``agent`` module's docstring says how it behaves.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from controller.simulator.tasks import RUNNING, AgentHost, AppTasks, Launcher, Rollout
from controller.simulator.wire import Json, Scheduler, iso


class LaunchQueue:
    """``Agent``'s launch queue: what it asks the agent to launch, and when."""

    if TYPE_CHECKING:  # what Agent provides (its __init__ sets the attributes)
        _apps: dict[str, AppTasks]
        _schedule: Scheduler | None
        _timers: set[asyncio.TimerHandle]

        @property
        def host(self) -> AgentHost: ...

        def _launch(self, app: Json) -> None: ...

    # -- what Marathon asks --------------------------------------------------------------------

    def queue(self) -> list[tuple[str, Json]]:
        """``(app id, queue entry without "app")`` for every app with instances to launch."""
        now = self.host.now()
        entries = []
        for app_id, entry in self._apps.items():
            app = self.host.app(app_id)
            launcher = entry.launcher
            if app is None or launcher is None:
                continue
            waiting = self._not_running(entry)
            if waiting <= 0:
                continue
            until = launcher.backoff_until
            left = (until - now).total_seconds() if until is not None else 0.0
            entries.append((app_id, {
                "count": waiting,
                "delay": {"timeLeftSeconds": max(0, int(left)),
                          "overdue": until is not None and left < 0},
                "since": iso(launcher.waiting_since or now),
                "processedOffersSummary": {
                    "processedOffersCount": 0, "unusedOffersCount": 0,
                    "rejectSummaryLastOffers": [], "rejectSummaryLaunchAttempt": []},
            }))
        return entries

    def reset_delay(self, app_id: str) -> bool:
        """``DELETE /v2/queue/{id}/delay``: ``False`` unless an instance of the app waits for a
        launch (Marathon 1.10: a *scheduled* instance; a staging one is launched already);
        otherwise its backoff is cleared and the waiting instances launch at once."""
        entry = self._apps.get(app_id)
        app = self.host.app(app_id)
        if entry is None or entry.launcher is None or app is None:
            return False
        if self._missing(entry) <= 0:
            return False
        entry.launcher.delay = entry.launcher.backoff_until = None
        self._converge(app_id)
        return True

    def backoff(self, app_id: str) -> float | None:
        """The app's current launch delay in seconds (``None``: not delayed)."""
        entry = self._apps.get(app_id)
        return entry.launcher.delay if entry and entry.launcher else None

    # -- the launch queue ----------------------------------------------------------------------

    def _follow(self, app_id: str) -> tuple[AppTasks, Json | None]:
        """The app's tasks entry, with a fresh launcher when its configuration changed (the
        backoff belongs to one config ref)."""
        entry = self._apps.setdefault(app_id, AppTasks())
        app = self.host.app(app_id)
        if app is not None:
            config_ref = app["versionInfo"]["lastConfigChangeAt"]
            if entry.launcher is None or entry.launcher.config_ref != config_ref:
                entry.launcher = Launcher(config_ref=config_ref)
        return entry, app

    @staticmethod
    def _missing(entry: AppTasks) -> int:
        """Instances the launch queue still has to launch (scheduled, not staging)."""
        rollout = entry.rollout
        if rollout is None:
            return entry.wanted - len(entry.tasks)
        return rollout.started - sum(1 for t in entry.tasks if t.version == rollout.version)

    @staticmethod
    def _not_running(entry: AppTasks) -> int:
        """Instances that should run and do not (``GET /v2/queue``'s ``count``)."""
        rollout = entry.rollout
        version = rollout.version if rollout is not None else None
        target = rollout.instances if rollout is not None else entry.wanted
        return target - sum(1 for t in entry.tasks
                            if t.state == RUNNING and version in (None, t.version))

    def _roll(self, entry: AppTasks, rollout: Rollout) -> None:
        """Start what the capacity allows (``TaskReplaceActor.launchInstances``), and end the
        restart once every new instance runs and no old one is left."""
        old = sum(1 for t in entry.tasks if t.version != rollout.version)
        capacity = max(0, rollout.max_capacity - old - rollout.started)
        rollout.started += min(max(0, rollout.instances - rollout.started), capacity)
        running = sum(1 for t in entry.tasks if t.version == rollout.version and t.state == RUNNING)
        if old == 0 and running >= rollout.instances:
            entry.rollout = None

    def _converge(self, app_id: str) -> None:
        app = self.host.app(app_id)
        entry = self._apps.get(app_id)
        if app is None or entry is None or entry.launcher is None:
            return
        launcher = entry.launcher
        if entry.rollout is not None:
            self._roll(entry, entry.rollout)
        missing = self._missing(entry)
        if missing <= 0:
            if self._not_running(entry) <= 0:
                launcher.waiting_since = None
            return
        now = self.host.now()
        if launcher.waiting_since is None:
            launcher.waiting_since = now
        if launcher.backoff_until is not None and launcher.backoff_until > now:
            self._wake_at(app_id, launcher, launcher.backoff_until)
            return
        for _ in range(missing):
            self._launch(app)

    def _wake_at(self, app_id: str, launcher: Launcher, due: datetime) -> None:
        """Converge the app again at ``due``, unless a wake-up no later than that is pending
        (an early one finds the app still delayed and sets the next)."""
        if launcher.wake_due is not None and launcher.wake_due <= due:
            return
        launcher.wake_due = due
        launcher.wake_token += 1
        token = launcher.wake_token
        seconds = (due - self.host.now()).total_seconds()

        def wake() -> None:
            if launcher.wake_token != token:
                return
            launcher.wake_due = None
            entry = self._apps.get(app_id)
            if entry is not None and entry.launcher is launcher:
                self._converge(app_id)

        if self._schedule is not None:
            self._schedule(seconds, wake)
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            wake()

        handle = loop.call_later(seconds, fire)
        self._timers.add(handle)
