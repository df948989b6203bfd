"""A real Debian ``docker-registry`` with htpasswd auth and test images pushed into it."""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.services.oci import build_oci_layout
from tests.services.process import (
    HOST,
    ServiceProcess,
    ServiceStartError,
    clean_env,
    find_binary,
    http_status,
    scrub_secrets,
    spawn_ready,
    start_with_port_retry,
)
from tests.services.skopeo import basic_auth, skopeo_push


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
        return scrub_secrets(text, self.password, self.auth())

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
        raise ServiceStartError(f"htpasswd failed: {scrub_secrets(proc.stderr, password)}")
    path.write_text(proc.stdout)
    path.chmod(0o600)


def launch_registry(
    workdir: Path,
    auth: dict[str, Any],
    *,
    name: str,
    username: str,
    password: str,
    images: tuple[str, ...],
    timeout: float,
) -> tuple[ServiceProcess, Path, str]:
    """Start ``docker-registry serve`` (distribution 2.8) with the ``auth`` config section and
    push ``images`` as ``username``; returns the process and the pushed OCI layout and tag.

    Ready means ``GET /v2/`` answers 401: the HTTP server is up *and* auth is enforced.  The
    process is stopped if it never gets ready or a push fails.
    """
    binary = find_binary("docker-registry", "the docker-registry package")
    find_binary("skopeo", "the skopeo package")
    workdir.mkdir(parents=True, exist_ok=True)

    def start(port: int) -> ServiceProcess:
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(workdir / "storage")},
                "delete": {"enabled": True},
            },
            "http": {"addr": f"{HOST}:{port}", "secret": secrets.token_hex(16)},
            "auth": auth,
        }
        config_path = workdir / "config.yml"
        # JSON is valid YAML; avoids depending on PyYAML's formatting here.
        config_path.write_text(json.dumps(config, indent=2))
        return spawn_ready(
            name, port, [binary, "serve", str(config_path)], workdir / "registry.log",
            clean_env(workdir),
            ready=lambda: http_status(f"http://{HOST}:{port}/v2/") == 401,
            timeout=timeout, what="GET /v2/ -> 401",
        )

    proc = start_with_port_retry(start)
    layout, tag = workdir / "oci-layout", "1"
    try:
        build_oci_layout(layout, tag)
        for path in images:
            skopeo_push(layout, tag, f"{HOST}:{proc.port}/{path}", username=username,
                        password=password, workdir=workdir)
    except BaseException:
        proc.stop()
        raise
    return proc, layout, tag


def start_registry(
    workdir: Path,
    *,
    username: str = "ci-puller",
    image: str = "team-a/hello:1",
    other_image: str = "team-b/hello:1",
    timeout: float = 10.0,
) -> Registry:
    """A ``docker-registry`` with htpasswd auth and a random password, two images pushed."""
    password = secrets.token_urlsafe(24)
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd_path = workdir / "htpasswd"
    make_htpasswd(htpasswd_path, username, password)
    proc, layout, tag = launch_registry(
        workdir, {"htpasswd": {"realm": "pullsecret-test", "path": str(htpasswd_path)}},
        name="docker-registry", username=username, password=password,
        images=(image, other_image), timeout=timeout,
    )
    return Registry(host=f"{HOST}:{proc.port}", username=username, password=password,
                    image=image, other_image=other_image, workdir=workdir, layout=layout,
                    layout_tag=tag, process=proc)
