"""Wiring: the only module that imports concrete adapters. It builds them from the settings,
credential sources and stores by the factories their registration tables name
(``controller.credentials.kinds``, ``controller.storage.backends``); ``controller.manager`` runs
them. A dry run is decided here alone: Marathon, the store and the registries are put behind
the recording adapters of ``controller.dryrun``, and the writes get no rate limit."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import fields, is_dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
import structlog

from controller import __version__
from controller.bundles import BundleManager
from controller.credentials.base import CredentialSource
from controller.credentials.kinds import CREDENTIAL_KINDS, SourceFactory
from controller.dryrun import (
    Marathon,
    Recorder,
    RecordingMarathon,
    RecordingRegistry,
    RecordingStore,
)
from controller.election import Election, Fence, no_fence
from controller.imagecheck import ImageChecks
from controller.marathon.client import MarathonClient
from controller.model import ErrorKind, ReconcileOutcome, RescueOutcome
from controller.presence import Presence, config_fingerprint
from controller.ratelimit import DeploymentBudget, NoRateLimit, RateLimit, TokenBucket, WriteGate
from controller.registryapi.login import RegistryLogin
from controller.registryapi.results import ImageCheckResult
from controller.settings import RegistrySettings, Settings, StorageSettings
from controller.storage.backends import STORAGE_BACKENDS, StoreFactory
from controller.storage.base import BundleStore
from controller.workqueue import QueueUnobserved

if TYPE_CHECKING:
    # The daemon's: a one-shot pass counts nothing (``Uncounted``).
    from controller.metrics import Metrics

__all__ = ["Components", "Uncounted", "build", "checks_images", "credential_source",
           "leader_election", "registry_logins", "store_from_settings", "user_agent"]

log = structlog.get_logger(component="wiring")


def credential_source(registry: RegistrySettings, env: Mapping[str, str]) -> CredentialSource:
    """The source of ``registry``'s credentials: its kind's factory (``CREDENTIAL_KINDS``),
    imported only now, when the config names the kind."""
    build: SourceFactory = _adapter(CREDENTIAL_KINDS.entry_of(registry.credentials).factory)
    return build(registry, env)


def checks_images(registry: RegistrySettings) -> bool:
    """``check_images``, which defaults to on unless ``verify`` is off."""
    return registry.verify != "off" if registry.check_images is None else registry.check_images


def registry_logins(registries: Iterable[RegistrySettings], session: aiohttp.ClientSession,
                    *, reconcile_seconds: float) -> dict[str, RegistryLogin]:
    """A login per registry that is verified or whose images are checked, taking at most half
    a reconcile (``reconcile_seconds``); an insecure one is named in a warning, as docker names
    its insecure registries. Raises ``ConfigError`` for a CA file that holds no certificate."""
    logins: dict[str, RegistryLogin] = {}
    for r in registries:
        if r.verify == "off" and not checks_images(r):
            continue
        if r.insecure:
            log.warning("registry_insecure", registry=r.registry,
                        detail="its login may use plain http and unverified TLS")
        logins[r.registry] = RegistryLogin(
            session, r.registry, repository=r.verify_repository, insecure=r.insecure,
            ca_file=r.ca_file, timeout_seconds=min(r.verify_timeout, reconcile_seconds / 2),
            user_agent=user_agent())
    return logins


def store_from_settings(settings: StorageSettings) -> BundleStore:
    """The configured storage backend: its factory (``STORAGE_BACKENDS``), imported only now,
    when the config names the backend."""
    build: StoreFactory = _adapter(STORAGE_BACKENDS.entry_of(settings).factory)
    return build(settings)


def leader_election(settings: Settings) -> Election | None:
    """ZooKeeper leader election when the config asks for it (kazoo is loaded only then)."""
    if settings.leader_election is None:
        return None
    from controller.leader import ZooKeeperElection

    return ZooKeeperElection(settings.leader_election, user_agent())


def _adapter(factory: str) -> Any:
    """The function a table entry names as ``module:function``, its module imported now."""
    module, _, name = factory.partition(":")
    return getattr(import_module(module), name)


def user_agent() -> str:
    """Names this process in Marathon's logs (and the simulator's write log)."""
    return (f"marathon-pullsecret-controller/{__version__} "
            f"({socket.gethostname()}/{os.getpid()})")


class Components(msgspec.Struct, kw_only=True):
    """The adapters of one run, built from the settings; the manager assembles the rest."""

    settings: Settings
    marathon: Marathon
    bundles: BundleManager
    budget: DeploymentBudget
    gate: WriteGate
    fence: Fence
    images: ImageChecks
    logins: Mapping[str, RegistryLogin]
    presence: Presence
    recorder: Recorder | None
    """A dry run's: what its adapters recorded instead of writing (``None``: a run that
    writes)."""

    @property
    def dry_run(self) -> bool:
        return self.recorder is not None

    def source_files(self) -> dict[str, list[Path]]:
        """Per registry, the files its credential comes from (those its kind names, e.g. a
        password file or a docker config, and its CA): watched, so that a rotation is picked up
        within seconds."""
        found = {r.registry: [*_paths(r.credentials), *([r.ca_file] if r.ca_file else [])]
                 for r in self.settings.registries}
        return {registry: files for registry, files in found.items() if files}

    def source_changed(self, registry: str) -> None:
        """A file of ``registry``'s credential changed: trust its CA file as it is now (the
        credential itself is read again by the refresh the caller queues)."""
        login = self.logins.get(registry)
        if login is not None:
            login.reload_trust()


@asynccontextmanager
async def build(
    settings: Settings,
    env: Mapping[str, str],
    *,
    dry_run: bool = False,
    fence: Fence = no_fence,
    metrics: Metrics | None = None,
) -> AsyncIterator[Components]:
    """Create every adapter for ``settings``, reporting to ``metrics``; close them on exit.

    A dry run (``dry_run``, or ``reconcile.dry_run``) reads Marathon and the store as a run
    does, and records what it would write or ask a registry instead (``controller.dryrun``).
    """
    rc = settings.reconcile
    recorder = Recorder() if dry_run or rc.dry_run else None
    async with aiohttp.ClientSession() as session:
        client = MarathonClient(settings.marathon, session, env=env, user_agent=user_agent(),
                                observer=metrics, planned_label=settings.selector.label)
        marathon: Marathon = client if recorder is None else RecordingMarathon(client, recorder)
        registries = {r.registry: r for r in settings.registries}
        logins = registry_logins(settings.registries, session,
                                 reconcile_seconds=settings.reconcile.timeout_seconds)
        asked: Mapping[str, RegistryLogin | RecordingRegistry] = (
            logins if recorder is None else {r: RecordingRegistry(r, recorder) for r in logins})
        store = store_from_settings(settings.storage)
        if recorder is not None:
            store = RecordingStore(store, recorder)
        bundles = BundleManager(
            registries,
            {r.registry: credential_source(r, env) for r in settings.registries},
            store,
            fence=fence, observer=metrics,
            owner=settings.controller.name,
            verifiers={r: login for r, login in asked.items() if registries[r].verify != "off"},
        )
        images = ImageChecks(
            {r: login for r, login in asked.items() if checks_images(registries[r])},
            bundles.credential, bundles.gate, metrics or Uncounted())

        async def running_deployments() -> set[str]:
            return {d["id"] for d in await marathon.list_deployments()}

        # A dry run starts no deployment: a slot per worker never makes a write wait.
        budget = DeploymentBudget(rc.max_concurrent_deployments if recorder is None
                                  else rc.workers, running=running_deployments,
                                  stall_seconds=rc.timeout_seconds)
        rate: RateLimit = (TokenBucket(rc.max_writes_per_second, rc.write_burst)
                           if recorder is None else NoRateLimit())
        yield Components(
            settings=settings, marathon=marathon, bundles=bundles, budget=budget,
            gate=WriteGate(rate, budget, fence), fence=fence, images=images, logins=logins,
            recorder=recorder, presence=Presence(store, settings.controller.name,
                                                 config_fingerprint(settings, store.home)))


def _paths(settings: object) -> Iterator[Path]:
    """Every file named in a settings dataclass, at any depth (a credential kind's files)."""
    for item in fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, item.name)
        if isinstance(value, Path):
            yield value
        elif is_dataclass(value):
            yield from _paths(value)


class Uncounted:
    """The observer of a run nobody scrapes (a one-shot pass: its figures are in its report),
    so that such a run never imports ``prometheus_client``: what the handler, the app
    reconciler, the queues and the image checks would count, dropped."""

    def on_image_check(self, registry: str, result: ImageCheckResult) -> None:
        pass

    def on_reconciled(self, controller: str, outcome: ReconcileOutcome, seconds: float,
                      error: ErrorKind | None) -> None:
        pass

    def on_worker(self, controller: str, active: int) -> None:
        pass

    def queue(self, name: str, *, unfinished: Callable[[], float],
              longest: Callable[[], float]) -> QueueUnobserved:
        return QueueUnobserved()

    def on_settled(self, count: int) -> None:
        pass

    def on_deployment_started(self) -> None:
        pass

    def on_rescue(self, result: RescueOutcome) -> None:
        pass

    def on_withheld(self, reason: str) -> None:
        pass

    def on_apps(self, counts: Mapping[str, int], deployments_in_flight: int) -> None:
        pass


