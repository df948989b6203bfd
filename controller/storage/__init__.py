"""Shared storage for credential bundles: the ``BundleStore`` port and its factory."""

from __future__ import annotations

from typing import Protocol

from controller.config import StorageSettings
from controller.model import BundleLocation, BundleManifest

__all__ = ["BundleStore", "from_settings"]


class BundleStore(Protocol):
    """Where bundles live, addressed by name (``pullsecret-<registry>.tar.gz``)."""

    async def location(self, name: str) -> BundleLocation:
        """What tasks fetch; stable for a name, so a rotation needs no Marathon write."""
        ...

    async def get_manifest(self, name: str) -> BundleManifest | None:
        """The stored metadata, or ``None`` when the bundle or its record is missing."""
        ...

    async def put_bundle(self, name: str, data: bytes, manifest: BundleManifest) -> None:
        """Publish atomically: readers see the old bundle or the new one, never a mix."""
        ...

    async def delete(self, name: str) -> None: ...


def from_settings(settings: StorageSettings) -> BundleStore:
    """The configured backend."""
    if settings.s3 is not None:
        from controller.storage.s3 import S3Store

        return S3Store(settings.s3)
    if settings.filesystem is None:
        raise ValueError("no storage backend is configured")
    from controller.storage.fs import FilesystemStore

    return FilesystemStore(settings.filesystem)
