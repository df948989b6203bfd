"""The whole daemon (`run`) against the Marathon simulator: events, resync, 409s, rotation."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import aiohttp
import pytest
import structlog.testing
from prometheus_client.parser import text_string_to_metric_families

from controller.config import settings_from_mapping
from controller.manager import run
from controller.source import AppSource
from tests.factories import LABEL, REGISTRY, docker_app, write_config
from tests.integration.runner import Daemon, bundle_uris, daemon_config
from tests.services import eventually


@pytest.fixture
def env() -> dict[str, str]:
    return {"REG_PW": "first-password"}


@pytest.fixture
def daemon(sim, tmp_path, env):
    def make(**reconcile: Any) -> Daemon:
        settings = settings_from_mapping(daemon_config(sim.url, tmp_path, **reconcile), env)
        return Daemon(settings, env)

    return make


class TestEvents:
    async def test_created_app_gets_its_bundle(self, state, daemon):
        """A new opted-in app gets the bundle through the event stream."""
        async with daemon():
            state.add_app(docker_app("/team/new"))
            await eventually(lambda: len(bundle_uris(state, "/team/new")) == 1)

    async def test_updated_app_opting_in_gets_its_bundle(self, state, daemon):
        """An existing app that opts in later gets the bundle."""
        state.load_apps([docker_app("/team/late", opted_in=False)])
        async with daemon():
            state.update_app("/team/late", {"labels": {LABEL: "true"}}, allow_creation=False)
            await eventually(lambda: len(bundle_uris(state, "/team/late")) == 1)

    async def test_opt_out_removes_only_our_entry(self, state, daemon):
        """Setting the label to false removes our entry and keeps the app's own."""
        own = {"uri": "https://files.example.com/data.tgz", "cache": True}
        state.load_apps([docker_app("/team/out", fetch=[own])])
        async with daemon():
            await eventually(lambda: len(bundle_uris(state, "/team/out")) == 1)
            await eventually(lambda: not state.list_deployments())
            state.update_app("/team/out", {"labels": {LABEL: "false"}}, allow_creation=False)
            await eventually(lambda: not bundle_uris(state, "/team/out"))
        fetch = state.get_app("/team/out")["fetch"]
        assert [e["uri"] for e in fetch] == [own["uri"]]
        assert fetch[0]["cache"] is True

    async def test_deleted_app_leaves_nothing_queued(self, state, daemon):
        """After an app is deleted, its key is neither queued nor tracked."""
        state.load_apps([docker_app("/team/gone")])
        async with daemon() as d:
            await eventually(lambda: len(bundle_uris(state, "/team/gone")) == 1)
            await eventually(lambda: not state.list_deployments())
            state.delete_app("/team/gone")
            assert d.handle is not None
            index, queue = d.handle.index, d.handle.apps.queue
            await eventually(lambda: "/team/gone" not in index.statuses
                             and "/team/gone" not in queue)

    async def test_stream_cut_reconnects_relists_and_converges(self, state, sim, daemon):
        """Events missed while the stream is down are caught by the relist on reconnect."""
        async with daemon() as d:
            assert d.handle is not None
            watcher = d.handle.watcher
            relists = d.handle.source.last_relist
            state.disconnect_streams()
            await eventually(lambda: not watcher.connected)
            state.load_apps([docker_app("/team/missed")])  # no event: only a relist can find it
            await eventually(lambda: watcher.connected and d.handle is not None
                             and d.handle.source.last_relist != relists)
            await eventually(lambda: len(bundle_uris(state, "/team/missed")) == 1)


class TestProtection:
    async def test_409_storm_converges_within_the_budget(self, state, daemon):
        """Locked apps converge once their deployments end; never forced, never over budget."""
        state.deployment_seconds = None  # deployments end only when the test says so
        ids = [f"/storm/app-{i}" for i in range(12)]
        state.load_apps([docker_app(i) for i in ids])
        external = {state.update_app(i, {"instances": 2}, allow_creation=False).deployment_id
                    for i in ids}
        budget = 3
        most_ours = 0
        async with daemon(max_concurrent_deployments=budget):
            async with asyncio.timeout(20):
                while not all(bundle_uris(state, i) for i in ids) or state.list_deployments():
                    running = {d["id"] for d in state.list_deployments()}
                    most_ours = max(most_ours, len(running - external))
                    # end a few deployments per tick: external ones first, then ours
                    for deployment in sorted(running, key=lambda d: d not in external)[:4]:
                        state.finish_deployment(deployment)
                    await asyncio.sleep(0.02)
        assert 0 < most_ours <= budget
        assert any(w.status == 409 for w in state.writes)
        assert not any("force" in w.query for w in state.writes)

    async def test_second_pass_is_a_no_op(self, state, daemon):
        """A resync of converged apps makes no Marathon write."""
        state.load_apps([docker_app(f"/quiet/{i}") for i in range(5)])
        async with daemon() as d:
            await eventually(lambda: all(bundle_uris(state, f"/quiet/{i}") for i in range(5)))
            await eventually(lambda: not state.list_deployments())
            writes = len(state.writes)
            assert d.handle is not None
            await d.handle.source.relist()
            await eventually(lambda: d.handle is not None and not d.handle.apps.queue.depth
                             and not d.handle.apps.queue.processing)
            assert len(state.writes) == writes


class TestRotation:
    async def test_rotation_republishes_without_app_writes(self, state, daemon, env, tmp_path):
        """A changed password gives new bundle content and zero app writes."""
        state.load_apps([docker_app("/rot/a"), docker_app("/rot/b")])
        async with daemon() as d:
            await eventually(lambda: all(bundle_uris(state, a) for a in ("/rot/a", "/rot/b")))
            await eventually(lambda: not state.list_deployments())
            bundle = next((tmp_path / "bundles").glob("*.tar.gz"))
            before, writes = bundle.read_bytes(), len(state.writes)
            env["REG_PW"] = "second-password"
            assert d.handle is not None
            d.handle.registries.queue.add(REGISTRY)  # what the next resync does
            await eventually(lambda: bundle.read_bytes() != before)
            await d.handle.source.relist()
            await eventually(lambda: d.handle is not None and not d.handle.apps.queue.depth
                             and not d.handle.apps.queue.processing)
        assert len(state.writes) == writes


class TestLifecycle:
    async def test_sigterm_exits_zero_within_the_shutdown_timeout(self, sim, tmp_path):
        """The real process drains and exits 0 on SIGTERM."""
        cfg = daemon_config(sim.url, tmp_path, shutdown_timeout_seconds=5)
        path = write_config(tmp_path, cfg)
        port = int(cfg["server"]["listen"].rsplit(":", 1)[1])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller", "run", "--config", str(path),
            env={**os.environ, "REG_PW": "pw-Zq81xx"}, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            await eventually(lambda: _ready(port), 20, "/readyz answers 200")
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = await asyncio.wait_for(proc.wait(), 10)
            elapsed = time.monotonic() - started
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
        assert code == 0, stderr[-2000:]
        assert elapsed < 5
        assert "controller_stopped" in stderr
        assert "pw-Zq81xx" not in stderr


async def _ready(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as r:
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


class TestOpsEndpoints:
    async def test_status_metrics_and_probes(self, state, daemon, env):
        """/status shows bundles and apps, /metrics the families, and neither a secret."""
        state.load_apps([docker_app("/ops/a"), docker_app("/ops/pub", image="nginx")])
        async with daemon() as d:
            await eventually(lambda: len(bundle_uris(state, "/ops/a")) == 1)
            port = d.settings.server.port
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/status") as r:
                    status_text = await r.text()
                async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                    metrics = await r.text()
                async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                    ready = (r.status, await r.json())
                async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                    healthy = r.status
        status = json.loads(status_text)
        assert status["registries"][REGISTRY]["fingerprint"]
        assert status["apps"]["/ops/a"]["registry"] == REGISTRY
        assert status["apps"]["/ops/pub"]["state"] == "skipped"
        assert ready == (200, {"ok": True, "checks": {"synced": True, "marathon": True,
                                                      "events": True}})
        assert healthy == 200
        assert 'marathon_pullsecret_bundle_publishes_total{registry="' + REGISTRY in metrics
        # both controllers and both queues, apart (controller-runtime's and client-go's shape)
        samples = {(f.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(metrics) for s in f.samples}
        for controller in ("app", "registry"):
            reconciles = sum(samples[("marathon_pullsecret_controller_reconcile",
                                      (("controller", controller), ("result", result)))]
                             for result in ("success", "requeue_after"))
            assert reconciles >= 1, controller
            assert ("marathon_pullsecret_workqueue_longest_running_processor_seconds",
                    (("name", controller),)) in samples
            assert samples[("marathon_pullsecret_workqueue_adds", (("name", controller),))] >= 1
        for text in (status_text, metrics):
            assert env["REG_PW"] not in text


class TestCrash:
    async def test_crashed_task_stops_the_daemon_with_a_clear_line(self, state, sim, tmp_path,
                                                                   env, monkeypatch):
        """A root task that crashes ends run() with exit code 1 and a task_crashed line."""
        async def broken(self):
            raise RuntimeError("bug in the resync loop")

        monkeypatch.setattr(AppSource, "resync", broken)
        settings = settings_from_mapping(daemon_config(sim.url, tmp_path), env)
        with structlog.testing.capture_logs() as logs:
            code = await asyncio.wait_for(run(settings, env), 15)
        assert code == 1
        crashed = [e for e in logs if e["event"] == "task_crashed"]
        assert [e["task"] for e in crashed] == ["resync"]
        assert any(e["event"] == "controller_stopped" and e["exit_code"] == 1 for e in logs)
