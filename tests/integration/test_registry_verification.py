"""The daemon and ``reconcile --once`` on the Marathon simulator with the real htpasswd
``docker-registry``: a wrong password in the password file is never published, and /metrics,
/status, the status page and the pass report say so; once the file is fixed, a verified bundle
goes out and skopeo pulls with it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from controller.manager import Term, run
from controller.simulator import MarathonSimulator, MarathonState
from tests.conftest import _start
from tests.factories import docker_app, filesystem_storage
from tests.integration.runner import Ops, bundle_uris, registry_daemon_settings
from tests.services import (
    Registry,
    eventually,
    fetch_into_sandbox,
    free_port,
    make_htpasswd,
    skopeo_inspect,
    start_registry,
)

pytestmark = pytest.mark.e2e


async def test_wrong_password_is_not_published_until_the_file_is_fixed(registry: Registry,
                                                                      tmp_path: Path):
    """Rejected: no bundle, the gauge and /status say so; fixed: a verified bundle that pulls."""
    password_file = tmp_path / "registry-password"
    password_file.write_text("not-the-password\n")
    listen = f"127.0.0.1:{free_port()}"
    state = MarathonState(deployment_seconds=0.05)
    state.load_apps([docker_app("/team-a/web", registry.ref())])
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
        settings = registry_daemon_settings(sim.url, registry, password_file, tmp_path, listen,
                                   verify_repository="team-a/hello")
        stop = asyncio.Event()
        started: asyncio.Future[Term] = asyncio.get_running_loop().create_future()
        daemon = asyncio.create_task(run(settings, {}, stop=stop, started=started.set_result))
        try:
            handle = await asyncio.wait_for(started, 10)
            async with aiohttp.ClientSession() as session:
                ops = Ops(session, listen, registry.host)

                async def rejected() -> bool:
                    return (await ops.status())["credentials_rejected"]

                await eventually(rejected, 15, "the registry's refusal shows in /status")
                status = await ops.status()
                assert status["fingerprint"] is None
                assert status["login"]["result"] == "rejected"
                assert status["login"]["detail"] == "the registry refused the basic auth (401)"
                assert await ops.metric("registry_credentials_rejected") == 1
                assert await ops.metric("registry_login_total", result="rejected") >= 1
                assert "credentials rejected" in await ops.text("/")
                assert not list((tmp_path / "bundles").glob("*.tar.gz"))
                assert bundle_uris(state, "/team-a/web") == []

                password_file.write_text(registry.password + "\n")
                handle.registries.queue.add(registry.host)  # else its backoff retry, in 5 s

                async def published() -> bool:
                    return (await ops.status())["fingerprint"] is not None

                await eventually(published, 15, "the fixed credential is published")
                status = await ops.status()
                assert status["credentials_rejected"] is False
                assert status["login"]["result"] == "accepted"
                assert status["login"]["detail"] == "ok (basic auth); may pull team-a/hello"
                assert await ops.metric("registry_credentials_rejected") == 0
                assert await ops.metric("registry_login_total", result="accepted") == 1
                await eventually(lambda: bundle_uris(state, "/team-a/web"), 15,
                                 "the app that failed for want of a bundle gets it")
                for path in ("/status", "/metrics", "/"):
                    assert registry.password not in await ops.text(path)
        finally:
            stop.set()
            assert await asyncio.wait_for(daemon, 15) == 0

    sandbox = tmp_path / "sandbox"
    fetch_into_sandbox(bundle_uris(state, "/team-a/web")[0], sandbox)
    pulled = skopeo_inspect(registry.ref(), sandbox)
    assert pulled.returncode == 0, registry.scrub(pulled.stderr)


async def test_one_shot_pass_refuses_a_wrong_password(registry: Registry, tmp_path: Path):
    """reconcile --once: exit 1 naming the refusal and nothing written; fixed: exit 0."""
    password_file = tmp_path / "registry-password"
    password_file.write_text("not-the-password\n")
    bundles = tmp_path / "bundles"
    state = MarathonState(deployment_seconds=0.05)
    state.load_apps([docker_app("/team-a/web", registry.ref())])
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "marathon": {"urls": [sim.url]},
            "registries": [{"host": registry.host, "verify": "required", "credentials": {
                "username": registry.username, "password_file": str(password_file)}}],
            "storage": filesystem_storage(bundles),
        }))

        async def reconcile_once() -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "controller", "reconcile", "--once", "--config",
                str(config), env=dict(os.environ), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode is not None
            return proc.returncode, out.decode()

        code, out = await reconcile_once()
        assert code == 1, out
        assert (f"registry {registry.host}: FAILED: {registry.host}: the registry rejected the "
                "credential: the registry refused the basic auth (401); nothing is published, "
                "the last good bundle stays") in out
        assert not list(bundles.glob("*.tar.gz"))
        assert bundle_uris(state, "/team-a/web") == []

        password_file.write_text(registry.password + "\n")
        code, out = await reconcile_once()
        assert code == 0, out
        assert len(bundle_uris(state, "/team-a/web")) == 1
        assert registry.password not in out


async def test_password_changed_at_the_registry_shows_on_request(tmp_path: Path):
    """The registry stops accepting the published password: a requested verification (as a
    failed pull asks for) shows the rejection, the bundle stays; the new password in the file
    is then published, verified."""
    registry = _start(start_registry, tmp_path / "own-registry")
    try:
        password_file = tmp_path / "registry-password"
        password_file.write_text(registry.password)
        listen = f"127.0.0.1:{free_port()}"
        state = MarathonState(deployment_seconds=0.05)
        state.load_apps([docker_app("/team-a/web", registry.ref())])
        async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
            settings = registry_daemon_settings(sim.url, registry, password_file, tmp_path, listen)
            stop = asyncio.Event()
            started: asyncio.Future[Term] = asyncio.get_running_loop().create_future()
            daemon = asyncio.create_task(run(settings, {}, stop=stop,
                                             started=started.set_result))
            try:
                handle = await asyncio.wait_for(started, 10)
                async with aiohttp.ClientSession() as session:
                    ops = Ops(session, listen, registry.host)
                    await eventually(lambda: bundle_uris(state, "/team-a/web"), 15, "first bundle")
                    first = (await ops.status())["fingerprint"]
                    assert (await ops.status())["login"]["result"] == "accepted"

                    make_htpasswd(registry.workdir / "htpasswd", registry.username,
                                  "rotated-at-the-registry")
                    handle.verification.ask(registry.host)

                    async def rejected() -> bool:
                        return (await ops.status())["credentials_rejected"]

                    await eventually(rejected, 15, "the requested login sees the refusal")
                    assert await ops.metric("registry_credentials_rejected") == 1
                    assert (await ops.status())["fingerprint"] == first

                    password_file.write_text("rotated-at-the-registry")
                    handle.registries.queue.add(registry.host)  # else its backoff, in 5 s

                    async def republished() -> bool:
                        status = await ops.status()
                        return status["fingerprint"] != first and not status["credentials_rejected"]

                    await eventually(republished, 15, "the new password is published")
                    assert await ops.metric("registry_credentials_rejected") == 0
                    assert await ops.metric("registry_login_total", result="accepted") == 2
            finally:
                stop.set()
                assert await asyncio.wait_for(daemon, 15) == 0
    finally:
        registry.stop()
