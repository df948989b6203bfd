"""Bundles in S3 (or an S3-compatible store), fetched by tasks as ``s3a``, ``https`` or presigned.

Each bundle is one object, ``<prefix>/<name>``, written by a single ``PutObject`` that carries
server-side encryption, a SHA-256 checksum S3 verifies, and the manifest as user metadata, so
the bundle and its record can never disagree. A publish is read back (``HeadObject``) to
verify it; what is served is fetched (``GetObject``, bounded) to check its bytes. No ACL is
ever sent: access comes from IAM and the bucket policy only.

Presigned URLs go into app definitions, and every new URL restarts the app, so one URL per
bundle is issued and reused until half its TTL is gone; URLs that still have more than half
their TTL left are accepted as they are.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from controller.errors import InvalidBundleError, StorageError
from controller.model import BundleLocation, BundleManifest
from controller.settings import StorageSettings
from controller.storage.backends import S3Storage, S3StorageSettings
from controller.storage.manifest import manifest_from_json, manifest_to_json

__all__ = ["S3Store", "store"]

log = structlog.get_logger(component="storage")

_TIMEOUT_SECONDS = 30.0
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_FAILURES = (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError)
_LIST_LIMIT = 10_000
"""The most object names ``list_names`` returns; far more than any cluster has registries."""


def _metadata(manifest: BundleManifest) -> dict[str, str]:
    """The manifest as S3 user metadata: ASCII strings under ``x-amz-meta-<field>``."""
    fields = json.loads(manifest_to_json(manifest))
    return {key.replace("_", "-"): str(value) for key, value in fields.items()
            if value is not None}


def _manifest(metadata: Mapping[str, str]) -> BundleManifest:
    """Inverse of ``_metadata``; raises ``ValueError``/``KeyError``/``TypeError`` if damaged."""
    fields: dict[str, Any] = {key.replace("-", "_"): value for key, value in metadata.items()}
    if "leader_epoch" in fields:
        fields["leader_epoch"] = int(fields["leader_epoch"])
    return manifest_from_json(json.dumps(fields).encode())


def _reason(error: Exception) -> str:
    """Short and secret-free: the S3 error code, or botocore's own message."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return str(details.get("Code") or error.response.get("ResponseMetadata", {})
                   .get("HTTPStatusCode", "error"))
    if isinstance(error, TimeoutError):
        return f"no answer within {_TIMEOUT_SECONDS:.0f}s"
    return (str(error) or type(error).__name__)[:200]


def _is_not_found(error: Exception) -> bool:
    return isinstance(error, ClientError) and (
        error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
        or error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"))


async def _read_at_most(body: Any, limit: int) -> bytes:
    """A streaming body's bytes, refused once there are more than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit and (chunk := await body.read(limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise InvalidBundleError(f"the object is larger than {limit} bytes")
    return b"".join(chunks)


def _signature_window(uri: str) -> tuple[datetime, float] | None:
    """When a SigV4 presigned URL was signed and for how many seconds, from its query."""
    query = parse_qs(urlsplit(uri).query)
    try:
        signed_at = datetime.strptime(query["X-Amz-Date"][0], _AMZ_DATE).replace(tzinfo=UTC)
        ttl = float(query["X-Amz-Expires"][0])
    except (KeyError, IndexError, ValueError):
        return None
    return signed_at, ttl


def _encryption(settings: S3StorageSettings) -> dict[str, str]:
    """SSE-KMS with the configured key, else SSE-S3: every object we write is encrypted."""
    if settings.kms_key_id:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": settings.kms_key_id}
    return {"ServerSideEncryption": "AES256"}


def _without_query(uri: str) -> str:
    return urlsplit(uri)._replace(query="", fragment="").geturl()


class S3Store:
    """One aiobotocore client per operation, so nothing is left open between refreshes."""

    def __init__(self, settings: S3StorageSettings, *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._settings = settings
        self._now = now
        self._session: AioSession | None = None
        self._config = AioConfig(
            signature_version="s3v4", connect_timeout=5, read_timeout=10,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
        )
        self._presigned: dict[str, str] = {}
        """The URL last issued per bundle name, reused while it is fresh."""

    def _client(self) -> Any:
        if self._session is None:
            self._session = get_session()
        return self._session.create_client(
            "s3", region_name=self._settings.region, endpoint_url=self._settings.endpoint_url,
            config=self._config)

    def _key(self, name: str) -> str:
        return f"{self._settings.prefix}/{name}" if self._settings.prefix else name

    def _failure(self, what: str, name: str, error: Exception) -> StorageError:
        where = f"s3://{self._settings.bucket}/{self._key(name)}"
        return StorageError(f"cannot {what} {where}: {_reason(error)}")

    # -- where tasks fetch from --------------------------------------------------------------

    @property
    def home(self) -> str:
        """``s3a://bucket/prefix``, or the object URL of the prefix (https, presigned)."""
        prefix = f"/{self._settings.prefix}" if self._settings.prefix else ""
        if self._settings.uri_style == "s3a":
            return f"s3a://{self._settings.bucket}{prefix}"
        return self._object_url(self._key("x")).rsplit("/", 1)[0]

    def fixed_location(self, name: str) -> BundleLocation | None:
        """The stable URI of ``s3a`` and ``https``; a presigned URL must be signed first."""
        style = self._settings.uri_style
        if style == "s3a":
            return BundleLocation(uri=f"s3a://{self._settings.bucket}/{self._key(name)}")
        if style == "https":
            return BundleLocation(uri=self._object_url(self._key(name)))
        return None

    async def location(self, name: str) -> BundleLocation:
        fixed = self.fixed_location(name)
        return fixed if fixed is not None else await self._presigned_location(name)

    def _object_url(self, key: str) -> str:
        """Path-style under ``endpoint_url``; else virtual-hosted, or path-style for a bucket
        with dots (a dotted bucket name breaks the ``*.s3`` TLS wildcard)."""
        bucket, path = self._settings.bucket, quote(key, safe="/")
        if self._settings.endpoint_url:
            return f"{self._settings.endpoint_url.rstrip('/')}/{bucket}/{path}"
        region = self._settings.region
        host = f"s3.{region}.amazonaws.com" if region else "s3.amazonaws.com"
        if "." in bucket:
            return f"https://{host}/{bucket}/{path}"
        return f"https://{bucket}.{host}/{path}"

    async def _presigned_location(self, name: str) -> BundleLocation:
        uri = self._presigned.get(name)
        if uri is None or not self._fresh(uri):
            uri = await self._presign(name)
            self._presigned[name] = uri
        base = _without_query(uri)
        window = _signature_window(uri)
        assert window is not None, "botocore signs with SigV4 (signature_version='s3v4')"
        signed_at, ttl = window
        half_life = signed_at + timedelta(seconds=ttl / 2)
        return BundleLocation(
            uri=uri,
            accepts=lambda other: _without_query(other) == base and self._fresh(other),
            renew_in=max(0.0, (half_life - self._now()).total_seconds()),
        )

    def _fresh(self, uri: str) -> bool:
        """Whether a presigned URL still has more than half its TTL left."""
        window = _signature_window(uri)
        if window is None:
            return False
        signed_at, ttl = window
        left = (signed_at + timedelta(seconds=ttl) - self._now()).total_seconds()
        return left > ttl / 2

    async def _presign(self, name: str) -> str:
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS), self._client() as s3:
                uri = await s3.generate_presigned_url(
                    "get_object", Params={"Bucket": self._settings.bucket, "Key": self._key(name)},
                    ExpiresIn=int(self._settings.presign_ttl))
        except _FAILURES as e:
            raise self._failure("presign", name, e) from e
        uri = str(uri)
        log.info("presigned_url_issued", bundle=name, ttl=self._settings.presign_ttl)
        if "X-Amz-Security-Token" in parse_qs(urlsplit(uri).query):
            log.warning("presigned_url_session_bound", bundle=name,
                        hint="signed with temporary credentials (a role): the URL stops "
                             "working when that session ends, possibly long before its TTL; "
                             "sign with an IAM user's keys or use uri_style https or s3a")
        return uri

    # -- the object and its record -----------------------------------------------------------

    async def get_manifest(self, name: str) -> BundleManifest | None:
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS), self._client() as s3:
                head = await s3.head_object(Bucket=self._settings.bucket, Key=self._key(name))
        except _FAILURES as e:
            if _is_not_found(e):
                return None
            raise self._failure("read", name, e) from e
        try:
            return _manifest(head.get("Metadata") or {})
        except (ValueError, KeyError, TypeError):
            log.warning("bundle_manifest_unreadable", bundle=name)
            return None

    async def read_bundle(self, name: str, limit: int) -> bytes | None:
        """``GetObject``, refused unread beyond ``limit`` bytes."""
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS), self._client() as s3:
                response = await s3.get_object(Bucket=self._settings.bucket, Key=self._key(name))
                async with response["Body"] as body:
                    if response.get("ContentLength", 0) > limit:
                        raise InvalidBundleError(f"{name} is larger than {limit} bytes")
                    return await _read_at_most(body, limit)
        except _FAILURES as e:
            if _is_not_found(e):
                return None
            raise self._failure("read", name, e) from e

    async def put_bundle(self, name: str, data: bytes, manifest: BundleManifest) -> None:
        """One ``PutObject`` (S3 checks the SHA-256 we send), then ``HeadObject`` to verify.

        Bytes and record travel in the one request, so S3 serves both old or both new.
        """
        settings = self._settings
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        encryption = _encryption(settings)
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS), self._client() as s3:
                await s3.put_object(
                    Bucket=settings.bucket, Key=self._key(name), Body=data,
                    ContentType="application/gzip", CacheControl="no-store",
                    ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
                    Metadata=_metadata(manifest), **encryption)
        except _FAILURES as e:
            raise self._failure("publish", name, e) from e
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS), self._client() as s3:
                head = await s3.head_object(Bucket=settings.bucket, Key=self._key(name),
                                            ChecksumMode="ENABLED")
        except _FAILURES as e:
            raise self._failure("read back the just published", name, e) from e
        differences = [what for what, differs in (
            ("size", head.get("ContentLength") != len(data)),
            ("recorded hash", (head.get("Metadata") or {}).get("sha256") != manifest.sha256),
            ("checksum", head.get("ChecksumSHA256", checksum) != checksum),
        ) if differs]
        if differences:
            raise StorageError(
                f"s3://{settings.bucket}/{self._key(name)} does not read back as written "
                f"(different {' and '.join(differences)}; changed by another writer?)")

    async def read_note(self, name: str, limit: int) -> bytes | None:
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS), self._client() as s3:
                response = await s3.get_object(Bucket=self._settings.bucket, Key=self._key(name))
                async with response["Body"] as body:
                    return await _read_at_most(body, limit)
        except _FAILURES as e:
            if _is_not_found(e):
                return None
            raise self._failure("read", name, e) from e

    async def write_note(self, name: str, data: bytes) -> None:
        settings = self._settings
        encryption = _encryption(settings)
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS), self._client() as s3:
                await s3.put_object(Bucket=settings.bucket, Key=self._key(name), Body=data,
                                    ContentType="application/json", CacheControl="no-store",
                                    **encryption)
        except _FAILURES as e:
            raise self._failure("write", name, e) from e

    async def delete(self, name: str) -> None:
        self._presigned.pop(name, None)
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS), self._client() as s3:
                await s3.delete_object(Bucket=self._settings.bucket, Key=self._key(name))
        except _FAILURES as e:
            raise self._failure("delete", name, e) from e

    async def list_names(self) -> list[str]:
        """The object names right under the prefix, at most ``_LIST_LIMIT`` of them."""
        prefix = f"{self._settings.prefix}/" if self._settings.prefix else ""
        names: list[str] = []
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS), self._client() as s3:
                pages = s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self._settings.bucket, Prefix=prefix, Delimiter="/",
                    PaginationConfig={"MaxItems": _LIST_LIMIT})
                async for page in pages:
                    names.extend(item["Key"].removeprefix(prefix)
                                 for item in page.get("Contents", []))
        except _FAILURES as e:
            raise self._failure("list", "", e) from e
        if len(names) >= _LIST_LIMIT:
            log.warning("bundle_list_truncated", bucket=self._settings.bucket, prefix=prefix,
                        limit=_LIST_LIMIT)
        return sorted(names)

    async def cleanup(self) -> list[str]:
        """Nothing to do: ``PutObject`` leaves no partial object behind."""
        return []


def store(settings: StorageSettings) -> S3Store:
    """The store of ``storage.s3`` (``controller.storage.backends``)."""
    assert isinstance(settings, S3Storage)
    return S3Store(settings.s3)
