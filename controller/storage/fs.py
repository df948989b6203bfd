"""Bundles on a shared filesystem (NFS, CephFS …) that agents fetch with ``file://`` URIs."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
from pathlib import Path

import structlog

from controller.config import FilesystemStorageSettings
from controller.errors import StorageError
from controller.model import BundleLocation, BundleManifest
from controller.storage.manifest import manifest_from_json, manifest_to_json

__all__ = ["FilesystemStore", "write_atomically"]

log = structlog.get_logger(component="storage")


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600, gid: int | None = None) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory.

    The mode is set before any byte is written, so the secret is never readable by others.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        if gid is not None:
            os.fchown(fd, -1, gid)
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FilesystemStore:
    """Mode 0600, or 0640 with ``group`` set: the Mesos fetcher reads as the task's user."""

    def __init__(self, settings: FilesystemStorageSettings) -> None:
        self._dir = settings.path
        self._uri_prefix = settings.uri_prefix
        self._gid = self._resolve_group(settings.group)
        self._mode = 0o640 if self._gid is not None else 0o600

    @staticmethod
    def _resolve_group(group: str | int | None) -> int | None:
        if group is None or isinstance(group, int):
            return group
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            raise StorageError(f"storage.filesystem.group: no group named {group}") from None

    def _manifest_path(self, name: str) -> Path:
        return self._dir / f"{name.removesuffix('.tar.gz')}.json"

    async def location(self, name: str) -> BundleLocation:
        return BundleLocation(uri=f"{self._uri_prefix}/{name}")

    async def get_manifest(self, name: str) -> BundleManifest | None:
        return await asyncio.to_thread(self._read_manifest, name)

    def _read_manifest(self, name: str) -> BundleManifest | None:
        if not (self._dir / name).is_file():
            return None
        try:
            raw = self._manifest_path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read the record of {name}: {e.strerror}") from None
        try:
            return manifest_from_json(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("bundle_manifest_unreadable", bundle=name)
            return None

    async def put_bundle(self, name: str, data: bytes, manifest: BundleManifest) -> None:
        try:
            await asyncio.to_thread(self._write, name, data, manifest)
        except OSError as e:
            raise StorageError(f"cannot publish {name} in {self._dir}: {e.strerror}") from None

    def _write(self, name: str, data: bytes, manifest: BundleManifest) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self._dir / name, data, mode=self._mode, gid=self._gid)
        write_atomically(self._manifest_path(name), manifest_to_json(manifest),
                         mode=self._mode, gid=self._gid)

    async def delete(self, name: str) -> None:
        def remove() -> None:
            for path in (self._dir / name, self._manifest_path(name)):
                path.unlink(missing_ok=True)

        try:
            await asyncio.to_thread(remove)
        except OSError as e:
            raise StorageError(f"cannot delete {name}: {e.strerror}") from None
