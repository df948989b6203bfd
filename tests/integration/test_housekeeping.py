"""Storage housekeeping by the leader: stale bundles and interrupted writes' leftovers go."""

from __future__ import annotations

import os
import time

from controller.config import settings_from_mapping
from controller.plan import bundle_name
from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import REGISTRY, docker_app
from tests.integration.runner import Daemon, daemon_config
from tests.services import eventually

OTHER = "other.example.com"


async def test_a_removed_registrys_bundle_is_deleted_after_the_grace_period(tmp_path):
    """Once a registry leaves the config, its bundle is deleted at a relist one resync period
    after the first sync; the configured registry's bundle stays."""
    state = MarathonState(deployment_seconds=0)
    state.load_apps([docker_app("/hk/a")])
    env = {"REG_PW": "pw"}
    bundles = tmp_path / "bundles"
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
        async with Daemon(settings_from_mapping(
                daemon_config(sim.url, tmp_path, hosts=(REGISTRY, OTHER)), env), env):
            await eventually(lambda: (bundles / bundle_name(OTHER)).exists())
        settings = settings_from_mapping(
            daemon_config(sim.url, tmp_path, resync_seconds=1), env)
        async with Daemon(settings, env) as daemon:
            assert daemon.handle is not None
            synced = time.monotonic()
            assert (bundles / bundle_name(OTHER)).exists()  # not before the grace period
            await eventually(lambda: not (bundles / bundle_name(OTHER)).exists(), 15)
            waited = time.monotonic() - synced
    assert waited >= 0.8  # one resync period (±10 %), not at once
    assert (bundles / bundle_name(REGISTRY)).exists()


async def test_leftover_temp_files_are_removed_when_leading(tmp_path):
    """A temp file an interrupted write left (holding a credential) is removed at the term's
    start; other files in the directory are untouched."""
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    leftover = bundles / f".{bundle_name(REGISTRY)}.tmp-0123456789abcdef"
    leftover.write_text("credential")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    mine = bundles / "notes.txt"
    mine.write_text("keep")
    state = MarathonState(deployment_seconds=0)
    env = {"REG_PW": "pw"}
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim, Daemon(
            settings_from_mapping(daemon_config(sim.url, tmp_path), env), env):
        await eventually(lambda: not leftover.exists())
    assert mine.read_text() == "keep"
