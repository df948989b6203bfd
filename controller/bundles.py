"""Keeps one current bundle per registry in storage, and knows where tasks fetch it.

A refresh first checks what is served: it reads the stored bytes back (bounded), compares their
SHA-256 with the record, and inspects the archive as hostile input. Bytes that are missing,
tampered with, cut short, replaced by a link or unreadable are repaired at once by publishing
again from the current credential (outcome ``repaired``). Otherwise it reads the credential,
builds the archive in memory (deterministic bytes), and writes only when the content hash
differs from the stored record or the bundle is due. A failed refresh writes nothing, so the
last good bundle stays in place.

A credential that differs from the stored one is first tried against its registry (a
``CredentialVerifier``, per the registry's ``verify`` mode) before anything is written: one the
registry refuses, or under ``required`` one that could not be confirmed, is not published
(``CredentialError``: the last good bundle stays and the engine retries with backoff). While the
source's credential stands refused, and when a caller asks (``verify_current``), the unchanged
credential is tried again too, so a fix on either side is seen, but never more often than the
``LoginGate`` allows: a refused credential is tried again only once the source gives another or
``refused_login_interval`` has passed.

In a dry run (``plan``) the store and the verifiers only record what they are asked to do
(``controller.dryrun``): a refresh goes as far as its first recorded request, and says in
words what it would have done (``previews``); nothing is published and no registry is asked.

Expiring credentials (ECR tokens, helper tokens) are re-fetched at the earlier of ``max_age``
and half their remaining lifetime, less a little jitter so replicas and registries spread out.
A fresh credential is refused (``CredentialError``, retried with backoff by the engine) when it
is empty or already expired, or when it is valid for less than ``min_validity`` while the
stored bundle lasts longer: a source handing out a nearly spent token must not replace a
better bundle. Once the stored bundle has less left than the new token, the new one wins, so
a source that can never reach the floor still gets its tokens published.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

import msgspec
import structlog

from controller.archive import (
    MAX_BUNDLE_BYTES,
    bundle_content,
    content_hash,
    inspect_bundle,
    pack,
)
from controller.backoff import Backoff
from controller.credentials.base import CredentialSource
from controller.election import Fence, no_fence
from controller.errors import (
    CredentialError,
    InvalidBundleError,
    RequestRecorded,
    TransientError,
    WriteRecorded,
)
from controller.fingerprint import fingerprint
from controller.logingate import LoginAttempt, LoginGate
from controller.model import BundleLocation, BundleManifest, RefreshOutcome, RegistryCredential
from controller.plan import DEFAULT_OWNER, bundle_name, entry_owner
from controller.registryapi.results import CredentialVerifier, LoginOutcome, LoginResult
from controller.settings import RegistrySettings, VerifyMode
from controller.storage.base import BundleStore

__all__ = ["BundleManager", "LoginCheck", "PublishObserver", "RegistryState"]

log = structlog.get_logger(component="bundles")

REJECTED_RECHECK = Backoff(5.0, 30.0)
"""While a password or docker config source stands refused, when it is read again: a fixed
source goes out within 30 s, not after a backoff grown to minutes. Reading it costs no login;
only a changed credential is tried at the registry."""



class PublishObserver(Protocol):
    """What the publisher reports of each refresh (``Metrics`` is one)."""

    def on_publish(self, registry: str, outcome: RefreshOutcome,
                   manifest: BundleManifest | None) -> None: ...

    def on_login(self, registry: str, result: LoginAttempt, rejected: bool) -> None:
        """A login with ``registry`` (or one the gate withheld): its outcome, and whether the
        source's credential now stands refused."""


class _Unobserved:
    def on_publish(self, registry: str, outcome: RefreshOutcome,
                   manifest: BundleManifest | None) -> None:
        pass

    def on_login(self, registry: str, result: LoginAttempt, rejected: bool) -> None:
        pass


class LoginCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One login with the source's credential, for ``/status``; never a secret."""

    result: LoginOutcome
    detail: str
    at: datetime
    sha256: str
    """The hash of the tar built from the credential tried (``bundle_content``): tells one
    credential from another; never shown."""


class RegistryState(msgspec.Struct):
    """What this process knows of one registry's bundle (for ``/status`` and scheduling)."""

    manifest: BundleManifest | None = None
    verified: bool = False
    """The stored bundle was checked (or written) by this process."""
    failures: int = 0
    last_error: str | None = None
    damage: str | None = None
    """Why the served bytes were found bad at the last check; ``None`` once they are good."""
    repairs: int = 0
    """Bundles found bad and published again by this process."""
    verify: VerifyMode = "off"
    """How new credentials are tried against the registry (its ``verify`` setting)."""
    login: LoginCheck | None = None
    """The last login with the source's credential; ``None`` before the first."""
    credentials_rejected: bool = False
    """The registry refused the credential the source gives now, at its last login: nothing
    from it is published, and it is tried again with backoff until it or the registry is
    fixed."""
    published_verified: bool = False
    """The last write by this process was of a credential the registry accepted right before."""
    next_login: datetime | None = None
    """While the registry's refusal of the source's credential holds a login back: when the
    same credential may be tried again (``LoginGate``)."""


class BundleManager:
    def __init__(
        self,
        registries: Mapping[str, RegistrySettings],
        sources: Mapping[str, CredentialSource],
        store: BundleStore,
        *,
        fence: Fence = no_fence,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = lambda: random.uniform(0.9, 1.0),  # noqa: S311
        observer: PublishObserver | None = None,
        owner: str = DEFAULT_OWNER,
        verifiers: Mapping[str, CredentialVerifier] | None = None,
    ) -> None:
        """``verifiers`` log in to the registries whose ``verify`` is not ``off``; a registry
        without one is never verified."""
        self._registries = registries
        self._owner = owner
        self._sources = sources
        self._store = store
        self._fence = fence
        self._now = now
        self._jitter = jitter
        self._observer: PublishObserver = observer if observer is not None else _Unobserved()
        self._locks = {registry: asyncio.Lock() for registry in registries}
        self._verifiers = {registry: verifier for registry, verifier in (verifiers or {}).items()
                           if registries[registry].verify != "off"}
        self.states = {registry: RegistryState(verify=settings.verify if registry in
                                               self._verifiers else "off")
                       for registry, settings in registries.items()}
        self.gate = LoginGate(interval=lambda r: registries[r].refused_login_interval, now=now)
        """Whether a credential may be tried at its registry now (logins, image checks)."""
        self.previews: dict[str, str] = {}
        """What the last refresh of each registry that wrote nothing did, in words: found the
        bundle unchanged, or (a dry run) would have verified and published, had its login or
        its write not only been recorded."""
        self._publish_recorded: set[str] = set()
        """Registries whose publish was recorded, not made (a dry run): their apps are planned
        with the bundle's location though none is stored yet."""
        self._current: dict[str, tuple[RegistryCredential, str]] = {}

    def credential(self, registry: str) -> tuple[RegistryCredential, str] | None:
        """The credential the served bundle holds, and the bundle's digest, once this process
        has published or confirmed it (``None`` before); never shown, only used (image
        checks)."""
        return self._current.get(registry)

    @property
    def home(self) -> str:
        """Where tasks fetch this controller's bundles from (``BundleStore.home``)."""
        return self._store.home

    async def location(self, registry: str) -> BundleLocation:
        """The bundle of ``registry``, refreshing it first if this process has not checked it.

        A failed first refresh still serves the stored bundle (last known good) and is not
        retried here; the registry's own key retries it with backoff. Raises
        ``CredentialError``/``StorageError`` only when there is no bundle at all, nor a publish
        of one recorded (a dry run).
        """
        state = self.states[registry]
        if not state.verified and not state.failures:
            with contextlib.suppress(TransientError):  # recorded in state by refresh()
                await self.refresh(registry)
        if state.manifest is None and registry not in self._publish_recorded:
            raise CredentialError(f"no bundle for {registry}: {state.last_error}")
        return await self._store.location(bundle_name(registry, self._owner))

    def verifies(self, registry: str) -> bool:
        """Whether ``registry``'s credentials are tried against it before they are published."""
        return registry in self._verifiers

    async def refresh(self, registry: str, *, verify_current: bool = False) -> RefreshOutcome:
        """Bring the stored bundle of ``registry`` up to date; one refresh per registry at once.

        ``verify_current`` tries the source's credential against the registry even when it is
        the stored one (evidence such as a failed pull questions it). Raises the source's,
        the login's or storage's error after recording it; the stored bundle is kept.
        """
        async with self._locks[registry]:
            state = self.states[registry]
            try:
                outcome = await self._refresh(registry, state, verify_current=verify_current)
            except Exception as e:
                state.failures += 1
                state.last_error = str(e)
                self._observer.on_publish(registry, "failed", state.manifest)
                log.warning("bundle_refresh_failed", registry=registry, error=str(e),
                            failures=state.failures)
                raise
            state.failures = 0
            state.last_error = None
            state.verified = True
            self._observer.on_publish(registry, outcome, state.manifest)
            return outcome

    async def prune(self) -> list[str]:
        """Delete this controller's bundles that no configured registry uses any more;
        returns their names (in a dry run: the names; the deletes are only recorded).

        Other controllers' bundles in the same store are told apart by the owner in their
        names. Every delete is fenced like a publish. Run it only once apps no longer fetch
        the stale bundles, or their new tasks fail to fetch them.
        """
        keep = {bundle_name(registry, self._owner) for registry in self._registries}
        stale = [name for name in await self._store.list_names()
                 if entry_owner(name) == self._owner and name not in keep]
        recorded: list[str] = []
        for name in stale:
            await self._fence()
            try:
                await self._store.delete(name)
            except WriteRecorded:
                recorded.append(name)
                continue
            log.info("bundle_deleted", bundle=name)
        if recorded:
            log.info("bundle_delete_skipped", bundles=recorded, reason="dry_run")
        return stale

    async def cleanup(self) -> list[str]:
        """Remove what interrupted writes left in the store (temp files holding a credential);
        fenced, and nothing in a dry run. Returns the names removed."""
        await self._fence()
        try:
            return await self._store.cleanup()
        except WriteRecorded:
            return []

    def refresh_in(self, registry: str) -> float | None:
        """Seconds until ``registry``'s bundle is due, for ``add_after`` scheduling."""
        manifest = self.states[registry].manifest
        if manifest is None:
            return None
        return max(0.0, (manifest.refresh_at - self._now()).total_seconds())

    async def _refresh(self, registry: str, state: RegistryState, *,
                       verify_current: bool) -> RefreshOutcome:
        settings = self._registries[registry]
        source = self._sources[registry]
        name = bundle_name(registry, self._owner)
        stored = await self._store.get_manifest(name)
        state.manifest, state.damage, recorded = await self._check_served(name, stored)
        if state.damage is not None:
            log.warning("bundle_damaged", registry=registry, reason=state.damage)
            stored = None  # no floor to defend, nothing to keep: publish what is current
        now = self._now()
        due = (stored is None or now >= stored.refresh_at
               or stored.format != settings.format)
        questioned = verify_current or state.credentials_rejected
        if not due and source.expiring and not questioned:
            return "not_due"
        credential = await source.fetch()
        _check_usable(registry, settings, credential, stored, now)
        content = bundle_content(registry, credential, settings.format)
        digest = content_hash(content)  # the credential's identity: it never leaves the process
        unchanged = not due and stored is not None and recorded == digest
        try:
            login = None
            if digest != recorded or questioned:
                login = await self._verify(registry, credential, digest,
                                           recheck=None if source.expiring
                                           else REJECTED_RECHECK.delay(state.failures + 1))
            if unchanged:
                self._current[registry] = (credential, digest)
                self.previews[registry] = _UNCHANGED
                return "unchanged"
            epoch = await self._fence()
            data = pack(content)
            manifest = BundleManifest(
                registry=registry, sha256=content_hash(data), format=settings.format,
                created_at=now, refresh_at=self._refresh_at(settings, credential, now),
                expires_at=credential.expires_at, leader_epoch=epoch,
            )
            await self._store.put_bundle(name, data, manifest)
        except RequestRecorded:  # a dry run: the login or the write was only recorded
            if unchanged:  # the login asked for was recorded
                self.previews[registry] = _UNCHANGED
                return "unchanged"
            self.previews[registry] = _preview(stored=stored, damage=state.damage,
                                               changed=digest != recorded,
                                               verified=self.verifies(registry))
            self._publish_recorded.add(registry)
            return "dry_run"
        self.previews.pop(registry, None)
        state.manifest = manifest
        self._current[registry] = (credential, digest)
        state.published_verified = login is not None and login.result == "accepted"
        fields = {"registry": registry, "fingerprint": fingerprint(manifest.sha256),
                  "refresh_at": manifest.refresh_at.isoformat(),
                  "expires_at": _iso(manifest.expires_at)}
        if state.damage is not None:
            log.info("bundle_repaired", reason=state.damage, **fields)
            state.damage = None
            state.repairs += 1
            return "repaired"
        log.info("bundle_published", **fields)
        return "published"

    async def _verify(self, registry: str, credential: RegistryCredential, digest: str, *,
                      recheck: float | None) -> LoginResult | None:
        """Log in with ``credential`` (``None`` when the registry is not verified), if the
        ``LoginGate`` lets it be tried now.

        Raises ``CredentialError`` when the gate withholds the login (a login counted as
        ``withheld``), when the ``verify`` mode stops the credential, and when a credential the
        registry refused before could not be confirmed now: either way nothing is published and
        the engine tries again, after ``recheck`` seconds while the refusal stands (the source
        is read again then; only another credential, or the gate's interval, means a login).
        """
        verifier = self._verifiers.get(registry)
        if verifier is None:
            return None
        state = self.states[registry]
        refused_before = (state.credentials_rejected and state.login is not None
                          and state.login.sha256 == digest)
        until = self.gate.withheld_until(registry, digest)
        if until is not None:
            self._observer.on_login(registry, "withheld", state.credentials_rejected)
            detail = state.login.detail if state.login is not None else "refused"
            raise CredentialError(
                f"{registry}: the registry rejected this credential ({detail}); the same "
                f"credential is tried again at {until:%Y-%m-%d %H:%M:%S} UTC at the earliest, "
                "a changed one at once; nothing is published, the last good bundle stays",
                retry_after=recheck)
        login = await verifier.verify(credential)
        self.gate.record(registry, digest, login.result)
        state.next_login = self.gate.next_attempt(registry)
        state.credentials_rejected = login.result == "rejected" or (
            refused_before and login.result != "accepted")
        state.login = LoginCheck(result=login.result, detail=login.detail, at=self._now(),
                                 sha256=digest)
        self._observer.on_login(registry, login.result, state.credentials_rejected)
        if login.result == "rejected":
            problem = f"the registry rejected the credential: {login.detail}"
        elif login.blocks_publishing(state.verify):
            problem = (f"verify is required and the login was not accepted ({login.result}: "
                       f"{login.detail})")
        elif state.credentials_rejected:
            problem = (f"the registry rejected this credential before and the login now was "
                       f"not conclusive ({login.result}: {login.detail})")
        else:
            return login
        log.warning("bundle_publish_blocked", registry=registry, result=login.result,
                    detail=login.detail, verify=state.verify)
        raise CredentialError(f"{registry}: {problem}; nothing is published, the last good "
                              "bundle stays",
                              retry_after=recheck if state.credentials_rejected else None)

    async def _check_served(self, name: str, stored: BundleManifest | None
                            ) -> tuple[BundleManifest | None, str | None, str | None]:
        """The record with the hash of the bytes actually served (``None`` when none could be
        read), what is wrong with them (``None`` when nothing is, or when there is no record
        to check them against), and the hash of the credential they hold (their tar, as
        ``bundle_content`` builds it; ``None`` unless they are sound)."""
        if stored is None:
            return None, None, None
        try:
            data = await self._store.read_bundle(name, MAX_BUNDLE_BYTES)
        except InvalidBundleError as e:
            return None, str(e), None
        if data is None:
            return None, "the bundle is missing while its record is there", None
        served = msgspec.structs.replace(stored, sha256=content_hash(data))
        if served.sha256 != stored.sha256:
            return served, "the bundle's bytes differ from the recorded hash", None
        try:
            content = inspect_bundle(data, stored.format)
        except InvalidBundleError as e:
            return served, str(e), None
        return served, None, content_hash(content)

    def _refresh_at(self, settings: RegistrySettings, credential: RegistryCredential,
                    now: datetime) -> datetime:
        """The earlier of ``max_age`` and half the remaining lifetime, less a little jitter."""
        interval = settings.max_age
        if credential.expires_at is not None:
            interval = min(interval, (credential.expires_at - now).total_seconds() / 2)
        return now + timedelta(seconds=max(1.0, interval * self._jitter()))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


_UNCHANGED = "unchanged: the stored bundle holds the source's credential"


def _preview(*, stored: BundleManifest | None, damage: str | None, changed: bool,
             verified: bool) -> str:
    """What a refresh would do, in words (``plan``): the same as a refresh with a login, unless
    the registry refuses the credential at the login the words announce."""
    verb = "would verify, then publish" if verified else "would publish"
    if damage is not None:
        return f"{verb} the bundle again: {damage}"
    if stored is None:
        return f"{verb} a new bundle: none is stored yet"
    if changed:
        return f"{verb} a new bundle: the source's credential changed"
    return "would publish the bundle again: it is due (max_age or the credential's expiry)"


def _check_usable(registry: str, settings: RegistrySettings, credential: RegistryCredential,
                  stored: BundleManifest | None, now: datetime) -> None:
    """Refuse an empty or expired credential, and one below the validity floor while the
    stored bundle is better; the messages carry times, never the credential."""
    if not credential.username or not credential.password:
        raise CredentialError(f"{registry}: the source returned an empty credential")
    expires_at = credential.expires_at
    if expires_at is None:
        return
    left = (expires_at - now).total_seconds()
    if left <= 0:
        raise CredentialError(f"{registry}: the source returned a credential that expired at "
                              f"{expires_at.isoformat()}")
    if (left < settings.min_validity and stored is not None and stored.expires_at is not None
            and stored.expires_at > expires_at):
        raise CredentialError(
            f"{registry}: the new credential is valid for {left:.0f}s only, less than "
            f"min_validity ({settings.min_validity:.0f}s), and the stored bundle lasts until "
            f"{stored.expires_at.isoformat()}; keeping it")
