"""Close the loop, end to end: a real htpasswd ``docker-registry``, the simulator's agent pulling
with real ``skopeo`` (``HOME`` = the task's sandbox), and the daemon.

1. The apps run with the controller's bundle.
2. The registry's password changes and the apps restart (killing their tasks first, as their
   upgrade strategy says); the new tasks fail to pull for ``auth``.
3. The password file still holds the old password: the login is rejected, nothing is
   published, and the alert gauge is set.
4. The file is fixed: a verified bundle goes out and the launch delay is reset.
5. Every task runs again within 5 s of the fix.

The same story with ``remediation.reset_launch_delay: false`` waits out the app's 30 s launch
backoff instead, and the test asserts that it is clearly slower.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from controller.simulator import Agent, MarathonSimulator, MarathonState
from tests.conftest import _start
from tests.factories import docker_app
from tests.integration.runner import Daemon, Ops, bundle_uris, registry_daemon_settings
from tests.services import eventually, free_port, make_htpasswd, start_registry
from tests.simulator.skopeo_puller import SkopeoPuller

pytestmark = pytest.mark.e2e

APPS = ("/team-a/web", "/team-a/worker")
BACKOFF = {"backoffSeconds": 30, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 300,
           "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0}}
"""A restart kills the old task first, so nothing runs until the new one can pull."""
ROTATED = "rotated-at-the-registry"


def running(agent: Agent) -> bool:
    return all(agent.counts(app_id) == (0, 1) for app_id in APPS)


async def story(tmp_path: Path, *, reset_launch_delay: bool) -> dict[str, float]:
    """Run the story once; returns the seconds from the fix to every task running, and more."""
    registry = _start(start_registry, tmp_path / "registry")
    agent = Agent(tmp_path / "agent", puller=SkopeoPuller())
    try:
        password_file = tmp_path / "registry-password"
        password_file.write_text(registry.password)
        state = MarathonState(deployment_seconds=0.05, agent=agent)
        state.load_apps([docker_app(app_id, registry.ref(), instances=1, **BACKOFF)
                         for app_id in APPS])
        listen = f"127.0.0.1:{free_port()}"
        async with (MarathonSimulator(state, heartbeat_seconds=0.5) as sim,
                    aiohttp.ClientSession() as session):
            settings = registry_daemon_settings(
                sim.url, registry, password_file, tmp_path, listen, verify="required",
                sections={"remediation": {"reset_launch_delay": reset_launch_delay}})
            async with Daemon(settings, {}) as daemon:
                handle = daemon.handle
                assert handle is not None
                ops = Ops(session, listen, registry.host)
                bundles = handle.parts.bundles.states[registry.host]
                # 1. The apps get their bundle (a new version, so new tasks) and run.
                await eventually(lambda: all(bundle_uris(state, a) for a in APPS), 20,
                                 "every app has its bundle")
                await eventually(lambda: running(agent), 30, "the first tasks run")
                published = bundles.manifest.sha256 if bundles.manifest else None

                # 2. The password changes at the registry; relaunched tasks fail to pull.
                make_htpasswd(registry.workdir / "htpasswd", registry.username, ROTATED)
                for app_id in APPS:
                    state.restart_app(app_id)

                async def failed_for_auth() -> bool:
                    apps = (await ops.document())["apps"]
                    return all((apps[a]["last_pull_failure"] or {}).get("reason") == "auth"
                               for a in APPS)

                await eventually(failed_for_auth, 30, "both apps' pulls fail for auth")
                failures = await ops.metric("image_pull_failures_total", reason="auth")
                assert failures is not None
                assert failures >= len(APPS)

                # 3. The failed pulls asked for a login: rejected, nothing published.
                async def rejected() -> bool:
                    return bool((await ops.status())["credentials_rejected"])

                await eventually(rejected, 15, "the old password is rejected")
                assert (bundles.manifest.sha256 if bundles.manifest else None) == published
                assert await ops.metric("registry_credentials_rejected") == 1
                assert not running(agent)

                # 4. The source is fixed; the registry's retry publishes a verified bundle.
                fixed_at = time.monotonic()
                password_file.write_text(ROTATED)
                handle.registries.queue.add(registry.host)  # the retry would come in <= 10 s
                await eventually(lambda: not bundles.credentials_rejected
                                 and bundles.manifest is not None
                                 and bundles.manifest.sha256 != published, 15,
                                 "a verified bundle is published")
                published_after = time.monotonic() - fixed_at
                # 5. Every task runs again.
                await eventually(lambda: running(agent), 90, "every task runs again")
                took = time.monotonic() - fixed_at
                apps = (await ops.document())["apps"]
                for text in (await ops.text("/status"), await ops.text("/metrics")):
                    assert registry.password not in text
                    assert ROTATED not in text
                return {"published": published_after, "running": took,
                        "resets": sum(1 for a in APPS
                                      if (apps[a]["last_delay_reset"] or {}).get("result") == "ok")}
    finally:
        await agent.close()
        registry.stop()


async def test_a_rotated_password_is_rejected_then_fixed_and_tasks_run_again(tmp_path):
    with_reset = await story(tmp_path / "reset", reset_launch_delay=True)
    print(f"with the delay reset: published {with_reset['published']:.2f} s, "
          f"running {with_reset['running']:.2f} s after the fix")
    assert with_reset["resets"] == len(APPS)
    assert with_reset["running"] < 5

    without = await story(tmp_path / "no-reset", reset_launch_delay=False)
    print(f"without the reset: running {without['running']:.2f} s after the fix")
    assert without["resets"] == 0
    assert without["running"] > with_reset["running"] + 10
