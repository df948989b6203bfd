"""The simulated agent against a real htpasswd ``docker-registry``, pulling with real skopeo."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.archive import build_bundle
from controller.model import RegistryCredential, Secret
from controller.pullfailure import classify
from controller.simulator import Agent, MarathonState
from tests.services import Registry
from tests.simulator.skopeo_puller import SkopeoPuller
from tests.simulator.support import Recorder

PULL_TIMEOUT = 60


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    agent = Agent(tmp_path / "agent", puller=SkopeoPuller())
    yield agent
    await agent.close()


def bundle_uri(registry: Registry, tmp_path: Path, password: str, name: str) -> str:
    path = tmp_path / name
    credential = RegistryCredential(username=registry.username, password=Secret(password))
    path.write_bytes(build_bundle(registry.host, credential, "config.json"))
    return path.as_uri()


async def test_skopeo_pulls_with_the_right_bundle_and_fails_auth_without_or_with_a_stale_one(
        registry: Registry, agent: Agent, tmp_path: Path):
    state = MarathonState(agent=agent)
    recorder = Recorder()
    state.subscribe(recorder)
    image = {"type": "DOCKER", "docker": {"image": registry.ref()}}
    good = bundle_uri(registry, tmp_path, registry.password, "good.tgz")
    state.add_app({"id": "/good", "container": image, "backoffSeconds": 60,
                   "fetch": [{"uri": good}]})
    state.add_app({"id": "/stale", "container": image, "backoffSeconds": 60,
                   "fetch": [{"uri": bundle_uri(registry, tmp_path, "stale", "stale.tgz")}]})
    state.add_app({"id": "/bare", "container": image, "backoffSeconds": 60})
    async with asyncio.timeout(PULL_TIMEOUT):
        await agent.idle()
    assert [t["state"] for t in state.list_tasks("/good")] == ["TASK_RUNNING"]
    for app_id in ("/stale", "/bare"):
        assert state.list_tasks(app_id) == []
        (failed,) = [u for u in recorder.of("status_update_event") if u["appId"] == app_id]
        assert failed["taskStatus"] == "TASK_FAILED"
        assert registry.password not in failed["message"]
        classified = classify(failed["message"])
        assert classified is not None, registry.scrub(failed["message"])
        assert (classified.reason, classified.registry) == ("auth", registry.host)
    assert sorted(entry["app"]["id"] for entry in state.queue()) == ["/bare", "/stale"]
