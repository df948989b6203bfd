"""The dry run's adapters: each stands in front of a real one (or for a registry), passes the
reads through, and records every write and every registry contact instead of making it.

``plan``, ``--dry-run`` and ``reconcile.dry_run`` are the same engine as a real run; only the
wiring differs, which puts these in front of Marathon, the bundle store and the registries.
A recorded request raises ``WriteRecorded`` (``ContactRecorded`` for a registry), which the
engine meets where it makes the request, as it meets a 409: it says what it would have done
("would add", "would verify, then publish"). The engine has no dry-run flag, so a write path
that forgets the dry run cannot write either: its request ends here.

The ``Recorder`` keeps a count per operation and the last requests in words (for tests and
the debug log); no body, no bundle, no credential is kept or shown.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import structlog

from controller.applist import ListedApp
from controller.dialect import Dialect
from controller.errors import ContactRecorded, WriteRecorded
from controller.marathon.api import MarathonAPI
from controller.model import (
    AppId,
    BundleLocation,
    BundleManifest,
    RawApp,
    RawAppUpdate,
    RawDeployment,
    RegistryCredential,
)
from controller.registryapi.results import ImageCheck, LoginResult
from controller.storage.base import BundleStore

__all__ = ["Marathon", "Recorder", "RecordingMarathon", "RecordingRegistry", "RecordingStore"]

log = structlog.get_logger(component="dryrun")

_RECENT = 1000
"""Recorded requests kept in words: a dry-run daemon records on every resync."""


class Marathon(MarathonAPI, Protocol):
    """What the run needs of Marathon: the engine's port, the launch queue (a delay reset),
    and when Marathon last answered (``/readyz``)."""

    @property
    def last_answered(self) -> float | None: ...

    async def reset_launch_delay(self, app_id: AppId) -> bool: ...


class Recorder:
    """The requests a dry run recorded instead of making."""

    def __init__(self, keep: int = _RECENT) -> None:
        self.counts: Counter[str] = Counter()
        """Requests recorded, per operation (``update_app``, ``put_bundle``, ``login``...)."""
        self.recent: deque[str] = deque(maxlen=keep)
        """The last requests recorded, in words."""

    def write(self, operation: str, request: str) -> WriteRecorded:
        """Record a write; the error to raise in its place."""
        return WriteRecorded(self._record(operation, request))

    def contact(self, operation: str, request: str) -> ContactRecorded:
        """Record a request to a registry; the error to raise in its place."""
        return ContactRecorded(self._record(operation, request))

    def _record(self, operation: str, request: str) -> str:
        self.counts[operation] += 1
        self.recent.append(request)
        log.debug("request_recorded", operation=operation, request=request)
        return f"dry run: {request}: recorded, not made"


class RecordingMarathon:
    """Marathon for a dry run: reads go to ``marathon``; an app update and a launch delay
    reset are recorded (``WriteRecorded``)."""

    def __init__(self, marathon: Marathon, recorder: Recorder) -> None:
        self._marathon = marathon
        self._recorder = recorder

    @property
    def last_answered(self) -> float | None:
        return self._marathon.last_answered

    async def list_apps(self, label_selector: str | None = None) -> list[ListedApp]:
        return await self._marathon.list_apps(label_selector)

    async def get_app(self, app_id: AppId) -> RawApp:
        return await self._marathon.get_app(app_id)

    async def list_deployments(self) -> list[RawDeployment]:
        return await self._marathon.list_deployments()

    async def dialect(self) -> Dialect:
        return await self._marathon.dialect()

    def event_stream(self, event_types: Sequence[str]
                     ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._marathon.event_stream(event_types)

    async def update_app(self, app_id: AppId, body: RawAppUpdate, *, force: bool = False
                         ) -> str | None:
        """Record the write as the client would send it (its method from the dialect, which
        the engine has read before any write)."""
        method = (await self._marathon.dialect()).write_method
        raise self._recorder.write(
            "update_app", f"{method} /v2/apps{app_id}{'?force=true' if force else ''}")

    async def reset_launch_delay(self, app_id: AppId) -> bool:
        raise self._recorder.write("reset_launch_delay", f"DELETE /v2/queue{app_id}/delay")


class RecordingStore:
    """The bundle store for a dry run: reads go to ``store``; publishing, deleting, notes and
    the cleanup of leftovers are recorded (``WriteRecorded``)."""

    def __init__(self, store: BundleStore, recorder: Recorder) -> None:
        self._store = store
        self._recorder = recorder

    @property
    def home(self) -> str:
        return self._store.home

    def fixed_location(self, name: str) -> BundleLocation | None:
        return self._store.fixed_location(name)

    async def location(self, name: str) -> BundleLocation:
        return await self._store.location(name)

    async def get_manifest(self, name: str) -> BundleManifest | None:
        return await self._store.get_manifest(name)

    async def read_bundle(self, name: str, limit: int) -> bytes | None:
        return await self._store.read_bundle(name, limit)

    async def read_note(self, name: str, limit: int) -> bytes | None:
        return await self._store.read_note(name, limit)

    async def list_names(self) -> list[str]:
        return await self._store.list_names()

    async def put_bundle(self, name: str, data: bytes, manifest: BundleManifest) -> None:
        raise self._recorder.write("put_bundle", f"publish {name}")

    async def delete(self, name: str) -> None:
        raise self._recorder.write("delete", f"delete {name}")

    async def write_note(self, name: str, data: bytes) -> None:
        raise self._recorder.write("write_note", f"write {name}")

    async def cleanup(self) -> list[str]:
        raise self._recorder.write("cleanup", "remove what interrupted writes left")


class RecordingRegistry:
    """A registry for a dry run: a login (``CredentialVerifier``) and an image check
    (``ImageChecker``) are recorded (``ContactRecorded``), and nothing is sent."""

    def __init__(self, registry: str, recorder: Recorder) -> None:
        self._registry = registry
        self._recorder = recorder

    async def verify(self, credential: RegistryCredential) -> LoginResult:
        raise self._recorder.contact("login", f"log in at {self._registry}")

    async def check_image(self, credential: RegistryCredential, repository: str,
                          reference: str) -> ImageCheck:
        raise self._recorder.contact(
            "check_image", f"check the image {repository} ({reference}) at {self._registry}")
