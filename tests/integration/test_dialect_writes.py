"""A pass writes each Marathon version in its own dialect: the method, the query and the body."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import settings_from_mapping
from controller.manager import run_once
from controller.plan import bundle_name
from controller.simulator import MarathonSimulator, MarathonState
from controller.wiring import build
from tests.integration.test_engine import REG, app, config

RESOURCES = {"cpus": 0.1, "mem": 32}


@pytest.mark.parametrize(("version", "method", "query"), [
    ("1.3.14", "PUT", "partialUpdate=true"),
    ("1.4.13", "PATCH", ""),
    ("1.10.26", "PATCH", ""),
], ids=["before-patch", "shows-uris", "newest"])
async def test_one_pass_writes_in_the_versions_dialect(tmp_path: Path, version: str,
                                                        method: str, query: str) -> None:
    """PATCH from 1.4, else a partial PUT; always ``fetch``, never ``uris``; the executor's
    resources re-sent, so that no version drops them."""
    state = MarathonState(version=version, deployment_seconds=0)
    state.load_apps([app("/v/a", executorResources=RESOURCES)])
    async with MarathonSimulator(state) as sim:
        env = {"REG_PW": "pw"}
        settings = settings_from_mapping(config(sim.url, tmp_path), env)
        async with build(settings, env) as parts:
            report = await run_once(parts)
    assert report.ok
    [write] = state.writes
    assert (write.method, write.query, write.status) == (method, query, 200)
    assert set(write.body) == {"fetch", "executorResources"}
    current = state.get_app("/v/a")
    assert [f["uri"].rsplit("/", 1)[-1] for f in current["fetch"]] == [bundle_name(REG)]
    assert current["executorResources"] == RESOURCES
