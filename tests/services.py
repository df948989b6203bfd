"""Real external services for the tests, started on 127.0.0.1 with free ports.

Fakes cannot prove that a credential bundle really makes ``docker pull`` authenticate, so
these helpers run the real things: a docker registry with htpasswd auth (plus an image pushed
into it, built offline as an OCI layout), ZooKeeper and the moto server.  ``fetch_into_sandbox``
and ``skopeo_inspect`` stand in for the Mesos fetcher and for ``docker pull`` in a sandbox.

Nothing here imports pytest: a missing binary raises ``ServiceUnavailable`` and the fixtures in
``tests/conftest.py`` turn that into a skip (or a failure when ``CI`` is set).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import gzip
import hashlib
import io
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"

#: Suffixes the Mesos fetcher extracts into the sandbox root (src/launcher/fetcher.cpp).
ARCHIVE_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip")

_STOP_GRACE_S = 5.0
_live: list[subprocess.Popen[bytes]] = []


REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "marathon"
"""Marathon's own schemas and examples (Apache-2.0, copied verbatim; see its README)."""


class ServiceUnavailable(RuntimeError):
    """A binary or file a service needs is not installed on this machine."""


class ServiceStartError(RuntimeError):
    """A service was installed but did not become ready; the message carries its log tail."""


def free_port() -> int:
    """Ask the kernel for a free loopback port (bind to 0), so parallel runs never collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str, hint: str) -> str:
    """Return the absolute path of ``name`` on PATH or raise ``ServiceUnavailable``."""
    path = shutil.which(name)
    if path is None:
        raise ServiceUnavailable(f"{name!r} not found on PATH (install {hint})")
    return path


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment so no ambient variable (REGISTRY_*, DOCKER_CONFIG, proxies...)
    changes how a service or tool behaves."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": tempfile.gettempdir(),
    }
    env.update(extra)
    return env


def _scrub(text: str, *secrets_: str) -> str:
    """Replace each given secret with ``***`` in text that may end up in a test report."""
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "***")
    return text


# --------------------------------------------------------------------------- processes


@dataclass
class ServiceProcess:
    """A started server process and its log file; ``stop`` is idempotent."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 30) -> str:
        """The end of the log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate, then kill after a grace period; always reap the process."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=_STOP_GRACE_S)
        with contextlib.suppress(ValueError):
            _live.remove(self.popen)


def _spawn(
    name: str, port: int, argv: list[str], log_path: Path, env: dict[str, str]
) -> ServiceProcess:
    """Start a server listening on ``port`` with stdout+stderr going to ``log_path``."""
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    _live.append(popen)
    return ServiceProcess(name=name, port=port, popen=popen, log_path=log_path)


@atexit.register
def _kill_leftovers() -> None:
    """Backstop for interrupted sessions: no server outlives the interpreter."""
    for popen in list(_live):
        if popen.poll() is None:
            popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=_STOP_GRACE_S)


def wait_until(
    ready: Callable[[], bool], proc: ServiceProcess, *, timeout: float, what: str
) -> float:
    """Poll ``ready`` until it is true; fail fast if the process exits; returns seconds taken."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if ready():
            return time.monotonic() - start
        if proc.popen.poll() is not None:
            raise ServiceStartError(
                f"{proc.name} exited with {proc.popen.returncode} before {what}; "
                f"log {proc.log_path}:\n{proc.tail()}"
            )
        if time.monotonic() >= deadline:
            raise ServiceStartError(
                f"{proc.name} not ready ({what}) after {timeout:.0f}s; "
                f"log {proc.log_path}:\n{proc.tail()}"
            )
        time.sleep(0.05)


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    """HTTP status of GET ``url`` (errors included), or None if nothing answers yet."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as err:
        err.close()
        return err.code
    except OSError:  # includes URLError: nothing listening yet
        return None


def _start_with_port_retry(
    start: Callable[[int], ServiceProcess], attempts: int = 3
) -> ServiceProcess:
    """Retry on a fresh port if another process grabbed ours between probe and bind."""
    last: ServiceStartError | None = None
    for _ in range(attempts):
        try:
            return start(free_port())
        except ServiceStartError as err:
            if "address already in use" not in str(err).lower():
                raise
            last = err
    assert last is not None
    raise last


# --------------------------------------------------------------------------- OCI image


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def build_oci_layout(directory: Path, tag: str = "1") -> None:
    """Write a one-layer linux/amd64 image as an OCI layout, so no docker engine is needed.

    The single gzipped layer holds ``hello.txt``; ``tag`` becomes the
    ``org.opencontainers.image.ref.name`` annotation, i.e. ``oci:<directory>:<tag>`` for skopeo.
    """
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> dict[str, Any]:
        digest = _sha256(data)
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    content = b"hello from the pullsecret-controller tests\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode, info.mtime = len(content), 0o644, 0
        tar.addfile(info, io.BytesIO(content))
    layer_tar = buf.getvalue()
    layer = put(gzip.compress(layer_tar, mtime=0))

    config = put(
        _json_bytes(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/hello.txt"]},
                "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar)]},
                "history": [{"created_by": "tests.services.build_oci_layout"}],
            }
        )
    )
    manifest_type = "application/vnd.oci.image.manifest.v1+json"
    manifest = put(
        _json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
            }
        )
    )
    (directory / "oci-layout").write_bytes(_json_bytes({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": manifest_type,
                **manifest,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (directory / "index.json").write_bytes(_json_bytes(index))


# --------------------------------------------------------------------------- registry


def basic_auth(username: str, password: str) -> str:
    """The ``auth`` value of a docker config entry: base64("user:password")."""
    return base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class Registry:
    """A running ``docker-registry`` with htpasswd auth and pushed test images.

    ``password`` is random per session and kept out of ``repr`` so it never lands in a report.
    """

    host: str
    username: str
    password: str = field(repr=False)
    image: str
    other_image: str
    workdir: Path
    layout: Path
    layout_tag: str
    process: ServiceProcess = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, path: str | None = None) -> str:
        """Full image reference without scheme, e.g. ``127.0.0.1:5000/team-a/hello:1``."""
        return f"{self.host}/{path or self.image}"

    def auth(self, password: str | None = None) -> str:
        """base64("user:password") for this registry (or for a deliberately wrong password)."""
        return basic_auth(self.username, self.password if password is None else password)

    def docker_config(self, password: str | None = None) -> dict[str, Any]:
        """Contents of ``.docker/config.json`` that authenticates against this registry."""
        return {"auths": {self.host: {"auth": self.auth(password)}}}

    def dockercfg(self, password: str | None = None) -> dict[str, Any]:
        """Contents of a legacy ``.dockercfg`` (no ``auths`` wrapper)."""
        return {self.host: {"auth": self.auth(password), "email": ""}}

    def log_mark(self) -> int:
        """Current end of the registry log; pass it to ``log_since``."""
        return self.process.log_path.stat().st_size

    def log_since(self, mark: int) -> str:
        """Registry log written after ``mark`` -- shows *why* a request was refused."""
        with self.process.log_path.open("rb") as fh:
            fh.seek(mark)
            return self.scrub(fh.read().decode(errors="replace"))

    def scrub(self, text: str) -> str:
        """``text`` with the password and its base64 form replaced by ``***``."""
        return _scrub(text, self.password, self.auth())

    def push(self, path: str) -> str:
        """Push the test image to another repository path (``team-c/app:2``); returns ``path``."""
        skopeo_push(
            self.layout,
            self.layout_tag,
            self.ref(path),
            username=self.username,
            password=self.password,
            workdir=self.workdir,
        )
        return path

    def stop(self) -> None:
        self.process.stop()


def skopeo_push(
    layout: Path, tag: str, dest_ref: str, *, username: str, password: str, workdir: Path
) -> None:
    """``skopeo copy`` an OCI layout to a plain-HTTP registry.

    Credentials go through a private ``--dest-authfile`` rather than ``--dest-creds`` so the
    password is neither in argv (``ps``, ``TimeoutExpired`` messages) nor in any error text.
    """
    skopeo = find_binary("skopeo", "the skopeo package")
    workdir.mkdir(parents=True, exist_ok=True)
    host = dest_ref.split("/", 1)[0]
    fd, authfile = tempfile.mkstemp(prefix="push-auth-", suffix=".json", dir=workdir)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump({"auths": {host: {"auth": basic_auth(username, password)}}}, fh)
        argv = [
            skopeo,
            "--insecure-policy",
            "copy",
            "--quiet",
            "--retry-times=0",
            f"--dest-authfile={authfile}",
            "--dest-tls-verify=false",
            f"oci:{layout}:{tag}",
            f"docker://{dest_ref}",
        ]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            env=_clean_env(workdir),
            check=False,
        )
    finally:
        os.unlink(authfile)
    if proc.returncode != 0:
        err = _scrub(proc.stderr, password, basic_auth(username, password))
        raise ServiceStartError(f"skopeo copy to {dest_ref} failed ({proc.returncode}):\n{err}")


def make_htpasswd(path: Path, username: str, password: str) -> None:
    """Write a bcrypt htpasswd file (the registry only accepts bcrypt entries)."""
    htpasswd = find_binary("htpasswd", "the apache2-utils package")
    proc = subprocess.run(
        [htpasswd, "-Bbn", username, password],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise ServiceStartError(f"htpasswd failed: {_scrub(proc.stderr, password)}")
    path.write_text(proc.stdout)
    path.chmod(0o600)


def start_registry(
    workdir: Path,
    *,
    username: str = "ci-puller",
    image: str = "team-a/hello:1",
    other_image: str = "team-b/hello:1",
    timeout: float = 10.0,
) -> Registry:
    """Start ``docker-registry serve`` (distribution 2.8) with htpasswd auth, push two images.

    Ready means ``GET /v2/`` answers 401: the HTTP server is up *and* auth is enforced.
    """
    binary = find_binary("docker-registry", "the docker-registry package")
    find_binary("skopeo", "the skopeo package")
    password = secrets.token_urlsafe(24)
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd_path = workdir / "htpasswd"
    make_htpasswd(htpasswd_path, username, password)

    def start(port: int) -> ServiceProcess:
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(workdir / "storage")},
                "delete": {"enabled": True},
            },
            "http": {"addr": f"{HOST}:{port}", "secret": secrets.token_hex(16)},
            "auth": {"htpasswd": {"realm": "pullsecret-test", "path": str(htpasswd_path)}},
        }
        config_path = workdir / "config.yml"
        # JSON is valid YAML; avoids depending on PyYAML's formatting here.
        config_path.write_text(json.dumps(config, indent=2))
        proc = _spawn(
            "docker-registry",
            port,
            [binary, "serve", str(config_path)],
            workdir / "registry.log",
            _clean_env(workdir),
        )
        try:
            wait_until(
                lambda: _http_status(f"http://{HOST}:{port}/v2/") == 401,
                proc,
                timeout=timeout,
                what="GET /v2/ -> 401",
            )
        except BaseException:
            proc.stop()
            raise
        return proc

    proc = _start_with_port_retry(start)
    host = f"{HOST}:{proc.port}"
    layout, tag = workdir / "oci-layout", "1"
    try:
        build_oci_layout(layout, tag)
        for path in (image, other_image):
            skopeo_push(
                layout,
                tag,
                f"{host}/{path}",
                username=username,
                password=password,
                workdir=workdir,
            )
    except BaseException:
        proc.stop()
        raise
    return Registry(
        host=host,
        username=username,
        password=password,
        image=image,
        other_image=other_image,
        workdir=workdir,
        layout=layout,
        layout_tag=tag,
        process=proc,
    )


# --------------------------------------------------------------------------- sandbox


def _mesos_basename(uri: str) -> str:
    """``Fetcher::basename``: treat the URI as a path, so a ``?query`` stays in the name."""
    rest = uri
    index = uri.find("://")
    if index > 1:
        slash = uri.find("/", index + 3)
        if slash == -1:
            raise ValueError(f"Malformed URI (missing path): {uri}")
        rest = uri[slash:]
    return rest.rstrip("/").rsplit("/", 1)[-1]


def _check_loopback(host: str | None) -> None:
    """Tests must never reach beyond this machine."""
    if host == "localhost":
        return
    try:
        if host is not None and ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"refusing to fetch from non-loopback host {host!r}")


def _extract(archive: Path, sandbox: Path) -> None:
    """Extract like mesos-fetcher (into the sandbox root), refusing unsafe members."""
    name = archive.name
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (sandbox / member).resolve()
                if not target.is_relative_to(sandbox.resolve()):
                    raise ValueError(f"unsafe zip member {member!r}")
            zf.extractall(sandbox)  # noqa: S202 - every member was checked above
        return
    with tarfile.open(archive, mode="r:*") as tar:
        tar.extractall(sandbox, filter="data")


def fetch_into_sandbox(
    uri: str,
    sandbox: Path,
    dest_path: str | None = None,
    *,
    extract: bool = True,
    executable: bool = False,
) -> Path:
    """Do what the Mesos fetcher does for one ``fetch`` entry; returns the fetched file.

    ``file://`` (or an absolute path) is copied, ``http(s)://`` downloaded (loopback only, 200
    only).  The local name is ``dest_path`` (Marathon ``destPath``) or the URI's basename
    *including* any ``?query``, so an unnamed presigned URL is not extracted.  Names ending in
    an archive suffix are extracted into the sandbox root (the archive stays); a bare ``.gz``
    is gunzipped next to it; anything else is only copied.
    """
    if any(ch in uri for ch in ("\\", "'", "\0")):
        raise ValueError("Illegal characters in URI")
    name = dest_path if dest_path is not None else _mesos_basename(uri)
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"unusable local file name {name!r}")
    sandbox.mkdir(parents=True, exist_ok=True)
    local = sandbox / name
    local.parent.mkdir(parents=True, exist_ok=True)

    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme in ("", "file"):
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URI with a remote host: {uri}")
        source = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else uri)
        if not source.is_absolute():
            raise ValueError(f"relative local path needs --frameworks_home: {uri}")
        shutil.copyfile(source, local)
    elif parsed.scheme in ("http", "https"):
        _check_loopback(parsed.hostname)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(uri, timeout=10) as resp:
            if resp.status != 200:
                raise OSError(f"HTTP {resp.status} fetching {uri}")
            with local.open("wb") as out:
                shutil.copyfileobj(resp, out)
    else:
        raise ValueError(f"scheme {parsed.scheme!r} needs a Hadoop client; not emulated")

    if executable:
        local.chmod(0o755)
    elif extract:
        if name.endswith(ARCHIVE_SUFFIXES):
            _extract(local, sandbox)
        elif name.endswith(".gz"):
            with gzip.open(local) as src, (sandbox / Path(name[:-3]).name).open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return local


def skopeo_inspect(
    image_ref: str, home: Path, *, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """``skopeo inspect`` as ``docker pull`` in a Mesos sandbox would authenticate.

    HOME is the sandbox (so ``.docker/config.json`` / ``.dockercfg`` there are the only
    credentials); REGISTRY_AUTH_FILE and DOCKER_CONFIG are absent and XDG_RUNTIME_DIR /
    XDG_CONFIG_HOME point at empty directories, because containers/image also reads
    ``$XDG_RUNTIME_DIR/containers/auth.json`` (``/run/containers/<uid>`` when unset) and
    ``$XDG_CONFIG_HOME/containers/auth.json``.  Never raises on a non-zero exit.
    """
    skopeo = find_binary("skopeo", "the skopeo package")
    ref = image_ref if image_ref.startswith("docker://") else f"docker://{image_ref}"
    with tempfile.TemporaryDirectory(prefix="skopeo-xdg-") as xdg:
        runtime, config = Path(xdg, "runtime"), Path(xdg, "config")
        runtime.mkdir(mode=0o700)
        config.mkdir(mode=0o700)
        env = _clean_env(home, XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME=str(config))
        return subprocess.run(
            [skopeo, "inspect", "--retry-times=0", "--tls-verify=false", ref],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )


# --------------------------------------------------------------------------- ZooKeeper

_ZK_JAR = Path("/usr/share/java/zookeeper.jar")  # Debian's; its manifest carries the classpath
_SLF4J_SIMPLE = Path("/usr/share/java/slf4j-simple.jar")


@dataclass
class ZooKeeper:
    """A standalone ZooKeeper server; ``hosts`` is the kazoo connection string."""

    hosts: str
    workdir: Path
    process: ServiceProcess = field(repr=False)

    def stop(self) -> None:
        self.process.stop()


def zk_four_letter(hosts: str, command: str, timeout: float = 1.0) -> str | None:
    """Send a ZooKeeper four-letter command; None if the server does not answer yet."""
    host, port = hosts.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(command.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return None


def start_zookeeper(workdir: Path, *, timeout: float = 20.0) -> ZooKeeper:
    """Run ``QuorumPeerMain`` in the foreground from Debian's jars (what zkServer.sh does,
    minus its hard-coded /etc and /var/log paths); ready when ``ruok`` answers ``imok``."""
    java = find_binary("java", "a JRE (the zookeeper package depends on one)")
    if not _ZK_JAR.is_file():
        raise ServiceUnavailable(f"{_ZK_JAR} missing (install the zookeeper package)")
    classpath = [str(_ZK_JAR)]
    if _SLF4J_SIMPLE.is_file():  # otherwise slf4j falls back to no logging at all
        classpath.append(str(_SLF4J_SIMPLE))
    workdir.mkdir(parents=True, exist_ok=True)

    def start(port: int) -> ServiceProcess:
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        cfg = workdir / "zoo.cfg"
        cfg.write_text(
            "\n".join(
                [
                    "tickTime=2000",
                    f"dataDir={data}",
                    f"clientPort={port}",
                    f"clientPortAddress={HOST}",
                    "maxClientCnxns=0",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=ruok,srvr",
                    "",
                ]
            )
        )
        argv = [
            java,
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            os.pathsep.join(classpath),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(cfg),
        ]
        proc = _spawn("zookeeper", port, argv, workdir / "zookeeper.log", _clean_env(workdir))
        try:
            wait_until(
                lambda: zk_four_letter(f"{HOST}:{port}", "ruok") == "imok",
                proc,
                timeout=timeout,
                what="ruok -> imok",
            )
        except BaseException:
            proc.stop()
            raise
        return proc

    proc = _start_with_port_retry(start)
    return ZooKeeper(hosts=f"{HOST}:{proc.port}", workdir=workdir, process=proc)


# --------------------------------------------------------------------------- moto


def aws_env(region: str = "us-east-1") -> dict[str, str]:
    """Dummy credentials for talking to moto; callers apply them (e.g. monkeypatch.setenv)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


@dataclass
class MotoServer:
    """A ``moto.server`` process (all AWS services on one endpoint)."""

    endpoint_url: str
    workdir: Path
    process: ServiceProcess = field(repr=False)
    region: str = "us-east-1"

    def aws_env(self) -> dict[str, str]:
        """Dummy credentials and region for this server (endpoint is passed explicitly)."""
        return aws_env(self.region)

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``session.create_client(service, **kwargs)``."""
        env = self.aws_env()
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        }

    def reset(self) -> None:
        """Drop all moto state (``POST /moto-api/reset``) so tests can share the server."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = f"{self.endpoint_url}/moto-api/reset"
        req = urllib.request.Request(url, method="POST")  # noqa: S310 - our own http endpoint
        with opener.open(req, timeout=5):
            pass

    def stop(self) -> None:
        self.process.stop()


def start_moto(workdir: Path, *, timeout: float = 15.0) -> MotoServer:
    """Start ``python -m moto.server`` from this interpreter's environment; ready when
    ``GET /`` answers."""
    try:
        import moto.server  # noqa: F401
    except ImportError as err:
        raise ServiceUnavailable(f"moto[server] is not installed: {err}") from err
    workdir.mkdir(parents=True, exist_ok=True)

    def start(port: int) -> ServiceProcess:
        argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
        env = _clean_env(workdir, PYTHONUNBUFFERED="1", **aws_env())
        proc = _spawn("moto_server", port, argv, workdir / "moto.log", env)
        try:
            wait_until(
                lambda: _http_status(f"http://{HOST}:{port}/") is not None,
                proc,
                timeout=timeout,
                what="GET / answers",
            )
        except BaseException:
            proc.stop()
            raise
        return proc

    proc = _start_with_port_retry(start)
    return MotoServer(endpoint_url=f"http://{HOST}:{proc.port}", workdir=workdir, process=proc)


# --------------------------------------------------------------------------- token-auth registry


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenIssuer:
    """A token service for ``docker-registry``'s ``auth: token``, on a thread of this process.

    It plays docker/distribution's reference design (``docs/spec/auth/token.md``, ``jwt.md``,
    ``oauth.md``): ``GET /token?service=&scope=&account=`` with Basic auth, or the OAuth2
    ``POST /token`` (``grant_type=refresh_token`` with ``identity_token``, or ``password``).
    A wrong secret gets 401 (GET) or 400 ``invalid_grant`` (POST); no credential at all gets a
    token with no access.  Tokens are ES256 JWTs whose ``x5c`` header carries the signing
    certificate, which the registry checks against ``rootcertbundle`` (``cert``).  Every
    requested action is granted, except on repositories under ``private/``.

    A thread rather than the test's event loop, because the registry and skopeo (run with
    blocking ``subprocess.run``) call it while the test waits for them.
    """

    url: str
    service: str
    issuer: str
    username: str
    password: str = field(repr=False)
    identity_token: str = field(repr=False)
    cert: Path
    key_pem: bytes = field(repr=False)
    server: Any = field(repr=False)
    thread: Any = field(repr=False)
    grants: list[str] = field(default_factory=list)
    """``method outcome`` per answered request (``GET 200``, ``POST 400``...), no secrets."""

    def token_for(self, subject: str, scopes: list[str]) -> str:
        """A JWT for ``subject`` granting ``scopes`` (``repository:name:pull,push``)."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        from cryptography.x509 import load_pem_x509_certificate

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name and not name.startswith("private/"):
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        cert = load_pem_x509_certificate(self.cert.read_bytes())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER))
                          .decode()]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "iat": now,
                  "nbf": now - 10, "exp": now + 300, "jti": secrets.token_hex(8),
                  "access": access}
        signing_input = f"{_b64url(_json_bytes(header))}.{_b64url(_json_bytes(claims))}"
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def answer(self, method: str, headers: Any, query: str, body: str) -> tuple[int, bytes]:
        """Status and JSON body for one request to the token endpoint."""
        if method == "POST":
            form = urllib.parse.parse_qs(body)
            grant = form.get("grant_type", [""])[0]
            given = {k: v[0] for k, v in form.items()}
            ok = (grant == "refresh_token"
                  and given.get("refresh_token") == self.identity_token) or (
                grant == "password" and given.get("username") == self.username
                and given.get("password") == self.password)
            if not ok:
                return 400, _json_bytes({"error": "invalid_grant"})
            scopes = given.get("scope", "").split()
            return 200, _json_bytes({"access_token": self.token_for(self.username, scopes),
                                     "expires_in": 300, "scope": " ".join(scopes)})
        params = urllib.parse.parse_qs(query)
        scopes = [s for value in params.get("scope", []) for s in value.split()]
        authorization = headers.get("Authorization")
        if authorization is None:
            return 200, _json_bytes({"token": self.token_for("", []), "expires_in": 300})
        if authorization != f"Basic {basic_auth(self.username, self.password)}":
            return 401, _json_bytes({"errors": [{"code": "UNAUTHORIZED"}]})
        return 200, _json_bytes({"token": self.token_for(self.username, scopes),
                                 "expires_in": 300})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=_STOP_GRACE_S)


def start_token_issuer(
    workdir: Path, *, username: str, password: str, service: str, issuer: str
) -> TokenIssuer:
    """Serve a ``TokenIssuer`` on a free loopback port, with a fresh P-256 signing key."""
    import http.server
    import threading

    from tests.adapters.marathon_helpers import self_signed

    cert, key = self_signed(workdir / "token-signing")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            length = min(int(self.headers.get("Content-Length") or 0), 65536)
            body = self.rfile.read(length).decode(errors="replace")
            status, payload = (404, b"{}") if path != "/token" else token_issuer.answer(
                self.command, self.headers, query, body)
            token_issuer.grants.append(f"{self.command} {status}")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="token-issuer", daemon=True)
    token_issuer = TokenIssuer(
        url=f"http://{HOST}:{server.server_address[1]}/token", service=service, issuer=issuer,
        username=username, password=password, identity_token=secrets.token_urlsafe(24),
        cert=cert, key_pem=key.read_bytes(), server=server, thread=thread)
    thread.start()
    return token_issuer


@dataclass
class TokenRegistry(Registry):
    """A ``docker-registry`` with ``auth: token`` trusting ``issuer``; images as in ``Registry``."""

    issuer: TokenIssuer = field(repr=False)

    def scrub(self, text: str) -> str:
        return _scrub(super().scrub(text), self.issuer.identity_token)

    def stop(self) -> None:
        self.process.stop()
        self.issuer.stop()


def start_token_registry(
    workdir: Path,
    *,
    username: str = "ci-puller",
    image: str = "team-a/hello:1",
    other_image: str = "team-b/hello:1",
    timeout: float = 10.0,
) -> TokenRegistry:
    """Start ``docker-registry serve`` with token auth (``realm``, ``service``, ``issuer``,
    ``rootcertbundle``) and its ``TokenIssuer``, then push two images through the token flow.

    Ready means ``GET /v2/`` answers 401: the HTTP server is up *and* auth is enforced.
    """
    binary = find_binary("docker-registry", "the docker-registry package")
    find_binary("skopeo", "the skopeo package")
    password = secrets.token_urlsafe(24)
    workdir.mkdir(parents=True, exist_ok=True)
    issuer = start_token_issuer(workdir, username=username, password=password,
                                service="pullsecret-test-registry",
                                issuer="pullsecret-test-issuer")

    def start(port: int) -> ServiceProcess:
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
            "http": {"addr": f"{HOST}:{port}", "secret": secrets.token_hex(16)},
            "auth": {"token": {"realm": issuer.url, "service": issuer.service,
                               "issuer": issuer.issuer, "rootcertbundle": str(issuer.cert)}},
        }
        config_path = workdir / "config.yml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        proc = _spawn("docker-registry-token", port, [binary, "serve", str(config_path)],
                      workdir / "registry.log", _clean_env(workdir))
        try:
            wait_until(lambda: _http_status(f"http://{HOST}:{port}/v2/") == 401, proc,
                       timeout=timeout, what="GET /v2/ -> 401")
        except BaseException:
            proc.stop()
            raise
        return proc

    try:
        proc = _start_with_port_retry(start)
    except BaseException:
        issuer.stop()
        raise
    host = f"{HOST}:{proc.port}"
    layout, tag = workdir / "oci-layout", "1"
    try:
        build_oci_layout(layout, tag)
        for path in (image, other_image):
            skopeo_push(layout, tag, f"{host}/{path}", username=username, password=password,
                        workdir=workdir)
    except BaseException:
        proc.stop()
        issuer.stop()
        raise
    return TokenRegistry(host=host, username=username, password=password, image=image,
                         other_image=other_image, workdir=workdir, layout=layout,
                         layout_tag=tag, process=proc, issuer=issuer)


def restart_zookeeper(zk: ZooKeeper, *, timeout: float = 20.0) -> float:
    """Start a stopped ``zk`` again on its port, config and data (the end of an outage);
    returns the seconds until it answered ``ruok``."""
    old = zk.process
    old.stop()
    proc = _spawn(old.name, old.port, [str(arg) for arg in old.popen.args], old.log_path,
                  _clean_env(zk.workdir))
    try:
        took = wait_until(lambda: zk_four_letter(zk.hosts, "ruok") == "imok", proc,
                          timeout=timeout, what="ruok -> imok after a restart")
    except BaseException:
        proc.stop()
        raise
    zk.process = proc
    return took


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll a sync or async ``check`` every 50 ms until it is true; returns the seconds it took.

    Raises ``AssertionError`` naming ``what`` after ``timeout`` seconds.
    """
    started = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(0.05)
