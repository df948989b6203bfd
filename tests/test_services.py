"""Prove the real-service fixtures work, and that the sandbox check tells good bundles from bad.

The sandbox tests are the basis of the end-to-end proof: a bundle that makes ``skopeo inspect``
succeed with ``HOME=<sandbox>`` is one that makes ``docker pull`` authenticate under Mesos.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import http.server
import io
import json
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session
from kazoo.client import KazooClient

from controller.simulator.fetcher import FetchError
from tests import services
from tests.factories import tar_gz
from tests.services.process import clean_env, spawn_ready

# --------------------------------------------------------------------------- helpers


def config_bundle(tmp_path: Path, config: Mapping[str, Any]) -> Path:
    return tar_gz(
        tmp_path / "docker.tar.gz", {".docker/config.json": json.dumps(config).encode()}
    )


def assert_auth_failure(
    proc: subprocess.CompletedProcess[str], registry: services.Registry
) -> None:
    """The inspect failed *because of authentication*, not for some unrelated reason."""
    stderr = registry.scrub(proc.stderr)
    assert proc.returncode != 0, "skopeo inspect unexpectedly succeeded"
    assert "401" in stderr or "unauthorized" in stderr.lower(), stderr


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A loopback HTTP server over a temp dir (stands in for the bundle store)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        (services.HOST, 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://{services.HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- processes


def test_free_port_can_be_bound() -> None:
    port = services.free_port()
    with socket.socket() as sock:
        sock.bind((services.HOST, port))


def test_a_service_that_exits_fails_fast_with_its_log(tmp_path: Path) -> None:
    """spawn_ready does not wait out its timeout for a process that already died."""
    argv = [sys.executable, "-c", "print('no config'); raise SystemExit(3)"]
    started = time.monotonic()
    with pytest.raises(services.ServiceStartError) as info:
        spawn_ready("broken", services.free_port(), argv, tmp_path / "broken.log",
                    clean_env(tmp_path), ready=lambda: False, timeout=60, what="never")
    assert time.monotonic() - started < 30
    assert "broken exited with 3 before never" in str(info.value)
    assert "no config" in str(info.value)


async def test_eventually_takes_sync_and_async_checks() -> None:
    calls: list[str] = []

    def at_once() -> bool:
        calls.append("sync")
        return True

    async def third_time() -> bool:
        calls.append("async")
        return calls.count("async") >= 3

    await services.eventually(at_once)
    await services.eventually(third_time, 5, "the third call")
    assert calls == ["sync", "async", "async", "async"]


async def test_eventually_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"the impossible: not within 0\.1s"):
        await services.eventually(lambda: False, 0.1, "the impossible")


# --------------------------------------------------------------------------- registry


@pytest.mark.e2e
def test_registry_enforces_htpasswd_auth(registry: services.Registry) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{registry.url}/v2/", timeout=5)  # noqa: S310 - http only
    assert info.value.code == 401
    assert info.value.headers["WWW-Authenticate"].startswith("Basic realm=")
    info.value.close()

    auth = {"Authorization": f"Basic {registry.auth()}"}
    req = urllib.request.Request(f"{registry.url}/v2/_catalog", headers=auth)  # noqa: S310
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback http
        catalog = json.load(resp)
    assert {"team-a/hello", "team-b/hello"} <= set(catalog["repositories"])
    assert registry.password not in repr(registry)
    assert registry.image == "team-a/hello:1"


def test_build_oci_layout_is_self_consistent(tmp_path: Path) -> None:
    services.build_oci_layout(tmp_path, tag="v9")
    index = json.loads((tmp_path / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v9"

    def blob(digest: str) -> bytes:
        data = (tmp_path / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    manifest = json.loads(blob(entry["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    layer = blob(manifest["layers"][0]["digest"])
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        assert tar.getnames() == ["hello.txt"]
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    assert config["rootfs"] == {"type": "layers", "diff_ids": [diff_id]}
    assert (config["architecture"], config["os"]) == ("amd64", "linux")


# --------------------------------------------------------------------------- sandbox


@pytest.mark.e2e
def test_sandbox_with_docker_config_json_authenticates(
    registry: services.Registry, tmp_path: Path
) -> None:
    bundle = config_bundle(tmp_path, registry.docker_config())
    sandbox = tmp_path / "sandbox"

    fetched = services.fetch_into_sandbox(bundle.as_uri(), sandbox)

    assert fetched == sandbox / "docker.tar.gz"
    assert (sandbox / ".docker" / "config.json").is_file()
    for image in (registry.image, registry.other_image):
        proc = services.skopeo_inspect(registry.ref(image), sandbox)
        assert proc.returncode == 0, registry.scrub(proc.stderr)
        assert json.loads(proc.stdout)["Name"] == registry.ref(image).rsplit(":", 1)[0]


@pytest.mark.e2e
def test_empty_sandbox_fails_with_an_auth_error(
    registry: services.Registry, tmp_path: Path
) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    mark = registry.log_mark()

    assert_auth_failure(services.skopeo_inspect(registry.ref(), sandbox), registry)
    # Nothing ambient (host auth files, env) supplied our user's credentials.
    assert f'authenticating user \\"{registry.username}\\"' not in registry.log_since(mark)


@pytest.mark.e2e
def test_sandbox_with_legacy_dockercfg_authenticates(
    registry: services.Registry, tmp_path: Path
) -> None:
    """Mesos also accepts ``<sandbox>/.dockercfg``; skopeo 1.9 reads it as ``$HOME/.dockercfg``."""
    source = tmp_path / ".dockercfg"
    source.write_text(json.dumps(registry.dockercfg()))
    sandbox = tmp_path / "sandbox"

    services.fetch_into_sandbox(source.as_uri(), sandbox)

    assert sorted(p.name for p in sandbox.iterdir()) == [".dockercfg"]
    proc = services.skopeo_inspect(registry.ref(), sandbox)
    assert proc.returncode == 0, registry.scrub(proc.stderr)


@pytest.mark.e2e
def test_sandbox_with_wrong_password_fails(registry: services.Registry, tmp_path: Path) -> None:
    bundle = config_bundle(tmp_path, registry.docker_config(password="not-the-password"))
    sandbox = tmp_path / "sandbox"
    services.fetch_into_sandbox(bundle.as_uri(), sandbox)
    mark = registry.log_mark()

    assert_auth_failure(services.skopeo_inspect(registry.ref(), sandbox), registry)
    # The bundle *was* read and its credentials sent -- the registry rejected them.
    log = registry.log_since(mark)
    assert f'error authenticating user \\"{registry.username}\\": authentication failure' in log


@pytest.mark.e2e
def test_config_for_another_host_does_not_authenticate(
    registry: services.Registry, tmp_path: Path
) -> None:
    """The ``auths`` key must match the image's registry host exactly."""
    config = {"auths": {"registry.example.com": {"auth": registry.auth()}}}
    sandbox = tmp_path / "sandbox"
    services.fetch_into_sandbox(config_bundle(tmp_path, config).as_uri(), sandbox)

    assert_auth_failure(services.skopeo_inspect(registry.ref(), sandbox), registry)


def test_fetch_over_http_keeps_the_query_string_in_the_name(
    http_dir: tuple[Path, str], tmp_path: Path
) -> None:
    """Mesos names the file after the URI path *with* ``?query``: no extraction without destPath."""
    root, base = http_dir
    tar_gz(root / "docker.tar.gz", {".docker/config.json": b"{}"})
    uri = f"{base}/docker.tar.gz?X-Amz-Signature=abc"

    plain = services.fetch_into_sandbox(uri, tmp_path / "plain")
    assert plain.name == "docker.tar.gz?X-Amz-Signature=abc"
    assert not (tmp_path / "plain" / ".docker").exists()

    named = services.fetch_into_sandbox(uri, tmp_path / "named", dest_path="docker.tar.gz")
    assert named.name == "docker.tar.gz"
    assert (tmp_path / "named" / ".docker" / "config.json").read_bytes() == b"{}"


def test_fetch_refuses_unsafe_archives_and_remote_hosts(tmp_path: Path) -> None:
    evil = tar_gz(tmp_path / "evil.tar.gz", {"../escape.txt": b"x"})
    with pytest.raises(FetchError):
        services.fetch_into_sandbox(evil.as_uri(), tmp_path / "sandbox")
    assert not (tmp_path / "escape.txt").exists()

    with pytest.raises(FetchError, match=r"refusing to fetch from host 'example\.com'"):
        services.fetch_into_sandbox("https://example.com/docker.tar.gz", tmp_path / "s2")


# --------------------------------------------------------------------------- ZooKeeper


@pytest.mark.zookeeper
def test_zookeeper_roundtrip(zookeeper: services.ZooKeeper) -> None:
    assert services.zk_four_letter(zookeeper.hosts, "ruok") == "imok"
    client = KazooClient(hosts=zookeeper.hosts, timeout=5)
    client.start(timeout=10)
    try:
        client.create("/services-test/node", b"hello", makepath=True)
        data, stat = client.get("/services-test/node")
        assert data == b"hello"
        assert stat.version == 0
        client.delete("/services-test", recursive=True)
    finally:
        client.stop()
        client.close()


# --------------------------------------------------------------------------- moto


async def test_moto_s3_roundtrip(moto_server: services.MotoServer) -> None:
    session = get_session()
    async with session.create_client("s3", **moto_server.client_kwargs()) as s3:
        await s3.create_bucket(Bucket="services-test")
        await s3.put_object(Bucket="services-test", Key="a/docker.tar.gz", Body=b"payload")
        obj = await s3.get_object(Bucket="services-test", Key="a/docker.tar.gz")
        async with obj["Body"] as body:
            assert await body.read() == b"payload"


async def test_moto_ecr_authorization_token(moto_server: services.MotoServer) -> None:
    session = get_session()
    async with session.create_client("ecr", **moto_server.client_kwargs()) as ecr:
        resp = await ecr.get_authorization_token()
    (data,) = resp["authorizationData"]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS"
    assert password
    assert isinstance(data["expiresAt"], datetime)


def test_aws_env_is_dummy_and_not_global(moto_server: services.MotoServer) -> None:
    env = moto_server.aws_env()
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert moto_server.endpoint_url.startswith(f"http://{services.HOST}:")
