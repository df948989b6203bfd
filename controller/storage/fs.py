"""Bundles on a shared filesystem (NFS, CephFS …) that agents fetch with ``file://`` URIs.

Every write goes through a temp file named ``.<name>.tmp-<16 hex digits>`` in the target's
directory; it is removed on every failure, and ``cleanup`` removes the ones a killed process
left behind (that exact pattern only, and only once they are a minute old, so that a write in
progress, here or in another replica, is never cut short).

Reads never follow a symlink planted in place of a file, never block on a FIFO, and are
bounded in size.

The store never creates its directory (``controller.mounts``): before every write it checks
that the directory is there, and with ``require_mount`` that it is on a mounted filesystem, so
a shared filesystem that went away fails the publish instead of taking it onto the local disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import os
import re
import secrets
import stat
import time
from pathlib import Path

import structlog

from controller.errors import InvalidBundleError, StorageError
from controller.model import BundleLocation, BundleManifest
from controller.mounts import directory_problem
from controller.settings import StorageSettings
from controller.storage.backends import FilesystemStorage, FilesystemStorageSettings
from controller.storage.manifest import manifest_from_json, manifest_to_json

__all__ = ["FilesystemStore", "is_temp_name", "read_bounded", "store", "write_atomically"]

log = structlog.get_logger(component="storage")

_TEMP_NAME = re.compile(r"\..+\.tmp-[0-9a-f]{16}")
_TEMP_MIN_AGE_SECONDS = 60.0
"""Temp files younger than this may belong to a write in progress."""
_RECORD_LIMIT = 64 * 1024
"""A record is a few hundred bytes; anything much larger is not one of ours."""
_BUNDLE_SUFFIX = ".tar.gz"
_RECORD_SUFFIX = ".json"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of ``write_atomically``'s temp files."""
    return _TEMP_NAME.fullmatch(name) is not None


def _write_error(path: Path, error: OSError) -> StorageError:
    """A message that says what is wrong with ``path`` in words."""
    if error.errno == errno.EISDIR:
        reason = "it is a directory"
    elif error.errno == errno.ENOENT and not path.parent.is_dir():
        reason = f"the directory {path.parent} does not exist"
    else:
        reason = error.strerror or errno.errorcode.get(error.errno or 0, "unknown error")
    return StorageError(f"cannot write {path}: {reason}")


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600, gid: int | None = None) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory.

    The mode is set before any byte is written, so the secret is never readable by others.
    Any failure removes the temp file and raises ``StorageError``; the old file stays.
    """
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        try:
            os.fchmod(fd, mode)
            if gid is not None:
                os.fchown(fd, -1, gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)  # NFS reports some write errors only here
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise _write_error(path, e) from None


def _require_regular(path: Path, mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise InvalidBundleError(f"{path.name} is a symbolic link")
    if not stat.S_ISREG(mode):
        raise InvalidBundleError(f"{path.name} is not a regular file")


def read_bounded(path: Path, limit: int) -> bytes | None:
    """The bytes of the regular file at ``path``, or ``None`` when there is none.

    Raises ``InvalidBundleError`` for a symlink, anything but a regular file (never opened,
    so a planted device or FIFO does nothing), or more than ``limit`` bytes; ``OSError`` when
    the file cannot be read.
    """
    try:
        _require_regular(path, os.lstat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:  # replaced by a symlink since lstat
            raise InvalidBundleError(f"{path.name} is a symbolic link") from None
        raise
    try:
        _require_regular(path, os.fstat(fd).st_mode)  # replaced since lstat
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise InvalidBundleError(f"{path.name} is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


class FilesystemStore:
    """Mode 0600, or 0640 with ``group`` set: the Mesos fetcher reads as the task's user."""

    def __init__(self, settings: FilesystemStorageSettings) -> None:
        self._dir = settings.path
        self._require_mount = settings.require_mount
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
        return self._dir / f"{name.removesuffix(_BUNDLE_SUFFIX)}{_RECORD_SUFFIX}"

    @property
    def home(self) -> str:
        return self._uri_prefix

    def fixed_location(self, name: str) -> BundleLocation:
        return BundleLocation(uri=f"{self._uri_prefix}/{name}")

    async def location(self, name: str) -> BundleLocation:
        return self.fixed_location(name)

    async def get_manifest(self, name: str) -> BundleManifest | None:
        return await asyncio.to_thread(self._read_manifest, name)

    def _read_manifest(self, name: str) -> BundleManifest | None:
        try:
            raw = read_bounded(self._manifest_path(name), _RECORD_LIMIT)
        except InvalidBundleError as e:
            log.warning("bundle_manifest_unreadable", bundle=name, reason=str(e))
            return None
        except OSError as e:
            raise StorageError(f"cannot read the record of {name}: {e.strerror}") from None
        if raw is None:
            return None
        try:
            return manifest_from_json(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("bundle_manifest_unreadable", bundle=name, reason="not a record")
            return None

    async def read_bundle(self, name: str, limit: int) -> bytes | None:
        return await asyncio.to_thread(self._read_bundle, name, limit)

    def _read_bundle(self, name: str, limit: int) -> bytes | None:
        try:
            return read_bounded(self._dir / name, limit)
        except OSError as e:
            raise InvalidBundleError(f"{name} cannot be read: {e.strerror}") from None

    async def put_bundle(self, name: str, data: bytes, manifest: BundleManifest) -> None:
        try:
            await asyncio.to_thread(self._write, name, data, manifest)
        except OSError as e:
            raise StorageError(f"cannot publish {name} in {self._dir}: {e.strerror}") from None

    def _write(self, name: str, data: bytes, manifest: BundleManifest) -> None:
        problem = directory_problem(self._dir, require_mount=self._require_mount)
        if problem is not None:
            raise StorageError(f"cannot publish {name}: storage.filesystem.path: {problem}")
        write_atomically(self._dir / name, data, mode=self._mode, gid=self._gid)
        write_atomically(self._manifest_path(name), manifest_to_json(manifest),
                         mode=self._mode, gid=self._gid)

    async def read_note(self, name: str, limit: int) -> bytes | None:
        try:
            return await asyncio.to_thread(read_bounded, self._dir / name, limit)
        except (OSError, InvalidBundleError) as e:
            raise StorageError(f"cannot read {name}: {e}") from None

    async def write_note(self, name: str, data: bytes) -> None:
        def write() -> None:
            problem = directory_problem(self._dir, require_mount=self._require_mount)
            if problem is not None:
                raise StorageError(f"cannot write {name}: storage.filesystem.path: {problem}")
            write_atomically(self._dir / name, data, mode=self._mode, gid=self._gid)

        try:
            await asyncio.to_thread(write)
        except OSError as e:
            raise StorageError(f"cannot write {name} in {self._dir}: {e.strerror}") from None

    async def delete(self, name: str) -> None:
        def remove() -> None:
            for path in (self._dir / name, self._manifest_path(name)):
                path.unlink(missing_ok=True)

        try:
            await asyncio.to_thread(remove)
        except OSError as e:
            raise StorageError(f"cannot delete {name}: {e.strerror}") from None

    async def list_names(self) -> list[str]:
        try:
            return await asyncio.to_thread(self._list_names)
        except OSError as e:
            raise StorageError(f"cannot list {self._dir}: {e.strerror}") from None

    def _list_names(self) -> list[str]:
        names: set[str] = set()
        with contextlib.suppress(FileNotFoundError), os.scandir(self._dir) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.name.endswith(_BUNDLE_SUFFIX):
                    names.add(entry.name)
                elif entry.name.endswith(_RECORD_SUFFIX):
                    names.add(entry.name.removesuffix(_RECORD_SUFFIX) + _BUNDLE_SUFFIX)
        return sorted(names)

    async def cleanup(self) -> list[str]:
        """Remove temp files of ours at least a minute old (a killed write's, with a secret)."""
        try:
            removed = await asyncio.to_thread(self._remove_leftovers, time.time())
        except OSError as e:
            raise StorageError(f"cannot clean up {self._dir}: {e.strerror}") from None
        if removed:
            log.info("bundle_temp_files_removed", files=removed)
        return removed

    def _remove_leftovers(self, now: float) -> list[str]:
        removed: list[str] = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self._dir) as entries:
            for entry in entries:
                if not is_temp_name(entry.name):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    info = entry.stat(follow_symlinks=False)
                    if (stat.S_ISREG(info.st_mode)
                            and now - info.st_mtime >= _TEMP_MIN_AGE_SECONDS):
                        os.unlink(entry.path)
                        removed.append(entry.name)
        return sorted(removed)


def store(settings: StorageSettings) -> FilesystemStore:
    """The store of ``storage.filesystem`` (``controller.storage.backends``)."""
    assert isinstance(settings, FilesystemStorage)
    return FilesystemStore(settings.filesystem)
