"""The Marathon most integration tests run against: a simulator whose deployments end by
themselves 50 ms after they start, with a heartbeat every half second on its event streams. A
module that wants other deployments overrides ``state``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controller.simulator import MarathonSimulator, MarathonState


@pytest.fixture
def state() -> MarathonState:
    return MarathonState(deployment_seconds=0.05)


@pytest.fixture
async def sim(state: MarathonState) -> AsyncIterator[MarathonSimulator]:
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as simulator:
        yield simulator
