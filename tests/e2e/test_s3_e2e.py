"""End to end through S3: publish to moto, fetch like the Mesos fetcher, pull with skopeo.

``pullsecret-controller reconcile --once`` runs as a subprocess against the Marathon simulator;
moto (on 127.0.0.1) stands in for S3 and ECR, the ``registry`` fixture is a real docker-registry
with htpasswd auth, ``fetch_into_sandbox`` plays the Mesos fetcher and ``skopeo inspect`` with
HOME set to the sandbox plays ``docker pull``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import os
import sys
import tarfile
import urllib.request
from datetime import UTC, datetime

import boto3  # type: ignore[import-untyped]
import pytest

from controller.bundles import BundleManager
from controller.credentials.ecr import EcrSource
from controller.credentials.kinds import EcrCredentials, EcrSettings
from controller.plan import bundle_name
from controller.settings import RegistrySettings
from controller.simulator import MarathonSimulator, MarathonState
from controller.storage.backends import S3StorageSettings, UriStyle
from controller.storage.s3 import S3Store
from tests.factories import config_doc, docker_app, registry_entry, write_config
from tests.services import MotoServer, fetch_into_sandbox, skopeo_inspect

pytestmark = pytest.mark.e2e

ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
_buckets = itertools.count()


@pytest.fixture
def bucket(aws):
    """A fresh bucket whose policy lets loopback clients GET bundles (``https`` style)."""
    name = f"e2e-bundles-{next(_buckets)}"
    s3 = boto3.client("s3", **aws.client_kwargs())
    s3.create_bucket(Bucket=name)
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                 "Resource": f"arn:aws:s3:::{name}/*",
                 "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}}
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [statement]}))
    return name


def store(aws: MotoServer, bucket: str, uri_style: UriStyle) -> S3Store:
    settings = S3StorageSettings(bucket=bucket, prefix="mesos/pullsecrets", region=aws.region,
                                 endpoint_url=aws.endpoint_url, uri_style=uri_style)
    return S3Store(settings)


@pytest.mark.parametrize("uri_style", ["https", "presigned"])
async def test_cli_reconcile_once(registry, aws, bucket, uri_style, tmp_path):
    """``reconcile --once`` publishes to S3 and adds a fetch entry whose download logs in."""
    state = MarathonState()
    state.load_apps([docker_app("/team-a/web", registry.ref())])
    async with MarathonSimulator(state) as marathon:
        s3 = {"bucket": bucket, "prefix": "mesos/pullsecrets", "region": aws.region,
              "endpoint_url": aws.endpoint_url, "uri_style": uri_style}
        config = write_config(tmp_path, config_doc(
            marathon.url, registries=[registry_entry(registry.host, username=registry.username)],
            storage={"s3": s3}, logging={"format": "json"}), "controller.yaml")
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "REG_PW": registry.password,
               **aws.aws_env()}
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller", "reconcile", "--once", "--config", str(config),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        async with asyncio.timeout(60):
            output, _ = await cli.communicate()
        assert cli.returncode == 0, registry.scrub(output.decode())

    fetch = state.get_app("/team-a/web")["fetch"]
    assert len(fetch) == 1
    entry = fetch[0]
    assert entry.get("destPath") == ("docker.tar.gz" if uri_style == "presigned" else None)
    sandbox = tmp_path / "sandbox"
    fetch_into_sandbox(entry["uri"], sandbox, dest_path=entry.get("destPath"))
    result = skopeo_inspect(registry.ref(), sandbox)
    assert result.returncode == 0, registry.scrub(result.stderr)


async def test_sandbox_without_bundle_is_refused(registry, tmp_path):
    """Control: without the bundle the same pull is refused, so the bundle is what logs in."""
    result = skopeo_inspect(registry.ref(), tmp_path)
    assert result.returncode != 0


async def test_ecr_token_bundle(aws, bucket):
    """A bundle built from moto's ECR token carries its username, password and expiry."""
    expires_at = datetime(2015, 1, 1, tzinfo=UTC)  # what moto's ECR always answers
    ecr = EcrSettings(region=aws.region, endpoint_url=aws.endpoint_url)
    settings = RegistrySettings(host=ECR_HOST, registry=ECR_HOST,
                                credentials=EcrCredentials(ecr=ecr))
    source = EcrSource(ecr, registry=ECR_HOST)
    s3_store = store(aws, bucket, "https")
    manager = BundleManager({ECR_HOST: settings}, {ECR_HOST: source}, s3_store,
                            now=lambda: datetime(2014, 12, 31, 12, tzinfo=UTC))
    assert await manager.refresh(ECR_HOST) == "published"

    manifest = await s3_store.get_manifest(bundle_name(ECR_HOST))
    assert manifest is not None
    assert manifest.expires_at == expires_at
    assert manifest.refresh_at <= datetime(2014, 12, 31, 18, tzinfo=UTC)  # at half-life

    location = await manager.location(ECR_HOST)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(location.uri, timeout=10) as response:
        data = response.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile(".docker/config.json")
        assert member is not None
        config = json.loads(member.read())
    auth = base64.b64decode(config["auths"][ECR_HOST]["auth"]).decode()
    assert auth == "AWS:123456789012-auth-token"

