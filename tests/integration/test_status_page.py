"""The status page of a running daemon, as a real browser (headless Chromium) renders it."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from controller.config import settings_from_mapping
from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import REGISTRY, docker_app
from tests.integration.runner import Daemon, daemon_config

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SECRET = "Pw-for-the-status-page-9f3a"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium is not installed (make test installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} -- CI is set, so a missing browser is an error")
        pytest.skip(reason)
    return found


async def browse(url: str, *args: str) -> str:
    """Run headless Chromium on ``url``; return its stdout (the DOM with --dump-dom)."""
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def test_status_page_shows_a_running_daemon(tmp_path):
    """The page lists the leader, the bundle and each app with its state and reason, holds no
    secret, and a screenshot is kept in test-artifacts/."""
    state = MarathonState(deployment_seconds=0)
    state.load_apps([docker_app("/page/web"), docker_app("/page/pub", image="nginx:1"),
                     docker_app("/page/bad", image=f"{REGISTRY}/Not Valid:1")])
    env = {"REG_PW": SECRET}
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
        settings = settings_from_mapping(daemon_config(sim.url, tmp_path), env)
        async with Daemon(settings, env):
            url = f"http://{settings.server.host}:{settings.server.port}/"
            dom = await browse(url, "--dump-dom")
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "status-page.png"
            await browse(url, f"--screenshot={shot}", "--window-size=1280,900",
                         "--hide-scrollbars")
    for words in ("marathon-pullsecret-controller", "leader", REGISTRY, "/page/web", "converged",
                  "/page/pub", "image registry docker.io is not configured", "/page/bad",
                  "failed", "Recent writes and failures", "add the bundle entry"):
        assert words in dom, words
    assert SECRET not in dom
    assert shot.stat().st_size > 10_000
