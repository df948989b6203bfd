"""``inject`` in a deploy pipeline, end to end: the daemon runs on the Marathon simulator, a
pipeline PUTs an app's JSON over HTTP, and the controller makes no write to an app the pipeline
injected. A raw app costs the controller one write (the second deployment inject avoids), which
shows the count can fail.

``inject`` runs as its own process, without the registry password the daemon has: it reads none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.config import settings_from_mapping
from controller.plan import bundle_name
from controller.simulator import MarathonState
from controller.simulator.faults import WriteRecord
from tests.factories import REGISTRY, docker_app, write_config
from tests.integration.runner import Daemon, bundle_uris, cli, daemon_config
from tests.services import eventually

PIPELINE = "deploy-pipeline/1.0"
ENV = {"REG_PW": "pipeline-never-sees-this"}
"""The daemon's environment; ``inject`` runs without it."""
USER_ENTRY = {"uri": "https://files.example.com/static.tgz", "cache": True}


@pytest.fixture
def doc(sim, tmp_path) -> dict[str, Any]:
    return daemon_config(sim.url, tmp_path)


@pytest.fixture
def config(doc, tmp_path) -> Path:
    """The daemon's config file, as the pipeline has it (its password variable unset)."""
    return write_config(tmp_path, doc)


@pytest.fixture
def daemon(doc) -> Daemon:
    return Daemon(settings_from_mapping(doc, ENV), ENV)


async def deploy(url: str, app_id: str, body: str) -> None:
    """What the pipeline does: ``PUT /v2/apps/{id}`` with the JSON as it is."""
    async with aiohttp.ClientSession(headers={"User-Agent": PIPELINE}) as session, \
            session.put(f"{url}/v2/apps{app_id}", data=body.encode(),
                        headers={"Content-Type": "application/json"}) as response:
        assert response.status in (200, 201), await response.text()


def controller_writes(state: MarathonState, app_id: str) -> list[WriteRecord]:
    return [w for w in state.writes if w.path == f"/v2/apps{app_id}"
            and w.client.startswith("marathon-pullsecret-controller/")]


async def settled(daemon: Daemon, state: MarathonState, app_id: str) -> None:
    """The daemon has reconciled the app, nothing is queued and no deployment runs."""
    handle = daemon.handle
    assert handle is not None
    await eventually(lambda: handle.index.state_of(app_id) == "converged"
                     and not handle.apps.queue.depth and not handle.apps.queue.processing
                     and not state.list_deployments(), what=f"{app_id} converged")


async def inject_file(config: Path, raw: Path) -> str:
    code, out, err = await cli("inject", "-c", config, raw)
    assert code == 0, err
    return out


@pytest.mark.parametrize("field", ["fetch", "uris"])
async def test_an_injected_deploy_needs_no_write(state, sim, config, daemon, tmp_path, field):
    """The pipeline's deploy already carries the entry: the controller writes nothing to the
    app, at once or at the next relist, and the entry is the daemon's own bundle."""
    app_id = "/team/new"
    own = USER_ENTRY if field == "fetch" else USER_ENTRY["uri"]
    raw = tmp_path / "app.json"
    raw.write_text(json.dumps(docker_app(app_id, instances=2, **{field: [own]})))
    injected_text = await inject_file(config, raw)
    async with daemon as d:
        await deploy(sim.url, app_id, injected_text)
        await settled(d, state, app_id)
        assert d.handle is not None
        await d.handle.source.relist()
        await settled(d, state, app_id)
    assert controller_writes(state, app_id) == []
    assert [w.client for w in state.writes if w.path == f"/v2/apps{app_id}"] == [PIPELINE]
    bundle = tmp_path / "bundles" / bundle_name(REGISTRY)
    assert bundle_uris(state, app_id) == [f"file://{bundle}"]
    assert bundle.is_file()  # the daemon published it where inject said it would be
    assert state.get_app(app_id)["fetch"][0]["uri"] == USER_ENTRY["uri"]


async def test_an_injected_group_needs_no_write(state, sim, doc, tmp_path):
    """A group with relative ids, POSTed to ``/v2/groups``: inject resolves the ids as
    Marathon does, so the allow-list gives the entry to the same apps as the daemon, and the
    controller writes to none of them."""
    doc["registries"][0]["apps"] = ["/shop/back/*"]
    config = write_config(tmp_path, doc)
    image = f"{REGISTRY}/shop/app:1"
    group = {"id": "/shop", "apps": [docker_app("web", image, fetch=[USER_ENTRY])],
             "groups": [{"id": "back", "apps": [docker_app("api", image)],
                         "groups": [{"id": "jobs", "apps": [docker_app("cron", image)]}]}]}
    raw = tmp_path / "group.json"
    raw.write_text(json.dumps(group))
    injected_text = await inject_file(config, raw)
    apps = {"/shop/web": "skipped", "/shop/back/api": "converged",
            "/shop/back/jobs/cron": "converged"}
    async with Daemon(settings_from_mapping(doc, ENV), ENV) as d, \
            aiohttp.ClientSession(headers={"User-Agent": PIPELINE}) as session:
        async with session.post(f"{sim.url}/v2/groups", data=injected_text.encode(),
                                headers={"Content-Type": "application/json"}) as response:
            assert response.status == 201, await response.text()
        assert d.handle is not None
        handle = d.handle
        await eventually(lambda: not state.list_deployments(), what="the group deployed")
        await handle.source.relist()
        await eventually(lambda: all(handle.index.state_of(a) == s for a, s in apps.items())
                         and not handle.apps.queue.depth and not handle.apps.queue.processing,
                         what="every app of the group reconciled")
    assert [w for w in state.writes if w.client.startswith("marathon-pullsecret-controller/")
            ] == []
    assert {a: len(bundle_uris(state, a)) for a in apps} == {
        "/shop/web": 0, "/shop/back/api": 1, "/shop/back/jobs/cron": 1}


async def test_a_raw_deploy_costs_a_second_deployment(state, sim, daemon, tmp_path):
    """Without inject, the controller must write the entry: one more deployment."""
    app_id = "/team/raw"
    async with daemon as d:
        await deploy(sim.url, app_id, json.dumps(docker_app(app_id, fetch=[USER_ENTRY])))
        await eventually(lambda: bundle_uris(state, app_id), what="the controller's write")
        await settled(d, state, app_id)
    # a try refused with 409 (the pipeline's deployment still held the app) deploys nothing
    deployments = [w for w in controller_writes(state, app_id) if w.status == 200]
    assert len(deployments) == 1


async def test_check_fails_on_raw_json_and_passes_on_injected(config, tmp_path):
    """The lint step: exit 1 naming the app that lacks its entry, then 0 once injected."""
    raw = tmp_path / "apps.json"
    raw.write_text(json.dumps([docker_app("/team/a", fetch=[USER_ENTRY]),
                               docker_app("/team/pub", "nginx:1.25")]))
    code, out, err = await cli("inject", "--check", "-c", config, raw)
    assert (code, err) == (1, "")
    assert out.startswith("/team/a: lacks its entry; would add {")
    assert "/team/pub" not in out
    fixed = tmp_path / "apps.injected.json"
    fixed.write_text(await inject_file(config, raw))
    assert await cli("inject", "--check", "-c", config, fixed) == (0, "", "")
