"""The one fake clock of the tests: monotonic seconds when called, with its wall-time and
nanosecond twins, moved only by ``advance`` (or by setting ``now``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
"""The wall time at ``now == 0``."""


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wall(self) -> datetime:
        """The same instant as a wall-clock time (for code that takes ``now: () -> datetime``)."""
        return EPOCH + timedelta(seconds=self.now)

    def ns(self) -> int:
        """The same instant in nanoseconds since the Unix epoch (``time.time_ns``'s shape)."""
        return int(self.wall().timestamp() * 1e9)
