"""moto in server mode: S3 and ECR on one loopback endpoint, state reset between tests."""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.services.process import (
    HOST,
    ServiceProcess,
    ServiceUnavailable,
    clean_env,
    http_status,
    spawn_ready,
    start_with_port_retry,
)


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
        env = clean_env(workdir, PYTHONUNBUFFERED="1", **aws_env())
        return spawn_ready(
            "moto_server", port, argv, workdir / "moto.log", env,
            ready=lambda: http_status(f"http://{HOST}:{port}/") is not None,
            timeout=timeout, what="GET / answers",
        )

    proc = start_with_port_retry(start)
    return MotoServer(endpoint_url=f"http://{HOST}:{proc.port}", workdir=workdir, process=proc)
