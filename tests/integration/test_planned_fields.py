"""The list is read for planning only; a write is planned from a fresh full read of its app."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.applist import AppListDecoder, as_raw
from controller.config import settings_from_mapping
from controller.manager import make_term
from controller.metrics import Metrics
from controller.model import AppId
from controller.plan import bundle_name
from controller.simulator import MarathonSimulator, MarathonState
from controller.wiring import build
from tests.integration import test_engine
from tests.integration.test_engine import REG, app, config

EXECUTOR_RESOURCES = {"cpus": 0.2, "mem": 64, "disk": 10}
RESOURCE_LIMITS = {"cpus": "unlimited", "mem": 1024}
PLANNED = {"id", "labels", "container", "fetch", "uris"}
engine = test_engine.engine  # the fixture: a term against a simulator with one converged app


def full_app(app_id: str, **extra: Any) -> dict[str, Any]:
    """An app with much the planner never reads, and the fields a partial update drops."""
    definition = app(app_id, executorResources=EXECUTOR_RESOURCES,
                     resourceLimits=RESOURCE_LIMITS, env={"MODE": "prod"}, instances=2,
                     healthChecks=[{"protocol": "COMMAND", "command": {"value": "true"}}],
                     **extra)
    definition["labels"] = {"team": "payments", "HAPROXY_GROUP": "external",
                            "pullsecret.enabled": "true"}
    definition["container"]["docker"]["parameters"] = [{"key": "log-driver",
                                                        "value": "journald"}]
    return definition


async def test_listed_copy_holds_only_planned_fields_and_a_write_resends_from_a_fresh_read(
        tmp_path, monkeypatch: pytest.MonkeyPatch):
    """The relist keeps, of an app that needs a write, only the planned fields (and only
    the opt-in label); a converged app is not kept at all. The write itself carries
    ``executorResources`` and ``resourceLimits`` as the fresh GET of the app returned them."""
    state = MarathonState(deployment_seconds=0)
    converged = {"uri": f"file://{tmp_path}/bundles/{bundle_name(REG)}", "extract": True,
                 "cache": False}
    state.load_apps([full_app("/p/new"), full_app("/p/done", fetch=[converged])])
    async with MarathonSimulator(state) as sim:
        env = {"REG_PW": "pw"}
        settings = settings_from_mapping(config(sim.url, tmp_path), env)
        async with build(settings, env) as parts:
            registry = CollectorRegistry()
            term = make_term(parts, Metrics(registry))
            await term.source.relist()
            # the converged app was planned inline, and is counted and shown as any other
            assert term.index.statuses[AppId("/p/done")].state == "converged"
            assert registry.get_sample_value("marathon_pullsecret_apps_managed",
                                             {"state": "converged"}) == 1
            assert registry.get_sample_value("marathon_pullsecret_controller_reconcile_total",
                                             {"controller": "app", "result": "success"}) == 1

            cached = term.index._listed
            assert set(cached) == {"/p/new"}  # only the app that needs a worker is kept
            copy = as_raw(cached[AppId("/p/new")])
            assert set(copy) <= PLANNED
            assert copy["labels"] == {"pullsecret.enabled": "true"}
            assert copy["container"] == {"type": "DOCKER", "docker": {"image": f"{REG}/a:1"}}

            marathon = parts.marathon
            reads: list[str] = []
            bodies: list[dict[str, Any]] = []
            get_app, update_app = marathon.get_app, marathon.update_app

            async def read(app_id: AppId) -> Any:
                reads.append(app_id)
                return await get_app(app_id)

            async def write(app_id: AppId, body: Any, *, force: bool = False) -> str | None:
                bodies.append(body)
                return await update_app(app_id, body, force=force)

            monkeypatch.setattr(marathon, "get_app", read)
            monkeypatch.setattr(marathon, "update_app", write)
            await term.apps.process(AppId("/p/new"))

    assert reads == ["/p/new"]
    (body,) = bodies
    assert body["executorResources"] == EXECUTOR_RESOURCES
    assert body["resourceLimits"] == RESOURCE_LIMITS
    written = state.get_app("/p/new")
    assert written["executorResources"] == EXECUTOR_RESOURCES
    assert written["resourceLimits"] == RESOURCE_LIMITS
    assert [e["uri"] for e in written["fetch"]] == [converged["uri"]]


async def test_apps_that_need_a_worker_are_queued_not_settled(engine, monkeypatch):
    """A malformed app (its error is reported by a worker) and an app the reconciler waits on
    (here: for a deployment slot) are queued with their listed copy, not planned inline."""
    marathon = engine.parts.marathon
    listed = await marathon.list_apps("pullsecret.enabled")
    bad = AppListDecoder("pullsecret.enabled").convert(
        [{"id": "/e/bad", "labels": {"pullsecret.enabled": 5}}]).apps[0]

    async def with_a_bad_app(label_selector: str | None = None) -> list[Any]:
        return [*listed, bad]

    monkeypatch.setattr(marathon, "list_apps", with_a_bad_app)
    engine.index.deferred(AppId("/e/a"))
    await engine.source.relist()
    assert {"/e/a", "/e/bad"} <= set(engine.index._listed)
    assert AppId("/e/a") in engine.apps.queue
    assert AppId("/e/bad") in engine.apps.queue
    await engine.apps.process(AppId("/e/bad"))
    assert engine.index.statuses[AppId("/e/bad")].state == "failed"
