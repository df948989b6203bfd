"""Repeated warnings, bounded: one line per key and interval, with the number held back.

An event that repeats (a flood of failed pulls, a client hammering the ops port) must not turn
the log into the outage: the first occurrence of a key is logged, the next ones within
``interval`` are counted, and the line after the interval says how many were held back
(``suppressed``). At most ``max_keys`` keys are remembered (the oldest are forgotten first), so
a flood of distinct keys costs bounded memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["LogThrottle"]


class LogThrottle:
    def __init__(self, interval: float, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()
        """key → (quiet until, occurrences held back since the last line)."""

    def allow(self, key: Hashable = None) -> int | None:
        """The number held back since the key's last line when a line may go out now, else
        ``None`` (and this occurrence is counted)."""
        now = self._clock()
        quiet_until, held = self._keys.pop(key, (float("-inf"), 0))
        if now < quiet_until:
            self._keys[key] = (quiet_until, held + 1)
            return None
        self._keys[key] = (now + self._interval, 0)
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)
        return held
