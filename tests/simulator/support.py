"""What the simulator's tests share: the agent tests' registry, credential, app and bundle, an
event recorder, a manual scheduler, and the simulator run as its own process (the fixtures that
build on them are in conftest.py)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from controller.archive import build_bundle
from controller.model import RegistryCredential, Secret
from controller.simulator import Agent, Event
from tests.clock import FakeClock

TIMEOUT = 5
REGISTRY = "registry.example.com:5000"
IMAGE = f"{REGISTRY}/team/web:1"
USER, PASSWORD = "puller", "s3cret-pass"


def bundle(tmp_path: Path, password: str = PASSWORD, fmt: Any = "config.json",
           name: str | None = None) -> str:
    """A real controller bundle on disk (``name`` replaces one); returns its ``file://`` URI."""
    path = tmp_path / (name or f"bundle-{fmt}-{password}.tar.gz")
    path.write_bytes(build_bundle(
        REGISTRY, RegistryCredential(username=USER, password=Secret(password)), fmt))
    return path.as_uri()


def web_app(*, fetch: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """A Docker app of ``IMAGE`` with a short launch backoff, as the agent tests run it."""
    return {"id": "/team/web", "instances": 1, "backoffSeconds": 1, "backoffFactor": 2,
            "maxLaunchDelaySeconds": 5, "fetch": fetch or [],
            "container": {"type": "DOCKER", "docker": {"image": IMAGE}}, **fields}


async def settle(agent: Agent) -> None:
    async with asyncio.timeout(TIMEOUT):
        await agent.idle()


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

    def __init__(self, clock: FakeClock) -> None:
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
            self.clock.advance(max(delay for delay, _ in pending))
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
