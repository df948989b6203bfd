"""The daemon and the one-shot pass meet a 409 storm with the same policy: each locked app is
tried once, waits for its locking deployment to end, is written once more, and is never forced."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from controller.config import settings_from_mapping
from controller.manager import run_once
from controller.simulator import MarathonSimulator, MarathonState
from controller.wiring import build
from tests.factories import docker_app
from tests.integration.runner import Daemon, bundle_uris, daemon_config

IDS = [f"/lock/app-{i}" for i in range(4)]


async def finish_external(state: MarathonState, external: set[str]) -> None:
    """End the users' deployments once the controller has run into every lock."""
    async with asyncio.timeout(20):
        while sum(w.status == 409 for w in state.writes) < len(IDS):
            await asyncio.sleep(0.02)
    for deployment in external:
        state.finish_deployment(deployment)
    state.deployment_seconds = 0.01  # the controller's own deployments end by themselves


@pytest.mark.parametrize("mode", ["daemon", "once"])
async def test_locked_apps_wait_for_their_deployment(tmp_path, mode):
    state = MarathonState(deployment_seconds=None)
    state.load_apps([docker_app(i) for i in IDS])
    external = {state.update_app(i, {"instances": 2}, allow_creation=False).deployment_id
                for i in IDS}
    env = {"REG_PW": "pw"}
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
        settings = settings_from_mapping(daemon_config(sim.url, tmp_path), env)
        ender = asyncio.create_task(finish_external(state, external))
        if mode == "daemon":
            async with Daemon(settings, env):
                await ender
                async with asyncio.timeout(20):
                    while not all(bundle_uris(state, i) for i in IDS):
                        await asyncio.sleep(0.02)
        else:
            async with build(settings, env) as parts:
                report = await asyncio.wait_for(run_once(parts), 30)
            await ender
            assert report.ok, report.failures
    attempts = Counter((w.path, w.status) for w in state.writes if w.method == "PATCH")
    for app_id in IDS:
        path = f"/v2/apps{app_id}"
        assert (attempts[(path, 409)], attempts[(path, 200)]) == (1, 1), attempts
        assert bundle_uris(state, app_id)
    assert not any("force" in w.query for w in state.writes)
