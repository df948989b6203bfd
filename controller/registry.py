"""Asks a Docker registry about a credential (Registry API V2): may it log in, may it pull an image.

A bundle with a wrong password breaks every pull that uses it, so the credential is tried first,
the way ``docker login`` tries it:

1. ``GET /v2/`` without credentials: 200 means the registry needs none.
2. On 401 the ``WWW-Authenticate`` challenge names the scheme. ``Basic``: the same request again
   with the credential. ``Bearer``: a token from the named token service (``GET realm`` with
   Basic auth, or for an identity token the OAuth2 ``POST`` with ``grant_type=refresh_token``),
   then the same request again with ``Authorization: Bearer``.
3. With a repository, a pull-scoped request (``GET /v2/<name>/tags/list``) proves that the
   credential may pull it.

The outcome is one of four: ``accepted``; ``rejected`` (the registry or its token service refused
the credential: never publish it); ``unreachable`` (network failure, time-out, 5xx or 429: don't
block publishing); ``error`` (any other odd answer: treated like unreachable, but named).

**Image checks** (``check_image``) ask whether a credential may pull one image, without pulling
it: steps 1 and 2 with a token scoped ``repository:<path>:pull``, then
``HEAD /v2/<path>/manifests/<reference>`` with the manifest media types docker accepts (Docker
v2 schema 2, manifest list, OCI manifest and index) in ``Accept``. A registry that answers
``/v2/`` without a login but the manifest with a 401 gets the credential then, from that
challenge, as docker pull does. 200 is ``ok``; 401 or 403 is ``denied`` (as is a token service
refusing the credential); a 404 on ``HEAD`` has no body, so ``GET /v2/<path>/tags/list?n=1``
tells ``manifest_unknown`` (the repository answers, the tag or digest is not in it) from
``name_unknown`` (404, error code ``NAME_UNKNOWN``); network failures, time-outs, 5xx and 429
are ``unreachable``; anything else is ``error``. A check costs 2 requests to the registry (3
when the manifest is missing, 1 more when only the manifest asks for the login), plus 1 to the
token service for a Bearer registry; on loopback and insecure hosts a refused https attempt
comes first. Neither request counts as a pull on
Docker Hub, which counts manifest ``GET``s (docker/docs
``content/manuals/docker-hub/usage/pulls.md``). Registries that hide private repositories
(Docker Hub among them) answer 401 for a repository that does not exist, so there a missing
repository is ``denied``, as ``docker pull`` says "pull access denied … repository does not
exist or may require 'docker login'". Read from distribution/distribution@0d6b721 (v3.1.1+):
``docs/content/spec/api.md`` ("Existing Manifests": ``HEAD`` answers 200 or 404; "Listing Image
Tags"; the error code table: ``MANIFEST_UNKNOWN``, ``NAME_UNKNOWN``, ``UNAUTHORIZED``,
``DENIED``), ``registry/api/errcode/register.go`` (their HTTP statuses: 404, 404, 401, 403),
``docs/content/spec/auth/token.md`` and ``scope.md`` (the token request and pull scope).

**Where a credential goes.** The registry's own origin (the scheme, host and port that answered
``/v2/``) gets it whenever it asks. A token service (the Bearer challenge's ``realm``) gets the
password (Basic auth) or the identity token (refresh grant) only when it is

* that same origin, reached the way the registry is (plain http on loopback and insecure hosts,
  as docker does), or
* https, its certificate verified against the system CAs plus ``ca_file``, or
* on the registry's own host (any port, plain http or unverified https), for a registry marked
  ``insecure`` in the config: the operator has declared that host's network trusted.

Anything else is refused as an ``error`` before the credential leaves: docker sends it to
whatever realm a registry names, but a robot password must not cross the network in clear, nor
go to a peer no certificate vouches for (on loopback, another port may be any local user's). A
realm URL with user info (``https://user:pw@host/token``) is refused too, and never quoted.

Plain http is used only where docker would use it: for loopback hosts and hosts marked insecure,
https (unverified, as docker treats ``insecure-registries``) is tried first and http second.
Every other registry is https only, verified against the system CAs plus an optional CA file.
Every answer is bounded (a token answer or error body to 64 KiB, a challenge to 4 KiB, a
``detail`` to ``DETAIL_LIMIT`` characters), and ``detail`` never holds a secret, a token, a
response body or a URL's user info, path or query.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import ssl
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol, TypeVar, get_args
from urllib.parse import urlencode

import aiohttp
import structlog
from yarl import URL

from controller.credentials.base import json_object
from controller.errors import ConfigError
from controller.model import RegistryCredential
from controller.reference import (
    HUB_REGISTRY,
    InvalidReferenceError,
    normalize_registry_host,
    parse_image,
    repository_path,
)
from controller.settings import VerifyMode

__all__ = [
    "DETAIL_LIMIT",
    "HUB_API_HOST",
    "IMAGE_CHECK_RESULTS",
    "LOGIN_OUTCOMES",
    "MANIFEST_MEDIA_TYPES",
    "Challenge",
    "CredentialVerifier",
    "ImageCheck",
    "ImageCheckResult",
    "ImageChecker",
    "LoginOutcome",
    "LoginResult",
    "RegistryLogin",
    "parse_challenges",
]

log = structlog.get_logger(component="registry")

LoginOutcome = Literal["accepted", "rejected", "unreachable", "error"]
LOGIN_OUTCOMES: tuple[LoginOutcome, ...] = get_args(LoginOutcome)
"""Every outcome, e.g. for the ``result`` label of ``registry_login_total``."""

ImageCheckResult = Literal["ok", "denied", "manifest_unknown", "name_unknown", "unreachable",
                           "error"]
IMAGE_CHECK_RESULTS: tuple[ImageCheckResult, ...] = get_args(ImageCheckResult)
"""Every image check result, in a fixed order (a closed set, fit for a metric label)."""

HUB_API_HOST = "registry-1.docker.io"
"""Where Docker Hub's registry API lives (docker's ``DefaultV2Registry``)."""

MANIFEST_MEDIA_TYPES: Final = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
"""What an image check accepts: without its type in ``Accept``, a registry may answer 404 for a
manifest it holds."""

DETAIL_LIMIT: Final = 400
"""Characters of a ``detail`` at most: a repository path (255) and a digest fit."""

_MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
_T = TypeVar("_T")
_CLIENT_ID = "marathon-pullsecret-controller"
_MAX_TOKEN_ANSWER = 64 * 1024
_MAX_CHALLENGE = 4096
_HEADER_TOKEN = re.compile(r"[!-~]+")  # visible ASCII: usable in a header exactly as given
_TCHAR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_LOOPBACK_NAMES = frozenset({"localhost"})
# OpenSSL verify codes (x509_vfy.h) carried by ssl.SSLCertVerificationError.verify_code.
_TLS_VERIFY_WORDS = {
    10: "TLS: certificate expired",
    62: "TLS: hostname mismatch",
    64: "TLS: hostname mismatch",
}
_CHECK_OF_LOGIN: Mapping[LoginOutcome, ImageCheckResult] = {
    "accepted": "ok", "rejected": "denied", "unreachable": "unreachable", "error": "error"}
"""A failure on the shared way to the registry, as an image check names it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginResult:
    """How a login went; ``detail`` is for operators and holds no secret."""

    result: LoginOutcome
    detail: str

    def blocks_publishing(self, mode: VerifyMode) -> bool:
        """Whether the credential must not be published under ``mode``: ``required`` publishes
        only what was accepted; ``best_effort`` stops only a refusal, as a registry that is
        down must not stop the cluster; ``off`` never stops one."""
        if mode == "required":
            return self.result != "accepted"
        return mode == "best_effort" and self.result == "rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageCheck:
    """Whether a credential may pull one image; ``detail`` is for operators, holds no secret."""

    result: ImageCheckResult
    detail: str

    @property
    def answered(self) -> bool:
        """Whether the registry said something about the image (``ok``, ``denied``,
        ``manifest_unknown``, ``name_unknown``), as opposed to not answering usefully: only an
        answer is worth remembering until the credential or the image changes."""
        return self.result not in ("unreachable", "error")


class CredentialVerifier(Protocol):
    """Tries a credential against one registry."""

    async def verify(self, credential: RegistryCredential) -> LoginResult: ...


class ImageChecker(Protocol):
    """Asks one registry whether a credential may pull an image, without pulling it."""

    async def check_image(self, credential: RegistryCredential, repository: str,
                          reference: str) -> ImageCheck: ...


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header; scheme and names are lowercase."""

    scheme: str
    params: Mapping[str, str]


# --------------------------------------------------------------------------- challenges


def _top_level_items(header: str) -> list[str]:
    """``header`` split at the commas that are outside quoted strings."""
    items: list[str] = []
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(header):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append(header[start:index])
            start = index + 1
    if quoted:
        raise ValueError("a quoted value is not closed")
    items.append(header[start:])
    return items


def _param_value(text: str) -> str:
    """A token or a quoted string (with ``\\`` escapes), and nothing after it."""
    if not text.startswith('"'):
        if not _TCHAR.fullmatch(text):
            raise ValueError("a parameter value is neither a token nor a quoted string")
        return text
    chars: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            chars.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            if index != len(text) - 1:
                raise ValueError("text follows a quoted value")
            return "".join(chars)
        chars.append(char)
        index += 1
    raise ValueError("a quoted value is not closed")


def _param(text: str) -> tuple[str, str] | None:
    """``name = value`` as a pair, or ``None`` when ``text`` is no parameter."""
    name = _TCHAR.match(text)
    if name is None:
        return None
    rest = text[name.end():].lstrip(" \t")
    if not rest.startswith("="):
        return None
    return name.group().lower(), _param_value(rest[1:].strip(" \t"))


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges in one ``WWW-Authenticate`` value (RFC 9110 section 11.6.1).

    Quoted values may hold commas and escaped quotes; schemes and parameter names are
    case-insensitive.  Raises ``ValueError`` naming what is malformed.
    """
    challenges: list[Challenge] = []
    params: dict[str, str] = {}
    for raw in _top_level_items(header):
        item = raw.strip(" \t")
        if not item:
            continue
        pair = _param(item)
        if pair is None:  # a new challenge: scheme [1*SP (param / token68)]
            scheme = _TCHAR.match(item)
            if scheme is None:
                raise ValueError("a challenge does not start with a scheme")
            rest = item[scheme.end():]
            params = {}
            challenges.append(Challenge(scheme.group().lower(), params))
            if not rest:
                continue
            if rest[0] not in " \t":
                raise ValueError("a scheme is followed by something that is not a parameter")
            rest = rest.strip(" \t")
            pair = _param(rest)
            if pair is None:
                if not _TOKEN68.fullmatch(rest):
                    raise ValueError("a scheme is followed by something that is not a parameter")
                continue
        if not challenges:
            raise ValueError("a parameter comes before any scheme")
        name, value = pair
        if name in params:
            raise ValueError(f"parameter {name!r} is given twice")
        params[name] = value
    return challenges


# --------------------------------------------------------------------------- the login


def _clip(text: str) -> str:
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT - 1] + "\u2026"


class _Stop(Exception):
    """Carries the outcome out of a login or an image check as soon as it is known."""

    def __init__(self, outcome: LoginOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome: LoginOutcome = outcome
        self.detail = _clip(detail)


def _refusal(status: int, who: str, refused: str) -> _Stop:
    """What ``status`` means when it is not the 200 that was expected."""
    if status in (401, 403) and refused:
        return _Stop("rejected", f"{refused} ({status})")
    if status >= 500 or status == 429:
        return _Stop("unreachable", f"{who} answered {status}")
    if 300 <= status < 400:
        return _Stop("error", f"{who} answered a redirect ({status}), which is not followed")
    return _Stop("error", f"{who} answered {status}")


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    challenges: tuple[str, ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class _Access:
    """How to talk to the registry: where it answered, and with which ``Authorization``."""

    origin: URL
    authorization: str | None
    how: str
    """How the authorization was obtained, in words (``basic auth``, ``token from …``)."""


def _network_words(error: BaseException) -> str:
    """What went wrong on the wire, in an operator's words."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        code = getattr(error.certificate_error, "verify_code", None)
        return _TLS_VERIFY_WORDS.get(code or 0, "TLS: certificate not trusted")
    if isinstance(error, aiohttp.ClientSSLError | ssl.SSLError):
        return "TLS: handshake failed"
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return "timed out connecting"
    if isinstance(error, TimeoutError):
        return "timed out waiting for the answer"
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "name not resolved"
    if isinstance(error, aiohttp.ClientConnectorError):
        if isinstance(error.os_error, ConnectionRefusedError):
            return "connection refused"
        return "could not connect"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the connection was closed before the answer"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    return "network error"


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _utf8(text: str) -> bytes | None:
    """``text`` as UTF-8, or ``None``: the encoding error would quote the secret."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


def _basic(username: str, password: str) -> str:
    raw = _utf8(f"{username}:{password}")
    if raw is None:
        raise _Stop("error", "the credential is not valid UTF-8 text")
    return "Basic " + base64.b64encode(raw).decode()


def _trust(ca_file: Path | None) -> ssl.SSLContext | Literal[True]:
    """System CAs, plus ``ca_file`` when given (docker adds ``certs.d`` CAs the same way)."""
    if ca_file is None:
        return True
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except ssl.SSLError:
        problem = "not a PEM certificate file"
    except OSError as e:
        problem = (e.strerror or "cannot be read").lower()
    else:
        return context
    raise ConfigError([f"registry CA file {ca_file}: {problem}"])


def _pull_path(registry: str, repository: str) -> str:
    """The repository path docker would pull (``ubuntu`` on the Hub is ``library/ubuntu``)."""
    try:
        return repository_path(registry, repository)
    except InvalidReferenceError as e:
        raise ConfigError([f"verify_repository: {e}"]) from None


def _same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


class RegistryLogin:
    """Logs in to one registry, and checks images on it, over an ``aiohttp.ClientSession`` that
    the caller owns. A ``CredentialVerifier`` and an ``ImageChecker``.

    Raises ``ConfigError`` at construction for an invalid host, repository or CA file.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        registry: str,
        *,
        repository: str | None = None,
        insecure: bool = False,
        ca_file: Path | None = None,
        timeout_seconds: float = 10.0,
        user_agent: str = "marathon-pullsecret-controller",
    ) -> None:
        try:
            self._registry = normalize_registry_host(registry)
        except InvalidReferenceError as e:
            raise ConfigError([str(e)]) from None
        self._session = session
        self._path = None if repository is None else _pull_path(self._registry, repository)
        self._ca_file = ca_file
        self._trust = _trust(ca_file)
        self._timeout = timeout_seconds
        self._request_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_seconds / 2, sock_read=timeout_seconds / 2)
        self._user_agent = user_agent
        api_host = HUB_API_HOST if self._registry == HUB_REGISTRY else self._registry
        self._host = URL(f"https://{api_host}").host or api_host
        self._marked_insecure = insecure
        self._insecure = insecure or _is_loopback(self._host)
        schemes = ("https", "http") if self._insecure else ("https",)
        self._origins = [URL(f"{scheme}://{api_host}") for scheme in schemes]

    def reload_trust(self) -> None:
        """Read ``ca_file`` again (it was replaced); a file that holds no certificate now keeps
        the trust read before, and is logged."""
        try:
            self._trust = _trust(self._ca_file)
        except ConfigError as e:
            log.warning("registry_ca_file_unusable", registry=self._registry,
                        error=e.problems[0], kept="the CA file read before")

    async def verify(self, credential: RegistryCredential) -> LoginResult:
        """Log in with ``credential``; never raises for what the registry or network does."""
        started = time.monotonic()
        answer = await self._bounded(self._login(credential))
        outcome = answer if isinstance(answer, LoginResult) else LoginResult(
            result=answer.outcome, detail=answer.detail)
        emit = log.info if outcome.result == "accepted" else log.warning
        emit("registry_login_checked", registry=self._registry, result=outcome.result,
             detail=outcome.detail, duration_ms=round(1000 * (time.monotonic() - started)))
        return outcome

    async def check_image(self, credential: RegistryCredential, repository: str,
                          reference: str) -> ImageCheck:
        """Whether ``credential`` may pull ``repository`` at ``reference`` (a tag or a digest)
        from this registry, without pulling it. ``repository`` is written as in an image
        reference (``ubuntu`` on Docker Hub is ``library/ubuntu``). Never raises for what the
        registry, the network or the names given do."""
        started = time.monotonic()
        try:
            path = self._image_path(repository, reference)
        except InvalidReferenceError as e:
            check = ImageCheck(result="error", detail=_clip(str(e)))
        else:
            answer = await self._bounded(self._check(credential, path, reference))
            check = answer if isinstance(answer, ImageCheck) else ImageCheck(
                result=_CHECK_OF_LOGIN[answer.outcome], detail=answer.detail)
        emit = log.info if check.result == "ok" else log.warning
        emit("registry_image_checked", registry=self._registry,
             repository=_clip(repository), reference=_clip(reference), result=check.result,
             detail=check.detail, duration_ms=round(1000 * (time.monotonic() - started)))
        return check

    async def _bounded(self, steps: Awaitable[_T]) -> _T | _Stop:
        """What ``steps`` return, or why they stopped, within the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                return await steps
        except _Stop as stop:
            return stop
        except TimeoutError:
            return _Stop("unreachable", f"timed out after {self._timeout:g} s")

    def _image_path(self, repository: str, reference: str) -> str:
        """The path of ``repository`` on this registry, once it and ``reference`` make one
        valid image reference with a single tag or digest (``InvalidReferenceError`` if not)."""
        separator = "@" if ":" in reference else ":"
        image = parse_image(f"{self._registry}/{repository}{separator}{reference}")
        if (image.registry != self._registry or (image.tag and image.digest)
                or (image.digest or image.tag) != reference):
            raise InvalidReferenceError(
                f"{_clip(repository)!r} at {_clip(reference)!r}: name a repository of "
                f"{self._registry} and one tag or digest")
        return image.path

    # -- steps ---------------------------------------------------------------------------

    async def _login(self, credential: RegistryCredential) -> LoginResult:
        access = await self._access(credential, self._path)
        v2 = f"{access.origin}/v2/"
        if access.authorization is not None:
            answer = await self._request("GET", v2, authorization=access.authorization)
            if answer.status != 200:
                raise _refusal(answer.status, f"the registry ({v2})",
                               f"the registry refused the {access.how}")
        if self._path is None:
            return LoginResult(result="accepted", detail=f"ok ({access.how})")
        tags = f"{access.origin}/v2/{self._path}/tags/list"
        answer = await self._request("GET", f"{tags}?n=1", authorization=access.authorization)
        if answer.status == 200:
            return LoginResult(result="accepted",
                               detail=f"ok ({access.how}); may pull {self._path}")
        if answer.status == 404:
            raise _Stop("error", f"repository {self._path} is not on the registry: "
                                 "check verify_repository")
        if access.authorization is None and answer.status in (401, 403):
            raise _Stop("error", f"the registry needs no login for /v2/ but refuses "
                                 f"{self._path} without one; the credential was not tried")
        raise _refusal(answer.status, f"the registry ({tags})",
                       f"the {access.how} may not pull {self._path}")

    async def _check(self, credential: RegistryCredential, path: str,
                     reference: str) -> ImageCheck:
        access = await self._access(credential, path)
        image = f"{path}{'@' if ':' in reference else ':'}{reference}"
        manifest = f"{access.origin}/v2/{path}/manifests/{reference}"
        answer = await self._request("HEAD", manifest, authorization=access.authorization,
                                     accept=_MANIFEST_ACCEPT)
        if answer.status == 401 and access.authorization is None:
            # /v2/ wanted no login but the image does: log in from this challenge, as docker
            # pull does.
            authorization, how = await self._authorize(credential, _challenge(answer),
                                                       access.origin, path)
            access = _Access(access.origin, authorization, how)
            answer = await self._request("HEAD", manifest, authorization=authorization,
                                         accept=_MANIFEST_ACCEPT)
        if answer.status == 200:
            return ImageCheck(result="ok", detail=f"ok ({access.how}); may pull {image}")
        if answer.status in (401, 403):
            if access.authorization is None:
                raise _Stop("rejected", f"the registry refuses {image} without asking for a "
                                        f"login ({answer.status})")
            raise _Stop("rejected", f"the {access.how} may not pull {image} ({answer.status})")
        if answer.status == 404:
            return await self._missing(access, path, image)
        raise _refusal(answer.status, f"the registry ({access.origin})", "")

    async def _missing(self, access: _Access, path: str, image: str) -> ImageCheck:
        """After a 404 for the manifest: is the repository there (``GET tags/list``, which
        Docker Hub does not count as a pull)?"""
        tags = f"{access.origin}/v2/{path}/tags/list?n=1"
        try:
            answer = await self._request("GET", tags, authorization=access.authorization)
        except _Stop as stop:
            unsure = stop.detail
        else:
            if answer.status == 200:
                return ImageCheck(result="manifest_unknown",
                                  detail=f"{image} is not on the registry; {path} is")
            if answer.status == 404:
                return ImageCheck(result="name_unknown",
                                  detail=f"repository {path} is not on the registry")
            unsure = f"its tags answered {answer.status}"
        return ImageCheck(result="manifest_unknown",
                          detail=f"{image} is not on the registry; whether {path} is could not "
                                 f"be told ({unsure})")

    async def _access(self, credential: RegistryCredential, path: str | None) -> _Access:
        """Ping the registry and, if it asks, obtain the ``Authorization`` to send it (for
        Bearer, a token scoped to pull ``path`` when given): the one way in that a login and
        an image check share."""
        origin, ping = await self._ping()
        if ping.status == 200:
            return _Access(origin, None, "no login needed")
        if ping.status != 401:
            raise _refusal(ping.status, f"the registry ({origin}/v2/)", "")
        authorization, how = await self._authorize(credential, _challenge(ping), origin, path)
        return _Access(origin, authorization, how)

    async def _ping(self) -> tuple[URL, _Answer]:
        """``GET /v2/`` without credentials; on a network failure docker tries the next origin."""
        failure: _Stop | None = None
        for origin in self._origins:
            try:
                return origin, await self._request("GET", f"{origin}/v2/")
            except _Stop as stop:
                failure = stop
        assert failure is not None
        raise failure

    async def _authorize(self, credential: RegistryCredential, challenge: Challenge,
                         origin: URL, path: str | None) -> tuple[str, str]:
        """The ``Authorization`` value to send, and how it was obtained in words."""
        if challenge.scheme == "basic":
            if credential.identity_token:
                raise _Stop("error", "an identity token needs a token service, but the "
                                     "registry asks for Basic auth")
            return _basic(credential.username, credential.password.reveal()), "basic auth"
        realm, verify_tls = self._realm(challenge, origin)
        scopes = challenge.params.get("scope", "").split()
        if path is not None:
            scopes.append(f"repository:{path}:pull")
        scopes = list(dict.fromkeys(scopes))
        service = challenge.params.get("service", "")
        if credential.identity_token:
            answer = await self._refresh_grant(realm, verify_tls, service, scopes, credential)
        else:
            basic = _basic(credential.username, credential.password.reveal())
            query = [("service", service)] if service else []
            query += [("scope", scope) for scope in scopes]
            query.append(("account", credential.username))
            answer = await self._request("GET", str(realm.extend_query(query)), read=True,
                                         authorization=basic, verify_tls=verify_tls)
        where = str(realm.origin())
        if answer.status != 200:
            raise _refusal(answer.status, f"the token service ({where})",
                           "the token service refused the credential")
        return f"Bearer {_token(answer.body, where)}", f"token from {where}"

    async def _refresh_grant(self, realm: URL, verify_tls: bool, service: str,
                             scopes: list[str], credential: RegistryCredential) -> _Answer:
        """Docker's OAuth2 exchange of an identity token (distribution ``oauth.md``)."""
        token = credential.password.reveal()
        if _utf8(token) is None:
            raise _Stop("error", "the credential is not valid UTF-8 text")
        fields = {"grant_type": "refresh_token", "refresh_token": token,
                  "service": service, "client_id": _CLIENT_ID}
        if scopes:
            fields["scope"] = " ".join(scopes)
        answer = await self._request("POST", str(realm), read=True, form=urlencode(fields),
                                     verify_tls=verify_tls)
        where = str(realm.origin())
        if answer.status == 400:  # RFC 6749 section 5.2: a bad refresh token is invalid_grant
            if (json_object(answer.body) or {}).get("error") == "invalid_grant":
                raise _Stop("rejected", "the token service refused the identity token "
                                        "(invalid_grant)")
            raise _Stop("error", f"the token service ({where}) answered 400 to the "
                                 "identity token")
        if answer.status in (404, 405):
            raise _Stop("error", f"the token service ({where}) takes no OAuth2 POST, which "
                                 "an identity token needs")
        return answer

    def _realm(self, challenge: Challenge, origin: URL) -> tuple[URL, bool]:
        """The token service, if the credential may be sent there (the module docstring says
        where), and whether its certificate is verified."""
        try:
            realm = URL(challenge.params.get("realm", ""))
        except ValueError:
            realm = URL()
        if realm.scheme not in ("http", "https") or not realm.host:
            raise _Stop("error", "the registry's Bearer challenge names no usable token "
                                 "service (realm)")
        if "@" in realm.raw_authority:
            raise _Stop("error", "the registry's token service (realm) has user info in its "
                                 "URL; the credential is not sent there")
        if _same_origin(realm, origin):
            return realm, not self._insecure
        if self._marked_insecure and realm.host == self._host:
            return realm, False
        if realm.scheme == "https":
            return realm, True
        raise _Stop("error", f"the token service {realm.origin()} is plain http and not the "
                             f"registry's origin ({origin}); the credential is not sent there")

    # -- the wire ------------------------------------------------------------------------

    async def _request(self, method: str, url: str, *, authorization: str | None = None,
                       accept: str | None = None, form: str | None = None, read: bool = False,
                       verify_tls: bool | None = None) -> _Answer:
        """One request without redirects; a network failure stops the login as unreachable."""
        headers = {"User-Agent": self._user_agent}
        if authorization is not None:
            headers["Authorization"] = authorization
        if accept is not None:
            headers["Accept"] = accept
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if verify_tls is None:
            verify_tls = not self._insecure
        where = str(URL(url).origin())
        try:
            async with self._session.request(
                    method, url, headers=headers, data=form, allow_redirects=False,
                    ssl=self._trust if verify_tls else False,
                    timeout=self._request_timeout) as response:
                challenges = tuple(response.headers.getall("WWW-Authenticate", ()))
                body = await _body(response, where) if read else b""
                return _Answer(response.status, challenges, body)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            words = _network_words(e)
        raise _Stop("unreachable", f"{where}: {words}")


def _challenge(answer: _Answer) -> Challenge:
    """The challenge to answer: Bearer before Basic, as docker prefers tokens."""
    if not answer.challenges:
        raise _Stop("error", "the registry answered 401 without a login challenge")
    if sum(map(len, answer.challenges)) > _MAX_CHALLENGE:
        raise _Stop("error", "the registry's login challenge is too long")
    if not all(header.isascii() for header in answer.challenges):
        raise _Stop("error", "the registry's login challenge is not ASCII text")
    try:
        challenges = [c for header in answer.challenges for c in parse_challenges(header)]
    except ValueError as e:
        problem = str(e)
    else:
        by_scheme = {c.scheme: c for c in reversed(challenges)}
        for scheme in ("bearer", "basic"):
            if scheme in by_scheme:
                return by_scheme[scheme]
        offered = ", ".join(sorted(by_scheme)) or "nothing"
        raise _Stop("error", f"the registry asks for a login scheme that is not supported "
                             f"({offered})")
    raise _Stop("error", f"the registry's login challenge is malformed: {problem}")


def _token(body: bytes, origin: str) -> str:
    """The bearer token in a token service's answer (``access_token`` wins, as in docker)."""
    data = json_object(body)
    if data is None:
        raise _Stop("error", f"the token service ({origin}) answered something that is not "
                             "a JSON object")
    token = data.get("access_token") or data.get("token")
    if not isinstance(token, str) or not _HEADER_TOKEN.fullmatch(token):
        raise _Stop("error", f"the token service ({origin}) answered no usable token")
    return token


async def _body(response: aiohttp.ClientResponse, where: str) -> bytes:
    """The body, refused once past the token answer limit rather than after."""
    too_big = f"{where} answered more than {_MAX_TOKEN_ANSWER // 1024} KiB"
    if response.content_length is not None and response.content_length > _MAX_TOKEN_ANSWER:
        raise _Stop("error", too_big)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > _MAX_TOKEN_ANSWER:
            raise _Stop("error", too_big)
        chunks.append(chunk)
    return b"".join(chunks)
