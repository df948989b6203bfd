"""Bundle locations for a relist: every registry's at once, so one slow registry (a hanging
credential source or login) does not hold up the others'."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from prometheus_client import CollectorRegistry

from controller.appindex import AppIndex
from controller.appreconciler import AppPolicy, AppReconciler
from controller.bundles import BundleManager
from controller.credentials.kinds import PasswordEnvCredentials
from controller.metrics import Metrics
from controller.model import RegistryCredential, Secret
from controller.plan import Ownership, Planner, RegistryRule
from controller.settings import RegistrySettings
from controller.storage.memory import MemoryStore

SLOW, FAST = "slow.example.com", "fast.example.com"


class Source:
    """A password source that, for the slow registry, answers only once the fast one was read."""

    expiring = False

    def __init__(self, waits_for: asyncio.Event | None, sets: asyncio.Event | None) -> None:
        self._waits_for, self._sets = waits_for, sets

    async def fetch(self) -> RegistryCredential:
        if self._sets is not None:
            self._sets.set()
        if self._waits_for is not None:
            await self._waits_for.wait()
        return RegistryCredential(username="robot", password=Secret("pw"))


async def test_a_slow_registry_does_not_hold_up_the_others():
    fast_read = asyncio.Event()
    registries = {r: RegistrySettings(host=r, registry=r, verify="off", credentials=(
        PasswordEnvCredentials(username="robot", password_env="PW")))
        for r in (SLOW, FAST)}
    bundles = BundleManager(registries, {SLOW: Source(fast_read, None),  # type: ignore[dict-item]
                                         FAST: Source(None, fast_read)}, MemoryStore())
    planner = Planner(label="l", rules=(RegistryRule(registry=SLOW), RegistryRule(registry=FAST)),
                      ownership=Ownership(owner="default", homes=("memory://bundles",)))
    reconciler = AppReconciler(
        marathon=cast(Any, None), bundles=bundles, images=None, gate=cast(Any, None),
        index=AppIndex(), observer=Metrics(CollectorRegistry()),
        policy=AppPolicy(planner=planner))
    async with asyncio.timeout(5):  # in turn, the slow one would wait for ever
        found = await reconciler.locations()
    assert set(found) == {SLOW, FAST}
