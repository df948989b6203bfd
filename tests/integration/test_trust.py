"""Trust: no user edit is lost, no work waits on the event stream, storms stay bounded, and a
one-shot pass neither hangs nor hides a failed publish (issue 8, against the simulator)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from controller.config import settings_from_mapping
from controller.events import EventEffect
from controller.manager import run_once
from controller.model import AppId
from controller.plan import entry_owner, is_managed_uri
from controller.simulator import ApiError, MarathonSimulator, MarathonState
from controller.wiring import build
from tests.factories import REGISTRY, docker_app
from tests.integration.runner import Daemon, daemon_config
from tests.services import eventually

SEEDS = (1, 2, 3)


def user_entry(app_id: str) -> dict[str, Any]:
    return {"uri": f"https://artifacts.example.com{app_id}/extra.tgz", "extract": True,
            "executable": False, "cache": False}


def fetch_of(state: MarathonState, app_id: str) -> list[dict[str, Any]]:
    return list(state.get_app(app_id).get("fetch", []))


def converged_with_user_entry(state: MarathonState, app_id: str) -> bool:
    fetch = fetch_of(state, app_id)
    return user_entry(app_id) in fetch and any(is_managed_uri(e["uri"]) for e in fetch)


async def user_edits(state: MarathonState, ids: list[str], rng: random.Random,
                     window: float) -> None:
    """Each app gets one user entry at a random moment, by read-modify-write as a user would
    (retrying while a deployment locks the app)."""
    async def edit(app_id: str) -> None:
        await asyncio.sleep(rng.uniform(0, window))  # the random moment of the user's edit
        async with asyncio.timeout(20):
            while True:
                try:
                    state.update_app(app_id, {"fetch": [*fetch_of(state, app_id),
                                                        user_entry(app_id)]})
                    return
                except ApiError as e:
                    if e.status != 409:
                        raise
                    await asyncio.sleep(0.02)  # the user retries a locked app

    await asyncio.gather(*(edit(a) for a in ids))


def slow_writes(url: str, tmp_path: Path) -> dict[str, Any]:
    """Two writes a second with no burst: most writes wait seconds for their token."""
    return daemon_config(url, tmp_path, max_writes_per_second=2, write_burst=1, workers=4)


@pytest.fixture
async def slow_sim():
    state = MarathonState(deployment_seconds=0.05)
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as simulator:
        yield state, simulator


class TestUserEditsSurvive:
    """A write is planned from a read made once its write slot is held."""

    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize("mode", ["daemon", "once"])
    async def test_every_user_entry_is_kept(self, slow_sim, tmp_path, mode, seed):
        """User entries added while the controller waits for write tokens are all kept, by the
        daemon and by `reconcile --once`: no user entry is overwritten by a stale list."""
        state, sim = slow_sim
        rng = random.Random(seed)
        ids = [f"/race/{mode}-{i}" for i in range(6)]
        state.load_apps(docker_app(a) for a in ids)
        env = {"REG_PW": "pw"}
        settings = settings_from_mapping(slow_writes(sim.url, tmp_path), env)
        if mode == "daemon":
            edits = asyncio.create_task(user_edits(state, ids, rng, window=2.5))
            async with Daemon(settings, env):  # returns once the initial sync is done
                await edits
                await eventually(lambda: all(converged_with_user_entry(state, a) for a in ids),
                                 30)
        else:
            async with build(settings, env) as parts:
                report, _ = await asyncio.gather(run_once(parts),
                                                 user_edits(state, ids, rng, window=2.0))
            assert report.ok, report.failures
        for a in ids:
            assert user_entry(a) in fetch_of(state, a), f"seed {seed}: {a} lost its user entry"


class TestWithoutEventStream:
    async def test_converges_while_the_event_stream_is_refused(self, tmp_path):
        """/v2/events answers 503 while /v2/apps works: the initial sync still converges every
        app at once, not at the first resync five minutes later."""
        state = MarathonState(deployment_seconds=0.05)
        state.load_apps([docker_app("/no-stream/a"), docker_app("/no-stream/b")])
        state.fail_next(r"^/v2/events", status=503, count=10_000)
        env = {"REG_PW": "pw"}
        async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
            settings = settings_from_mapping(daemon_config(sim.url, tmp_path), env)
            async with Daemon(settings, env) as daemon:
                assert daemon.handle is not None
                assert not daemon.handle.watcher.connected
        for a in ("/no-stream/a", "/no-stream/b"):
            assert any(is_managed_uri(e["uri"]) for e in fetch_of(state, a))


class TestEventStorm:
    async def test_events_naming_missing_apps_do_not_grow_the_queue(self, slow_sim, tmp_path):
        """A storm of events naming apps that do not exist is capped, and a relist is asked for
        instead of queueing the rest."""
        state, sim = slow_sim
        state.load_apps([docker_app("/storm/real")])
        env = {"REG_PW": "pw"}
        settings = settings_from_mapping(
            daemon_config(sim.url, tmp_path, workers=1, shutdown_timeout_seconds=1), env)
        with structlog.testing.capture_logs() as logs:
            async with Daemon(settings, env) as daemon:
                assert daemon.handle is not None
                source, queue = daemon.handle.source, daemon.handle.apps.queue
                peak = 0
                for i in range(30_000):
                    source.on_effect(EventEffect(app_ids=(AppId(f"/storm/ghost-{i}"),)))
                    peak = max(peak, queue.depth)
        assert 10_000 <= peak < 10_100  # the cap: 10,000 beyond twice the relisted keys
        # Logged once per relist asked for (late deployment events may ask again), never
        # once per dropped event.
        assert 1 <= [e["event"] for e in logs].count("event_keys_dropped") <= 3


class TestOneShotBounds:
    async def test_deployments_that_never_finish_fail_the_pass(self, tmp_path):
        """With the budget spent on deployments that never end, the pass fails after
        reconcile.timeout_seconds instead of hanging."""
        state = MarathonState(deployment_seconds=None)  # deployments never finish
        state.load_apps([docker_app("/stuck/a"), docker_app("/stuck/b")])
        env = {"REG_PW": "pw"}
        async with MarathonSimulator(state) as sim:
            settings = settings_from_mapping(
                daemon_config(sim.url, tmp_path, max_concurrent_deployments=1, timeout_seconds=2),
                env)
            async with build(settings, env) as parts:
                report = await asyncio.wait_for(run_once(parts), 30)
        assert not report.ok
        (error,) = report.failures.values()
        assert "no deployment slot came free" in error

    async def test_failed_publish_fails_the_pass(self, tmp_path):
        """A rotation whose publish fails (the bundle path is unusable) exits non-zero, though
        the last good bundle still serves."""
        state = MarathonState(deployment_seconds=0.0)
        state.load_apps([docker_app("/pub/a")])
        env = {"REG_PW": "first"}
        async with MarathonSimulator(state) as sim:
            settings = settings_from_mapping(daemon_config(sim.url, tmp_path), env)
            async with build(settings, env) as parts:
                assert (await run_once(parts)).ok
            bundles = tmp_path / "bundles"
            (bundle,) = bundles.glob("*.tar.gz")
            bundle.unlink()
            bundle.mkdir()  # the new bundle cannot replace a directory
            (bundle / "keep").write_text("x")
            env = {"REG_PW": "rotated"}
            settings = settings_from_mapping(daemon_config(sim.url, tmp_path), env)
            async with build(settings, env) as parts:
                report = await run_once(parts)
        assert not report.ok
        assert list(report.registry_failures) == [settings.registries[0].registry]


class TestTwoControllers:
    async def test_named_controllers_share_a_cluster_without_fighting(self, tmp_path):
        """Two controllers with their own names and registries: each app gets the right entry,
        an app both would manage is reported as a conflict, and nothing is written twice."""
        other, shared = "other.example.com", "shared.example.com"
        state = MarathonState(deployment_seconds=0.02)
        state.load_apps([docker_app("/two/a"), docker_app("/two/b", image=f"{other}/b:1"),
                         docker_app("/two/both", image=f"{shared}/c:1")])
        env = {"REG_PW": "pw"}

        def named(name: str, *hosts: str) -> Any:
            doc = daemon_config(sim.url, tmp_path / name, hosts=hosts)
            doc["controller"] = {"name": name}
            return settings_from_mapping(doc, env)

        async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim, \
                Daemon(named("default", REGISTRY, shared), env) as first, \
                Daemon(named("team-b", other, shared), env) as second:
            handles = [d.handle for d in (first, second) if d.handle is not None]
            await eventually(lambda: converged(state, "/two/a") and converged(state, "/two/b"))
            await eventually(lambda: any(h.index.state_of(AppId("/two/both"))
                                         == "conflict" for h in handles))
            settled, asked = len(state.writes), time.monotonic()
            for h in handles:  # a full resync of both must find nothing to do
                h.source.request_relist()
            await eventually(lambda: all(
                (h.source.last_relist or 0) > asked and not h.apps.queue.depth
                and not h.apps.queue.processing for h in handles))
            assert len(state.writes) == settled
        assert owners(state, "/two/a") == ["default"]
        assert owners(state, "/two/b") == ["team-b"]
        both = [w for w in state.writes if w.path == "/v2/apps/two/both"]
        assert 1 <= len(both) <= 2  # each controller wrote at most once


def converged(state: MarathonState, app_id: str) -> bool:
    return bool(owners(state, app_id))


def owners(state: MarathonState, app_id: str) -> list[str]:
    return [o for e in fetch_of(state, app_id) if (o := entry_owner(e["uri"])) is not None]
