"""The leader election port: a replica stands by, leads while it holds the lock, and every write
first passes the fence, so that only the leader writes.

``controller.leader`` is the ZooKeeper adapter; the wiring builds it only when the config asks
for leader election, and a single instance runs with ``no_fence``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["Election", "Fence", "no_fence"]


class Fence(Protocol):
    """Checked right before every write: raises ``NotLeaderError`` unless this replica leads.

    Returns the leader epoch to record in the bundle metadata (``None`` without election).
    """

    async def __call__(self) -> int | None: ...


async def no_fence() -> int | None:
    """The fence of a single instance: it always leads."""
    return None


class Election(Protocol):
    """What the manager asks of a leader election."""

    connected: bool
    """Whether the election's backend answers now (a standby is ready only while it does)."""
    lost: asyncio.Event
    """Set when leadership ended; the term must stop."""

    async def start(self) -> None:
        """Connect, retrying until the backend answers."""

    async def acquire(self) -> int:
        """Wait until this replica leads; returns its epoch."""

    async def release(self) -> None:
        """Give leadership up (the term ended)."""

    async def stop(self) -> None:
        """Disconnect."""

    async def fence(self) -> int | None:
        """The ``Fence`` of this election."""
