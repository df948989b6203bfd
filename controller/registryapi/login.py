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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Final, TypeVar

import aiohttp
import msgspec
import structlog
from yarl import URL

from controller.errors import ConfigError
from controller.model import RegistryCredential
from controller.reference import (
    HUB_REGISTRY,
    InvalidReferenceError,
    normalize_registry_host,
    parse_image,
    repository_path,
)
from controller.registryapi.results import (
    ImageCheck,
    ImageCheckResult,
    LoginOutcome,
    LoginResult,
    Stop,
    clip,
)
from controller.registryapi.tokens import authorize, login_challenge
from controller.registryapi.trust import HostTrust, ca_trust
from controller.registryapi.wire import Answer, Wire, refusal

log = structlog.get_logger(component="registry")

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

_MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
_T = TypeVar("_T")
_CHECK_OF_LOGIN: Mapping[LoginOutcome, ImageCheckResult] = {
    "accepted": "ok", "rejected": "denied", "unreachable": "unreachable", "error": "error"}
"""A failure on the shared way to the registry, as an image check names it."""


def _pull_path(registry: str, repository: str) -> str:
    """The repository path docker would pull (``ubuntu`` on the Hub is ``library/ubuntu``)."""
    try:
        return repository_path(registry, repository)
    except InvalidReferenceError as e:
        raise ConfigError([f"verify_repository: {e}"]) from None


class _Access(msgspec.Struct, frozen=True):
    """How to talk to the registry: where it answered, and with which ``Authorization``."""

    origin: URL
    authorization: str | None
    how: str
    """How the authorization was obtained, in words (``basic auth``, ``token from …``)."""


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
        self._path = None if repository is None else _pull_path(self._registry, repository)
        self._ca_file = ca_file
        trust = ca_trust(ca_file)
        self._timeout = timeout_seconds
        api_host = HUB_API_HOST if self._registry == HUB_REGISTRY else self._registry
        self._host_trust = HostTrust(host=URL(f"https://{api_host}").host or api_host,
                                     marked_insecure=insecure)
        schemes = ("https", "http") if self._host_trust.insecure else ("https",)
        self._origins = [URL(f"{scheme}://{api_host}") for scheme in schemes]
        self._wire = Wire(session, trust=trust, insecure=self._host_trust.insecure,
                          timeout_seconds=timeout_seconds, user_agent=user_agent)

    def reload_trust(self) -> None:
        """Read ``ca_file`` again (it was replaced); a file that holds no certificate now keeps
        the trust read before, and is logged."""
        try:
            self._wire.trust = ca_trust(self._ca_file)
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
            check = ImageCheck(result="error", detail=clip(str(e)))
        else:
            answer = await self._bounded(self._check(credential, path, reference))
            check = answer if isinstance(answer, ImageCheck) else ImageCheck(
                result=_CHECK_OF_LOGIN[answer.outcome], detail=answer.detail)
        emit = log.info if check.result == "ok" else log.warning
        emit("registry_image_checked", registry=self._registry,
             repository=clip(repository), reference=clip(reference), result=check.result,
             detail=check.detail, duration_ms=round(1000 * (time.monotonic() - started)))
        return check

    async def _bounded(self, steps: Awaitable[_T]) -> _T | Stop:
        """What ``steps`` return, or why they stopped, within the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                return await steps
        except Stop as stop:
            return stop
        except TimeoutError:
            return Stop("unreachable", f"timed out after {self._timeout:g} s")

    def _image_path(self, repository: str, reference: str) -> str:
        """The path of ``repository`` on this registry, once it and ``reference`` make one
        valid image reference with a single tag or digest (``InvalidReferenceError`` if not)."""
        separator = "@" if ":" in reference else ":"
        image = parse_image(f"{self._registry}/{repository}{separator}{reference}")
        if (image.registry != self._registry or (image.tag and image.digest)
                or (image.digest or image.tag) != reference):
            raise InvalidReferenceError(
                f"{clip(repository)!r} at {clip(reference)!r}: name a repository of "
                f"{self._registry} and one tag or digest")
        return image.path

    # -- steps ---------------------------------------------------------------------------

    async def _login(self, credential: RegistryCredential) -> LoginResult:
        access = await self._access(credential, self._path)
        v2 = f"{access.origin}/v2/"
        if access.authorization is not None:
            answer = await self._wire.request("GET", v2, authorization=access.authorization)
            if answer.status != 200:
                raise refusal(answer.status, f"the registry ({v2})",
                              f"the registry refused the {access.how}")
        if self._path is None:
            return LoginResult(result="accepted", detail=f"ok ({access.how})")
        tags = f"{access.origin}/v2/{self._path}/tags/list"
        answer = await self._wire.request("GET", f"{tags}?n=1",
                                          authorization=access.authorization)
        if answer.status == 200:
            return LoginResult(result="accepted",
                               detail=f"ok ({access.how}); may pull {self._path}")
        if answer.status == 404:
            raise Stop("error", f"repository {self._path} is not on the registry: "
                                "check verify_repository")
        if access.authorization is None and answer.status in (401, 403):
            raise Stop("error", f"the registry needs no login for /v2/ but refuses "
                                f"{self._path} without one; the credential was not tried")
        raise refusal(answer.status, f"the registry ({tags})",
                      f"the {access.how} may not pull {self._path}")

    async def _check(self, credential: RegistryCredential, path: str,
                     reference: str) -> ImageCheck:
        access = await self._access(credential, path)
        image = f"{path}{'@' if ':' in reference else ':'}{reference}"
        manifest = f"{access.origin}/v2/{path}/manifests/{reference}"
        answer = await self._wire.request("HEAD", manifest, authorization=access.authorization,
                                          accept=_MANIFEST_ACCEPT)
        if answer.status == 401 and access.authorization is None:
            # /v2/ wanted no login but the image does: log in from this challenge, as docker
            # pull does.
            authorization, how = await authorize(self._wire, self._host_trust, credential,
                                                 login_challenge(answer), access.origin, path)
            access = _Access(access.origin, authorization, how)
            answer = await self._wire.request("HEAD", manifest, authorization=authorization,
                                              accept=_MANIFEST_ACCEPT)
        if answer.status == 200:
            return ImageCheck(result="ok", detail=f"ok ({access.how}); may pull {image}")
        if answer.status in (401, 403):
            if access.authorization is None:
                raise Stop("rejected", f"the registry refuses {image} without asking for a "
                                       f"login ({answer.status})")
            raise Stop("rejected", f"the {access.how} may not pull {image} ({answer.status})")
        if answer.status == 404:
            return await self._missing(access, path, image)
        raise refusal(answer.status, f"the registry ({access.origin})", "")

    async def _missing(self, access: _Access, path: str, image: str) -> ImageCheck:
        """After a 404 for the manifest: is the repository there (``GET tags/list``, which
        Docker Hub does not count as a pull)?"""
        tags = f"{access.origin}/v2/{path}/tags/list?n=1"
        try:
            answer = await self._wire.request("GET", tags, authorization=access.authorization)
        except Stop as stop:
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
            raise refusal(ping.status, f"the registry ({origin}/v2/)", "")
        authorization, how = await authorize(self._wire, self._host_trust, credential,
                                             login_challenge(ping), origin, path)
        return _Access(origin, authorization, how)

    async def _ping(self) -> tuple[URL, Answer]:
        """``GET /v2/`` without credentials; on a network failure docker tries the next origin."""
        failure: Stop | None = None
        for origin in self._origins:
            try:
                return origin, await self._wire.request("GET", f"{origin}/v2/")
            except Stop as stop:
                failure = stop
        assert failure is not None
        raise failure
