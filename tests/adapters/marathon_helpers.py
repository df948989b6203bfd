"""Shared pieces for MarathonClient tests: a recording stand-in, a client factory, certificates."""

from __future__ import annotations

import datetime
import inspect
import ipaddress
import json
import ssl
from pathlib import Path

from aiohttp import web

from controller.marathon.api import RequestObserver
from controller.marathon.client import MarathonClient
from controller.settings import MarathonSettings
from tests.services import free_port

APPS = {"apps": [{"id": "/a"}]}


async def no_sleep(_: float) -> None:
    return None


def ids(apps) -> list[str]:
    """The ids of listed apps (``ListedApp``) or app dicts."""
    return [app["id"] if isinstance(app, dict) else app.id for app in apps]


class Recorder:
    """A tiny Marathon stand-in that records every request."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.bodies: list[object] = []

    def app(self, handler) -> web.Application:
        async def record(request: web.Request) -> web.StreamResponse:
            self.requests.append(request)
            raw = await request.read()
            self.bodies.append(json.loads(raw) if raw else None)
            response = handler(request)
            return await response if inspect.isawaitable(response) else response

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        return app


def free_url() -> str:
    """The URL of a loopback port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


class Statuses(list[str]):
    """A ``RequestObserver`` that keeps each request's status, in order."""

    def on_request(self, method: str, status: str, seconds: float) -> None:
        self.append(status)


def client(session, *urls: str, retry_sleep=no_sleep, observer: RequestObserver | None = None,
           **settings) -> MarathonClient:
    settings.setdefault("timeout_seconds", 2)
    env = {"MPW": "s3cret", "BAD": "abc\ndef", "RAW": "s3cr\udcffet"}
    return MarathonClient(MarathonSettings(urls=urls, **settings), session, env=env,
                          retry_sleep=retry_sleep, observer=observer)


def self_signed(directory: Path, *, ip: str = "127.0.0.1", dns: str | None = None,
                expired: bool = False) -> tuple[Path, Path]:
    """A self-signed certificate for ``ip``, or for the DNS name ``dns`` if given (valid now,
    or expired an hour ago), and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns or ip)])
    alternative = x509.DNSName(dns) if dns else x509.IPAddress(ipaddress.ip_address(ip))
    now = datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(hours=2 if expired else 0, minutes=1)
    end = now - datetime.timedelta(hours=1) if expired else now + datetime.timedelta(hours=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([alternative]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return directory / "cert.pem", directory / "key.pem"


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """The server side of a TLS test server."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
