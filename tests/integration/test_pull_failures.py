"""The daemon against the simulator: failed pulls arrive as ``status_update_event``, are counted
and shown, and an app fixed after an ``auth`` failure gets its launch delay reset once.

The simulator has no launch queue yet, so a small front answers ``DELETE /v2/queue/{id}/delay``
itself and forwards everything else (the event stream included) to the simulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from controller.config import settings_from_mapping
from controller.manager import Term, run
from controller.model import AppId
from controller.simulator import MarathonState
from tests.factories import REGISTRY, docker_app
from tests.integration.runner import bundle_uris, daemon_config
from tests.services import eventually

APP = "/team/web"
AUTH_FAILURE = (f"Failed to launch container: Failed to run 'docker -H unix:///var/run/docker.sock"
                f" pull {REGISTRY}/team/web:1': exited with status 1; stderr='Error response from "
                f"daemon: Get https://{REGISTRY}/v2/team/web/manifests/1: unauthorized: "
                "authentication required\n'")
_FORWARDED = ("Accept", "Authorization", "Content-Type", "User-Agent")


class QueueFront:
    """Answers ``DELETE /v2/queue/{id}/delay`` as Marathon does (204) and records it; forwards
    every other request to the simulator, streaming the answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.resets: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "DELETE" and path.startswith("/v2/queue/") and path.endswith(
                "/delay"):
            self.resets.append(path.removeprefix("/v2/queue").removesuffix("/delay"))
            return web.Response(status=204)
        headers = {k: v for k, v in request.headers.items() if k in _FORWARDED}
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
                request.method, self.upstream + request.path_qs, headers=headers,
                data=await request.read() or None, allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items()
                if k in ("Content-Type", "Marathon-Deployment-Id", "Location")})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            return response


@pytest.fixture
async def front(sim, aiohttp_server) -> tuple[QueueFront, str]:
    queue = QueueFront(sim.url)
    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", queue.handle)
    server = await aiohttp_server(application)
    return queue, str(server.make_url("")).rstrip("/")


@asynccontextmanager
async def running(url: str, tmp_path: Path, env: dict[str, str], **remediation: Any
                  ) -> AsyncIterator[Measured]:
    """The daemon as a task of this test's loop, on a metrics registry the test reads."""
    doc = daemon_config(url, tmp_path)
    doc["registries"][0]["verify"] = "off"  # a fictional host: tests/e2e log in to a real one
    doc["remediation"] = remediation
    registry, stop, started = CollectorRegistry(), asyncio.Event(), asyncio.Event()
    handles: list[Term] = []

    def on_started(handle: Term) -> None:
        handles.append(handle)
        started.set()

    task = asyncio.create_task(run(settings_from_mapping(doc, env), env, stop=stop,
                                   collectors=registry, started=on_started))
    try:
        async with asyncio.timeout(10):
            await started.wait()
            await handles[0].source.synced.wait()
        yield Measured(handles[0], registry)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 15) == 0


class Measured:
    """A running daemon's handle and metrics."""

    def __init__(self, handle: Term, registry: CollectorRegistry) -> None:
        self.handle = handle
        self.registry = registry

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(f"marathon_pullsecret_{name}", labels) or 0.0

    def publishes(self, result: str) -> float:
        return self.sample("bundle_publishes_total", registry=REGISTRY, result=result)

    def entry(self) -> dict[str, Any]:
        """The app's entry in ``/status``."""
        apps: dict[str, dict[str, Any]] = self.handle.status.snapshot({}, datetime.now(UTC))[
            "apps"]
        return apps[APP]

    @property
    def idle(self) -> bool:
        queue = self.handle.apps.queue
        return not queue.depth and not queue.processing

    async def converged(self, state: MarathonState) -> None:
        await eventually(lambda: len(bundle_uris(state, APP)) == 1
                         and not state.list_deployments()
                         and self.handle.index.state_of(AppId(APP)) == "converged")


def fail_task(state: MarathonState, task: str, message: str = AUTH_FAILURE) -> None:
    state.publish("status_update_event", {
        "slaveId": "agent-1", "taskId": task, "taskStatus": "TASK_FAILED", "message": message,
        "appId": APP, "host": "agent-1", "ports": [], "version": "2026-12-01T06:00:00.000Z"})


async def test_auth_failure_then_fixed_credentials_reset_the_delay_once(state, front, tmp_path):
    """1. A task fails to pull for auth: counted, shown, the registry is checked again, but the
    credentials did not change, so nothing is reset. 2. The password is fixed and another
    task fails: the registry's new bundle goes out and the delay is reset, once."""
    queue, url = front
    env = {"REG_PW": "first-password"}
    state.load_apps([docker_app(APP)])
    async with running(url, tmp_path, env) as d:
        await d.converged(state)
        checked = d.publishes("unchanged")
        fail_task(state, "team_web.1")
        await eventually(lambda: d.publishes("unchanged") > checked and d.idle)
        failure = d.entry()["last_pull_failure"]
        assert (failure["reason"], failure["task_id"]) == ("auth", "team_web.1")
        assert failure["message"] == (f"Error response from daemon: Get https://{REGISTRY}/\u2026: "
                                      "unauthorized: authentication required")
        assert d.sample("image_pull_failures_total", registry=REGISTRY, reason="auth") == 1
        assert queue.resets == []

        env["REG_PW"] = "fixed-password"
        fail_task(state, "team_web.2")
        await eventually(lambda: queue.resets == [APP]
                         and d.sample("delay_resets_total", result="ok") == 1)
        assert d.publishes("published") >= 2
        assert d.entry()["last_delay_reset"]["result"] == "ok"

        # Another look at the app (an event naming it) finds the reset done: no second one.
        def reconciles() -> float:
            return d.sample("controller_reconcile_total", controller="app", result="success")

        before = reconciles()
        state.update_app(APP, {"env": {"X": "1"}}, allow_creation=False)
        await eventually(lambda: reconciles() > before and d.idle)
        assert queue.resets == [APP]
        assert d.sample("delay_resets_total", result="ok") == 1


async def test_without_remediation_nothing_is_reset(state, front, tmp_path):
    """``reset_launch_delay: false``: failures are still seen, the fix still goes out, no reset."""
    queue, url = front
    env = {"REG_PW": "first-password"}
    state.load_apps([docker_app(APP)])
    async with running(url, tmp_path, env, reset_launch_delay=False) as d:
        await d.converged(state)
        env["REG_PW"] = "fixed-password"
        fail_task(state, "team_web.1")
        await eventually(lambda: d.publishes("published") >= 2 and d.idle)
        assert d.sample("image_pull_failures_total", registry=REGISTRY, reason="auth") == 1
    assert queue.resets == []


async def test_failures_of_other_apps_and_other_causes_are_not_ours(state, front, tmp_path):
    """A failed pull of an app that is not opted in, and a task that failed for another reason,
    count nothing and reset nothing."""
    queue, url = front
    env = {"REG_PW": "first-password"}
    state.load_apps([docker_app(APP), docker_app("/team/other", opted_in=False)])
    async with running(url, tmp_path, env) as d:
        await d.converged(state)
        events = d.sample("marathon_events_total", event_type="status_update_event")
        state.publish("status_update_event", {"taskId": "o.1", "taskStatus": "TASK_FAILED",
                                              "message": AUTH_FAILURE, "appId": "/team/other"})
        fail_task(state, "team_web.1", "Command exited with status 1")
        await eventually(lambda: d.sample("marathon_events_total",
                                          event_type="status_update_event") == events + 2)
        for reason in ("auth", "other"):
            assert d.sample("image_pull_failures_total", registry=REGISTRY, reason=reason) == 0
        assert d.entry()["last_pull_failure"] is None
    assert queue.resets == []
