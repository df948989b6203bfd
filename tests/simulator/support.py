"""What the simulator's tests share: a settable clock, an event recorder, a manual scheduler,
and the simulator run as its own process."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.simulator import Event

TIMEOUT = 5


class Clock:
    """A settable clock for version timestamps."""

    def __init__(self) -> None:
        self.moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment


class Recorder:
    """A subscriber that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False
        self._arrived = asyncio.Event()

    def deliver(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    def close(self) -> None:
        self.closed = True

    def types(self) -> list[str]:
        return [event.type for event in self.events]

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [event.payload for event in self.events if event.type == event_type]

    async def wait_for(self, event_type: str) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while not self.of(event_type):
                self._arrived.clear()
                await self._arrived.wait()
        return self.of(event_type)[0]


class ManualScheduler:
    """A ``Scheduler`` whose timers fire only when a test says so (no real waiting)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pending: list[tuple[float, Callable[[], object]]] = []
        self.delays: list[float] = []
        """Every delay ever asked for, in order."""

    def __call__(self, delay: float, callback: Callable[[], object]) -> None:
        self.pending.append((delay, callback))
        self.delays.append(delay)

    def fire_all(self) -> None:
        """Move the clock past every pending timer and run them."""
        pending, self.pending = self.pending, []
        if pending:
            self.clock.moment += timedelta(seconds=max(delay for delay, _ in pending))
        for _, callback in pending:
            callback()


@asynccontextmanager
async def simulator_process(*args: str) -> AsyncIterator[str]:
    """``python -m controller.simulator --listen 127.0.0.1:0 ARGS`` as its own process; yields
    its URL, and on the way out asserts that SIGTERM stops it with exit code 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.simulator", "--listen", "127.0.0.1:0", *args,
        stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        async with asyncio.timeout(10):
            url = (await process.stdout.readline()).decode().split()[-1]
        yield url
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
