"""Storage housekeeping by the leader: stale bundles and interrupted writes' leftovers go."""

from __future__ import annotations

import os
import time

from controller.config import settings_from_mapping
from controller.plan import bundle_name
from controller.simulator import MarathonSimulator, MarathonState
from tests.integration.test_daemon import REG, Daemon, app, config, eventually

OTHER = "other.example.com"


def with_registries(url: str, tmp_path, *hosts: str, **reconcile):
    doc = config(url, tmp_path, **reconcile)
    doc["registries"] = [{"host": h, "credentials": {"username": "robot",
                                                     "password_env": "REG_PW"}} for h in hosts]
    return doc


async def test_a_removed_registrys_bundle_is_deleted_after_the_grace_period(tmp_path):
    """Once a registry leaves the config, its bundle is deleted at a relist one resync period
    after the first sync; the configured registry's bundle stays."""
    state = MarathonState(deployment_seconds=0)
    state.load_apps([app("/hk/a")])
    env = {"REG_PW": "pw"}
    bundles = tmp_path / "bundles"
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
        async with Daemon(settings_from_mapping(
                with_registries(sim.url, tmp_path, REG, OTHER), env), env):
            await eventually(lambda: (bundles / bundle_name(OTHER)).exists())
        settings = settings_from_mapping(
            with_registries(sim.url, tmp_path, REG, resync_seconds=1), env)
        async with Daemon(settings, env) as daemon:
            assert daemon.handle is not None
            synced = time.monotonic()
            assert (bundles / bundle_name(OTHER)).exists()  # not before the grace period
            await eventually(lambda: not (bundles / bundle_name(OTHER)).exists(), 15)
            waited = time.monotonic() - synced
    assert waited >= 0.8  # one resync period (±10 %), not at once
    assert (bundles / bundle_name(REG)).exists()


async def test_leftover_temp_files_are_removed_when_leading(tmp_path):
    """A temp file an interrupted write left (holding a credential) is removed at the term's
    start; other files in the directory are untouched."""
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    leftover = bundles / f".{bundle_name(REG)}.tmp-0123456789abcdef"
    leftover.write_text("credential")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    mine = bundles / "notes.txt"
    mine.write_text("keep")
    state = MarathonState(deployment_seconds=0)
    env = {"REG_PW": "pw"}
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim, Daemon(
            settings_from_mapping(config(sim.url, tmp_path), env), env):
        await eventually(lambda: not leftover.exists())
    assert mine.read_text() == "keep"
