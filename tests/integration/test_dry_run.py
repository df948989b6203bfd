"""A dry run is the engine of a real run behind recording adapters: against the Marathon
simulator and two registries that count every request, ``plan`` and a dry-run daemon write
nothing to Marathon or storage and ask no registry anything, and every write or registry
request the engine made ended in the recorder (the engine has no dry-run flag that a new write
path could forget)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from controller.config import settings_from_mapping
from controller.manager import run_once
from controller.metrics import Metrics
from controller.passreport import PassReport, format_report
from controller.plan import bundle_name
from controller.presence import record_name
from controller.settings import Settings
from controller.simulator import MarathonSimulator, MarathonState
from controller.wiring import build
from tests.factories import docker_app, registry_entry, write_config
from tests.integration.runner import Daemon, Ops, cli, daemon_config
from tests.integration.test_plan_preview import counting_registry
from tests.services import eventually

ENV = {"REG_PW": "Sup3r-s3cret-Pw"}


@dataclass
class World:
    """Marathon, storage and two registries: ``verified`` (verify and image checks on, no
    bundle yet) and ``published`` (its bundle stored and its app converged by a real pass)."""

    state: MarathonState
    url: str
    tmp_path: Path
    verified: str
    published: str
    seen: list[str]

    def doc(self, **reconcile: Any) -> dict[str, Any]:
        """Both registries; Marathon's write method is set, so that no ``/v2/info`` is read."""
        doc = daemon_config(self.url, self.tmp_path, **reconcile)
        doc["marathon"]["update_method"] = "patch"
        doc["registries"] = [
            registry_entry(self.verified, verify="best_effort", check_images=True),
            registry_entry(self.published, verify="off", check_images=True)]
        return doc

    def settings(self, **reconcile: Any) -> Settings:
        return settings_from_mapping(self.doc(**reconcile), ENV)

    def stored(self) -> list[str]:
        return sorted(p.name for p in (self.tmp_path / "bundles").iterdir())


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[World]:
    registries: list[tuple[web.AppRunner, str, list[str]]] = [
        await counting_registry(), await counting_registry()]
    (_, verified, seen_v), (_, published, seen_p) = registries
    state = MarathonState(deployment_seconds=0)
    state.load_apps([docker_app("/p/kept", f"{published}/p/kept:1")])
    try:
        async with MarathonSimulator(state) as sim:
            world = World(state, sim.url, tmp_path, verified, published, seen_v)
            doc = daemon_config(sim.url, tmp_path)
            doc["registries"] = [registry_entry(published, verify="off")]
            async with build(settings_from_mapping(doc, ENV), ENV) as parts:
                assert (await run_once(parts)).ok  # a real pass: the bundle and /p/kept
            state.load_apps([docker_app("/v/one", f"{verified}/v/one:1"),
                             docker_app("/v/two", f"{verified}/v/two:1"),
                             docker_app("/p/new", f"{published}/p/new:1")])
            state.writes.clear()
            seen_p.clear()
            yield world
            assert seen_p == []  # the published registry was asked nothing either
    finally:
        for runner, _, _ in registries:
            await runner.cleanup()


async def test_plan_writes_nothing_asks_no_registry_and_records_every_request(world):
    """``plan``'s pass: the three apps that need a write, the login of the verified registry
    (which stops its publish) and the image check of the published one are recorded, and
    that is all; Marathon is read once per app to write, as a write is planned."""
    stored = world.stored()
    metrics = Metrics(CollectorRegistry())
    report = PassReport(preview=True)
    async with build(world.settings(), ENV, dry_run=True, metrics=metrics) as parts:
        await run_once(parts, report=report)
        assert parts.recorder is not None
        assert parts.recorder.counts == {"update_app": 3, "login": 1, "check_image": 1}
    assert (world.state.writes, world.seen, world.stored()) == ([], [], stored)
    text = format_report(report)
    assert (f"registry {world.verified}: would verify, then publish a new bundle: none is "
            "stored yet") in text
    for app_id in ("/v/one", "/v/two", "/p/new"):
        assert f"{app_id}: would add" in text
    assert "summary: 4 apps: 1 unchanged, 3 would update, 0 failed" in text
    gets = metrics.collectors.get_sample_value("marathon_pullsecret_marathon_requests_total",
                                               {"method": "GET", "status": "200"})
    assert gets == 1 + 3  # the list, and a fresh read of each app to write


async def test_a_dry_run_daemon_writes_nothing_asks_no_registry_and_records_every_request(
        world):
    """The daemon in a dry run: apps that need a write are pending, one created while it runs
    too; ``/status`` says dry run; Marathon, storage (no presence record either) and the
    registries are untouched, and the recorder holds each write the engine made."""
    stored = world.stored()
    settings = world.settings(dry_run=True)
    async with Daemon(settings, ENV) as daemon, aiohttp.ClientSession() as session:
        assert daemon.handle is not None
        recorder = daemon.handle.parts.recorder
        assert recorder is not None
        ops = Ops(session, settings.server.listen, world.verified)

        async def pending() -> set[str]:
            apps = (await ops.document())["apps"]
            return {a for a, status in apps.items() if status["state"] == "pending"}

        await eventually(lambda: recorder.counts["update_app"] >= 3)
        world.state.add_app(docker_app("/v/three", f"{world.verified}/v/three:1"))
        await eventually(lambda: "PATCH /v2/apps/v/three" in recorder.recent)
        assert await pending() == {"/v/one", "/v/two", "/v/three", "/p/new"}
        document = await ops.document()
        assert document["dry_run"] is True
        assert document["registries"][world.verified]["fingerprint"] is None
        assert (await ops.metric("bundle_publishes_total", result="dry_run") or 0) >= 1
    assert recorder.counts["login"] >= 1
    assert recorder.counts["put_bundle"] == 0
    assert recorder.counts["write_note"] >= 1  # the presence record, claimed
    assert (world.state.writes, world.seen, world.stored()) == ([], [], stored)
    assert record_name("default") not in stored
    assert bundle_name(world.verified) not in stored


async def test_a_config_that_asks_for_a_dry_run_gets_one_from_every_command(world):
    """``reconcile.dry_run: true`` in the file: ``reconcile --once`` and ``uninstall
    --delete-bundles`` say what they would do, as with ``--dry-run``, and do nothing."""
    stored = world.stored()
    config = write_config(world.tmp_path, world.doc(dry_run=True))
    code, out, err = await cli("reconcile", "--once", "-c", config, env=ENV)
    assert code == 0, err
    assert (f"registry {world.verified}: would verify, then publish a new bundle: none is "
            "stored yet") in out
    assert "summary: 4 apps: 1 unchanged, 3 would update, 0 failed" in out
    code, out, err = await cli("uninstall", "--delete-bundles", "-c", config, env=ENV)
    assert code == 0, err
    assert "/p/kept: would remove" in out
    assert f"would delete 1 bundle(s): {bundle_name(world.published)}" in out
    assert (world.state.writes, world.seen, world.stored()) == ([], [], stored)
