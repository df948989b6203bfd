"""The leadership fence: checked right before every write, so that only the leader writes."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Fence", "no_fence"]


class Fence(Protocol):
    """Checked right before every write: raises ``NotLeaderError`` unless this replica leads.

    Returns the leader epoch to record in the bundle metadata (``None`` without election).
    """

    async def __call__(self) -> int | None: ...


async def no_fence() -> int | None:
    """The fence of a single instance: it always leads."""
    return None
