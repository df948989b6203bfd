"""Marathon misbehaving under a running controller process: it must keep every promise."""

from __future__ import annotations

import asyncio
import time

import pytest

from controller.simulator import MarathonSimulator
from tests.reliability.harness import (
    FAULT_SECONDS,
    REG,
    Scenario,
    docker_app,
)

EVENTS_DOWN_SYNC_SECONDS = 10.0
"""How soon every app converges while ``/v2/events`` fails: the initial sync must not wait."""


async def ride_out(scenario: Scenario) -> None:
    """Apps arrive while the injected faults last; once cleared, everything converges."""
    scenario.add_apps(scenario.standard_apps("/rel/during"))
    await scenario.hold()
    scenario.state.clear_faults()
    await scenario.converged_after(time.monotonic())
    await scenario.finish()


class TestMarathonFaults:
    @pytest.mark.fault("Marathon: burst of 503s on apps and deployments")
    async def test_5xx_burst(self, scenario):
        """A burst of 503s on every app and deployment request delays but never damages."""
        await scenario.converge_first()
        scenario.state.fail_next(r"^/v2/(apps|deployments)", 503, count=60)
        await ride_out(scenario)  # a burst that outlasts the fault is cut short

    @pytest.mark.fault("Marathon: timeouts (list hangs, writes land but never answer)")
    async def test_timeouts(self, scenario):
        """Requests that hang past the client's timeout, writes included, cost no extra write."""
        await scenario.converge_first(marathon_timeout=min(0.5, FAULT_SECONDS / 3))
        scenario.state.inject(r"^/v2/apps$", "hang", method="GET", count=None)
        scenario.state.inject(r"^/v2/apps/", "hang", method="PATCH", landed=True, count=None)
        await ride_out(scenario)

    @pytest.mark.fault("Marathon: truncated JSON bodies on every read")
    async def test_truncated_json(self, scenario):
        """Reads answered with half a JSON body are retried, never acted upon."""
        await scenario.converge_first()
        scenario.state.inject(r"^/v2/", "truncate", method="GET", count=None)
        await ride_out(scenario)

    @pytest.mark.fault("Marathon: event stream cut mid-event (3 times)")
    async def test_stream_cut_mid_event(self, scenario):
        """Apps whose event was cut in half are found by the relist after the reconnect."""
        await scenario.converge_first()
        for n in range(3):
            scenario.simulators[0].cut_streams_mid_event()
            scenario.add_apps([docker_app(f"/rel/cut/app-{n}")])  # this event is cut
            await scenario.hold(FAULT_SECONDS / 3)
        await scenario.converged_after(time.monotonic())
        await scenario.finish()

    @pytest.mark.fault("Marathon: leader change, old leader down, back as a standby")
    async def test_leader_change(self, scenario):
        """When another instance becomes leader and the old one goes away, it converges."""
        first = scenario.simulators[0]
        second = MarathonSimulator(scenario.state, leader_url=first.url, heartbeat_seconds=1.0)
        await second.start()
        scenario.simulators.append(second)
        await scenario.converge_first()
        changed = time.monotonic()
        second.follow(None)
        first.follow(second.url)
        restarting = asyncio.create_task(first.restart(down_seconds=FAULT_SECONDS))
        scenario.add_apps(scenario.standard_apps("/rel/during"))
        await scenario.converged_after(changed, what="converged by the new leader")
        await restarting
        await scenario.finish()

    @pytest.mark.fault("Marathon: restart keeping state, stream dropped")
    async def test_restart_keeping_state(self, scenario):
        """Apps created while Marathon restarts (no event reaches anyone) converge after it."""
        await scenario.converge_first()
        restarting = asyncio.create_task(
            scenario.simulators[0].restart(down_seconds=FAULT_SECONDS))
        await asyncio.sleep(0)  # the stop has begun: what follows sends no event
        scenario.add_apps(scenario.standard_apps("/rel/during"), deployed=True)
        await restarting
        await scenario.converged_after(time.monotonic())
        await scenario.finish()

    @pytest.mark.fault("Marathon: /v2/events answers {status}, /v2/apps works (timed from start)")
    @pytest.mark.parametrize("status", [503, 403])
    async def test_events_failing_while_apps_work(self, scenario, status):
        """Without an event stream, the initial sync still converges every app; once the
        stream works again, events do their part."""
        scenario.measurement.fault = scenario.measurement.fault.format(status=status)
        scenario.registry(REG)
        scenario.add_apps(scenario.standard_apps("/rel/base"), deployed=True)
        scenario.state.fail_next(r"^/v2/events", status, count=None)
        started = time.monotonic()
        await scenario.start(scenario.config(REG))
        scenario.watch_bundles()
        await scenario.until_converged(timeout=EVENTS_DOWN_SYNC_SECONDS,
                                       what="converged with the event stream failing")
        scenario.measurement.seconds = round(time.monotonic() - started, 2)
        await scenario.hold(0)
        scenario.state.clear_faults()
        scenario.add_apps([docker_app("/rel/after/app")])
        await scenario.until_converged(what="converged once the stream works")
        await scenario.finish()
