"""Work queue in the style of client-go's ``util/workqueue``: dedup, delays, per-key backoff.

Keys only say *what* to look at (the reconciler re-reads the state), so a key that is already
waiting is never queued twice, and one key is never handed to two workers at once: a key
re-added while a worker holds it is owed one more delivery, made when the worker calls
``done``. Each key has at most one pending delivery, at the earliest time anyone asked for.

States of a key::

    idle ──add──▶ ready ──get──▶ processing ──done──▶ idle
      │             ▲               │   ▲
      add_after     │ due           add  └──done── (owed: delivered again)
      ▼             │               ▼
    delayed ────────┘             owed

Time comes from the injected ``clock``; ``get`` waits until the next delayed key is due or
something changes, with no background task, so the queue has no lifecycle of its own.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from controller.backoff import Backoff

_DEFAULT_BACKOFF = Backoff(1.0, 300.0)

__all__ = ["QueueEmpty", "QueueObserver", "QueueShutDown", "QueueUnobserved", "WorkQueue"]

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", contravariant=True)


class QueueShutDown(Exception):
    """The queue was shut down and has nothing more to hand out (as ``asyncio.QueueShutDown``)."""


class QueueEmpty(Exception):
    """``get_nowait`` found no ready key."""


class QueueObserver(Protocol[K_contra]):
    """Metrics hook of one queue (client-go's ``MetricsProvider``), so the queue does not
    depend on a metrics library."""

    def on_add(self, key: K_contra) -> None:
        """A key became due for a delivery (dedup no-ops are not reported)."""

    def on_get(self, key: K_contra, waited_seconds: float) -> None:
        """A worker took ``key``, ``waited_seconds`` after it was added (or fell due)."""

    def on_done(self, key: K_contra, worked_seconds: float) -> None:
        """A worker released ``key`` after holding it ``worked_seconds``."""

    def on_retry(self, key: K_contra) -> None:
        """A key was re-added with backoff."""

    def on_depth(self, depth: int) -> None:
        """The number of keys waiting for a worker changed."""


class QueueUnobserved:
    """The observer of a queue nobody counts."""

    def on_add(self, key: object) -> None:
        pass

    def on_get(self, key: object, waited_seconds: float) -> None:
        pass

    def on_done(self, key: object, worked_seconds: float) -> None:
        pass

    def on_retry(self, key: object) -> None:
        pass

    def on_depth(self, depth: int) -> None:
        pass


class WorkQueue(Generic[K]):
    """Deduplicating FIFO of keys with delayed adds, per-key backoff and graceful shutdown.

    ``add_rate_limited`` waits as ``backoff`` says for the key's failures so far; ``forget``
    resets the count after a success.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff = _DEFAULT_BACKOFF,
        observer: QueueObserver[K] | None = None,
    ) -> None:
        self._clock = clock
        self._backoff = backoff
        self._observer: QueueObserver[K] = observer if observer is not None else QueueUnobserved()

        self._ready: deque[K] = deque()
        # Keys owed a delivery: the ready ones, plus processing ones re-added meanwhile.
        self._dirty: set[K] = set()
        self._processing: dict[K, float] = {}
        """Keys held by workers, and since when."""
        self._ready_since: dict[K, float] = {}
        # Delayed keys: ``_due_at`` is the truth; heap entries that disagree with it are stale
        # and skipped when they reach the top (cheaper than deleting from the middle).
        self._due_at: dict[K, float] = {}
        self._schedule: list[tuple[float, int, K]] = []
        self._sequence = itertools.count()  # heap tie-break: keys need not be orderable
        self._failures: dict[K, int] = {}
        self._shutting_down = False
        self._drain = True
        self._changed = asyncio.Event()

    def observe(self, observer: QueueObserver[K]) -> None:
        """Report to ``observer`` from now on (an observer that must read the queue itself is
        made once the queue exists)."""
        self._observer = observer
        observer.on_depth(len(self._dirty))

    # -- adding --------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Queue ``key`` now, unless it is already owed a delivery; ignored after shutdown."""
        if self._shutting_down or key in self._dirty:
            return
        now = self._clock()
        self._promote_due(now)
        if key in self._dirty:  # it was delayed and has just fallen due
            return
        self._due_at.pop(key, None)
        self._mark_dirty(key, now)

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending delivery wins."""
        if delay <= 0:
            self.add(key)
            return
        if self._shutting_down or key in self._dirty:
            return
        due = self._clock() + delay
        current = self._due_at.get(key)
        if current is not None and current <= due:
            return
        self._due_at[key] = due
        heapq.heappush(self._schedule, (due, next(self._sequence), key))
        if self._schedule[0][0] == due:
            self._changed.set()  # waiters must shorten their timeout

    def add_rate_limited(self, key: K) -> None:
        """Queue ``key`` after its backoff, which doubles with every call until ``forget``."""
        if self._shutting_down:
            return
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        self._observer.on_retry(key)
        self.add_after(key, self._backoff.delay(failures))

    def forget(self, key: K) -> None:
        """Reset the backoff of ``key`` (call it after a success)."""
        self._failures.pop(key, None)

    def retries(self, key: K) -> int:
        """How many times ``key`` was re-added with backoff since the last ``forget``."""
        return self._failures.get(key, 0)

    # -- taking --------------------------------------------------------------------------

    def get_nowait(self) -> K:
        """Take the oldest ready key and hold it until ``done``.

        Raises ``QueueEmpty`` if none is ready, ``QueueShutDown`` once shut down and (when
        draining) out of ready keys.
        """
        if self._shutting_down and not self._drain:
            raise QueueShutDown
        now = self._clock()
        self._promote_due(now)
        if not self._ready:
            if self._shutting_down:
                raise QueueShutDown
            raise QueueEmpty
        key = self._ready.popleft()
        self._dirty.remove(key)
        self._processing[key] = now
        self._observer.on_get(key, now - self._ready_since.pop(key))
        self._observer.on_depth(len(self._dirty))
        return key

    async def get(self) -> K:
        """Wait for a ready key and hold it until ``done``; ``QueueShutDown`` ends the wait."""
        while True:
            try:
                return self.get_nowait()
            except QueueEmpty:
                pass
            # No await between the check above and the wait below, so no wake-up is lost.
            self._changed.clear()
            try:
                async with asyncio.timeout(self._seconds_until_next_due()):
                    await self._changed.wait()
            except TimeoutError:
                pass  # a delayed key is due

    def done(self, key: K) -> None:
        """Release ``key``; if it was re-added meanwhile, it is ready again at once."""
        if key not in self._processing:
            raise ValueError(f"{key!r} is not being processed")
        started = self._processing.pop(key)
        self._observer.on_done(key, self._clock() - started)
        if key in self._dirty:
            self._promote_due(self._clock())
            self._ready.append(key)
            self._changed.set()

    # -- shutting down -------------------------------------------------------------------

    def shutdown(self, *, drain: bool = True) -> None:
        """Stop accepting keys and drop delayed keys that are not due yet.

        With ``drain``, ready keys (and keys owed a delivery) are still handed out and
        ``get`` raises ``QueueShutDown`` once none is ready; without it ``get`` raises at
        once. A second call can stop a drain early, not restart one.
        """
        self._promote_due(self._clock())
        self._shutting_down = True
        self._drain = self._drain and drain
        self._due_at.clear()
        self._schedule.clear()
        if not self._drain:
            self._ready.clear()
            self._dirty.clear()
            self._ready_since.clear()
            self._observer.on_depth(0)
        self._changed.set()

    # -- sizes ---------------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is queued, scheduled, or held by a worker."""
        return key in self._dirty or key in self._due_at or key in self._processing

    def __len__(self) -> int:
        """Keys a worker could take right now."""
        self._promote_due(self._clock())
        return len(self._ready)

    @property
    def depth(self) -> int:
        """Keys waiting for a worker: the ready ones and those owed a delivery after ``done``."""
        self._promote_due(self._clock())
        return len(self._dirty)

    @property
    def processing(self) -> int:
        """Keys held by workers."""
        return len(self._processing)

    def unfinished_work_seconds(self) -> float:
        """How long the keys held now have been held, together (client-go's
        ``unfinished_work_seconds``: a stuck worker makes it grow)."""
        now = self._clock()
        return sum(now - started for started in self._processing.values())

    def longest_running_processor_seconds(self) -> float:
        """How long the key held longest has been held (0 when none is)."""
        now = self._clock()
        return max((now - started for started in self._processing.values()), default=0.0)

    @property
    def pending_delayed(self) -> int:
        """Keys waiting for their delay to pass."""
        self._promote_due(self._clock())
        return len(self._due_at)

    # -- internals -----------------------------------------------------------------------

    def _mark_dirty(self, key: K, ready_since: float) -> None:
        self._dirty.add(key)
        self._ready_since[key] = ready_since
        self._observer.on_add(key)
        self._observer.on_depth(len(self._dirty))
        if key not in self._processing:
            self._ready.append(key)
            self._changed.set()

    def _promote_due(self, now: float) -> None:
        """Move delayed keys whose time has come to ready (or owed, if held).

        Called before every append to ``_ready``, so keys keep the order they fell due in.
        """
        schedule = self._schedule
        while schedule and schedule[0][0] <= now:
            due, _, key = heapq.heappop(schedule)
            if self._due_at.get(key) == due:
                del self._due_at[key]
                self._mark_dirty(key, due)

    def _seconds_until_next_due(self) -> float | None:
        schedule = self._schedule
        while schedule and self._due_at.get(schedule[0][2]) != schedule[0][0]:
            heapq.heappop(schedule)
        if not schedule:
            return None
        return max(0.0, schedule[0][0] - self._clock())
