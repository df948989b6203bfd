"""The bundle directory failing under a running controller: the last good bundle stays served."""

from __future__ import annotations

import os
import time

import pytest

from tests.reliability.harness import (
    NOBODY,
    REG,
    Scenario,
    bundle_problem,
    fill,
    remount,
    standard_apps,
)
from tests.services import eventually

RESYNC_SECONDS = 1
"""Short resyncs, so that a rotated password (or a damaged bundle) is noticed quickly."""
REPAIR_SECONDS = 3 * RESYNC_SECONDS + 5
"""How soon a damaged bundle must be served whole again."""

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="mounting a tmpfs and running as nobody need root")


async def rotate_during_fault(scenario: Scenario) -> None:
    """Give the controller work that needs the storage: a new password, and new apps (which
    can use the last good bundle meanwhile)."""
    scenario.rotate(REG)
    scenario.add_apps(standard_apps("/rel/during"))
    process = scenario.controllers[0]
    await eventually(lambda: "bundle_refresh_failed" in process.log_events(), REPAIR_SECONDS,
                "the controller met the storage fault")
    await scenario.hold()


class TestStorageFaults:
    @needs_root
    @pytest.mark.fault("Storage: ENOSPC (full tmpfs) during a password rotation")
    async def test_enospc(self, scenario):
        """A full file system keeps the last good bundle; the new one follows once there is room."""
        scenario.mount_storage("256k")
        await scenario.converge_first(resync_seconds=RESYNC_SECONDS)
        filler = fill(scenario.storage)
        await rotate_during_fault(scenario)
        filler.unlink()
        await scenario.converged_after(time.monotonic())
        await scenario.finish()

    @needs_root
    @pytest.mark.fault("Storage: read-only remount during a password rotation")
    async def test_read_only(self, scenario):
        """A read-only file system keeps the last good bundle until it is writable again."""
        scenario.mount_storage()
        await scenario.converge_first(resync_seconds=RESYNC_SECONDS)
        remount(scenario.storage, "ro")
        await rotate_during_fault(scenario)
        remount(scenario.storage, "rw")
        await scenario.converged_after(time.monotonic())
        await scenario.finish()

    @needs_root
    @pytest.mark.fault("Storage: EACCES (controller runs as nobody, directory is root's)")
    async def test_eacces(self, scenario):
        """A directory the controller may not write to publishes nothing; granting access
        lets it converge."""
        scenario.registry(REG)
        scenario.add_apps(standard_apps("/rel/base"), deployed=True)
        process = await scenario.start(scenario.config(REG, resync_seconds=RESYNC_SECONDS),
                                       uid=NOBODY)
        scenario.watch_bundles()
        await eventually(lambda: "bundle_refresh_failed" in process.log_events(), 10,
                    "the controller met the permission error")
        await scenario.hold()
        assert not list(scenario.storage.iterdir())
        os.chown(scenario.storage, NOBODY, NOBODY)
        await scenario.converged_after(time.monotonic())
        await scenario.finish()

    @pytest.mark.fault("Storage: slow storage")
    async def test_slow_storage(self, scenario):
        """Slow storage needs a throttled block device or FUSE."""
        pytest.skip("slow storage needs FUSE or the device-mapper delay target (dm-delay on a "
                    "loop device); this suite uses neither, and tmpfs cannot be throttled")

    @pytest.mark.fault("Storage: served bundle tampered with (bytes overwritten in place)")
    async def test_tampered_bundle(self, scenario):
        """A damaged bundle in place is noticed and published whole again."""
        await scenario.converge_first(resync_seconds=RESYNC_SECONDS)
        assert scenario.watch is not None
        scenario.watch.paused = True  # the damage below is the fault, not a finding
        bundle = scenario.storage / scenario.registries[REG].bundle
        size = bundle.stat().st_size
        with bundle.open("r+b") as f:
            f.seek(size // 2)
            f.write(b"\xff" * 16)
        assert bundle_problem(bundle.read_bytes()) is not None
        tampered = time.monotonic()
        await eventually(lambda: bundle_problem(bundle.read_bytes()) is None, REPAIR_SECONDS,
                    "the damaged bundle is published whole again")
        scenario.watch.paused = False
        await scenario.converged_after(tampered)
        await scenario.finish()
