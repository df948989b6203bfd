"""A tiny Docker registry: the login's ``GET /v2/`` and what an image check asks, over the book.

``docker login`` (and the controller's verification before it publishes a credential) starts
with ``GET /v2/``: a private registry answers 401 with a ``WWW-Authenticate: Basic`` challenge,
and 200 once the request carries credentials it accepts. ``RegistrySimulator`` answers that
against the same ``RegistryBook`` the agent's built-in puller reads, so one call to
``MarathonState.accept_credentials`` (a password set, or rotated, at the registry) decides
both whether tasks pull and whether a login works. A registry the book was never told about is
public, as it is for the puller. The answers follow the distribution registry's htpasswd mode
(``registry/auth/htpasswd``).

For an image check it serves, from the book's images (``RegistryBook.push``, ``restrict``),
what distribution/distribution@0d6b721 ``docs/content/spec/api.md`` specifies ("Pulling an
Image Manifest", "Existing Manifests", "Listing Image Tags" and its pagination, the "Errors"
body ``{"errors": [{"code", "message", "detail"}]}``), its headers and error details compared by
hand with the answers of Debian's ``docker-registry`` 2.8.2:

* ``GET``/``HEAD /v2/<name>/manifests/<tag or digest>``: 200 with the manifest, its media type,
  ``Docker-Content-Digest`` and ``Etag``; 404 ``MANIFEST_UNKNOWN`` for a tag or digest the
  repository does not hold, and, as the spec's "No Such Repository Error" says, 404
  ``NAME_UNKNOWN`` for a repository the registry does not hold (distribution's own storage
  answers ``MANIFEST_UNKNOWN`` there: ``registry/handlers/manifests.go``); 404
  ``MANIFEST_UNKNOWN`` also when ``Accept`` does not name the manifest's media type, as
  ``manifests.go`` does for an OCI manifest;
* ``GET /v2/<name>/tags/list`` with ``n`` and ``last``: the tags in lexical order, a ``Link``
  to the next page, 404 ``NAME_UNKNOWN``;
* without accepted credentials on a private registry, 401 ``UNAUTHORIZED`` with the challenge
  and the access asked for as ``detail`` (``registry/handlers/app.go``, ``authorized``); for an
  account whose scope leaves the repository out, the spec's "Access Denied", 403 ``DENIED``.
  (distribution has no such scope in htpasswd mode; its token mode refuses with 401 and a
  Bearer ``error="insufficient_scope"``, ``registry/auth/token/accesscontroller.go``, which
  docker's client reads as ``DENIED`` too, ``internal/client/errors.go``
  ``HandleHTTPResponseError``.)

A name or reference outside the distribution grammar is 404, as distribution's router does for
a path its patterns do not match. A ``HEAD`` answer has the headers of its ``GET`` and no body.
It serves no blobs, uploads or tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Final, Self
from urllib.parse import urlencode

from aiohttp import BasicAuth, hdrs, web

from controller.reference import InvalidReferenceError
from controller.simulator.pullers import REFUSALS, ErrorCode, Manifest, RegistryBook
from controller.simulator.serving import serve
from controller.simulator.wire import LOCAL, dumps

__all__ = ["RegistrySimulator"]

_API_VERSION: Final[dict[str, str]] = {"Docker-Distribution-API-Version": "registry/2.0"}
_UNAUTHORIZED: Final = ErrorCode("UNAUTHORIZED", "authentication required", 401)
_PAGINATION_NUMBER_INVALID: Final = ErrorCode(
    "PAGINATION_NUMBER_INVALID", "invalid number of results requested", 400)
_HTTP_ERRORS: Final[Mapping[int, type[web.HTTPClientError]]] = {
    400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
    404: web.HTTPNotFound}


def _error(code: ErrorCode, detail: object, *, message: str | None = None,
           headers: Mapping[str, str] | None = None) -> web.HTTPClientError:
    """The registry's JSON error answer, to raise."""
    body = {"errors": [{"code": code.value, "message": message or code.message,
                        "detail": detail}]}
    return _HTTP_ERRORS[code.status](text=dumps(body), content_type="application/json",
                                     headers={**_API_VERSION, **(headers or {})})


def _pull_access(name: str) -> list[dict[str, str]]:
    """The access a pull asks for, as distribution names it in an error's ``detail``."""
    return [{"Type": "repository", "Class": "", "Name": name, "Action": "pull"}]


def _accepts(request: web.Request, media_type: str) -> bool:
    """Whether ``Accept`` names ``media_type`` (parameters such as ``q`` are ignored)."""
    return any(part.partition(";")[0].strip().lower() == media_type
               for header in request.headers.getall(hdrs.ACCEPT, ())
               for part in header.split(","))


class RegistrySimulator:
    """A registry over ``book``: ``async with RegistrySimulator(book) as registry``.

    ``host`` is the registry's name (``127.0.0.1:PORT``) once started, the key under which
    ``book`` holds its credentials and images, and the host part of its images.
    """

    def __init__(self, book: RegistryBook, *, realm: str = "Registry Realm") -> None:
        self.book = book
        self.realm = realm
        self._runner: web.AppRunner | None = None
        self._host: str | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` once started."""
        if self._host is None:
            raise RuntimeError("the registry simulator is not started")
        return self._host

    async def start(self, host: str = LOCAL, port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); returns ``host``."""
        app = web.Application()
        app.router.add_get("/v2/", self._ping, allow_head=True)
        app.router.add_get("/v2/{name:.+}/manifests/{reference}", self._manifest,
                           allow_head=True)
        app.router.add_get("/v2/{name:.+}/tags/list", self._tags, allow_head=False)
        self._runner, self._host = await serve(app, host, port)
        return self._host

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner, self._host = self._runner, None, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def _ping(self, request: web.Request) -> web.Response:
        """200 for a public registry or accepted credentials; 401 with the challenge else."""
        self._account(request, None)
        return web.json_response({}, headers=_API_VERSION)

    async def _manifest(self, request: web.Request) -> web.Response:
        name, reference = request.match_info["name"], request.match_info["reference"]
        account = self._account(request, name)
        try:
            found = self.book.find(self.host, name, reference, account)
        except InvalidReferenceError:
            raise web.HTTPNotFound() from None
        if not isinstance(found, Manifest):
            detail: object = {"name": name}
            if found == "denied":
                detail = _pull_access(name)
            elif found == "manifest_unknown":
                detail = {"Name": name, "Revision": reference} if ":" in reference else {
                    "Tag": reference}
            raise _error(REFUSALS[found], detail)
        if not _accepts(request, found.media_type):
            raise _error(REFUSALS["manifest_unknown"], None, message=(
                "OCI manifest found, but accept header does not support OCI manifests"))
        return web.Response(body=found.body, headers={
            **_API_VERSION, hdrs.CONTENT_TYPE: found.media_type,
            "Docker-Content-Digest": found.digest, hdrs.ETAG: f'"{found.digest}"'})

    async def _tags(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        account = self._account(request, name)
        try:
            tags = self.book.tags(self.host, name, account)
        except InvalidReferenceError:
            raise web.HTTPNotFound() from None
        if isinstance(tags, str):
            raise _error(REFUSALS[tags], _pull_access(name) if tags == "denied" else {
                "name": name})
        last, n = request.query.get("last"), request.query.get("n")
        if last:
            tags = [tag for tag in tags if tag > last]
        headers = dict(_API_VERSION)
        if n is not None:
            if not (n.isascii() and n.isdigit()):
                raise _error(_PAGINATION_NUMBER_INVALID, {"n": n})
            limit = int(n)
            if 0 < limit < len(tags):
                following = urlencode({"last": tags[limit - 1], "n": limit})
                headers[hdrs.LINK] = f'<{request.path}?{following}>; rel="next"'
            tags = tags[:limit]
        return web.json_response({"name": name, "tags": tags}, headers=headers)

    def _account(self, request: web.Request, name: str | None) -> str | None:
        """Who asks: ``None`` (anyone) on a public registry, else the username of credentials
        the registry accepts; raises its 401 with the challenge (and, for a repository, the
        access asked for) otherwise."""
        if not self.book.is_private(self.host):
            return None
        username = self._accepted(request)
        if username is None:
            challenge = f'Basic realm="{self.realm}"'
            raise _error(_UNAUTHORIZED, None if name is None else _pull_access(name),
                         headers={hdrs.WWW_AUTHENTICATE: challenge})
        return username

    def _accepted(self, request: web.Request) -> str | None:
        """The username of the request's Basic credentials, if the registry accepts them."""
        header = request.headers.get(hdrs.AUTHORIZATION)
        if header is None:
            return None
        try:
            auth = BasicAuth.decode(header, encoding="utf-8")
        except ValueError:
            return None  # not Basic, or not base64 of "user:password": no credentials at all
        return auth.login if self.book.accepts(self.host, auth.login, auth.password) else None
