"""A term's controllers against the simulator: keys never get stuck, caches never go stale."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from prometheus_client import CollectorRegistry

from controller.config import settings_from_mapping
from controller.events import EventEffect
from controller.manager import Term, make_term
from controller.metrics import Metrics
from controller.model import AppId
from controller.plan import bundle_name
from controller.simulator import MarathonSimulator, MarathonState
from controller.wiring import build
from tests.factories import REGISTRY, config_doc, docker_app

REG = REGISTRY


def app(app_id: str, **extra: Any) -> dict[str, Any]:
    """The engine tests' app: opted in, pulling ``REG/a:1``."""
    return docker_app(app_id, f"{REG}/a:1", cmd="x", **extra)


def config(url: str, tmp_path: Path, **reconcile: Any) -> dict[str, Any]:
    """One registry, bundles in ``tmp_path/bundles``, ``reconcile`` as given."""
    return config_doc(url, tmp_path / "bundles", reconcile=reconcile)


def count_reads(marathon: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every GET of an app from now on."""
    reads: list[str] = []
    original_get = marathon.get_app

    async def counted_get(app_id: AppId) -> Any:
        reads.append(app_id)
        return await original_get(app_id)

    monkeypatch.setattr(marathon, "get_app", counted_get)
    return reads


@pytest.fixture
async def engine(tmp_path):
    state = MarathonState(deployment_seconds=0)
    converged = {"uri": f"file://{tmp_path}/bundles/{bundle_name(REG)}", "extract": True,
                 "cache": False}
    state.load_apps([app("/e/a", fetch=[converged])])
    async with MarathonSimulator(state) as sim:
        env = {"REG_PW": "pw"}
        settings = settings_from_mapping(config(sim.url, tmp_path, timeout_seconds=0.2),
                                         env)
        async with build(settings, env) as parts:
            yield make_term(parts, Metrics(CollectorRegistry()))


async def test_timed_out_registry_refresh_comes_back(engine: Term, monkeypatch):
    """A refresh cut by the reconcile timeout is scheduled again, with backoff."""
    async def hang(registry: str) -> str:
        await asyncio.sleep(10)
        return "unchanged"

    monkeypatch.setattr(engine.parts.bundles, "refresh", hang)
    await engine.registries.process(REG)
    assert REG in engine.registries.queue
    assert engine.registries.queue.pending_delayed == 1


async def test_relist_does_not_cache_a_copy_older_than_an_event(engine, monkeypatch):
    """An event that arrives while the list is in flight wins: the worker re-reads the app.

    The listed copy is already converged, so using it would skip the read (and miss whatever
    the event announced)."""
    marathon = engine.parts.marathon
    original = marathon.list_apps
    listing, release = asyncio.Event(), asyncio.Event()

    async def slow_list(label_selector: str | None = None) -> list[Any]:
        apps = await original(label_selector)
        listing.set()
        await release.wait()
        return apps

    monkeypatch.setattr(marathon, "list_apps", slow_list)
    relist = asyncio.create_task(engine.source.relist())
    await listing.wait()
    engine.source.on_effect(EventEffect(app_ids=(AppId("/e/a"),)))
    release.set()
    await relist

    reads = count_reads(marathon, monkeypatch)
    await engine.apps.process(AppId("/e/a"))
    assert reads == ["/e/a"]


async def test_untouched_listed_app_needs_no_read(engine, monkeypatch):
    """Without a newer event, a converged listed app costs no GET and no task: the relist
    plans it inline and records it."""
    reads = count_reads(engine.parts.marathon, monkeypatch)
    await engine.source.relist()
    assert reads == []
    assert AppId("/e/a") not in engine.apps.queue
    assert engine.index.statuses[AppId("/e/a")].state == "converged"


async def test_deferred_write_returns_when_a_deployment_ends(tmp_path):
    """With the budget spent, a write waits, and comes back as soon as a deployment ends."""
    state = MarathonState(deployment_seconds=None)  # deployments end only when told
    state.load_apps([app("/d/one"), app("/d/two")])
    async with MarathonSimulator(state) as sim:
        env = {"REG_PW": "pw"}
        settings = settings_from_mapping(config(sim.url, tmp_path, max_concurrent_deployments=1),
                                         env)
        async with build(settings, env) as parts:
            term = make_term(parts, Metrics(CollectorRegistry()))
            await term.apps.process(AppId("/d/one"))
            await term.apps.process(AppId("/d/two"))
            queue = term.apps.queue
            assert (term.index.statuses["/d/two"].state, len(queue)) == ("pending", 0)
            assert AppId("/d/two") in queue  # scheduled, not lost
            (deployment,) = state.list_deployments()
            state.finish_deployment(deployment["id"])
            term.source.on_effect(EventEffect(finished_deployment=deployment["id"]))
            assert queue.get_nowait() == "/d/two"


class TestCanonicalLogLine:
    @pytest.fixture
    async def logged(self, tmp_path):
        """Reconcile one app on a fresh engine; return its reconcile_finished line."""
        async def reconcile(definition: dict[str, Any]) -> dict[str, Any]:
            state = MarathonState(deployment_seconds=0)
            state.load_apps([definition])
            async with MarathonSimulator(state) as sim:
                env = {"REG_PW": "pw"}
                settings = settings_from_mapping(config(sim.url, tmp_path), env)
                async with build(settings, env) as parts:
                    term = make_term(parts, Metrics(CollectorRegistry()))
                    with structlog.testing.capture_logs() as logs:
                        await term.apps.process(AppId(definition["id"]))
            (line,) = [e for e in logs if e["event"] == "reconcile_finished"]
            return line

        return reconcile

    async def test_skipped_app_says_why(self, logged):
        """A skipped app's reconcile_finished line carries the reason, not just 'unchanged'."""
        line = await logged(docker_app("/e/pub", "nginx"))
        assert (line["action"], line["reason"]) == ("unchanged", "unconfigured_registry")

    async def test_failed_reconcile_is_a_warning(self, logged):
        """A failure is logged at warning, so a level filter keeps it."""
        line = await logged(docker_app("/e/bad", "UPPER/Case"))
        assert (line["outcome"], line["log_level"]) == ("error", "warning")
