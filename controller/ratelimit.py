"""Protects the cluster from the controller: every Marathon write starts a rolling restart.

``TokenBucket`` caps the write rate; ``DeploymentBudget`` caps how many deployments the
controller has running at once, so opting in 2,000 apps never restarts them all together; the
``WriteGate`` every write passes puts them together with the leadership fence. A dry run's
writes are only recorded (``controller.dryrun``): its gate has ``NoRateLimit``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import msgspec
import structlog

from controller.election import Fence, no_fence
from controller.errors import TransientError

__all__ = ["DeploymentBudget", "NoRateLimit", "RateLimit", "TokenBucket", "WriteGate", "WriteSlot"]

log = structlog.get_logger(component="ratelimit")


class RateLimit(Protocol):
    async def acquire(self) -> None:
        """Wait until the next write may go."""


class NoRateLimit:
    """Every write goes at once: for a dry run, whose writes are only recorded (a ``plan``
    over 10,000 changed apps must not take 1,000 s at 10 writes a second)."""

    async def acquire(self) -> None:
        pass


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _fill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    async def acquire(self) -> None:
        """Wait for a token; waiters are served in arrival order."""
        async with self._lock:
            self._fill()
            while self._tokens < 1.0:
                await self._sleep((1.0 - self._tokens) / self._rate)
                self._fill()
            self._tokens -= 1.0


class DeploymentBudget:
    """At most ``limit`` controller-started deployments running at once.

    Finished deployments are reported by the event watcher (``finished``); ``refresh`` asks
    Marathon directly, so a missed event never blocks the budget for good.
    """

    def __init__(self, limit: int, *, running: Callable[[], Awaitable[set[str]]],
                 poll_seconds: float = 5.0, stall_seconds: float = float("inf"),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._stall_seconds = stall_seconds
        self._clock = clock
        self._refreshed = float("-inf")
        self._running = running
        self._poll_seconds = poll_seconds
        self._ours: set[str] = set()
        self._reserved = 0
        self._blocked_until = float("-inf")
        self._changed = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._ours) + self._reserved

    def _full(self) -> bool:
        return self.in_flight >= self._limit or self._clock() < self._blocked_until

    def limit_reached(self) -> None:
        """Marathon refused a write because its own running-deployment limit is reached: take
        no slot until some deployment ends, or ``poll_seconds`` have passed."""
        self._blocked_until = self._clock() + self._poll_seconds

    async def acquire(self) -> None:
        """Reserve a slot; wait while ``limit`` of our deployments run or are being started.

        Raises ``TransientError`` once no slot was freed for ``stall_seconds``: deployments
        that never finish must not hold a one-shot pass forever.
        """
        progress = self._clock()
        while self._full():
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=self._poll_seconds)
                progress = self._clock()
            except TimeoutError:
                await self.refresh()
                if self._full() and self._clock() - progress >= self._stall_seconds:
                    why = ("Marathon's running-deployment limit is reached"
                           if self._clock() < self._blocked_until else
                           f"{len(self._ours)} deployments this controller started still run "
                           f"(reconcile.max_concurrent_deployments is {self._limit})")
                    raise TransientError(f"no deployment slot came free in "
                                         f"{self._stall_seconds:.0f}s: {why}") from None
        self._reserved += 1

    async def try_acquire(self) -> bool:
        """Reserve a slot if one is free, asking Marathon at most every ``poll_seconds``."""
        if self._full() and self._clock() - self._refreshed >= self._poll_seconds:
            await self.refresh()
        if self._full():
            return False
        self._reserved += 1
        return True

    def commit(self, deployment_id: str | None) -> None:
        """Turn the reservation into a running deployment (``None``: the write started none)."""
        self._reserved -= 1
        if deployment_id:
            self._ours.add(deployment_id)
        else:
            self._changed.set()

    def finished(self, deployment_id: str) -> None:
        """Any deployment ended (Marathon's own limit counts them all); ours frees a slot."""
        if self._blocked_until > float("-inf"):
            self._blocked_until = float("-inf")
            self._changed.set()
        if deployment_id in self._ours:
            self._ours.discard(deployment_id)
            self._changed.set()

    async def refresh(self) -> None:
        """Forget our deployments that Marathon no longer runs."""
        running = await self._running()
        self._refreshed = self._clock()
        done = self._ours - running
        if done:
            self._ours -= done
            self._changed.set()
            log.debug("deployments_finished", count=len(done))


class WriteGate:
    """Every Marathon write passes here: a deployment slot, a rate token, then the fence."""

    def __init__(self, bucket: RateLimit, budget: DeploymentBudget, fence: Fence = no_fence
                 ) -> None:
        self._bucket = bucket
        self.budget = budget
        self._fence = fence

    @asynccontextmanager
    async def write(self, *, wait: bool) -> AsyncIterator[WriteSlot | None]:
        """Yield a slot to record the deployment in, or ``None`` when the budget is spent and
        ``wait`` is false. The slot is given back if the write starts no deployment."""
        if wait:
            await self.budget.acquire()
        elif not await self.budget.try_acquire():
            yield None
            return
        slot = WriteSlot()
        try:
            await self._bucket.acquire()
            await self._fence()
            yield slot
        finally:
            self.budget.commit(slot.deployment_id)

    async def write_token(self) -> None:
        """Wait for a rate token, then the fence: for a write that starts no deployment (a
        launch delay reset)."""
        await self._bucket.acquire()
        await self._fence()


class WriteSlot(msgspec.Struct):
    deployment_id: str | None = None
