"""A tiny Docker registry that only knows ``GET /v2/``: enough for a login to be really tried.

``docker login`` (and the controller's verification before it publishes a credential) starts
with ``GET /v2/``: a private registry answers 401 with a ``WWW-Authenticate: Basic`` challenge,
and 200 once the request carries credentials it accepts. ``RegistrySimulator`` answers that
against the same ``RegistryBook`` the agent's built-in puller reads, so one call to
``MarathonState.accept_credentials`` (a password set, or rotated, at the registry) decides
both whether tasks pull and whether a login works. A registry the book was never told about is
public, as it is for the puller. It serves no images, tags or tokens; the answers follow the
distribution registry's htpasswd mode (``registry/auth/htpasswd``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Final, Self

from aiohttp import BasicAuth, hdrs, web

from controller.simulator.pullers import RegistryBook
from controller.simulator.serving import serve
from controller.simulator.wire import LOCAL

__all__ = ["RegistrySimulator"]

_API_VERSION: Final[dict[str, str]] = {"Docker-Distribution-API-Version": "registry/2.0"}
_UNAUTHORIZED: Final = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                    "detail": None}]}


class RegistrySimulator:
    """``GET /v2/`` with HTTP Basic auth: ``async with RegistrySimulator(book) as registry``.

    ``host`` is the registry's name (``127.0.0.1:PORT``) once started, the key under which
    ``book`` holds its credentials and the host part of its images.
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
        if not self.book.is_private(self.host) or self._accepted(request):
            return web.json_response({}, headers=_API_VERSION)
        challenge = f'Basic realm="{self.realm}"'
        return web.json_response(_UNAUTHORIZED, status=401,
                                 headers={**_API_VERSION, hdrs.WWW_AUTHENTICATE: challenge})

    def _accepted(self, request: web.Request) -> bool:
        header = request.headers.get(hdrs.AUTHORIZATION)
        if header is None:
            return False
        try:
            auth = BasicAuth.decode(header, encoding="utf-8")
        except ValueError:
            return False  # not Basic, or not base64 of "user:password": no credentials at all
        return self.book.accepts(self.host, auth.login, auth.password)
