"""Stuck deployments on a simulator whose deployments end only when their tasks run (its agent
fetches each task's ``fetch`` list and pulls with what it fetched, from a registry that accepts
only the controller's credentials).

A new app, or a pipeline's full PUT of a new image tag, comes without the controller's entry:
its tasks cannot pull, its deployment never ends, and every non-forced write gets 409. By default
the controller forces one write that adds only the entry, and the app runs; with rescue off it
reports the app ``stuck`` and writes nothing; a group deployment that changes two apps is never
forced (that would cancel it for both).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.config import settings_from_mapping
from controller.simulator import Agent, MarathonSimulator, MarathonState
from tests.factories import REGISTRY, docker_app
from tests.integration.runner import Daemon, Ops, bundle_uris, daemon_config
from tests.services import eventually

AGENT = "marathon-pullsecret-controller/"
PASSWORD = "robot-password"
BACKOFF = {"backoffSeconds": 1, "backoffFactor": 1.5, "maxLaunchDelaySeconds": 30}


def app(app_id: str, tag: str = "1", **fields: Any) -> dict[str, Any]:
    return docker_app(app_id, f"{REGISTRY}{app_id}:{tag}", instances=1, **BACKOFF, **fields)


def forced(state: MarathonState) -> list[Any]:
    return [w for w in state.writes if w.client.startswith(AGENT) and "force=true" in w.query]


def ours(state: MarathonState, app_id: str) -> list[Any]:
    return [w for w in state.writes
            if w.client.startswith(AGENT) and w.path == f"/v2/apps{app_id}" and w.status < 300]


def running(agent: Agent, app_id: str) -> bool:
    return agent.counts(app_id) == (0, 1)


@pytest.fixture
async def world(tmp_path: Path):
    agent = Agent(tmp_path / "agent")
    state = MarathonState(deployment_seconds=0.05, agent=agent)
    state.accept_credentials(REGISTRY, "robot", PASSWORD)
    try:
        async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
            yield state, agent, sim
    finally:
        await agent.close()


def settings(sim: MarathonSimulator, tmp_path: Path, **remediation: Any) -> Any:
    doc = daemon_config(sim.url, tmp_path)
    doc["registries"][0]["verify"] = "off"
    doc["remediation"] = remediation
    return settings_from_mapping(doc, {"REG_PW": PASSWORD})


async def test_a_new_app_without_the_entry_runs_within_seconds(world, tmp_path):
    """Created without the entry: running with it within 10 s, after at most one forced write
    that adds only the entry."""
    state, agent, sim = world
    async with Daemon(settings(sim, tmp_path), {"REG_PW": PASSWORD}):
        created = time.monotonic()
        state.add_app(app("/team/new"))
        took = await eventually(lambda: running(agent, "/team/new"), 10, "the new app runs")
        assert bundle_uris(state, "/team/new")
        rescues = forced(state)
        assert len(rescues) <= 1
        assert all(set(w.body) == {"fetch"} for w in rescues)
        assert not state.list_deployments()  # its deployment completed
    print(f"new app running {took:.2f} s after creation ({time.monotonic() - created:.2f} s)")


async def test_a_pipeline_put_without_the_entry_is_stuck_with_rescue_off(world, tmp_path):
    """Rescue off: the app is reported stuck soon after its first failed pull, its old task
    keeps running, and nothing is forced."""
    state, agent, sim = world
    state.load_apps([app("/team/web")])
    config = settings(sim, tmp_path, rescue_stuck_deployments=False)
    async with Daemon(config, {"REG_PW": PASSWORD}), aiohttp.ClientSession() as session:
        ops = Ops(session, config.server.listen, REGISTRY)
        await eventually(lambda: running(agent, "/team/web") and bundle_uris(state, "/team/web")
                         and not state.list_deployments(), 15, "converged and running")
        state.update_app("/team/web", app("/team/web", tag="2"), partial=False)

        async def stuck() -> bool:
            return (await ops.document())["apps"]["/team/web"]["state"] == "stuck"

        await eventually(lambda: agent.last_failure("/team/web") is not None, 10,
                         "the new task fails to pull")
        await eventually(stuck, 20, "reported stuck")
        assert running(agent, "/team/web")  # the old task still serves
        assert forced(state) == []


async def test_a_pipeline_put_without_the_entry_is_rescued_once(world, tmp_path):
    """By default: exactly one forced write, equal to the pipeline's definition plus the entry;
    the deployment completes; no further write."""
    state, agent, sim = world
    state.load_apps([app("/team/web")])
    async with Daemon(settings(sim, tmp_path), {"REG_PW": PASSWORD}):
        await eventually(lambda: running(agent, "/team/web") and bundle_uris(state, "/team/web")
                         and not state.list_deployments(), 15, "converged and running")
        writes_before = len(ours(state, "/team/web"))
        pipeline = app("/team/web", tag="2", env={"RELEASE": "2"})
        state.update_app("/team/web", pipeline, partial=False)
        await eventually(lambda: not state.list_deployments()
                         and state.get_app("/team/web")["tasksRunning"] == 1
                         and agent.tasks("/team/web")[0]["version"]
                         == state.get_app("/team/web")["version"], 20, "the deployment completes")
        (rescue,) = forced(state)
        deployed = state.get_app("/team/web")
        assert deployed["container"]["docker"]["image"] == f"{REGISTRY}/team/web:2"
        assert deployed["env"] == {"RELEASE": "2"}
        assert [e["uri"] for e in deployed["fetch"]] == bundle_uris(state, "/team/web")
        assert set(rescue.body) == {"fetch"}
        assert len(ours(state, "/team/web")) == writes_before + 1  # the rescue, nothing more


async def test_a_group_deployment_of_two_apps_is_stuck_and_never_forced(world, tmp_path):
    """A batch deploy of two apps without their entries: forcing one would cancel the other's
    rollout, so both are reported stuck and nothing is forced."""
    state, _, sim = world
    config = settings(sim, tmp_path)
    async with Daemon(config, {"REG_PW": PASSWORD}), aiohttp.ClientSession() as session:
        ops = Ops(session, config.server.listen, REGISTRY)
        state.update_apps([app("/group/a"), app("/group/b")], partial=False)
        (deployment,) = state.list_deployments()
        assert sorted(deployment["affectedApps"]) == ["/group/a", "/group/b"]

        async def both_stuck() -> bool:
            apps = (await ops.document())["apps"]
            return all(apps.get(a, {}).get("state") == "stuck" for a in ("/group/a", "/group/b"))

        await eventually(both_stuck, 20, "both reported stuck")
        detail = (await ops.document())["apps"]["/group/a"]["detail"]
        assert "also changes /group/b" in detail
        assert forced(state) == []
