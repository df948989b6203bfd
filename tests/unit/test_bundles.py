"""BundleManager: expiry-driven refresh, validity floor and last known good, with a fake clock."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from structlog.testing import capture_logs

from controller.archive import MAX_BUNDLE_BYTES, build_bundle, content_hash
from controller.bundles import BundleManager, RefreshOutcome
from controller.credentials.base import CredentialSource
from controller.credentials.kinds import EcrCredentials, EcrSettings
from controller.credentials.password import PasswordSource
from controller.dryrun import Recorder, RecordingStore
from controller.errors import CredentialError, NotLeaderError
from controller.model import BundleManifest, RegistryCredential, Secret
from controller.plan import bundle_name
from controller.settings import RegistrySettings
from controller.storage.memory import MemoryStore
from tests.clock import FakeClock

REG = "registry.example.com"
NAME = bundle_name(REG)
HOUR = 3600.0
T0 = datetime(2030, 1, 1, tzinfo=UTC)


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
        credentials=EcrCredentials(ecr=EcrSettings(region="us-east-1")),
        max_age=max_age, min_validity=min_validity)


class Harness:
    def __init__(self, source: CredentialSource, *, store: MemoryStore | None = None,
                 jitter: float = 1.0, **settings: float) -> None:
        self.clock = FakeClock(0.0, epoch=T0)
        self.source = source
        self.store = store or MemoryStore()
        self.observed: list[RefreshOutcome] = []
        self.manager = BundleManager(
            {REG: registry_settings(**settings)}, {REG: source}, self.store,
            now=self.clock.wall, jitter=lambda: jitter, observer=self)

    def on_publish(self, registry: str, outcome: RefreshOutcome,
                   manifest: BundleManifest | None) -> None:
        """The harness is the manager's ``PublishObserver``: it keeps the outcomes in order."""
        self.observed.append(outcome)

    @property
    def manifest(self) -> BundleManifest:
        return self.store.manifests[NAME]

    async def refresh(self) -> RefreshOutcome:
        return await self.manager.refresh(REG)


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
        h.clock.advance(4.9 * HOUR)
        assert await h.refresh() == "not_due"
        assert source.calls == 1

    async def test_refreshed_at_half_life(self):
        """At half-life a new token is fetched and published, due again at its half-life."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=10)),
                                token("b", T0 + timedelta(hours=15))]))
        await h.refresh()
        h.clock.advance(5 * HOUR)
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
        h.clock.advance(5 * HOUR)
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
        h.clock.advance(5 * HOUR)
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
        restarted.clock.advance(6 * HOUR)
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
                                token("b", T0 + timedelta(hours=8))]))
        await h.refresh()
        h.clock.advance(6 * HOUR)  # the first bundle falls due; the new token has 2 hours left
        with pytest.raises(CredentialError, match="less than min_validity"):
            await h.refresh()
        assert h.manifest.expires_at == T0 + timedelta(hours=12)
        assert h.store.writes == 1
        assert h.manager.states[REG].failures == 1

    async def test_short_token_replaces_worse_bundle(self):
        """Once the stored bundle has less left, the short token is published."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=12)),
                                token("b", T0 + timedelta(hours=13))]))
        await h.refresh()
        h.clock.advance(11 * HOUR)
        assert await h.refresh() == "published"
        assert h.manifest.expires_at == T0 + timedelta(hours=13)

    async def test_short_token_is_better_than_nothing(self):
        """Without a stored bundle a short-lived token is still published."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=1))]))
        assert await h.refresh() == "published"

    async def test_floor_is_configurable(self):
        """A lower ``min_validity`` lets the shorter token through."""
        h = Harness(FakeSource([token("a", T0 + timedelta(hours=12)),
                                token("b", T0 + timedelta(hours=8))]), min_validity=HOUR)
        await h.refresh()
        h.clock.advance(6 * HOUR)  # the first bundle falls due; the new token has 2 hours left
        assert await h.refresh() == "published"


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


TAMPERED = build_bundle(REG, RegistryCredential(username="mallory", password=Secret("x")),
                        "config.json")
"""A well-formed bundle of the right layout, holding someone else's credential."""


class TestServedBundleCheck:
    async def published(self, *results: RegistryCredential | Exception) -> Harness:
        h = Harness(FakeSource([token("good", T0 + timedelta(hours=10)), *results]))
        assert await h.refresh() == "published"
        return h

    @pytest.mark.parametrize("damage", [
        lambda data: TAMPERED,
        lambda data: data[:-10],
        lambda data: b"",
        lambda data: data + bytes(MAX_BUNDLE_BYTES),
    ], ids=["tampered", "truncated", "emptied", "oversized"])
    async def test_bad_bytes_are_repaired_before_due(self, damage):
        """Bytes that do not match the record are published again at the next check, due or not."""
        h = await self.published(token("current", T0 + timedelta(hours=10)))
        h.store.bundles[NAME] = damage(h.store.bundles[NAME])
        h.clock.advance(HOUR)
        assert await h.refresh() == "repaired"
        assert content_hash(h.store.bundles[NAME]) == h.manifest.sha256
        assert h.manager.states[REG].repairs == 1
        assert h.observed == ["published", "repaired"]

    async def test_missing_bytes_are_repaired(self):
        """A record whose bundle is gone is repaired, not taken for a first publish."""
        h = await self.published(token("current", T0 + timedelta(hours=10)))
        del h.store.bundles[NAME]
        assert await h.refresh() == "repaired"
        assert NAME in h.store.bundles

    async def test_consistent_but_hostile_archive_is_repaired(self):
        """Bytes and record replaced together still fail inspection: a link is never served."""
        h = await self.published(token("current", T0 + timedelta(hours=10)))
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            link = tarfile.TarInfo(".docker")
            link.type = tarfile.SYMTYPE
            link.linkname = "/root/.docker"
            tar.addfile(link)
        hostile = gzip.compress(raw.getvalue())
        h.store.bundles[NAME] = hostile
        h.store.manifests[NAME] = msgspec.structs.replace(h.manifest, sha256=content_hash(hostile))
        with capture_logs() as logs:
            assert await h.refresh() == "repaired"
        assert [e["reason"] for e in logs if e["event"] == "bundle_repaired"] == [
            "the bundle holds a link"]

    async def test_repair_is_logged_in_words_without_secrets(self):
        """``bundle_repaired`` says why in words and carries no credential."""
        h = await self.published(token("current-secret", T0 + timedelta(hours=10)))
        h.store.bundles[NAME] = TAMPERED
        with capture_logs() as logs:
            await h.refresh()
        repaired = [e for e in logs if e["event"] == "bundle_repaired"]
        assert [e["reason"] for e in repaired] == [
            "the bundle's bytes differ from the recorded hash"]
        assert "current-secret" not in repr(logs)

    async def test_status_shows_served_hash_until_repaired(self):
        """While the repair fails, the state carries the hash of the bytes actually served."""
        h = await self.published(CredentialError("ECR is down"))
        h.store.bundles[NAME] = TAMPERED
        with pytest.raises(CredentialError):
            await h.refresh()
        state = h.manager.states[REG]
        assert state.manifest is not None
        assert state.manifest.sha256 == content_hash(TAMPERED) != h.manifest.sha256
        assert state.damage == "the bundle's bytes differ from the recorded hash"
        assert h.observed == ["published", "failed"]

    async def test_repair_refuses_an_expired_credential(self):
        """A repair publishes the current credential only: an expired one is refused."""
        h = await self.published(token("old", T0 - timedelta(hours=1)))
        h.store.bundles[NAME] = TAMPERED
        with pytest.raises(CredentialError, match="expired"):
            await h.refresh()
        assert h.store.writes == 1

    async def test_repair_ignores_the_validity_floor(self):
        """A short token may replace damaged bytes: the stored bundle is no better to keep."""
        h = await self.published(token("short", T0 + timedelta(hours=1)))
        h.store.bundles[NAME] = TAMPERED
        assert await h.refresh() == "repaired"
        assert h.manifest.expires_at == T0 + timedelta(hours=1)

    async def test_dry_run_reports_damage_and_writes_nothing(self):
        """In a dry run, damage is recorded but nothing is written."""
        h = await self.published()
        h.store.bundles[NAME] = TAMPERED
        dry = BundleManager({REG: registry_settings()},
                            {REG: FakeSource([token("new", T0 + timedelta(hours=10))])},
                            RecordingStore(h.store, Recorder()), now=h.clock.wall)
        assert await dry.refresh(REG) == "dry_run"
        assert dry.states[REG].damage == "the bundle's bytes differ from the recorded hash"
        assert (h.store.writes, h.store.bundles[NAME]) == (1, TAMPERED)

    async def test_good_bytes_are_left_alone(self):
        """A bundle that checks out is not rewritten and shows no damage."""
        h = await self.published()
        assert await h.refresh() == "not_due"
        assert (h.store.writes, h.manager.states[REG].damage) == (1, None)



class TestPrune:
    async def store_with(self, *names: str) -> MemoryStore:
        store = MemoryStore()
        for name in names:
            await store.put_bundle(name, b"bundle", BundleManifest(
                registry=name, sha256="0" * 64, format="config.json", created_at=T0,
                refresh_at=T0))
        return store

    async def test_deletes_only_stale_bundles_of_the_owner(self):
        """Bundles of registries no longer configured go; configured and foreign ones stay."""
        stale = bundle_name("old.example.com")
        foreign = "pullsecret_blue_old.example.com.tar.gz"
        store = await self.store_with(NAME, stale, foreign, "unrelated.tar.gz")
        h = Harness(FakeSource([]), store=store)
        assert await h.manager.prune() == [stale]
        assert await store.list_names() == sorted([NAME, foreign, "unrelated.tar.gz"])

    async def test_lone_record_is_deleted(self):
        """A record left without its bundle is stale too."""
        store = await self.store_with(bundle_name("old.example.com"))
        del store.bundles[bundle_name("old.example.com")]
        await Harness(FakeSource([]), store=store).manager.prune()
        assert store.manifests == {}

    async def test_fenced(self):
        """A replica that is not the leader deletes nothing."""
        store = await self.store_with(bundle_name("old.example.com"))

        async def not_leader() -> int | None:
            raise NotLeaderError("lost the lease")

        manager = BundleManager({REG: registry_settings()}, {REG: FakeSource([])}, store,
                                fence=not_leader)
        with pytest.raises(NotLeaderError):
            await manager.prune()
        assert await store.list_names() == [bundle_name("old.example.com")]

    async def test_dry_run_lists_without_deleting(self):
        """A dry run returns what it would delete and deletes nothing."""
        store = await self.store_with(bundle_name("old.example.com"))
        recorder = Recorder()
        manager = BundleManager({REG: registry_settings()}, {REG: FakeSource([])},
                                RecordingStore(store, recorder))
        assert await manager.prune() == [bundle_name("old.example.com")]
        assert recorder.counts == {"delete": 1}
        assert await store.list_names() == [bundle_name("old.example.com")]

