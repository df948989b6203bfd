"""What the simulated agent keeps: its tasks, and per app its tasks, its place in Marathon's
launch queue and the restart in progress; and ``AgentHost``, what it needs from Marathon's
state (the ``agent`` module's docstring says how they behave).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

from controller.simulator.pullers import RegistryBook
from controller.simulator.wire import Json

STAGING: Final = "TASK_STAGING"
RUNNING: Final = "TASK_RUNNING"
FAILED: Final = "TASK_FAILED"
KILLED: Final = "TASK_KILLED"


class AgentHost(Protocol):
    """What the agent needs from Marathon's state (``MarathonState`` is one)."""

    registries: RegistryBook

    @property
    def version(self) -> str: ...

    def app(self, app_id: str) -> Json | None:
        """The app as ``GET /v2/apps`` shows its definition, or ``None`` when it is gone."""
        ...

    def now(self) -> datetime: ...

    def publish(self, event_type: str, payload: Mapping[str, Any]) -> None: ...

    def tasks_changed(self, app_id: str) -> None:
        """An app's tasks or counts changed, its events are out: drop what was cached about
        them, and see whether a deployment step waiting on them is done."""
        ...


@dataclass(slots=True, kw_only=True, eq=False)
class Task:
    """One task of one instance, on this agent."""

    id: str
    instance_id: str
    app_id: str
    version: str
    state: str
    staged_at: datetime
    sandbox: Path
    ports: list[int]
    service_ports: list[int]
    started_at: datetime | None = None


@dataclass(slots=True)
class Launcher:
    """An app's place in Marathon's launch queue: its backoff and since when it waits.

    The backoff belongs to one app version (Marathon keys it by config ref), so a new version
    gets a fresh one.
    """

    config_ref: str
    delay: float | None = None
    backoff_until: datetime | None = None
    waiting_since: datetime | None = None
    wake_due: datetime | None = None
    """When the pending wake-up timer fires (``None``: none pending)."""
    wake_token: int = 0
    """Only the newest timer wakes the launcher; older ones find a newer token and do nothing."""


@dataclass(slots=True, kw_only=True)
class Rollout:
    """A restart in progress (``TaskReplaceActor.State``): the version it rolls out, how many
    instances it may keep at most, the old tasks it still kills, and how many new instances it
    has started (a failed one stays started: the launch queue relaunches it)."""

    version: str
    instances: int
    max_capacity: int
    to_kill: deque[Task]
    started: int


@dataclass(slots=True)
class AppTasks:
    tasks: list[Task] = field(default_factory=list)
    launcher: Launcher | None = None
    last_failure: Json | None = None
    wanted: int = 0
    """How many instances the launch queue keeps alive outside a restart."""
    rollout: Rollout | None = None
