"""A registry with token auth: ``docker-registry`` and a token issuer (docker/distribution's
reference design), so the controller's token flow meets a real registry."""

from __future__ import annotations

import base64
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.services.oci import json_bytes
from tests.services.process import HOST, STOP_GRACE_S, scrub_secrets
from tests.services.registry import Registry, launch_registry
from tests.services.skopeo import basic_auth, skopeo_push


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Account:
    """An account of the ``TokenIssuer``: its password, and the repository path prefixes its
    tokens never grant (``("private/",)``: nothing under ``private/``)."""

    password: str = field(repr=False)
    denied: tuple[str, ...] = ()


@dataclass
class TokenIssuer:
    """A token service for ``docker-registry``'s ``auth: token``, on a thread of this process.

    It plays docker/distribution's reference design (``docs/spec/auth/token.md``, ``jwt.md``,
    ``oauth.md``): ``GET /token?service=&scope=&account=`` with Basic auth, or the OAuth2
    ``POST /token`` (``grant_type=refresh_token`` with ``identity_token``, or ``password``).
    A wrong secret gets 401 (GET) or 400 ``invalid_grant`` (POST); no credential at all gets a
    token with no access.  Tokens are ES256 JWTs whose ``x5c`` header carries the signing
    certificate, which the registry checks against ``rootcertbundle`` (``cert``).  Every
    requested action is granted, except on the repositories an account is ``denied``.

    It answers over https (``url``; ``tls_cert`` verifies it), as a token service on another
    origin than its registry must for the controller to send it a credential.  The identity
    token belongs to ``username``.

    A thread rather than the test's event loop, because the registry and skopeo (run with
    blocking ``subprocess.run``) call it while the test waits for them.
    """

    url: str
    tls_cert: Path
    service: str
    issuer: str
    username: str
    accounts: dict[str, Account] = field(repr=False)
    identity_token: str = field(repr=False)
    cert: Path
    key_pem: bytes = field(repr=False)
    server: Any = field(repr=False)
    thread: Any = field(repr=False)
    grants: list[str] = field(default_factory=list)
    """``method outcome`` per answered request (``GET 200``, ``POST 400``...), no secrets."""

    @property
    def password(self) -> str:
        """The password of ``username``."""
        return self.accounts[self.username].password

    def secrets(self) -> list[str]:
        """Every password and the identity token, for ``scrub_secrets``."""
        found = [self.identity_token]
        for name, account in self.accounts.items():
            found += [account.password, basic_auth(name, account.password)]
        return found

    def token_for(self, subject: str, scopes: list[str]) -> str:
        """A JWT for ``subject`` granting ``scopes`` (``repository:name:pull,push``) minus what
        the subject's account is denied; an unknown subject gets no access."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        from cryptography.x509 import load_pem_x509_certificate

        account = self.accounts.get(subject)
        access = []
        for scope in scopes if account is not None else []:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name and not name.startswith(account.denied):
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        cert = load_pem_x509_certificate(self.cert.read_bytes())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER))
                          .decode()]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "iat": now,
                  "nbf": now - 10, "exp": now + 300, "jti": secrets.token_hex(8),
                  "access": access}
        signing_input = f"{_b64url(json_bytes(header))}.{_b64url(json_bytes(claims))}"
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _basic_subject(self, authorization: str) -> str | None:
        """The account whose right password the Basic ``authorization`` carries."""
        for name, account in self.accounts.items():
            if authorization == f"Basic {basic_auth(name, account.password)}":
                return name
        return None

    def answer(self, method: str, headers: Any, query: str, body: str) -> tuple[int, bytes]:
        """Status and JSON body for one request to the token endpoint."""
        if method == "POST":
            form = urllib.parse.parse_qs(body)
            grant = form.get("grant_type", [""])[0]
            given = {k: v[0] for k, v in form.items()}
            subject: str | None = None
            if grant == "refresh_token" and given.get("refresh_token") == self.identity_token:
                subject = self.username
            elif grant == "password" and given.get("username") in self.accounts:
                account = self.accounts[given["username"]]
                subject = given["username"] if given.get("password") == account.password else None
            if subject is None:
                return 400, json_bytes({"error": "invalid_grant"})
            scopes = given.get("scope", "").split()
            return 200, json_bytes({"access_token": self.token_for(subject, scopes),
                                     "expires_in": 300, "scope": " ".join(scopes)})
        params = urllib.parse.parse_qs(query)
        scopes = [s for value in params.get("scope", []) for s in value.split()]
        authorization = headers.get("Authorization")
        if authorization is None:
            return 200, json_bytes({"token": self.token_for("", []), "expires_in": 300})
        subject = self._basic_subject(authorization)
        if subject is None:
            return 401, json_bytes({"errors": [{"code": "UNAUTHORIZED"}]})
        return 200, json_bytes({"token": self.token_for(subject, scopes), "expires_in": 300})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=STOP_GRACE_S)


def start_token_issuer(
    workdir: Path, *, username: str, accounts: dict[str, Account], service: str, issuer: str
) -> TokenIssuer:
    """Serve a ``TokenIssuer`` over https on a free loopback port, with a fresh P-256 signing
    key and a fresh self-signed certificate for 127.0.0.1; ``username``, one of ``accounts``,
    owns the identity token."""
    import http.server
    import threading

    from tests.adapters.marathon_helpers import self_signed, server_tls

    cert, key = self_signed(workdir / "token-signing")
    tls_cert, tls_key = self_signed(workdir / "token-tls")

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
    # The handshake happens on the handler's thread, at its first read, not in accept().
    server.socket = server_tls(tls_cert, tls_key).wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, name="token-issuer", daemon=True)
    token_issuer = TokenIssuer(
        url=f"https://{HOST}:{server.server_address[1]}/token", tls_cert=tls_cert,
        service=service, issuer=issuer, username=username, accounts=accounts,
        identity_token=secrets.token_urlsafe(24), cert=cert, key_pem=key.read_bytes(),
        server=server, thread=thread)
    thread.start()
    return token_issuer


PUSHER = "ci-pusher"
"""The token registry's account that pushes the test images; no repository is denied to it."""


@dataclass
class TokenRegistry(Registry):
    """A ``docker-registry`` with ``auth: token`` trusting ``issuer``; images as in ``Registry``
    plus ``private_image``, which ``username`` (the robot) may not pull: its tokens never grant
    anything under ``private/``. Images are pushed as ``PUSHER``."""

    private_image: str
    issuer: TokenIssuer = field(repr=False)

    def scrub(self, text: str) -> str:
        return scrub_secrets(super().scrub(text), *self.issuer.secrets())

    def push(self, path: str) -> str:
        skopeo_push(self.layout, self.layout_tag, self.ref(path), username=PUSHER,
                    password=self.issuer.accounts[PUSHER].password, workdir=self.workdir)
        return path

    def stop(self) -> None:
        self.process.stop()
        self.issuer.stop()


def start_token_registry(
    workdir: Path,
    *,
    username: str = "ci-puller",
    image: str = "team-a/hello:1",
    other_image: str = "team-b/hello:1",
    private_image: str = "private/hello:1",
    timeout: float = 10.0,
) -> TokenRegistry:
    """A ``docker-registry`` with token auth (``realm``, ``service``, ``issuer``,
    ``rootcertbundle``) and its ``TokenIssuer``, three images pushed through the token flow."""
    password = secrets.token_urlsafe(24)
    pusher = Account(password=secrets.token_urlsafe(24))
    workdir.mkdir(parents=True, exist_ok=True)
    issuer = start_token_issuer(
        workdir, username=username, service="pullsecret-test-registry",
        issuer="pullsecret-test-issuer",
        accounts={username: Account(password=password, denied=("private/",)), PUSHER: pusher})
    auth = {"token": {"realm": issuer.url, "service": issuer.service, "issuer": issuer.issuer,
                      "rootcertbundle": str(issuer.cert)}}
    try:
        proc, layout, tag = launch_registry(
            workdir, auth, name="docker-registry-token", username=PUSHER,
            password=pusher.password, images=(image, other_image, private_image),
            timeout=timeout,
        )
    except BaseException:
        issuer.stop()
        raise
    return TokenRegistry(host=f"{HOST}:{proc.port}", username=username, password=password,
                         image=image, other_image=other_image, workdir=workdir, layout=layout,
                         layout_tag=tag, process=proc, private_image=private_image,
                         issuer=issuer)
