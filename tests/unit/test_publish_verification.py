"""Verify before publish: which login outcomes stop a bundle under each ``verify`` mode.

The mode matrix runs the real ``RegistryLogin`` against the real htpasswd ``docker-registry``
(accepted, rejected) and a closed loopback port (unreachable); the rejected-then-fixed story
and the reconciler's hooks use a scripted verifier at our own ``CredentialVerifier`` port.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from controller.appindex import AppIndex
from controller.bundles import REJECTED_RECHECK, BundleManager
from controller.credentials.kinds import PasswordFileCredentials
from controller.credentials.password import PasswordSource
from controller.dryrun import Recorder, RecordingRegistry, RecordingStore
from controller.errors import CredentialError
from controller.model import RegistryCredential
from controller.plan import bundle_name
from controller.registryapi.login import RegistryLogin
from controller.registryapi.results import LOGIN_OUTCOMES, LoginOutcome, LoginResult
from controller.registryreconciler import RegistryReconciler, VerificationRequests
from controller.settings import RegistrySettings, VerifyMode
from controller.storage.memory import MemoryStore
from tests.clock import FakeClock
from tests.services import free_port

T0 = datetime(2030, 1, 1, tzinfo=UTC)
RELOGIN = timedelta(minutes=5)
"""``registries[].refused_login_interval``'s default."""
MODES: tuple[VerifyMode, ...] = ("required", "best_effort", "off")

# Whether a credential with this login outcome is published, per mode.
PUBLISHED: dict[tuple[VerifyMode, LoginOutcome], bool] = {
    ("required", "accepted"): True, ("required", "rejected"): False,
    ("required", "unreachable"): False, ("required", "error"): False,
    ("best_effort", "accepted"): True, ("best_effort", "rejected"): False,
    ("best_effort", "unreachable"): True, ("best_effort", "error"): True,
    ("off", "accepted"): True, ("off", "rejected"): True,
    ("off", "unreachable"): True, ("off", "error"): True,
}


@pytest.mark.parametrize(("mode", "result"), list(PUBLISHED), ids="-".join)
def test_blocks_publishing_per_mode(mode: VerifyMode, result: LoginOutcome) -> None:
    """required publishes only an accepted credential; best_effort stops only a refusal."""
    login = LoginResult(result=result, detail="")
    assert login.blocks_publishing(mode) is not PUBLISHED[mode, result]


def test_the_table_covers_every_outcome() -> None:
    """No outcome is left out of the decision table."""
    assert {result for _, result in PUBLISHED} == set(LOGIN_OUTCOMES)


def registry_settings(host: str, mode: VerifyMode, password_file: Path) -> RegistrySettings:
    return RegistrySettings(
        host=host, registry=host, verify=mode,
        credentials=PasswordFileCredentials(username="ci-puller", password_file=password_file))


@dataclass
class Logins:
    """What the publish observer was told of logins."""

    seen: list[tuple[str, str, bool]] = field(default_factory=list)

    def on_publish(self, registry: str, outcome: object, manifest: object) -> None:
        pass

    def on_login(self, registry: str, result: LoginOutcome, rejected: bool) -> None:
        self.seen.append((registry, result, rejected))

    def results(self) -> list[str]:
        return [result for _, result, _ in self.seen]


class TokenLikeSource(PasswordSource):
    """A password source that says it hands out expiring tokens (as ECR and helpers do)."""

    expiring = True


def manager_for(host: str, mode: VerifyMode, password_file: Path, verifier: object,
                store: MemoryStore, logins: Logins, *, expiring: bool = False,
                **options: object) -> BundleManager:
    settings = registry_settings(host, mode, password_file)
    kind = TokenLikeSource if expiring else PasswordSource
    source = kind("ci-puller", env_var=None, file=password_file, env={})
    options.setdefault("now", lambda: T0)
    return BundleManager({host: settings}, {host: source}, store,
                         verifiers={host: verifier}, observer=logins,  # type: ignore[dict-item]
                         jitter=lambda: 1.0, **options)  # type: ignore[arg-type]


@pytest.mark.e2e
class TestModesAgainstTheRealRegistry:
    """Each mode, with what the real registry (or a closed port) makes of the credential."""

    @pytest.fixture
    async def session(self) -> Iterator[aiohttp.ClientSession]:
        async with aiohttp.ClientSession() as session:
            yield session

    @pytest.fixture(params=["accepted", "rejected", "unreachable"])
    def case(self, request, registry, tmp_path) -> tuple[str, str, LoginOutcome]:
        """A registry host and a password file that give the named outcome."""
        outcome: LoginOutcome = request.param
        host = registry.host if outcome != "unreachable" else f"127.0.0.1:{free_port()}"
        password = "wrong-password" if outcome == "rejected" else registry.password
        password_file = tmp_path / "password"
        password_file.write_text(password)
        return host, str(password_file), outcome

    @pytest.mark.parametrize("mode", MODES)
    async def test_publishes_only_what_the_mode_allows(self, case, mode, session, registry):
        """The bundle is written, or the last good one kept with a CredentialError, and the
        login is counted (none under off)."""
        host, password_file, outcome = case
        store, logins = MemoryStore(), Logins()
        login = RegistryLogin(session, host, timeout_seconds=5)
        manager = manager_for(host, mode, Path(password_file), login, store, logins)
        if PUBLISHED[mode, outcome]:
            assert await manager.refresh(host) == "published"
            assert bundle_name(host) in store.manifests
        else:
            with pytest.raises(CredentialError, match="nothing is published") as caught:
                await manager.refresh(host)
            assert store.manifests == {}
            assert registry.password not in str(caught.value)
        state = manager.states[host]
        if mode == "off":
            assert (logins.seen, state.login, state.verify) == ([], None, "off")
            return
        assert logins.seen == [(host, outcome, outcome == "rejected")]
        assert state.login is not None
        assert state.login.result == outcome
        assert state.credentials_rejected is (outcome == "rejected")
        assert state.published_verified is (outcome == "accepted")
        assert registry.password not in state.login.detail


class ScriptedVerifier:
    """Answers logins from a script; records the passwords it was shown (test-only secrets)."""

    def __init__(self, *results: LoginOutcome) -> None:
        self.results = list(results)
        self.tried: list[str] = []

    async def verify(self, credential: RegistryCredential) -> LoginResult:
        self.tried.append(credential.password.reveal())
        return LoginResult(result=self.results.pop(0), detail="scripted")


REG = "registry.example.com"


class Harness:
    def __init__(self, tmp_path: Path, verifier: ScriptedVerifier,
                 mode: VerifyMode = "best_effort", *, expiring: bool = False,
                 **options: object) -> None:
        self.password_file = tmp_path / "password"
        self.password_file.write_text("old")
        self.store, self.logins, self.verifier = MemoryStore(), Logins(), verifier
        self.manager = manager_for(REG, mode, self.password_file, verifier, self.store,
                                   self.logins, expiring=expiring, **options)

    @property
    def state(self):
        return self.manager.states[REG]

    def stored_sha(self) -> str | None:
        manifest = self.store.manifests.get(bundle_name(REG))
        return manifest.sha256 if manifest else None


class TestRejectedThenFixed:
    async def test_refused_update_keeps_the_last_good_bundle(self, tmp_path):
        """A changed password the registry refuses is not written; the old bundle stays."""
        h = Harness(tmp_path, ScriptedVerifier("accepted", "rejected"))
        await h.manager.refresh(REG)
        good = h.stored_sha()
        h.password_file.write_text("typo")
        with pytest.raises(CredentialError, match="the registry rejected the credential"):
            await h.manager.refresh(REG)
        assert h.stored_sha() == good
        assert h.state.credentials_rejected
        assert h.state.failures == 1

    async def test_refused_credential_is_read_again_soon_and_a_fix_goes_out(self, tmp_path):
        """While refused, the source is read again within REJECTED_RECHECK (5 s, growing to
        30 s), but the unchanged credential is not tried at the registry again, not even when
        a failed pull asks (each such attempt is counted as withheld); a fixed file is then
        published, verified, and the refusal clears."""
        h = Harness(tmp_path, ScriptedVerifier("rejected", "accepted"))
        with pytest.raises(CredentialError) as refused:
            await h.manager.refresh(REG)
        assert refused.value.retry_after == REJECTED_RECHECK.delay(1) == 5
        with pytest.raises(CredentialError, match="rejected this credential") as again:
            await h.manager.refresh(REG)
        assert again.value.retry_after == REJECTED_RECHECK.delay(2) == 10
        for _ in range(5):
            with pytest.raises(CredentialError) as later:
                await h.manager.refresh(REG)
        assert later.value.retry_after == REJECTED_RECHECK.cap == 30
        assert h.verifier.tried == ["old"]
        with pytest.raises(CredentialError, match="tried again at 2030-01-01 00:05:00"):
            await h.manager.refresh(REG, verify_current=True)  # a failed pull asks: withheld
        assert h.verifier.tried == ["old"]
        h.password_file.write_text("fixed")
        assert await h.manager.refresh(REG) == "published"
        assert h.verifier.tried == ["old", "fixed"]
        assert not h.state.credentials_rejected
        assert h.state.published_verified
        assert h.logins.results() == ["rejected", *["withheld"] * 7, "accepted"]
        assert [rejected for _, _, rejected in h.logins.seen] == [True] * 8 + [False]

    async def test_a_storm_of_requests_costs_one_login_per_interval(self, tmp_path):
        """Fifty failed pulls over four minutes asking for a login with a refused credential:
        one refused login; at the interval, one more."""
        clock = FakeClock(0.0, epoch=T0)
        h = Harness(tmp_path, ScriptedVerifier("rejected", "rejected"), now=clock.wall)
        for i in range(50):
            clock.now = i * 240 / 50
            with pytest.raises(CredentialError):
                await h.manager.refresh(REG, verify_current=True)
        assert h.verifier.tried == ["old"]
        assert h.logins.results().count("withheld") == 49
        clock.now = RELOGIN.total_seconds()
        with pytest.raises(CredentialError):
            await h.manager.refresh(REG, verify_current=True)
        assert h.verifier.tried == ["old", "old"]
        assert h.manager.gate.next_attempt(REG) == T0 + 2 * RELOGIN

    async def test_refused_credential_is_tried_at_the_registry_again_later(self, tmp_path):
        """The account may be fixed at the registry: after refused_login_interval the same
        credential is tried again (and published once accepted)."""
        clock = FakeClock(0.0, epoch=T0)
        h = Harness(tmp_path, ScriptedVerifier("rejected", "accepted"), now=clock.wall)
        with pytest.raises(CredentialError):
            await h.manager.refresh(REG)
        assert h.manager.gate.next_attempt(REG) == T0 + RELOGIN
        clock.now = RELOGIN.total_seconds()
        assert await h.manager.refresh(REG) == "published"
        assert h.verifier.tried == ["old", "old"]

    async def test_expiring_sources_keep_the_backoff(self, tmp_path):
        """A token source is not asked every few seconds: no early retry is asked for."""
        h = Harness(tmp_path, ScriptedVerifier("rejected"), expiring=True)
        with pytest.raises(CredentialError) as refused:
            await h.manager.refresh(REG)
        assert refused.value.retry_after is None

    async def test_registry_down_does_not_clear_a_refusal_of_the_same_credential(self, tmp_path):
        """A refused credential that cannot be checked now stays refused and is retried."""
        clock = FakeClock(0.0, epoch=T0)
        h = Harness(tmp_path, ScriptedVerifier("rejected", "unreachable"), now=clock.wall)
        with pytest.raises(CredentialError):
            await h.manager.refresh(REG)
        clock.now = RELOGIN.total_seconds()
        with pytest.raises(CredentialError, match="rejected this credential before"):
            await h.manager.refresh(REG, verify_current=True)
        assert h.state.credentials_rejected
        assert h.stored_sha() is None

    async def test_new_credential_is_published_while_the_registry_is_down(self, tmp_path):
        """best_effort: another credential, unconfirmed only for want of a registry, goes out
        and the refusal of the old one no longer stands."""
        h = Harness(tmp_path, ScriptedVerifier("rejected", "unreachable"))
        with pytest.raises(CredentialError):
            await h.manager.refresh(REG)
        h.password_file.write_text("new")
        assert await h.manager.refresh(REG) == "published"
        assert not h.state.credentials_rejected
        assert not h.state.published_verified

    async def test_unchanged_credential_is_not_logged_in_again(self, tmp_path):
        """A bundle already stored for the same credential needs no new login."""
        h = Harness(tmp_path, ScriptedVerifier("accepted"))
        await h.manager.refresh(REG)
        assert await h.manager.refresh(REG) == "unchanged"
        assert h.verifier.tried == ["old"]

    async def test_current_credential_is_checked_on_request(self, tmp_path):
        """verify_current logs in with the unchanged credential; a refusal is recorded and
        raised though nothing new was to be published."""
        h = Harness(tmp_path, ScriptedVerifier("accepted", "rejected"))
        await h.manager.refresh(REG)
        good = h.stored_sha()
        with pytest.raises(CredentialError):
            await h.manager.refresh(REG, verify_current=True)
        assert h.state.credentials_rejected
        assert h.stored_sha() == good

    async def test_dry_run_never_logs_in_and_says_what_it_would_do(self, tmp_path):
        """A dry run (plan) contacts no registry: its login is recorded, and it says it would
        log in, then publish."""
        h = Harness(tmp_path, ScriptedVerifier("rejected"))
        recorder = Recorder()
        dry = manager_for(REG, "best_effort", h.password_file, RecordingRegistry(REG, recorder),
                          RecordingStore(h.store, recorder), h.logins)  # type: ignore[arg-type]
        assert await dry.refresh(REG) == "dry_run"
        assert recorder.counts == {"login": 1}
        assert (h.verifier.tried, h.logins.seen, h.store.manifests) == ([], [], {})
        assert not dry.states[REG].credentials_rejected
        assert dry.previews[REG] == (
            "would verify, then publish a new bundle: none is stored yet")

    async def test_off_never_logs_in(self, tmp_path):
        """verify: off publishes without a login, even on request."""
        h = Harness(tmp_path, ScriptedVerifier(), mode="off")
        assert await h.manager.refresh(REG, verify_current=True) == "published"
        assert not h.manager.verifies(REG)


class FakeQueue:
    def __init__(self) -> None:
        self.added: list[tuple[str, float]] = []

    def __call__(self, registry: str, delay: float) -> None:
        self.added.append((registry, delay))


class TestRegistryReconciler:
    def reconciler(self, h: Harness, **options: object
                   ) -> tuple[RegistryReconciler, VerificationRequests, FakeQueue, list[str]]:
        queue, published = FakeQueue(), []
        requests = VerificationRequests(h.manager, queue, **options)  # type: ignore[arg-type]
        reconciler = RegistryReconciler(h.manager, AppIndex(), requests,
                                        on_published=published.append)
        return reconciler, requests, queue, published

    async def test_request_checks_the_current_credential(self, tmp_path):
        """A requested verification queues the registry and logs in with the unchanged one."""
        h = Harness(tmp_path, ScriptedVerifier("accepted", "rejected"))
        reconciler, requests, queue, _ = self.reconciler(h)
        await reconciler.reconcile(REG)
        requests.ask(REG)
        assert queue.added == [(REG, 0.0)]
        with pytest.raises(CredentialError):
            await reconciler.reconcile(REG)
        assert h.state.credentials_rejected

    async def test_requests_are_coalesced(self, tmp_path):
        """A second request soon after a requested login waits out the interval."""
        clock = FakeClock()
        h = Harness(tmp_path, ScriptedVerifier("accepted", "accepted"))
        reconciler, requests, queue, _ = self.reconciler(h, clock=clock, min_interval=5.0)
        await reconciler.reconcile(REG)
        requests.ask(REG)
        await reconciler.reconcile(REG)
        clock.advance(2.0)
        requests.ask(REG)
        assert queue.added == [(REG, 0.0), (REG, 3.0)]

    async def test_no_request_is_queued_while_failing(self, tmp_path):
        """A failing registry is retried with backoff; a request must not jump it."""
        h = Harness(tmp_path, ScriptedVerifier("rejected", "accepted"))
        reconciler, requests, queue, _ = self.reconciler(h)
        with pytest.raises(CredentialError):
            await reconciler.reconcile(REG)
        requests.ask(REG)
        assert queue.added == []

    async def test_unverified_registries_are_read_again_and_unknown_ones_ignored(self, tmp_path):
        """With verify: off a request only queues a refresh (the source is read again, no
        login); a registry not configured queues nothing. A new bundle counts as the fix."""
        h = Harness(tmp_path, ScriptedVerifier(), mode="off")
        reconciler, requests, queue, published = self.reconciler(h)
        requests.ask(REG)
        requests.ask("elsewhere.example.com")
        assert [registry for registry, _ in queue.added] == [REG]
        await reconciler.reconcile(REG)
        assert published == [REG]
        assert h.verifier.tried == []

    async def test_on_published_only_for_a_verified_new_bundle(self, tmp_path):
        """The hook fires for an accepted new bundle, not for an unchanged or unconfirmed one."""
        h = Harness(tmp_path, ScriptedVerifier("accepted", "unreachable"))
        reconciler, _, _, published = self.reconciler(h)
        await reconciler.reconcile(REG)
        await reconciler.reconcile(REG)
        assert published == [REG]
        h.password_file.write_text("new")
        await reconciler.reconcile(REG)
        assert published == [REG]

    async def test_fixed_source_fires_on_published_after_a_refusal(self, tmp_path):
        """Rejected, then the file is fixed: the verified bundle goes out and the hook fires."""
        h = Harness(tmp_path, ScriptedVerifier("rejected", "accepted"))
        reconciler, _, _, published = self.reconciler(h)
        with pytest.raises(CredentialError):
            await reconciler.reconcile(REG)
        h.password_file.write_text("fixed")
        await reconciler.reconcile(REG)
        assert published == [REG]
        assert h.state.login is not None
        assert h.state.login.at - T0 == timedelta(0)
