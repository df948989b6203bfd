"""BundleManager: expiry-driven refresh, validity floor and last known good, with a fake clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from controller.bundles import BundleManager, RefreshOutcome
from controller.config import CredentialSettings, EcrSettings, RegistrySettings
from controller.credentials import CredentialSource
from controller.credentials.static import PasswordSource
from controller.errors import CredentialError
from controller.model import BundleManifest, RegistryCredential, Secret
from controller.plan import bundle_name
from controller.storage.memory import MemoryStore

REG = "registry.example.com"
NAME = bundle_name(REG)
HOUR = 3600.0
T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, hours: float) -> None:
        self.now += timedelta(hours=hours)


class FakeSource:
    """Hands out the queued results in order: credentials, or exceptions to raise."""

    def __init__(self, results: Iterable[RegistryCredential | Exception], *,
                 expiring: bool = True) -> None:
        self.expiring = expiring
        self.results = list(results)
        self.calls = 0

    async def fetch(self) -> RegistryCredential:
        self.calls += 1
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def token(password: str, expires_at: datetime | None) -> RegistryCredential:
    return RegistryCredential(username="AWS", password=Secret(password), expires_at=expires_at)


def registry_settings(*, max_age: float = 6 * HOUR, min_validity: float = 6 * HOUR
                      ) -> RegistrySettings:
    return RegistrySettings(
        host=REG, registry=REG,
        credentials=CredentialSettings(kind="ecr", ecr=EcrSettings(region="us-east-1")),
        max_age=max_age, min_validity=min_validity)


class Harness:
    def __init__(self, source: CredentialSource, *, store: MemoryStore | None = None,
                 jitter: float = 1.0, **settings: float) -> None:
        self.clock = Clock()
        self.source = source
        self.store = store or MemoryStore()
        self.observed: list[RefreshOutcome] = []
        self.manager = BundleManager(
            {REG: registry_settings(**settings)}, {REG: source}, self.store,
            now=self.clock, jitter=lambda: jitter,
            observe=lambda registry, outcome, manifest: self.observed.append(outcome))

    @property
    def manifest(self) -> BundleManifest:
        return self.store.manifests[NAME]

    async def refresh(self, *, force: bool = False) -> RefreshOutcome:
        return await self.manager.refresh(REG, force=force)


class TestSchedule:
    async def test_refresh_at_half_life(self):
        """A 10-hour token is due again after 5 hours."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=10))]))
        assert await h.refresh() == "published"
        assert h.manager.refresh_in(REG) == 5 * HOUR

    async def test_max_age_when_earlier(self):
        """``max_age`` wins when it comes before half the lifetime."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=24))]), max_age=2 * HOUR)
        await h.refresh()
        assert h.manager.refresh_in(REG) == 2 * HOUR

    async def test_no_expiry_uses_max_age(self):
        """A credential without expiry (helpers) is re-asked after ``max_age``."""
        h = Harness(FakeSource([token("a", None)]), max_age=3 * HOUR)
        await h.refresh()
        assert h.manager.refresh_in(REG) == 3 * HOUR

    async def test_jitter_brings_it_forward(self):
        """Jitter only ever makes the refresh earlier."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=10))]), jitter=0.9)
        await h.refresh()
        assert h.manager.refresh_in(REG) == pytest.approx(4.5 * HOUR)

    async def test_not_asked_before_due(self):
        """An expiring source is not asked before the bundle is due."""
        source = FakeSource([token("a", T0 + timedelta(hours=10))])
        h = Harness(source)
        await h.refresh()
        h.clock.advance(4.9)
        assert await h.refresh() == "not_due"
        assert source.calls == 1

    async def test_refreshed_at_half_life(self):
        """At half-life a new token is fetched and published, due again at its half-life."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=10)),
                                token("b", T0 + timedelta(hours=15))]))
        await h.refresh()
        h.clock.advance(5)
        assert await h.refresh() == "published"
        assert h.manifest.expires_at == T0 + timedelta(hours=15)
        assert h.manager.refresh_in(REG) == 5 * HOUR


class TestLastKnownGood:
    async def test_failure_keeps_bundle_and_counts(self):
        """A failing refresh raises, counts the failure, and leaves the bundle in place."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=10)),
                                CredentialError("ECR is down"), CredentialError("ECR is down")]))
        await h.refresh()
        before = (h.store.bundles[NAME], h.manifest)
        h.clock.advance(5)
        for attempt in (1, 2):
            with pytest.raises(CredentialError, match="ECR is down"):
                await h.refresh()
            assert h.manager.states[REG].failures == attempt
        assert (h.store.bundles[NAME], h.manifest) == before
        assert h.store.writes == 1
        assert h.observed == ["published", "failed", "failed"]

    async def test_retry_success_resets_failures(self):
        """The next successful refresh publishes and clears the failure count."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=10)), CredentialError("down"),
                                token("b", T0 + timedelta(hours=15))]))
        await h.refresh()
        h.clock.advance(5)
        with pytest.raises(CredentialError):
            await h.refresh()
        assert await h.refresh() == "published"
        state = h.manager.states[REG]
        assert (state.failures, state.last_error) == (0, None)

    async def test_location_serves_stored_bundle_when_source_fails(self):
        """A new process whose source is down still hands out the stored bundle."""
        first = Harness(FakeSource([token("a", T0 + timedelta(hours=10))]))
        await first.refresh()
        restarted = Harness(FakeSource([CredentialError("down")]), store=first.store)
        restarted.clock.advance(6)
        location = await restarted.manager.location(REG)
        assert location.uri == f"memory://bundles/{NAME}"
        assert restarted.manager.states[REG].failures == 1

    async def test_location_fails_without_any_bundle(self):
        """With no stored bundle and a failing source there is nothing to hand out."""
        h = Harness(FakeSource([CredentialError("down")]))
        with pytest.raises(CredentialError, match=r"no bundle for registry\.example\.com: down"):
            await h.manager.location(REG)

    async def test_expired_credential_never_published(self):
        """A credential that has already expired is refused."""
        h = Harness(FakeSource([token("a", T0 - timedelta(seconds=1))]))
        with pytest.raises(CredentialError, match="expired"):
            await h.refresh()
        assert h.store.writes == 0

    async def test_empty_credential_never_published(self):
        """An empty password is refused, not written as an empty bundle."""
        h = Harness(FakeSource([token("", T0 + timedelta(hours=10))]))
        with pytest.raises(CredentialError, match="empty credential"):
            await h.refresh()
        assert h.store.writes == 0


class TestValidityFloor:
    async def test_short_token_does_not_replace_better_bundle(self):
        """A token below ``min_validity`` is refused while the stored bundle lasts longer."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=12)),
                                token("b", T0 + timedelta(hours=2))]))
        await h.refresh()
        with pytest.raises(CredentialError, match="less than min_validity"):
            await h.refresh(force=True)
        assert h.manifest.expires_at == T0 + timedelta(hours=12)
        assert h.store.writes == 1
        assert h.manager.states[REG].failures == 1

    async def test_short_token_replaces_worse_bundle(self):
        """Once the stored bundle has less left, the short token is published."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=12)),
                                token("b", T0 + timedelta(hours=13))]))
        await h.refresh()
        h.clock.advance(11)
        assert await h.refresh() == "published"
        assert h.manifest.expires_at == T0 + timedelta(hours=13)

    async def test_short_token_is_better_than_nothing(self):
        """Without a stored bundle a short-lived token is still published."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=1))]))
        assert await h.refresh() == "published"

    async def test_floor_is_configurable(self):
        """A lower ``min_validity`` lets the shorter token through."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=12)),
                                token("b", T0 + timedelta(hours=2))]), min_validity=HOUR)
        await h.refresh()
        assert await h.refresh(force=True) == "published"


class TestStaticSource:
    async def test_unchanged_content_not_rewritten(self):
        """A static source is re-read on every refresh; the same password writes nothing."""
        env = {"REG_PW": "first"}
        h = Harness(PasswordSource("robot", env_var="REG_PW", file=None, env=env))
        await h.refresh()
        assert await h.refresh() == "unchanged"
        assert h.store.writes == 1

    async def test_changed_password_publishes(self):
        """A rotated password shows up at the next refresh as a new bundle."""
        env = {"REG_PW": "first"}
        h = Harness(PasswordSource("robot", env_var="REG_PW", file=None, env=env))
        await h.refresh()
        first = h.manifest.sha256
        env["REG_PW"] = "second"
        assert await h.refresh() == "published"
        assert h.manifest.sha256 != first
