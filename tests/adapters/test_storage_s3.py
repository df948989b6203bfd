"""S3Store against moto in server mode on 127.0.0.1: objects, metadata, encryption, URIs."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3  # type: ignore[import-untyped]
import msgspec
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from controller.archive import MAX_BUNDLE_BYTES, inspect_bundle
from controller.errors import InvalidBundleError, StorageError
from controller.model import BundleManifest
from controller.plan import bundle_name
from controller.storage.backends import S3StorageSettings
from controller.storage.s3 import S3Store
from tests.adapters.test_storage_fs import password_manager
from tests.clock import FakeClock

NAME = "pullsecret-registry.example.com.tar.gz"
DATA = b"\x1f\x8b not really a tarball"
T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
MANIFEST = BundleManifest(
    registry="registry.example.com", sha256=hashlib.sha256(DATA).hexdigest(),
    format="config.json", created_at=T0, refresh_at=T0 + timedelta(hours=6),
    expires_at=T0 + timedelta(hours=12), leader_epoch=7,
)
_buckets = itertools.count()


@pytest.fixture
def s3(aws):
    """A boto3 client on moto, to look at objects the way an operator would."""
    return boto3.client("s3", **aws.client_kwargs())


@pytest.fixture
def settings(aws, s3):
    """Settings for a fresh, empty bucket."""
    bucket = f"bundles-{next(_buckets)}"
    s3.create_bucket(Bucket=bucket)
    return S3StorageSettings(bucket=bucket, prefix="pullsecrets/prod", region=aws.region,
                             endpoint_url=aws.endpoint_url, uri_style="https",
                             presign_ttl=3600.0)


def http_get(uri: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(uri, timeout=5) as response:
        data: bytes = response.read()
    return data


def allow_loopback_reads(s3: Any, bucket: str) -> None:
    """The bucket policy an ``https`` setup needs (on AWS: ``aws:SourceVpce`` instead)."""
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                 "Resource": f"arn:aws:s3:::{bucket}/pullsecrets/*",
                 "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [statement]}))


class TestObjects:
    async def test_manifest_round_trip(self, settings):
        """The manifest written with a bundle is read back field for field."""
        store = S3Store(settings)
        await store.put_bundle(NAME, DATA, MANIFEST)
        assert await store.get_manifest(NAME) == MANIFEST

    async def test_missing_object_has_no_manifest(self, settings):
        """A bundle that was never written reads as ``None``."""
        assert await S3Store(settings).get_manifest(NAME) is None

    async def test_key_under_prefix_with_metadata(self, settings, s3):
        """One object at ``<prefix>/<name>`` carrying the manifest as ASCII user metadata."""
        await S3Store(settings).put_bundle(NAME, DATA, MANIFEST)
        head = s3.head_object(Bucket=settings.bucket, Key=f"pullsecrets/prod/{NAME}")
        assert head["Metadata"] == {
            "registry": "registry.example.com", "sha256": MANIFEST.sha256,
            "format": "config.json", "created-at": T0.isoformat(),
            "refresh-at": (T0 + timedelta(hours=6)).isoformat(),
            "expires-at": (T0 + timedelta(hours=12)).isoformat(), "leader-epoch": "7",
        }
        assert s3.get_object(Bucket=settings.bucket, Key=f"pullsecrets/prod/{NAME}")[
            "Body"].read() == DATA

    async def test_checksum_stored(self, settings, s3):
        """The object carries the SHA-256 checksum S3 verified on upload."""
        await S3Store(settings).put_bundle(NAME, DATA, MANIFEST)
        head = s3.head_object(Bucket=settings.bucket, Key=f"pullsecrets/prod/{NAME}",
                              ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(DATA).digest()).decode()

    async def test_sse_s3_by_default(self, settings, s3):
        """Without a KMS key the object is encrypted with SSE-S3 (AES256)."""
        await S3Store(settings).put_bundle(NAME, DATA, MANIFEST)
        head = s3.head_object(Bucket=settings.bucket, Key=f"pullsecrets/prod/{NAME}")
        assert head["ServerSideEncryption"] == "AES256"

    async def test_sse_kms_with_key(self, settings, s3):
        """With ``kms_key_id`` the object is encrypted with that KMS key."""
        key_id = "arn:aws:kms:us-east-1:123456789012:key/pullsecrets"
        await S3Store(replace(settings, kms_key_id=key_id)).put_bundle(NAME, DATA, MANIFEST)
        head = s3.head_object(Bucket=settings.bucket, Key=f"pullsecrets/prod/{NAME}")
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == key_id

    async def test_no_public_acl(self, settings, s3):
        """The object's ACL grants the owner alone: no ACL is ever sent."""
        await S3Store(settings).put_bundle(NAME, DATA, MANIFEST)
        acl = s3.get_object_acl(Bucket=settings.bucket, Key=f"pullsecrets/prod/{NAME}")
        assert [(g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]] == [
            (acl["Owner"]["ID"], "FULL_CONTROL")]

    async def test_overwrite_replaces_record(self, settings):
        """A second publish replaces object and manifest together."""
        store = S3Store(settings)
        await store.put_bundle(NAME, DATA, MANIFEST)
        newer = msgspec.structs.replace(MANIFEST, sha256=hashlib.sha256(b"v2").hexdigest(),
                                        leader_epoch=None)
        await store.put_bundle(NAME, b"v2", newer)
        assert await store.get_manifest(NAME) == newer

    async def test_delete(self, settings):
        """A deleted bundle reads as missing; deleting again is fine."""
        store = S3Store(settings)
        await store.put_bundle(NAME, DATA, MANIFEST)
        await store.delete(NAME)
        await store.delete(NAME)
        assert await store.get_manifest(NAME) is None

    async def test_damaged_metadata_reads_as_missing(self, settings, s3):
        """An object without a usable record is treated as missing, so it gets republished."""
        s3.put_object(Bucket=settings.bucket, Key=f"pullsecrets/prod/{NAME}", Body=DATA,
                      Metadata={"sha256": "abc"})
        with capture_logs() as logs:
            assert await S3Store(settings).get_manifest(NAME) is None
        assert [entry["event"] for entry in logs] == ["bundle_manifest_unreadable"]


class TestFailures:
    async def test_put_to_missing_bucket(self, settings):
        """An S3 error on publish is a StorageError with the location and S3's code."""
        store = S3Store(replace(settings, bucket="no-such-bucket"))
        with pytest.raises(StorageError, match=r"cannot publish s3://no-such-bucket/pullsecrets/"
                                               r"prod/.*: NoSuchBucket"):
            await store.put_bundle(NAME, DATA, MANIFEST)

    async def test_read_refused(self, settings, aiohttp_server):
        """A refused read (403, e.g. without s3:ListBucket) is an error, not a missing bundle."""
        async def refuse(request: web.Request) -> web.Response:
            return web.Response(status=403)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", refuse)
        server = await aiohttp_server(app, host="127.0.0.1")
        store = S3Store(replace(settings, endpoint_url=str(server.make_url("")).rstrip("/")))
        with pytest.raises(StorageError, match=r"cannot read s3://.*: 403"):
            await store.get_manifest(NAME)

    async def test_no_credentials(self, settings, monkeypatch, tmp_path):
        """Missing AWS credentials are a StorageError, not a botocore exception."""
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        with pytest.raises(StorageError, match="Unable to locate credentials"):
            await S3Store(settings).put_bundle(NAME, DATA, MANIFEST)


class TestLocations:
    async def test_s3a(self, settings):
        """``s3a`` gives the Hadoop URI of the object."""
        location = await S3Store(replace(settings, uri_style="s3a")).location(NAME)
        assert location.uri == f"s3a://{settings.bucket}/pullsecrets/prod/{NAME}"
        assert location.dest_path is None
        assert location.renew_in is None

    async def test_https_under_endpoint(self, settings, s3):
        """With ``endpoint_url`` the object URL is path-style under it, and it serves the bundle."""
        store = S3Store(settings)
        await store.put_bundle(NAME, DATA, MANIFEST)
        allow_loopback_reads(s3, settings.bucket)
        location = await store.location(NAME)
        assert location.uri == f"{settings.endpoint_url}/{settings.bucket}/pullsecrets/prod/{NAME}"
        assert location.dest_path is None
        assert http_get(location.uri) == DATA

    @pytest.mark.parametrize(("bucket", "region", "expected"), [
        ("bundles", "eu-west-1", "https://bundles.s3.eu-west-1.amazonaws.com/p/" + NAME),
        ("my.bundles", "eu-west-1", "https://s3.eu-west-1.amazonaws.com/my.bundles/p/" + NAME),
        ("bundles", None, "https://bundles.s3.amazonaws.com/p/" + NAME),
    ], ids=["virtual-hosted", "dotted-bucket-path-style", "no-region"])
    async def test_https_on_aws(self, bucket, region, expected):
        """Without ``endpoint_url`` the URL is AWS's virtual-hosted one (path-style if dotted)."""
        settings = S3StorageSettings(bucket=bucket, prefix="p", region=region,
                                     uri_style="https")
        assert (await S3Store(settings).location(NAME)).uri == expected

    async def test_presigned_url_serves_bundle(self, settings):
        """A presigned URL is SigV4 with the TTL, needs ``destPath``, and fetches the object."""
        store = S3Store(replace(settings, uri_style="presigned"))
        await store.put_bundle(NAME, DATA, MANIFEST)
        location = await store.location(NAME)
        query = parse_qs(urlsplit(location.uri).query)
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Expires"] == ["3600"]
        assert location.dest_path == "docker.tar.gz"
        assert http_get(location.uri) == DATA

    async def test_presigned_renew_at_half_life(self, settings):
        """``renew_in`` is the time until the issued URL has only half its TTL left."""
        store = S3Store(replace(settings, uri_style="presigned"))
        location = await store.location(NAME)
        assert location.renew_in == pytest.approx(1800, abs=5)

    async def test_presigned_url_reused_while_fresh(self, settings):
        """Asking again before half-life returns the same URL, so apps are not rewritten."""
        clock = FakeClock(0.0, epoch=datetime.now(UTC))
        store = S3Store(replace(settings, uri_style="presigned"), now=clock.wall)
        first = await store.location(NAME)
        clock.advance(1700)
        second = await store.location(NAME)
        assert second.uri == first.uri
        assert second.renew_in == pytest.approx(100, abs=5)

    async def test_presigned_url_reissued_after_half_life(self, settings):
        """Past half-life a new URL is signed."""
        clock = FakeClock(0.0, epoch=datetime.now(UTC))
        store = S3Store(replace(settings, uri_style="presigned"), now=clock.wall)
        with capture_logs() as logs:
            await store.location(NAME)
            clock.advance(1900)
            await store.location(NAME)
        issued = [entry for entry in logs if entry["event"] == "presigned_url_issued"]
        assert len(issued) == 2

    async def test_presigned_with_session_credentials_warns(self, settings):
        """A URL signed with temporary credentials dies with the session, so it is flagged."""
        store = S3Store(replace(settings, uri_style="presigned"))
        with capture_logs() as logs:
            location = await store.location(NAME)
        assert "X-Amz-Security-Token" in location.uri  # moto_server.aws_env() has a token
        assert "presigned_url_session_bound" in [entry["event"] for entry in logs]

    async def test_accepts_fresh_url(self, settings):
        """A URL of the same object with more than half its TTL left is accepted."""
        clock = FakeClock(0.0, epoch=datetime.now(UTC))
        store = S3Store(replace(settings, uri_style="presigned"), now=clock.wall)
        issued = (await store.location(NAME)).uri
        clock.advance(1700)
        assert (await store.location(NAME)).matches(issued)

    async def test_rejects_url_near_expiry(self, settings):
        """A URL with less than half its TTL left is not accepted (it gets re-signed)."""
        clock = FakeClock(0.0, epoch=datetime.now(UTC))
        store = S3Store(replace(settings, uri_style="presigned"), now=clock.wall)
        location = await store.location(NAME)
        clock.advance(1900)
        assert location.accepts is not None
        assert not location.accepts(location.uri)

    async def test_rejects_other_object_and_plain_url(self, settings):
        """Only presigned URLs of this very object are accepted."""
        store = S3Store(replace(settings, uri_style="presigned"))
        location = await store.location(NAME)
        assert location.accepts is not None
        other = location.uri.replace(NAME, "pullsecret-other.tar.gz")
        assert not location.accepts(other)
        assert not location.accepts(location.uri.split("?", 1)[0])


class TestReadBundle:
    async def test_reads_what_was_published(self, settings):
        """GetObject returns the published bytes."""
        store = S3Store(settings)
        await store.put_bundle(NAME, DATA, MANIFEST)
        assert await store.read_bundle(NAME, 1024) == DATA

    async def test_missing(self, settings):
        """No object reads as ``None``."""
        assert await S3Store(settings).read_bundle(NAME, 1024) is None

    async def test_bounded(self, settings):
        """An object larger than ``limit`` is refused without being read."""
        store = S3Store(settings)
        await store.put_bundle(NAME, DATA, MANIFEST)
        with pytest.raises(InvalidBundleError, match=f"larger than {len(DATA) - 1} bytes"):
            await store.read_bundle(NAME, len(DATA) - 1)

    async def test_read_refused(self, settings, aiohttp_server):
        """A refused GetObject is a StorageError (the store is at fault, not the bundle)."""
        store = S3Store(replace(settings, endpoint_url=await refusing_endpoint(aiohttp_server)))
        with pytest.raises(StorageError, match=r"cannot read s3://.*: 403"):
            await store.read_bundle(NAME, 1024)


async def refusing_endpoint(aiohttp_server, *, head: web.Response | None = None) -> str:
    """An S3 endpoint that accepts every PutObject, answers HeadObject with ``head``, and
    refuses everything else with 403."""
    async def handle(request: web.Request) -> web.Response:
        if request.method == "PUT":
            await request.read()
            return web.Response(status=200, headers={"ETag": '"0"'})
        if request.method == "HEAD" and head is not None:
            return head
        return web.Response(status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


class TestReadBack:
    async def test_read_back_failure_is_named(self, settings, aiohttp_server):
        """A HeadObject failure after a PutObject says the read-back failed."""
        store = S3Store(replace(settings, endpoint_url=await refusing_endpoint(aiohttp_server)))
        with pytest.raises(StorageError, match=r"cannot read back the just published s3://"
                                               r"\S+/pullsecrets/prod/\S+: 403"):
            await store.put_bundle(NAME, DATA, MANIFEST)

    async def test_mismatch_is_named(self, settings, aiohttp_server):
        """An object that reads back with another size and record says which differ."""
        head = web.Response(status=200, headers={
            "Content-Length": str(len(DATA) + 1), "x-amz-meta-sha256": "0" * 64})
        endpoint = await refusing_endpoint(aiohttp_server, head=head)
        with pytest.raises(StorageError, match=r"does not read back as written \(different "
                                               r"size and recorded hash; changed by another"):
            await S3Store(replace(settings, endpoint_url=endpoint)).put_bundle(
                NAME, DATA, MANIFEST)


REG = "registry.example.com"


class TestServedCheck:
    async def test_replaced_object_is_repaired(self, settings, s3):
        """An object overwritten with other bytes (record kept) is published again."""
        manager = password_manager(S3Store(settings), REG)
        await manager.refresh(REG)
        key = f"pullsecrets/prod/{bundle_name(REG)}"
        good = s3.get_object(Bucket=settings.bucket, Key=key)
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"\x1f\x8b garbage",
                      Metadata=good["Metadata"])
        assert await manager.refresh(REG) == "repaired"
        repaired = s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
        assert (inspect_bundle(repaired, "config.json")
                == inspect_bundle(good["Body"].read(), "config.json"))

    async def test_oversized_object_is_repaired(self, settings, s3):
        """An object beyond the size limit is refused unread and replaced."""
        manager = password_manager(S3Store(settings), REG)
        await manager.refresh(REG)
        key = f"pullsecrets/prod/{bundle_name(REG)}"
        metadata = s3.head_object(Bucket=settings.bucket, Key=key)["Metadata"]
        s3.put_object(Bucket=settings.bucket, Key=key, Body=bytes(MAX_BUNDLE_BYTES + 1),
                      Metadata=metadata)
        assert await manager.refresh(REG) == "repaired"
        assert s3.head_object(Bucket=settings.bucket, Key=key)["ContentLength"] < 4096


class TestListAndPrune:
    async def test_lists_names_right_under_the_prefix(self, settings, s3):
        """Only objects directly under the prefix are listed, by name."""
        await S3Store(settings).put_bundle(NAME, DATA, MANIFEST)
        for key in ("pullsecrets/prod/sub/x.tar.gz", "pullsecrets/prodx.tar.gz", "y.tar.gz"):
            s3.put_object(Bucket=settings.bucket, Key=key, Body=b"x")
        assert await S3Store(settings).list_names() == [NAME]

    async def test_lists_names_without_prefix(self, settings, s3):
        """Without a prefix the bucket's top level is listed."""
        store = S3Store(replace(settings, prefix=""))
        await store.put_bundle(NAME, DATA, MANIFEST)
        assert await store.list_names() == [NAME]

    async def test_prune(self, settings, s3):
        """Prune deletes the stale bundle of this owner, and leaves configured and foreign ones."""
        store = S3Store(settings)
        await password_manager(store, REG, "old.example.com").refresh("old.example.com")
        await password_manager(store, REG).refresh(REG)
        foreign = "pullsecret_blue_old.example.com.tar.gz"
        await store.put_bundle(foreign, DATA, MANIFEST)
        assert await password_manager(store, REG).prune() == [
            bundle_name("old.example.com")]
        assert await store.list_names() == sorted([bundle_name(REG), foreign])
