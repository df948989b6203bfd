"""The deployment budget: slots, Marathon's own limit, and a bounded wait."""

from __future__ import annotations

import pytest

from controller.errors import TransientError
from controller.ratelimit import DeploymentBudget
from tests.clock import FakeClock


def budget(limit: int, running: set[str], clock: FakeClock, **kw) -> DeploymentBudget:
    async def still_running() -> set[str]:
        return set(running)

    return DeploymentBudget(limit, running=still_running, clock=clock, **kw)


class TestMarathonsLimit:
    async def test_a_refused_write_blocks_slots_until_a_deployment_ends(self):
        """After Marathon's 403 limit answer no slot is taken, even with our budget free."""
        clock = FakeClock(0.0)
        b = budget(10, set(), clock)
        b.limit_reached()
        assert not await b.try_acquire()
        b.finished("someone-elses-deployment")
        assert await b.try_acquire()

    async def test_the_block_lifts_after_the_poll_interval(self):
        clock = FakeClock(0.0)
        b = budget(10, set(), clock, poll_seconds=5.0)
        b.limit_reached()
        clock.now = 5.0
        assert await b.try_acquire()


class TestBoundedWait:
    async def test_acquire_gives_up_when_no_slot_frees(self):
        """Deployments that never end fail the wait after stall_seconds, naming why."""
        clock = FakeClock(0.0)

        async def never_ends() -> set[str]:
            clock.advance(0.02)  # time passes with each poll of Marathon
            return {"d1"}

        b = DeploymentBudget(1, running=never_ends, clock=clock, poll_seconds=0.01,
                             stall_seconds=0.05)
        assert await b.try_acquire()
        b.commit("d1")
        with pytest.raises(TransientError, match="no deployment slot came free in 0s: 1 "
                                                 "deployments this controller started"):
            await b.acquire()

    async def test_acquire_returns_once_a_deployment_ends(self):
        clock = FakeClock(0.0)
        running = {"d1"}
        b = budget(1, running, clock, poll_seconds=0.01, stall_seconds=60)
        assert await b.try_acquire()
        b.commit("d1")
        running.clear()  # Marathon no longer runs it: the next poll frees the slot
        await b.acquire()
        assert b.in_flight == 1
