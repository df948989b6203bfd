"""The storage backends: the registration table of ``storage``, one entry per key that names
where bundles are published (see ``controller.settingtables``).

A backend is its store's module, with a factory ``(StorageSettings) -> BundleStore``, and here its
settings classes and its entry; the loader, the schema (``python -m controller.settings_schema``
writes it) and the wiring follow.
"""

from __future__ import annotations

import grp
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from controller.mounts import directory_problem
from controller.settings import (
    AWS_REGION,
    DERIVED_DEFAULT,
    Duration,
    Floor,
    Limits,
    StorageSettings,
    Text,
)
from controller.settingtables import Choice, ChoiceTable, ConfigChecks, shown
from controller.storage.base import BundleStore

__all__ = [
    "STORAGE_BACKENDS",
    "FilesystemStorage",
    "FilesystemStorageSettings",
    "S3Storage",
    "S3StorageSettings",
    "StoreFactory",
    "UriStyle",
]

StoreFactory = Callable[[StorageSettings], BundleStore]
"""What an entry's ``factory`` names: the store of settings that set its key."""

UriStyle = Literal["s3a", "https", "presigned"]
_HOUR: Final = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FilesystemStorageSettings:
    """Bundles on a file system that every agent mounts."""

    path: Path
    """Absolute directory the bundles are written to (mode 0600, or 0640 with group); it must
    exist: the controller never creates it."""
    uri_prefix: Text = field(metadata=DERIVED_DEFAULT)
    """What tasks fetch the bundles from; default file://<path>."""
    group: Annotated[str | int, Limits(minimum=0, maximum=4294967294)] | None = None
    """Group (name or id) that may read the bundles, as the Mesos fetcher runs as the task's
    user."""
    require_mount: bool = False
    """Also require the path to be on another filesystem than / (the shared one, mounted): a
    directory left on the local disk while the shared filesystem is not mounted is refused at
    start-up and before every write."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FilesystemStorage(StorageSettings):
    """Bundles on a shared file system."""

    filesystem: FilesystemStorageSettings
    """A shared file system."""


@dataclass(frozen=True, slots=True, kw_only=True)
class S3StorageSettings:
    """Bundles in an S3 bucket."""

    bucket: Text
    """Bucket name."""
    prefix: str = ""
    """Key prefix of the bundles, e.g. marathon/prod."""
    region: Annotated[str, AWS_REGION] | None = None
    """AWS region of the bucket; default: from the AWS configuration."""
    endpoint_url: Text | None = None
    """S3 endpoint, e.g. for an S3-compatible store; default: AWS's endpoint for the region."""
    kms_key_id: Text | None = None
    """SSE-KMS with this key; default: SSE-S3 (AES256)."""
    uri_style: UriStyle = "s3a"
    """What tasks fetch: s3a (Hadoop fetcher), https (allowed by a bucket policy) or presigned."""
    presign_ttl: Annotated[Duration, Floor(
        seconds=_HOUR, why="every re-sign, at half the TTL, rewrites and so restarts every "
                           "opted-in app")] = 12 * _HOUR
    """presigned only: how long a URL lasts, at most 7d; each re-sign, at half of it, rewrites
    and so restarts the app."""


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Storage(StorageSettings):
    """Bundles in an S3 bucket."""

    s3: S3StorageSettings
    """An S3 bucket."""


def _filesystem(checks: ConfigChecks, path: str,
                data: dict[str, Any]) -> FilesystemStorageSettings:
    """Files under ``path``; ``uri_prefix`` is derived from it when the file leaves it out.
    The directory must be there (never created: see ``controller.mounts``)."""
    derived = {"uri_prefix": f"file://{Path(data['path'])}"}
    settings = FilesystemStorageSettings(**checks.given(path, derived | data, {
        "path": partial(_absolute_path, checks), "group": partial(_group, checks),
        **({"uri_prefix": partial(_uri_prefix, checks)} if "uri_prefix" in data else {})}))
    if checks.check_storage and settings.path.is_absolute():
        problem = directory_problem(settings.path, require_mount=settings.require_mount)
        if problem is not None:
            checks.problem(f"{path}.path", problem)
    return settings


def _absolute_path(checks: ConfigChecks, path: str, value: str) -> Path:
    if not Path(value).is_absolute():
        checks.problem(path, "must be an absolute path")
    return Path(value)


def _uri_prefix(checks: ConfigChecks, path: str, value: str) -> str:
    """Each bundle's URI is ``<prefix>/<name>``: a query or fragment would end up before the
    name, and ``file://host/…`` is read by the Mesos fetcher as the relative path ``host/…``."""
    prefix = value.rstrip("/")
    parts = checks.url(path, prefix, schemes=())
    if parts is not None and (parts.query or parts.fragment):
        checks.problem(path, f"{shown(value)} has a query or fragment: the bundle's name is "
                       "added at the end")
    elif parts is not None and parts.scheme == "file" and parts.netloc:
        checks.problem(path, f"{shown(value)} names a host: write file:///<absolute path> "
                       f"(three slashes), e.g. file:///{parts.netloc}{parts.path}")
    return prefix


def _group(checks: ConfigChecks, path: str, group: str | int) -> str | int:
    if isinstance(group, str) and not checks.offline:
        try:
            grp.getgrnam(group)
        except KeyError:
            checks.problem(path, f"no group named {group}")
    return group


def _s3(checks: ConfigChecks, path: str, data: dict[str, Any]) -> S3StorageSettings:
    settings = S3StorageSettings(**checks.given(path, data, {
        "endpoint_url": checks.endpoint_url, "prefix": lambda _, prefix: prefix.strip("/"),
        "presign_ttl": checks.duration}))
    if settings.presign_ttl > 7 * 24 * _HOUR:
        checks.problem(f"{path}.presign_ttl", "S3 presigned URLs last at most 7 days")
    if data.get("uri_style") == "https" and "kms_key_id" in data:
        checks.problem(f"{path}.kms_key_id", "uri_style https fetches anonymously, which S3 "
                       "refuses for SSE-KMS objects; use s3a or presigned, or drop kms_key_id "
                       "(SSE-S3)")
    return settings


def _previous_locations(checks: ConfigChecks, path: str, values: list[str]) -> tuple[str, ...]:
    for i, value in enumerate(values):
        checks.url(f"{path}[{i}]", value.rstrip("/"), schemes=())
    return tuple(value.rstrip("/") for value in values)


STORAGE_BACKENDS: Final[ChoiceTable[StorageSettings, Choice[StorageSettings]]] = ChoiceTable(
    StorageSettings, (
    Choice(key="filesystem", settings=FilesystemStorage, check=_filesystem,
           factory="controller.storage.fs:store"),
    Choice(key="s3", settings=S3Storage, check=_s3, factory="controller.storage.s3:store"),
), noun="backend", shared={"previous_locations": _previous_locations})
"""Every storage backend, in the order the schema and the messages list them."""
