"""The loop, safe: a real htpasswd ``docker-registry``, the daemon, and the simulator's agent
pulling with real ``skopeo``.

- A refused password is never tried more than once per ``refused_login_interval``, however many
  tasks fail to pull for ``auth`` (a registry that locks the account after a few refusals must
  not lock the robot account), and the fixed file is tried within seconds.
- A cold start with a refused password: the apps get no bundle, their tasks fail (and are
  counted), the file is fixed, and bundle, entries and a launch delay reset follow; tasks run.
- A rotated password file, or SIGHUP for a source that cannot be watched, reaches the served
  bundle within seconds, without waiting for the resync.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.config import settings_from_mapping
from controller.simulator import Agent, MarathonSimulator, MarathonState
from tests.conftest import _start
from tests.factories import docker_app, filesystem_storage
from tests.integration.runner import Daemon, Ops, bundle_uris
from tests.services import Registry, eventually, free_port, make_htpasswd, start_registry
from tests.simulator.skopeo_puller import SkopeoPuller

pytestmark = pytest.mark.e2e

ROTATED = "rotated-at-the-registry"
BACKOFF = {"backoffSeconds": 1, "backoffFactor": 1.5, "maxLaunchDelaySeconds": 30}


def failed_pull(app_id: str, registry: Registry, version: str) -> dict[str, Any]:
    """A ``status_update_event`` of a task that failed to pull for ``auth``, as Mesos words it."""
    return {"slaveId": "agent-1", "taskId": f"{app_id.strip('/')}.{version}",
            "taskStatus": "TASK_FAILED", "appId": app_id, "host": "agent-1",
            "ipAddresses": [], "ports": [], "version": version,
            "message": ("Failed to launch container: Failed to run 'docker -H "
                        f"unix:///var/run/docker.sock pull {registry.ref()}': exited with status "
                        "1; stderr='Error response from daemon: Get https://"
                        f"{registry.host}/v2/: unauthorized: authentication required\n'")}


def config(sim_url: str, registry: Registry, tmp_path: Path, password: dict[str, str],
           **registry_keys: Any) -> dict[str, Any]:
    return {
        "marathon": {"urls": [sim_url], "timeout_seconds": 5},
        "registries": [{"host": registry.host, "verify": "required", "check_images": False,
                        "credentials": {"username": registry.username, **password},
                        **registry_keys}],
        "storage": filesystem_storage(tmp_path / "bundles"),
        "reconcile": {"max_writes_per_second": 1000, "write_burst": 1000,
                      "resync_seconds": 300},
        "server": {"listen": f"127.0.0.1:{free_port()}"},
    }


@pytest.fixture
def registry(tmp_path: Path):
    started = _start(start_registry, tmp_path / "registry")
    yield started
    started.stop()


async def test_a_storm_of_failed_pulls_costs_one_refused_login_per_interval(tmp_path, registry):
    """The password changes at the registry; 50 tasks fail to pull for auth over 15 s: at most
    two refused logins (one, then one after the 10 s interval); the fixed file is tried and
    published within 5 s."""
    password_file = tmp_path / "registry-password"
    password_file.write_text(registry.password)
    state = MarathonState(deployment_seconds=0.05)
    state.load_apps([docker_app("/team/web", registry.ref())])
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim, \
            aiohttp.ClientSession() as session:
        doc = config(sim.url, registry, tmp_path, {"password_file": str(password_file)},
                     refused_login_interval="10s")
        settings = settings_from_mapping(doc, {})
        async with Daemon(settings, {}):
            ops = Ops(session, settings.server.listen, registry.host)
            await eventually(lambda: bundle_uris(state, "/team/web"), 15, "converged")
            make_htpasswd(registry.workdir / "htpasswd", registry.username, ROTATED)
            version = state.get_app("/team/web")["version"]
            for _ in range(50):
                state.publish("status_update_event", failed_pull("/team/web", registry, version))
                await asyncio.sleep(0.3)  # the storm's pace: a failed task every 0.3 s
            refused = await ops.metric("registry_login_total", result="rejected")
            withheld = await ops.metric("registry_login_total", result="withheld")

            password_file.write_text(ROTATED)

            async def accepted() -> bool:
                status = await ops.status()
                return bool(status["login"] and status["login"]["result"] == "accepted"
                            and not status["credentials_rejected"])

            await eventually(accepted, 5, "the fixed password is tried and accepted")
    assert refused is not None
    assert 1 <= refused <= 2
    assert withheld is not None
    assert withheld >= 1


async def test_a_cold_start_with_a_refused_password_catches_up_once_the_file_is_fixed(
        tmp_path, registry):
    """Started with a password the registry refuses: no bundle, tasks fail and are counted;
    the file is fixed: a verified bundle, the entries, and the tasks run. Writing an entry
    changes the app's config, whose new version Marathon launches without the old one's delay:
    no launch delay reset is needed, and none is sent."""
    agent = Agent(tmp_path / "agent", puller=SkopeoPuller())
    password_file = tmp_path / "registry-password"
    password_file.write_text("not-the-password")
    apps = ("/cold/web", "/cold/worker")
    try:
        state = MarathonState(deployment_seconds=0.05, agent=agent)
        state.load_apps([docker_app(a, registry.ref(), instances=1, **BACKOFF) for a in apps])
        async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim, \
                aiohttp.ClientSession() as session:
            doc = config(sim.url, registry, tmp_path, {"password_file": str(password_file)})
            settings = settings_from_mapping(doc, {})
            async with Daemon(settings, {}):
                ops = Ops(session, settings.server.listen, registry.host)

                async def failures() -> float:
                    return await ops.metric("image_pull_failures_total", reason="auth") or 0.0

                await eventually(lambda: failures(), 30, "failed pulls are counted")
                assert (await ops.status())["credentials_rejected"]
                assert not any(bundle_uris(state, a) for a in apps)
                counted = await failures()
                password_file.write_text(registry.password)
                await eventually(lambda: all(agent.counts(a) == (0, 1) for a in apps), 60,
                                 "every task runs")
                assert all(bundle_uris(state, a) for a in apps)
                document = await ops.document()
                resets = series(await ops.text("/metrics"), "delay_resets_total")
    finally:
        await agent.close()
    assert counted >= 1
    assert sum(resets.values()) == 0, resets
    assert all(document["apps"][a]["last_delay_reset"] is None for a in apps)


async def test_a_rotated_password_file_and_sighup_reach_the_bundle_without_a_resync(
        tmp_path, registry):
    """The file is replaced: the served bundle follows within 5 s. A password from an
    environment variable cannot be watched: SIGHUP reads it again."""
    password_file = tmp_path / "registry-password"
    password_file.write_text(registry.password)
    env = {"REG_PW": registry.password}
    state = MarathonState(deployment_seconds=0.05)
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim, \
            aiohttp.ClientSession() as session:
        doc = config(sim.url, registry, tmp_path, {"password_file": str(password_file)})
        doc["registries"].append({"host": "127.0.0.1:1", "verify": "off", "check_images": False,
                                  "credentials": {"username": "u", "password_env": "REG_PW"}})
        settings = settings_from_mapping(doc, env)
        async with Daemon(settings, env):
            ops = Ops(session, settings.server.listen, registry.host)
            before = (await ops.status())["fingerprint"]
            make_htpasswd(registry.workdir / "htpasswd", registry.username, ROTATED)
            replacement = tmp_path / "registry-password.new"
            replacement.write_text(ROTATED)
            replacement.rename(password_file)  # as an operator's tooling replaces it
            await eventually(lambda: fingerprint_changed(ops, before), 5,
                             "the rotated file is published")
            other = Ops(session, settings.server.listen, "127.0.0.1:1")
            before = (await other.status())["fingerprint"]
            env["REG_PW"] = "rotated-in-the-environment"
            os.kill(os.getpid(), signal.SIGHUP)
            await eventually(lambda: fingerprint_changed(other, before), 5,
                             "SIGHUP re-reads the environment")


def series(text: str, name: str) -> dict[str, float]:
    """Every sample of the metric ``name`` in a /metrics text, by its label text."""
    prefix = f"marathon_pullsecret_{name}{{"
    return {line[len(prefix):].rpartition("} ")[0]: float(line.rpartition(" ")[2])
            for line in text.splitlines() if line.startswith(prefix)}


async def fingerprint_changed(ops: Ops, before: str) -> bool:
    return (await ops.status())["fingerprint"] not in (None, before)
