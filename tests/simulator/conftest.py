"""The simulator tests' fixtures: a fake clock, timers fired by hand, an agent that runs the
tasks, the state on them (it takes the registry's one credential), an event recorder, and the
state served over HTTP with a client. A module that wants a state without an agent overrides
``state``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from controller.simulator import Agent, MarathonSimulator, MarathonState
from tests.clock import FakeClock
from tests.simulator.support import PASSWORD, REGISTRY, USER, ManualScheduler, Recorder


@pytest.fixture
def clock() -> FakeClock:
    """07:08:09.123456 on the tests' epoch: versions and timestamps carry milliseconds."""
    return FakeClock(0.123456)


@pytest.fixture
def scheduler(clock: FakeClock) -> ManualScheduler:
    return ManualScheduler(clock)


@pytest.fixture
async def agent(tmp_path: Path, scheduler: ManualScheduler) -> AsyncIterator[Agent]:
    agent = Agent(tmp_path / "agent", schedule=scheduler)
    yield agent
    await agent.close()


@pytest.fixture
def state(clock: FakeClock, agent: Agent) -> MarathonState:
    """Deployments run until their tasks do (or a test ends them)."""
    state = MarathonState(now=clock.wall, deployment_seconds=None, agent=agent)
    state.accept_credentials(REGISTRY, USER, PASSWORD)
    return state


@pytest.fixture
def recorder(state: MarathonState) -> Recorder:
    recorder = Recorder()
    state.subscribe(recorder)
    return recorder


@pytest.fixture
async def sim(state: MarathonState) -> AsyncIterator[MarathonSimulator]:
    async with MarathonSimulator(state) as simulator:
        yield simulator


@pytest.fixture
async def http(sim: MarathonSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(sim.url, headers={"User-Agent": "tests/1"}) as session:
        yield session
