"""RegistryLogin against real local servers playing a registry and its token service."""

from __future__ import annotations

import base64
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from structlog.testing import capture_logs
from yarl import URL

from controller.errors import ConfigError
from controller.model import RegistryCredential, Secret
from controller.registryapi.challenges import Challenge, parse_challenges
from controller.registryapi.login import MANIFEST_MEDIA_TYPES, RegistryLogin
from controller.registryapi.results import DETAIL_LIMIT, IMAGE_CHECK_RESULTS, ImageCheck
from tests.adapters.marathon_helpers import free_url, self_signed, server_tls

USER = "ci-puller"
PASSWORD = "pa55:wörd-" + "s3cret"
IDENTITY = "identity-" + "t0ken"
SERVICE = "test-registry"
PULLABLE = "team-a/app"
FORBIDDEN = "team-b/app"
REPOS = (PULLABLE, FORBIDDEN)
TAG = "1"
DIGEST = "sha256:" + "ab" * 32
REFERENCES = (TAG, DIGEST)


def password_credential(password: str = PASSWORD) -> RegistryCredential:
    return RegistryCredential(username=USER, password=Secret(password))


def identity_credential(token: str = IDENTITY) -> RegistryCredential:
    return RegistryCredential(username="<token>", password=Secret(token), identity_token=True)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class Seen:
    """One request a stand-in received."""

    role: str
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    form: dict[str, str]
    accept: str | None


@dataclass
class FakeRegistry:
    """A registry (``auth`` is ``none``, ``basic`` or ``bearer``) and its token service.

    The token service grants pull on ``PULLABLE`` only; the registry knows ``REPOS``, each with
    a manifest at ``TAG`` and at ``DIGEST``.  The token service answers at ``/token`` on the
    registry's own origin (``issuer="same"``), or on another port over plain http
    (``"http"``) or https (``"https"``, with the certificate ``start`` is given).  Any
    ``*_answer`` override replaces that endpoint's behaviour for one test.
    """

    auth: str = "bearer"
    issuer: str = "same"
    challenge: str | None = None
    token_answer: Any = None
    v2_answer: Any = None
    manifest_answer: Any = None
    tags_answer: Any = None
    bogus_tokens: bool = False
    seen: list[Seen] = field(default_factory=list)
    tokens: dict[str, set[str]] = field(default_factory=dict)
    realm: str = ""
    host: str = ""

    async def record(self, role: str, request: web.Request) -> None:
        form = dict(await request.post()) if request.method == "POST" else {}
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        self.seen.append(Seen(role, request.method, request.path, query,
                              request.headers.get("Authorization"),
                              {k: str(v) for k, v in form.items()},
                              request.headers.get("Accept")))

    def of(self, role: str) -> list[Seen]:
        return [s for s in self.seen if s.role == role]

    def issue(self, scopes: list[str]) -> web.Response:
        token = f"tok-{secrets.token_hex(8)}"
        granted = {s for s in scopes if s == f"repository:{PULLABLE}:pull"}
        if not self.bogus_tokens:
            self.tokens[token] = granted
        return web.json_response({"token": token, "expires_in": 300})

    async def token_endpoint(self, request: web.Request) -> web.StreamResponse:
        await self.record("token", request)
        if self.token_answer is not None:
            return await self.token_answer(request)
        if request.method == "POST":
            form = await request.post()
            if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != IDENTITY:
                return web.json_response({"error": "invalid_grant"}, status=400)
            return self.issue(str(form.get("scope", "")).split())
        if request.headers.get("Authorization") != basic(USER, PASSWORD):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        return self.issue(request.query.getall("scope", []))

    def allowed(self, request: web.Request, repository: str | None) -> bool:
        given = request.headers.get("Authorization")
        if self.auth == "none":
            return True
        if self.auth == "basic":
            return given == basic(USER, PASSWORD)
        token = (given or "").removeprefix("Bearer ")
        if token not in self.tokens:
            return False
        return repository is None or f"repository:{repository}:pull" in self.tokens[token]

    def refuse(self, repository: str | None) -> web.Response:
        if self.challenge is not None:
            header = self.challenge
        elif self.auth == "basic":
            header = 'Basic realm="test registry"'
        else:
            header = f'Bearer realm="{self.realm}",service="{SERVICE}"'
            if repository:
                header += f',scope="repository:{repository}:pull"'
        return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401,
                                 headers={"WWW-Authenticate": header})

    async def v2(self, request: web.Request) -> web.StreamResponse:
        await self.record("registry", request)
        if self.v2_answer is not None:
            return await self.v2_answer(request)
        if not self.allowed(request, None):
            return self.refuse(None)
        return web.json_response({})

    async def tags(self, request: web.Request) -> web.StreamResponse:
        await self.record("registry", request)
        if self.tags_answer is not None:
            return await self.tags_answer(request)
        name = request.match_info["name"]
        if not self.allowed(request, name):
            return self.refuse(name)
        if name not in REPOS:
            return web.json_response({"errors": [{"code": "NAME_UNKNOWN"}]}, status=404)
        return web.json_response({"name": name, "tags": [TAG]})

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        """``HEAD`` of a manifest: no body, whatever the status (distribution's ``api.md``)."""
        await self.record("registry", request)
        if self.manifest_answer is not None:
            return await self.manifest_answer(request)
        name, reference = request.match_info["name"], request.match_info["reference"]
        if not self.allowed(request, name):
            return self.refuse(name)
        if name not in REPOS or reference not in REFERENCES:
            return web.Response(status=404)
        return web.Response(headers={"Docker-Content-Digest": DIGEST,
                                     "Content-Type": "application/vnd.oci.image.manifest.v1+json"})

    def apps(self) -> tuple[web.Application, web.Application]:
        registry = web.Application()
        registry.router.add_get("/v2/", self.v2)
        registry.router.add_get("/v2/{name:.+}/tags/list", self.tags)
        registry.router.add_route("HEAD", "/v2/{name:.+}/manifests/{reference}", self.manifest)
        issuer = registry if self.issuer == "same" else web.Application()
        issuer.router.add_route("*", "/token", self.token_endpoint)
        return issuer, registry

    async def start(self, aiohttp_server, *, issuer_tls: ssl.SSLContext | None = None,
                    **server_kwargs: Any) -> FakeRegistry:
        issuer_app, registry_app = self.apps()
        registry = await aiohttp_server(registry_app, **server_kwargs)
        self.host = f"{registry.host}:{registry.port}"
        issuer = registry
        if issuer_app is not registry_app:
            assert (self.issuer == "https") == (issuer_tls is not None)
            issuer = await aiohttp_server(issuer_app, ssl=issuer_tls)
        self.realm = str(issuer.make_url("/token"))
        return self


@pytest.fixture
def start(aiohttp_server, tls_files):
    async def start(auth: str = "bearer", **kwargs: Any) -> FakeRegistry:
        fake = FakeRegistry(auth=auth, **kwargs)
        issuer_tls = server_tls(*tls_files) if fake.issuer == "https" else None
        return await fake.start(aiohttp_server, issuer_tls=issuer_tls)
    return start


def login(session, fake: FakeRegistry | str, **kwargs: Any) -> RegistryLogin:
    kwargs.setdefault("timeout_seconds", 5)
    host = fake if isinstance(fake, str) else fake.host
    return RegistryLogin(session, host, **kwargs)


class TestBasic:
    async def test_right_password_is_accepted(self, start, session):
        """The right password is sent as Basic auth on a repeated GET /v2/ and accepted."""
        fake = await start("basic")
        outcome = await login(session, fake).verify(password_credential())
        assert (outcome.result, outcome.detail) == ("accepted", "ok (basic auth)")
        assert [s.authorization for s in fake.of("registry")] == [None, basic(USER, PASSWORD)]

    async def test_wrong_password_is_rejected(self, start, session):
        """A refused password is rejected, which blocks publishing."""
        fake = await start("basic")
        outcome = await login(session, fake).verify(password_credential("wrong"))
        assert outcome.result == "rejected"
        assert outcome.blocks_publishing("best_effort")
        assert outcome.detail == "the registry refused the basic auth (401)"

    async def test_registry_without_auth_never_sees_the_credential(self, start, session):
        """A registry that answers /v2/ without auth is accepted and gets no credential."""
        fake = await start("none")
        outcome = await login(session, fake).verify(password_credential())
        assert (outcome.result, outcome.detail) == ("accepted", "ok (no login needed)")
        assert [s.authorization for s in fake.seen] == [None]


class TestBearer:
    async def test_right_password_is_accepted(self, start, session):
        """The token comes from the realm with Basic auth, service and account, as docker asks."""
        fake = await start()
        outcome = await login(session, fake).verify(password_credential())
        assert outcome.result == "accepted"
        assert outcome.detail == f"ok (token from {fake.realm.removesuffix('/token')})"
        [token_request] = fake.of("token")
        assert token_request.method == "GET"
        assert token_request.authorization == basic(USER, PASSWORD)
        assert token_request.query == {"service": [SERVICE], "account": [USER]}
        [token] = fake.tokens
        assert fake.of("registry")[-1].authorization == f"Bearer {token}"

    async def test_token_service_refusal_is_rejected(self, start, session):
        """A 401 from the token service rejects the credential."""
        fake = await start()
        outcome = await login(session, fake).verify(password_credential("wrong"))
        assert (outcome.result, outcome.detail) == (
            "rejected", "the token service refused the credential (401)")

    async def test_registry_refusing_the_token_is_rejected(self, start, session):
        """A token the registry refuses at /v2/ rejects the credential."""
        fake = await start(bogus_tokens=True)
        outcome = await login(session, fake).verify(password_credential())
        assert outcome.result == "rejected"
        assert outcome.detail.startswith("the registry refused the token from http://127.0.0.1:")

    async def test_access_token_field_is_read(self, start, session):
        """``access_token`` (OAuth2's name) is used when the answer has no ``token``."""
        fake = await start()

        async def oauth_style(request):
            fake.tokens["oauth-tok"] = set()
            return web.json_response({"access_token": "oauth-tok", "expires_in": 60})

        fake.token_answer = oauth_style
        assert (await login(session, fake).verify(password_credential())).result == "accepted"
        assert fake.of("registry")[-1].authorization == "Bearer oauth-tok"

    async def test_scheme_and_names_are_case_insensitive(self, start, session):
        """``BEARER Realm=…`` is the same challenge as ``Bearer realm=…``."""
        fake = await start()
        fake.challenge = f'BEARER Realm="{fake.realm}", SERVICE={SERVICE}'
        assert (await login(session, fake).verify(password_credential())).result == "accepted"
        assert fake.of("token")[0].query["service"] == [SERVICE]

    async def test_bearer_is_preferred_over_basic(self, start, session):
        """When both are offered the token flow is used, as docker does."""
        fake = await start()
        fake.challenge = f'Basic realm="x", Bearer realm="{fake.realm}",service="{SERVICE}"'
        assert (await login(session, fake).verify(password_credential())).result == "accepted"
        assert len(fake.of("token")) == 1


class TestIdentityToken:
    async def test_refresh_grant_is_posted_and_accepted(self, start, session):
        """An identity token is exchanged with Docker's OAuth2 refresh-token POST."""
        fake = await start()
        outcome = await login(session, fake, repository=PULLABLE).verify(identity_credential())
        assert outcome.result == "accepted"
        [post] = fake.of("token")
        assert (post.method, post.authorization) == ("POST", None)
        assert post.form == {"grant_type": "refresh_token", "refresh_token": IDENTITY,
                             "service": SERVICE, "client_id": "marathon-pullsecret-controller",
                             "scope": f"repository:{PULLABLE}:pull"}

    async def test_invalid_grant_is_rejected(self, start, session):
        """OAuth2's ``invalid_grant`` answer rejects the identity token."""
        fake = await start()
        outcome = await login(session, fake).verify(identity_credential("stale"))
        assert (outcome.result, outcome.detail) == (
            "rejected", "the token service refused the identity token (invalid_grant)")

    async def test_token_service_without_oauth2_is_an_error(self, start, session):
        """A token service that only takes GET cannot exchange an identity token."""
        fake = await start()

        async def get_only(request):
            return web.Response(status=405)

        fake.token_answer = get_only
        outcome = await login(session, fake).verify(identity_credential())
        assert outcome.result == "error"
        assert "takes no OAuth2 POST" in outcome.detail

    async def test_basic_registry_cannot_take_an_identity_token(self, start, session):
        """An identity token against a Basic registry is an error, and nothing is sent."""
        fake = await start("basic")
        outcome = await login(session, fake).verify(identity_credential())
        assert outcome.result == "error"
        assert [s.authorization for s in fake.seen] == [None]


class TestRepository:
    async def test_pull_scope_is_asked_for_and_checked(self, start, session):
        """The token asks for a pull scope and tags/list proves it."""
        fake = await start()
        outcome = await login(session, fake, repository=PULLABLE).verify(password_credential())
        assert outcome.result == "accepted"
        assert outcome.detail.endswith(f"; may pull {PULLABLE}")
        assert fake.of("token")[0].query["scope"] == [f"repository:{PULLABLE}:pull"]
        assert fake.of("registry")[-1].path == f"/v2/{PULLABLE}/tags/list"

    async def test_repository_without_pull_rights_is_rejected(self, start, session):
        """A credential that may log in but not pull the repository is rejected."""
        fake = await start()
        outcome = await login(session, fake, repository=FORBIDDEN).verify(password_credential())
        assert outcome.result == "rejected"
        assert outcome.detail.endswith(f"may not pull {FORBIDDEN} (401)")

    async def test_missing_repository_is_named_as_a_config_problem(self, start, session):
        """A 404 for the repository is an error that points at verify_repository."""
        fake = await start("basic")
        outcome = await login(session, fake, repository="team-a/gone").verify(
            password_credential())
        assert (outcome.result, outcome.detail) == (
            "error", "repository team-a/gone is not on the registry: check verify_repository")

    async def test_basic_registry_checks_the_repository_with_basic_auth(self, start, session):
        """With Basic auth the pull check carries the same Basic credential."""
        fake = await start("basic")
        outcome = await login(session, fake, repository=PULLABLE).verify(password_credential())
        assert outcome.result == "accepted"
        assert fake.of("registry")[-1].authorization == basic(USER, PASSWORD)

    async def test_anonymous_v2_but_private_repository_is_an_error(self, start, session):
        """A registry that wants no login for /v2/ but one for the repository is named."""
        fake = await start("none")
        fake.auth = "bearer"

        async def open_ping(request):
            return web.json_response({})

        fake.v2_answer = open_ping
        outcome = await login(session, fake, repository=PULLABLE).verify(password_credential())
        assert outcome.result == "error"
        assert "the credential was not tried" in outcome.detail

    @pytest.mark.parametrize("repository", ["Team-A/App", "team-a/app:1", "team-a/app@sha256:1",
                                            ""], ids=["uppercase", "tag", "digest", "empty"])
    def test_invalid_repository_is_a_config_error(self, session, repository):
        """A repository docker would not accept fails at construction with its name."""
        with pytest.raises(ConfigError, match="verify_repository"):
            RegistryLogin(session, "127.0.0.1:5000", repository=repository)


class TestChallengeParser:
    @pytest.mark.parametrize(("header", "expected"), [
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        ('Bearer realm="https://a/t?x=1,2",service="reg",scope="repository:a/b:pull,push"',
         [Challenge("bearer", {"realm": "https://a/t?x=1,2", "service": "reg",
                               "scope": "repository:a/b:pull,push"})]),
        ('bEaReR REALM = "r" , Service=reg',
         [Challenge("bearer", {"realm": "r", "service": "reg"})]),
        (r'Basic realm="say \"hi\", then \\ go"',
         [Challenge("basic", {"realm": 'say "hi", then \\ go'})]),
        ('Negotiate, Basic realm="x", Bearer realm="y"',
         [Challenge("negotiate", {}), Challenge("basic", {"realm": "x"}),
          Challenge("bearer", {"realm": "y"})]),
        ("Negotiate abc+/def==", [Challenge("negotiate", {})]),
        (',, Basic realm="x",,', [Challenge("basic", {"realm": "x"})]),
    ], ids=["basic", "quoted-commas", "case-and-spaces", "escapes", "several", "token68",
            "empty-elements"])
    def test_parses(self, header, expected):
        """Well-formed headers give their challenges, names lowercased."""
        assert parse_challenges(header) == expected

    @pytest.mark.parametrize("header", [
        'Bearer realm="open', 'realm="x"', 'Bearer realm="x", realm="y"', 'Bearer realm="x"y',
        'Bearer"x"', "Bearer realm=a b", "@ realm=x", "Bearer realm=",
    ], ids=["unclosed-quote", "param-first", "twice", "after-quote", "no-space", "spaces",
            "not-a-token", "empty-value"])
    def test_refuses_malformed(self, header):
        """Malformed headers raise ValueError rather than giving a half-read challenge."""
        with pytest.raises(ValueError):  # noqa: PT011 - every message is in words
            parse_challenges(header)


class TestOddAnswers:
    @pytest.mark.parametrize(("challenge", "words"), [
        (None, "without a login challenge"),
        ('Bearer realm="unclosed', "malformed: a quoted value is not closed"),
        ('Negotiate', "not supported (negotiate)"),
        ('Bearer service="x"', "names no usable token service"),
        ('Bearer realm="ftp://127.0.0.1/token"', "names no usable token service"),
        ('Bearer realm="http://token.example/token"',
         "the token service http://token.example is plain http"),
        ('Basic realm="' + "x" * 5000 + '"', "too long"),
    ], ids=["none", "malformed", "unsupported", "no-realm", "ftp-realm", "plain-http-realm",
            "too-long"])
    async def test_challenge_problems_are_errors(self, start, session, challenge, words):
        """A challenge that cannot be answered safely is an error naming the problem."""
        fake = await start()

        async def answer(request):
            headers = {} if challenge is None else {"WWW-Authenticate": challenge}
            return web.Response(status=401, headers=headers)

        fake.v2_answer = answer
        outcome = await login(session, fake).verify(password_credential())
        assert outcome.result == "error"
        assert words in outcome.detail
        assert all(s.authorization is None for s in fake.seen)

    @pytest.mark.parametrize(("body", "words"), [
        (b"not json", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"expires_in": 60}', "no usable token"),
        (b'{"token": 42}', "no usable token"),
        (b'{"token": "two words"}', "no usable token"),
        (b'{"token": "line\\nbreak"}', "no usable token"),
    ], ids=["text", "array", "no-token", "number", "space", "newline"])
    async def test_malformed_token_answers_are_errors(self, start, session, body, words):
        """A token answer that is no JSON object with a header-safe token is an error."""
        fake = await start()

        async def answer(request):
            return web.Response(body=body, content_type="application/json")

        fake.token_answer = answer
        outcome = await login(session, fake).verify(password_credential())
        assert outcome.result == "error"
        assert words in outcome.detail

    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    async def test_huge_token_answer_is_refused(self, start, session, chunked):
        """A token answer past 64 KiB is refused, whether or not its length is announced."""
        fake = await start()

        async def answer(request):
            if not chunked:
                return web.Response(body=b'{"token": "' + b"a" * 70_000 + b'"}')
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(200):
                await response.write(b"a" * 1024)
            await response.write_eof()
            return response

        fake.token_answer = answer
        outcome = await login(session, fake).verify(password_credential())
        assert outcome.result == "error"
        assert "answered more than 64 KiB" in outcome.detail

    @pytest.mark.parametrize(("where", "status", "result"), [
        ("v2", 500, "unreachable"), ("v2", 503, "unreachable"), ("v2", 429, "unreachable"),
        ("v2", 404, "error"), ("v2", 302, "error"), ("v2", 400, "error"),
        ("token", 502, "unreachable"), ("token", 404, "error"), ("token", 403, "rejected"),
    ], ids=lambda v: str(v))
    async def test_statuses_map_to_outcomes(self, start, session, where, status, result):
        """5xx and 429 are unreachable, 401/403 rejected, anything else an error."""
        fake = await start()

        async def answer(request):
            headers = {"Location": "http://127.0.0.1:1/elsewhere"} if status == 302 else {}
            return web.Response(status=status, headers=headers)

        setattr(fake, f"{where}_answer", answer)
        outcome = await login(session, fake).verify(password_credential())
        assert outcome.result == result
        assert str(status) in outcome.detail


class TestNetwork:
    async def test_connection_refused_is_unreachable(self, session):
        """Nothing listening is unreachable, in words."""
        host = free_url().removeprefix("http://")
        outcome = await login(session, host).verify(password_credential())
        assert outcome.result == "unreachable"
        assert outcome.detail.endswith(": connection refused")
        assert not outcome.blocks_publishing("best_effort")

    async def test_hung_server_is_bounded(self, session, silent_url):
        """A server that never answers makes the login unreachable within its timeout."""
        started = time.monotonic()
        outcome = await login(session, silent_url.removeprefix("http://"),
                              timeout_seconds=1).verify(password_credential())
        assert outcome.result == "unreachable"
        assert "timed out" in outcome.detail
        assert time.monotonic() - started < 2.5

    async def test_hung_token_service_is_bounded(self, start, session, silent_url):
        """A token service that never answers (not even the TLS handshake) is bounded by the
        same timeout."""
        fake = await start()
        realm = silent_url.replace("http://", "https://") + "/token"
        fake.challenge = f'Bearer realm="{realm}",service="{SERVICE}"'
        started = time.monotonic()
        outcome = await login(session, fake, timeout_seconds=1).verify(password_credential())
        assert outcome.result == "unreachable"
        assert "timed out" in outcome.detail
        assert time.monotonic() - started < 2.5

    async def test_redirect_is_not_followed(self, start, aiohttp_server, session):
        """A redirect from /v2/ is an error and the credential never reaches its target."""
        elsewhere = await start("basic")
        fake = await start("basic")

        async def redirect(request):
            raise web.HTTPFound(f"http://{elsewhere.host}/v2/")

        fake.v2_answer = redirect
        outcome = await login(session, fake).verify(password_credential())
        assert outcome.result == "error"
        assert elsewhere.seen == []


class PinnedResolver(AbstractResolver):
    """Resolves the given names to 127.0.0.1, so a test can use a non-loopback name."""

    def __init__(self, *names: str) -> None:
        self.names = names

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host not in self.names:
            raise OSError(f"{host} is not pinned")
        return [ResolveResult(hostname=host, host="127.0.0.1", port=port,
                              family=socket.AF_INET, proto=0, flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        return None


NAME = "registry.test"
OTHER_NAME = "token.test"


@pytest.fixture
async def pinned_session():
    connector = aiohttp.TCPConnector(resolver=PinnedResolver(NAME, OTHER_NAME))
    async with aiohttp.ClientSession(connector=connector) as s:
        yield s


class TestTransport:
    async def test_plain_http_is_refused_for_a_non_loopback_name(self, start, pinned_session):
        """A named host gets https only: a plain-http registry never sees a request."""
        fake = await start("basic")
        port = fake.host.rsplit(":", 1)[1]
        outcome = await login(pinned_session, f"{NAME}:{port}").verify(password_credential())
        assert outcome.result == "unreachable"
        assert outcome.detail == f"https://{NAME}:{port}: TLS: handshake failed"
        assert fake.seen == []

    async def test_insecure_host_may_use_plain_http(self, start, pinned_session):
        """A host marked insecure falls back to plain http, as docker's insecure-registries."""
        fake = await start("basic")
        port = fake.host.rsplit(":", 1)[1]
        outcome = await login(pinned_session, f"{NAME}:{port}", insecure=True).verify(
            password_credential())
        assert outcome.result == "accepted"

    async def test_untrusted_certificate_is_named(self, aiohttp_server, pinned_session,
                                                  tmp_path):
        """An https registry whose certificate no CA vouches for is unreachable, in words."""
        cert, key = self_signed(tmp_path, dns=NAME)
        fake = await FakeRegistry(auth="basic").start(aiohttp_server, ssl=server_tls(cert, key))
        port = fake.host.rsplit(":", 1)[1]
        outcome = await login(pinned_session, f"{NAME}:{port}").verify(password_credential())
        assert (outcome.result, outcome.detail) == (
            "unreachable", f"https://{NAME}:{port}: TLS: certificate not trusted")
        assert fake.seen == []

    async def test_ca_file_is_trusted(self, aiohttp_server, pinned_session, tmp_path):
        """A registry CA file makes its certificate trusted."""
        cert, key = self_signed(tmp_path, dns=NAME)
        fake = await FakeRegistry(auth="basic").start(aiohttp_server, ssl=server_tls(cert, key))
        port = fake.host.rsplit(":", 1)[1]
        outcome = await login(pinned_session, f"{NAME}:{port}", ca_file=cert).verify(
            password_credential())
        assert outcome.result == "accepted"

    async def test_loopback_https_is_tried_first_unverified(self, aiohttp_server, session,
                                                           tls_files):
        """On loopback, https comes first and, as docker does there, is not verified."""
        fake = await FakeRegistry(auth="basic").start(aiohttp_server,
                                                      ssl=server_tls(*tls_files))
        outcome = await login(session, fake).verify(password_credential())
        assert outcome.result == "accepted"

    @pytest.mark.parametrize("content", [None, b"not a certificate"], ids=["missing", "junk"])
    def test_unusable_ca_file_is_a_config_error(self, session, tmp_path, content):
        """A CA file that is missing or not PEM fails at construction, naming the file."""
        path = tmp_path / "ca.pem"
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ConfigError, match="registry CA file"):
            RegistryLogin(session, "registry.example.com", ca_file=path)

    def test_docker_hub_is_reached_at_its_api_host(self, session):
        """Docker Hub's API is registry-1.docker.io, whatever alias was configured."""
        verifier = RegistryLogin(session, "index.docker.io", repository="ubuntu")
        assert [str(origin) for origin in verifier._origins] == ["https://registry-1.docker.io"]
        assert verifier._path == "library/ubuntu"

    def test_docker_hub_images_are_checked_at_their_pull_path(self, session):
        """An image check names the repository as the image does; the Hub's official images
        are under ``library/``, as docker pulls them."""
        checker = RegistryLogin(session, "docker.io")
        assert checker._image_path("ubuntu", "22.04") == "library/ubuntu"
        assert checker._image_path("team/app", DIGEST) == "team/app"


class TestWhereCredentialsGo:
    """A token service gets the credential on the registry's own origin, over verified https,
    or on the host of a registry marked insecure; nowhere else (the module docstring's rule)."""

    @pytest.mark.parametrize("credential", [password_credential(), identity_credential()],
                             ids=["password", "identity-token"])
    async def test_plain_realm_on_another_local_port_gets_nothing(self, start, session,
                                                                  credential):
        """A loopback registry naming a plain-http realm on another port: nothing goes there,
        neither a Basic credential nor an identity token in a refresh grant."""
        fake = await start(issuer="http")
        outcome = await login(session, fake).verify(credential)
        assert outcome.result == "error"
        assert outcome.detail == (
            f"the token service {fake.realm.removesuffix('/token')} is plain http and not the "
            f"registry's origin (http://{fake.host}); the credential is not sent there")
        assert fake.of("token") == []

    async def test_image_check_sends_nothing_to_a_plain_realm_elsewhere(self, start, session):
        """The image check follows the same rule."""
        fake = await start(issuer="http")
        check = await login(session, fake).check_image(password_credential(), PULLABLE, TAG)
        assert check.result == "error"
        assert "is plain http and not the registry's origin" in check.detail
        assert fake.of("token") == []

    async def test_realm_on_the_registrys_own_origin_gets_it(self, start, session):
        """A plain-http loopback registry's own /token gets what the registry would get."""
        fake = await start()
        assert fake.realm == f"http://{fake.host}/token"
        assert (await login(session, fake).verify(password_credential())).result == "accepted"
        [token_request] = fake.of("token")
        assert token_request.authorization == basic(USER, PASSWORD)

    async def test_verified_https_realm_on_another_port_gets_it(self, start, session,
                                                                tls_files):
        """An https realm whose certificate the CA file vouches for gets the credential."""
        fake = await start(issuer="https")
        assert fake.realm.startswith("https://")
        outcome = await login(session, fake, ca_file=tls_files[0]).verify(password_credential())
        assert outcome.result == "accepted"
        [token_request] = fake.of("token")
        assert token_request.authorization == basic(USER, PASSWORD)

    async def test_unverified_https_realm_gets_nothing(self, start, session):
        """An https realm no CA vouches for is not trusted, even on loopback: no request."""
        fake = await start(issuer="https")
        outcome = await login(session, fake).verify(password_credential())
        assert (outcome.result, outcome.detail) == (
            "unreachable", f"{fake.realm.removesuffix('/token')}: TLS: certificate not trusted")
        assert fake.of("token") == []

    async def test_insecure_registry_may_use_a_plain_realm_on_its_own_host(self, start,
                                                                           pinned_session):
        """A registry marked insecure trusts its own host's network: another port of it, over
        plain http, gets the credential."""
        fake = await start(issuer="http")
        fake.challenge = (f'Bearer realm="http://{NAME}:{URL(fake.realm).port}/token",'
                          f'service="{SERVICE}"')
        port = fake.host.rsplit(":", 1)[1]
        outcome = await login(pinned_session, f"{NAME}:{port}", insecure=True).verify(
            password_credential())
        assert outcome.result == "accepted"
        assert [s.authorization for s in fake.of("token")] == [basic(USER, PASSWORD)]

    async def test_insecure_registry_sends_nothing_to_a_plain_realm_on_another_host(
            self, start, pinned_session):
        """Marking a registry insecure says nothing about another host."""
        fake = await start(issuer="http")
        fake.challenge = (f'Bearer realm="http://{OTHER_NAME}:{URL(fake.realm).port}/token",'
                          f'service="{SERVICE}"')
        port = fake.host.rsplit(":", 1)[1]
        outcome = await login(pinned_session, f"{NAME}:{port}", insecure=True).verify(
            password_credential())
        assert outcome.result == "error"
        assert f"the token service http://{OTHER_NAME}:" in outcome.detail
        assert fake.of("token") == []

    @pytest.mark.parametrize("userinfo", ["robot:hunter2@", "hunter2@", ":hunter2@"],
                             ids=["user-password", "user", "password"])
    async def test_realm_with_user_info_is_an_error_that_does_not_quote_it(self, start, session,
                                                                           userinfo):
        """A realm URL with user info is refused as a login error, before anything is sent,
        and neither the detail nor the log line quotes it."""
        fake = await start()
        fake.challenge = f'Bearer realm="http://{userinfo}{fake.host}/token",service="{SERVICE}"'
        with capture_logs() as logs:
            outcome = await login(session, fake).verify(password_credential())
            check = await login(session, fake).check_image(password_credential(), PULLABLE, TAG)
        expected = ("the registry's token service (realm) has user info in its URL; the "
                    "credential is not sent there")
        assert (outcome.result, outcome.detail) == ("error", expected)
        assert (check.result, check.detail) == ("error", expected)
        assert fake.of("token") == []
        assert "hunter2" not in repr(logs)

    async def test_every_detail_is_bounded(self, start, session):
        """A realm with a 3.6 KB host name is named in a detail of at most DETAIL_LIMIT."""
        fake = await start()
        host = ".".join(["a" * 60] * 60)
        fake.challenge = f'Bearer realm="http://{host}:5000/token",service="{SERVICE}"'
        outcome = await login(session, fake).verify(password_credential())
        assert outcome.result == "error"
        assert len(outcome.detail) == DETAIL_LIMIT
        assert outcome.detail.endswith("\u2026")


class TestSecrets:
    SCENARIOS = [
        ("basic", password_credential(), None),
        ("basic", password_credential("wrong-" + PASSWORD), None),
        ("bearer", password_credential(), PULLABLE),
        ("bearer", password_credential("wrong-" + PASSWORD), None),
        ("bearer", identity_credential(), PULLABLE),
        ("bearer", identity_credential("wrong-" + IDENTITY), None),
    ]

    @pytest.mark.parametrize(("auth", "credential", "repository"), SCENARIOS,
                             ids=["basic-ok", "basic-wrong", "bearer-ok", "bearer-wrong",
                                  "identity-ok", "identity-wrong"])
    async def test_no_secret_in_detail_or_logs(self, start, session, auth, credential,
                                               repository):
        """Neither the detail nor the log line holds a password, identity token or bearer."""
        fake = await start(auth)
        with capture_logs() as logs:
            outcome = await login(session, fake, repository=repository).verify(credential)
        [line] = logs
        assert line["event"] == "registry_login_checked"
        assert (line["result"], line["detail"]) == (outcome.result, outcome.detail)
        text = repr(logs) + repr(outcome)
        secret = credential.password.reveal()
        for leak in (secret, basic(USER, secret).removeprefix("Basic "), *fake.tokens):
            assert leak not in text

    async def test_unencodable_password_is_an_error_without_its_text(self, start, session):
        """A password that is not UTF-8 text is named as such, never echoed."""
        fake = await start("basic")
        outcome = await login(session, fake).verify(password_credential("s3cr\udcffet"))
        assert (outcome.result, outcome.detail) == (
            "error", "the credential is not valid UTF-8 text")



# --------------------------------------------------------------------------- image checks


async def check_image(session, fake: FakeRegistry | str, repository: str = PULLABLE,
                      reference: str = TAG, credential: RegistryCredential | None = None,
                      **kwargs: Any) -> ImageCheck:
    return await login(session, fake, **kwargs).check_image(
        credential or password_credential(), repository, reference)


def requests(fake: FakeRegistry) -> list[str]:
    """What the registry and its token service were asked, in order (no query strings)."""
    return [f"{s.method} {s.path}" for s in fake.seen]


class TestImageCheck:
    @pytest.mark.parametrize("reference", [TAG, DIGEST], ids=["tag", "digest"])
    @pytest.mark.parametrize("auth", ["basic", "bearer"])
    async def test_pullable_image_is_ok(self, start, session, auth, reference):
        """A manifest the credential may pull is ok, by tag or by digest, asked for with HEAD
        and every manifest media type docker accepts."""
        fake = await start(auth)
        check = await check_image(session, fake, reference=reference)
        assert check.result == "ok"
        assert check.answered
        image = f"{PULLABLE}{'@' if reference == DIGEST else ':'}{reference}"
        assert check.detail.endswith(f"; may pull {image}")
        head = fake.seen[-1]
        assert (head.method, head.path) == ("HEAD", f"/v2/{PULLABLE}/manifests/{reference}")
        assert head.accept == ", ".join(MANIFEST_MEDIA_TYPES)
        assert head.authorization is not None

    async def test_token_is_scoped_to_pull_the_repository(self, start, session):
        """The token asked for is ``repository:<path>:pull`` for the image's repository."""
        fake = await start()
        await check_image(session, fake)
        [token_request] = fake.of("token")
        assert token_request.query["scope"] == [f"repository:{PULLABLE}:pull"]

    @pytest.mark.parametrize(("auth", "reference", "expected"), [
        ("basic", TAG, ["GET /v2/", f"HEAD /v2/{PULLABLE}/manifests/{TAG}"]),
        ("basic", "2", ["GET /v2/", f"HEAD /v2/{PULLABLE}/manifests/2",
                        f"GET /v2/{PULLABLE}/tags/list"]),
        ("bearer", TAG, ["GET /v2/", "GET /token", f"HEAD /v2/{PULLABLE}/manifests/{TAG}"]),
        ("bearer", "2", ["GET /v2/", "GET /token", f"HEAD /v2/{PULLABLE}/manifests/2",
                         f"GET /v2/{PULLABLE}/tags/list"]),
    ], ids=["basic-ok", "basic-missing-tag", "bearer-ok", "bearer-missing-tag"])
    async def test_request_cost(self, start, session, auth, reference, expected):
        """A check costs 2 registry requests (3 for a missing manifest), plus 1 token request
        for a Bearer registry, and never a manifest GET (what Docker Hub counts as a pull)."""
        fake = await start(auth)
        await check_image(session, fake, reference=reference)
        assert requests(fake) == expected

    async def test_missing_tag_is_manifest_unknown(self, start, session):
        """A 404 for the manifest while the repository lists its tags: the tag is wrong."""
        fake = await start()
        check = await check_image(session, fake, reference="2")
        assert (check.result, check.detail) == (
            "manifest_unknown", f"{PULLABLE}:2 is not on the registry; {PULLABLE} is")
        assert check.answered

    async def test_missing_digest_is_manifest_unknown(self, start, session):
        fake = await start("basic")
        check = await check_image(session, fake, reference="sha256:" + "cd" * 32)
        assert check.result == "manifest_unknown"

    async def test_missing_repository_is_name_unknown(self, start, session):
        """A 404 for the manifest and for the repository's tags: no such repository."""
        fake = await start("basic")
        check = await check_image(session, fake, repository="team-a/gone")
        assert (check.result, check.detail) == (
            "name_unknown", "repository team-a/gone is not on the registry")

    async def test_repository_the_token_does_not_cover_is_denied(self, start, session):
        """A token without pull access on the repository: the registry answers 401, denied.
        Registries that hide private repositories answer a missing one the same way."""
        fake = await start()
        for repository in (FORBIDDEN, "team-a/gone"):
            check = await check_image(session, fake, repository=repository)
            assert check.result == "denied"
            assert check.detail == (f"the token from http://{fake.host} may not pull "
                                    f"{repository}:{TAG} (401)")

    @pytest.mark.parametrize(("auth", "credential", "detail"), [
        ("basic", password_credential("wrong"), f"the basic auth may not pull {PULLABLE}:{TAG} "
                                                "(401)"),
        ("bearer", password_credential("wrong"), "the token service refused the credential "
                                                 "(401)"),
        ("bearer", identity_credential("stale"), "the token service refused the identity token "
                                                 "(invalid_grant)"),
    ], ids=["basic", "bearer", "identity-token"])
    async def test_refused_credential_is_denied(self, start, session, auth, credential, detail):
        """A credential the registry or its token service refuses may pull nothing: denied."""
        fake = await start(auth)
        check = await check_image(session, fake, credential=credential)
        assert (check.result, check.detail) == ("denied", detail)

    async def test_forbidden_is_denied(self, start, session):
        fake = await start("basic")

        async def forbidden(request):
            return web.Response(status=403)

        fake.manifest_answer = forbidden
        check = await check_image(session, fake)
        assert (check.result, check.detail) == (
            "denied", f"the basic auth may not pull {PULLABLE}:{TAG} (403)")

    async def test_login_asked_by_the_image_only_is_answered(self, start, session):
        """A registry whose /v2/ needs no login but whose image does: the credential goes with
        the image's own challenge, as docker pull sends it."""
        fake = await start("none")
        fake.auth = "bearer"

        async def open_ping(request):
            return web.json_response({})

        fake.v2_answer = open_ping
        check = await check_image(session, fake)
        assert check.result == "ok"
        assert requests(fake) == ["GET /v2/", f"HEAD /v2/{PULLABLE}/manifests/{TAG}",
                                  "GET /token", f"HEAD /v2/{PULLABLE}/manifests/{TAG}"]
        assert fake.of("token")[0].query["scope"] == [f"repository:{PULLABLE}:pull"]

    async def test_unknown_repository_status_is_still_a_missing_manifest(self, start, session):
        """When the tags cannot tell whether the repository exists, the manifest is still
        missing, and the detail says what could not be told."""
        fake = await start("basic")

        async def broken(request):
            return web.Response(status=500)

        fake.tags_answer = broken
        check = await check_image(session, fake, reference="2")
        assert (check.result, check.detail) == (
            "manifest_unknown", f"{PULLABLE}:2 is not on the registry; whether {PULLABLE} is "
                                "could not be told (its tags answered 500)")

    @pytest.mark.parametrize(("status", "result"), [
        (500, "unreachable"), (503, "unreachable"), (429, "unreachable"), (302, "error"),
        (400, "error"), (405, "error"),
    ], ids=lambda v: str(v))
    async def test_statuses_map_to_results(self, start, session, status, result):
        """5xx and 429 are unreachable; a redirect (not followed) or another status an error."""
        fake = await start("basic")

        async def answer(request):
            headers = {"Location": "http://127.0.0.1:1/elsewhere"} if status == 302 else {}
            return web.Response(status=status, headers=headers)

        fake.manifest_answer = answer
        check = await check_image(session, fake)
        assert check.result == result
        assert str(status) in check.detail
        assert not check.answered

    @pytest.mark.parametrize(("repository", "reference"), [
        ("Team-A/App", TAG), (PULLABLE, ""), (PULLABLE, f"1@{DIGEST}"),
        (f"{PULLABLE}:1", DIGEST), ("/app", TAG), (PULLABLE, "sha256:abc"),
        (PULLABLE, "-1"), ("a" * 5000, TAG),
    ], ids=["uppercase", "empty-reference", "tag-and-digest", "tag-in-repository",
            "leading-slash", "short-digest", "bad-tag", "huge"])
    async def test_invalid_names_are_errors_without_a_request(self, start, session, repository,
                                                              reference):
        """Names docker would not pull are an error before anything is asked."""
        fake = await start()
        check = await check_image(session, fake, repository=repository, reference=reference)
        assert check.result == "error"
        assert len(check.detail) <= DETAIL_LIMIT
        assert fake.seen == []

    async def test_connection_refused_is_unreachable(self, session):
        check = await check_image(session, free_url().removeprefix("http://"))
        assert check.result == "unreachable"
        assert check.detail.endswith(": connection refused")

    async def test_hung_registry_is_bounded(self, session, silent_url):
        started = time.monotonic()
        check = await check_image(session, silent_url.removeprefix("http://"),
                                  timeout_seconds=1)
        assert check.result == "unreachable"
        assert "timed out" in check.detail
        assert time.monotonic() - started < 2.5

    def test_results_are_the_closed_set(self):
        assert IMAGE_CHECK_RESULTS == ("ok", "denied", "manifest_unknown", "name_unknown",
                                       "unreachable", "error")

    @pytest.mark.parametrize(("auth", "credential", "reference"), [
        ("basic", password_credential(), TAG),
        ("basic", password_credential("wrong-" + PASSWORD), "2"),
        ("bearer", password_credential(), "2"),
        ("bearer", identity_credential(), TAG),
        ("bearer", identity_credential("wrong-" + IDENTITY), TAG),
    ], ids=["basic-ok", "basic-wrong", "bearer-missing", "identity-ok", "identity-wrong"])
    async def test_no_secret_in_detail_or_logs(self, start, session, auth, credential,
                                               reference):
        """The ``registry_image_checked`` line and the detail hold no password, identity token
        or bearer token."""
        fake = await start(auth)
        with capture_logs() as logs:
            check = await check_image(session, fake, reference=reference, credential=credential)
        [line] = logs
        assert line["event"] == "registry_image_checked"
        assert (line["result"], line["detail"], line["repository"], line["reference"]) == (
            check.result, check.detail, PULLABLE, reference)
        text = repr(logs) + repr(check)
        secret = credential.password.reveal()
        for leak in (secret, basic(USER, secret).removeprefix("Basic "), *fake.tokens):
            assert leak not in text
