"""skopeo, standing in for ``docker push`` (of an OCI layout) and ``docker pull`` (in a sandbox)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from pathlib import Path

from tests.services.process import ServiceStartError, clean_env, find_binary, scrub_secrets


def basic_auth(username: str, password: str) -> str:
    """The ``auth`` value of a docker config entry: base64("user:password")."""
    return base64.b64encode(f"{username}:{password}".encode()).decode()


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
            env=clean_env(workdir),
            check=False,
        )
    finally:
        os.unlink(authfile)
    if proc.returncode != 0:
        err = scrub_secrets(proc.stderr, password, basic_auth(username, password))
        raise ServiceStartError(f"skopeo copy to {dest_ref} failed ({proc.returncode}):\n{err}")


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
        env = clean_env(home, XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME=str(config))
        return subprocess.run(
            [skopeo, "inspect", "--retry-times=0", "--tls-verify=false", ref],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
