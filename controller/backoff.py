"""One backoff policy for every retry loop: work-queue keys, the event stream, relists,
ZooKeeper connects. Pure: callers sleep, or schedule, as they need."""

from __future__ import annotations

import msgspec

__all__ = ["Backoff"]

# 2**64 times any sane base delay is past any sane cap; bounding the exponent keeps the
# arithmetic finite after thousands of failures.
_MAX_EXPONENT = 64


class Backoff(msgspec.Struct, frozen=True):
    """``base`` seconds after the first failure, doubling with each one, at most ``cap``."""

    base: float
    cap: float

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row (1 for the first)."""
        exponent: int = min(max(failures - 1, 0), _MAX_EXPONENT)
        return min(self.cap, self.base * float(2**exponent))
