"""The one fake clock of the tests: monotonic seconds when called, with its wall-time and
nanosecond twins, moved only by ``advance`` (or by setting ``now``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
"""The wall time at ``now == 0`` unless a test names another."""

_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_NS = 10**9


class FakeClock:
    """``now`` seconds after ``epoch``: a monotonic clock when called, and through ``wall`` and
    ``ns`` the wall clock of the same instant (for code that takes ``now: () -> datetime`` or
    ``now_ns: () -> int``)."""

    def __init__(self, now: float = 1000.0, *, epoch: datetime = EPOCH) -> None:
        self.now = now
        self.epoch = epoch

    @classmethod
    def at_ns(cls, ns: int) -> FakeClock:
        """A clock whose ``ns()`` is exactly ``ns`` now (a file's stamp, say): whole seconds go
        to the epoch, so nanoseconds survive the float in ``now``."""
        return cls(ns % _NS / _NS, epoch=_UNIX + timedelta(seconds=ns // _NS))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wall(self) -> datetime:
        """The same instant as a wall-clock time."""
        return self.epoch + timedelta(seconds=self.now)

    def ns(self) -> int:
        """The same instant in nanoseconds since the Unix epoch (``time.time_ns``'s shape)."""
        return (self.epoch - _UNIX) // timedelta(microseconds=1) * 1000 + round(self.now * _NS)
