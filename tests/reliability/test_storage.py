"""Storage failing under a running controller: the last good bundle stays served.

Most scenarios damage the bundle directory; the slow one serves bundles from S3 (moto) through a
proxy in this process that holds every request while the fault lasts. Tasks fetch them there
too, as ``https`` objects (path-style under the proxy's URL) that the bucket's policy lets
loopback clients GET: the simulated agent has no Hadoop client for ``s3a``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import boto3  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from multidict import CIMultiDict
from yarl import URL

from tests.reliability.harness import (
    FAULT_SECONDS,
    NOBODY,
    REG,
    Scenario,
    bundle_problem,
    fill,
    remount,
)
from tests.services import MotoServer, eventually, free_port

RESYNC_SECONDS = 1
"""Short resyncs, so that a rotated password (or a damaged bundle) is noticed quickly."""
REPAIR_SECONDS = 3 * RESYNC_SECONDS + 5
"""How soon a damaged bundle must be served whole again."""

SLOW_REQUEST_SECONDS = max(1.0, FAULT_SECONDS / 2)
"""How long slow storage holds each request: long, yet under the S3 client's 10 s read timeout,
so requests are slow rather than failing."""
S3_PREFIX = "mesos/pullsecrets"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                         "transfer-encoding", "upgrade"})

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="mounting a tmpfs and running as nobody need root")


class ThrottlingProxy:
    """An HTTP proxy on 127.0.0.1 that forwards requests to ``upstream`` unchanged (the
    ``Host`` header too, which S3 signs) and holds each one ``delay`` seconds first."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.delay = 0.0
        self.held = 0
        """Requests held so far."""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self.delay:
            self.held += 1
            await asyncio.sleep(self.delay)
        assert self._session is not None
        body = await request.read()
        headers = CIMultiDict((k, v) for k, v in request.headers.items()
                              if k.lower() not in _HOP_BY_HOP | {"content-length"})
        async with self._session.request(
                request.method, URL(self.upstream + request.raw_path, encoded=True),
                headers=headers, data=body, allow_redirects=False,
                skip_auto_headers=("Accept-Encoding", "Content-Type", "User-Agent"),
        ) as upstream:
            answer = await upstream.read()
            response = web.StreamResponse(status=upstream.status, headers=CIMultiDict(
                (k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP))
            await response.prepare(request)
            await response.write(answer)
            await response.write_eof()
            return response


class S3Shelf:
    """Bundles in a moto bucket, read straight from moto (not through the proxy); the
    controller reaches the bucket at ``endpoint_url``."""

    def __init__(self, moto: MotoServer, bucket: str, endpoint_url: str) -> None:
        self.s3 = boto3.client("s3", **moto.client_kwargs())
        self.region = moto.region
        self.bucket = bucket
        self.endpoint_url = endpoint_url

    def names(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{S3_PREFIX}/")
        return sorted(name for item in listing.get("Contents", [])
                      if (name := item["Key"].removeprefix(f"{S3_PREFIX}/")).endswith(".tar.gz"))

    def read(self, name: str) -> bytes | None:
        try:
            data: bytes = self.s3.get_object(Bucket=self.bucket,
                                             Key=f"{S3_PREFIX}/{name}")["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise PermissionError(f"{name}: {e.response.get('Error', {}).get('Code')}") from None
        return data

    def recorded_sha256(self, name: str) -> str | None:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=f"{S3_PREFIX}/{name}")
        except ClientError:
            return None
        recorded = (head.get("Metadata") or {}).get("sha256")
        return recorded if isinstance(recorded, str) else None

    def uri(self, name: str) -> str:
        return f"{self.endpoint_url}/{self.bucket}/{S3_PREFIX}/{name}"

    def settings(self) -> dict[str, Any]:
        return {"s3": {"bucket": self.bucket, "prefix": S3_PREFIX, "region": self.region,
                       "endpoint_url": self.endpoint_url, "uri_style": "https"}}


@pytest.fixture
async def slow_s3(scenario: Scenario, aws: MotoServer) -> AsyncIterator[ThrottlingProxy]:
    """The scenario serves bundles from a fresh moto bucket that its controllers and tasks
    reach through a ``ThrottlingProxy`` (not slow yet)."""
    bucket = f"reliability-{secrets.token_hex(6)}"
    proxy = ThrottlingProxy(aws.endpoint_url)
    await proxy.start()
    shelf = S3Shelf(aws, bucket, proxy.url)
    shelf.s3.create_bucket(Bucket=bucket)
    loopback_reads = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                      "Resource": f"arn:aws:s3:::{bucket}/{S3_PREFIX}/*",
                      "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}}
    shelf.s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [loopback_reads]}))
    scenario.shelf = shelf
    try:
        yield proxy
    finally:
        await proxy.stop()


async def rotate_during_fault(scenario: Scenario) -> None:
    """Give the controller work that needs the storage: a new password, and new apps (which
    can use the last good bundle meanwhile)."""
    scenario.rotate(REG)
    scenario.add_apps(scenario.standard_apps("/rel/during"))
    process = scenario.controllers[0]
    await eventually(lambda: "bundle_refresh_failed" in process.log_events(), REPAIR_SECONDS,
                "the controller met the storage fault")
    await scenario.hold()


class TestStorageFaults:
    @needs_root
    @pytest.mark.fault("Storage: ENOSPC (full tmpfs) during a password rotation")
    async def test_enospc(self, scenario):
        """A full file system keeps the last good bundle; the new one follows once there is room."""
        scenario.mount_storage("256k")
        await scenario.converge_first(resync_seconds=RESYNC_SECONDS)
        filler = fill(scenario.storage)
        await rotate_during_fault(scenario)
        filler.unlink()
        await scenario.converged_after(time.monotonic())
        await scenario.finish()

    @needs_root
    @pytest.mark.fault("Storage: read-only remount during a password rotation")
    async def test_read_only(self, scenario):
        """A read-only file system keeps the last good bundle until it is writable again."""
        scenario.mount_storage()
        await scenario.converge_first(resync_seconds=RESYNC_SECONDS)
        remount(scenario.storage, "ro")
        await rotate_during_fault(scenario)
        remount(scenario.storage, "rw")
        await scenario.converged_after(time.monotonic())
        await scenario.finish()

    @needs_root
    @pytest.mark.fault("Storage: EACCES (controller runs as nobody, directory is root's)")
    async def test_eacces(self, scenario):
        """A directory the controller may not write to publishes nothing; granting access
        lets it converge."""
        scenario.registry(REG)
        scenario.add_apps(scenario.standard_apps("/rel/base"), deployed=True)
        process = await scenario.start(scenario.config(REG, resync_seconds=RESYNC_SECONDS),
                                       uid=NOBODY)
        scenario.watch_bundles()
        await eventually(lambda: "bundle_refresh_failed" in process.log_events(), 10,
                    "the controller met the permission error")
        await scenario.hold()
        assert not list(scenario.storage.iterdir())
        os.chown(scenario.storage, NOBODY, NOBODY)
        await scenario.converged_after(time.monotonic())
        await scenario.finish()

    @pytest.mark.fault(f"Storage: slow S3 (moto behind a proxy holding every request "
                       f"{SLOW_REQUEST_SECONDS:g} s) during a password rotation")
    async def test_slow_storage(self, scenario, slow_s3):
        """Slow S3 delays a rotation without breaking it: the rotated bundle is served whole
        while the storage is still slow, and nothing moves once it is fast again."""
        await scenario.converge_first(resync_seconds=RESYNC_SECONDS)
        assert scenario.watch is not None
        scenario.watch.interval = 0.1  # each check is two requests to moto
        slow_s3.delay = SLOW_REQUEST_SECONDS
        scenario.rotate(REG)
        scenario.add_apps(scenario.standard_apps("/rel/during"))
        while_slow = await scenario.until_converged(what="converged while the storage is slow")
        await scenario.hold()
        held = slow_s3.held
        slow_s3.delay = 0.0
        await scenario.converged_after(time.monotonic())
        scenario.measurement.note = (f"converged {while_slow:.1f} s after the rotation while "
                                     f"still slow; {held} requests held")
        await scenario.finish()

    @pytest.mark.fault("Storage: served bundle tampered with (bytes overwritten in place)")
    async def test_tampered_bundle(self, scenario):
        """A damaged bundle in place is noticed and published whole again."""
        await scenario.converge_first(resync_seconds=RESYNC_SECONDS)
        assert scenario.watch is not None
        scenario.watch.paused = True  # the damage below is the fault, not a finding
        bundle = scenario.storage / scenario.registries[REG].bundle
        size = bundle.stat().st_size
        with bundle.open("r+b") as f:
            f.seek(size // 2)
            f.write(b"\xff" * 16)
        assert bundle_problem(bundle.read_bytes()) is not None
        tampered = time.monotonic()
        await eventually(lambda: bundle_problem(bundle.read_bytes()) is None, REPAIR_SECONDS,
                    "the damaged bundle is published whole again")
        scenario.watch.paused = False
        await scenario.converged_after(tampered)
        await scenario.finish()
