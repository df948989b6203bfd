"""One request to a registry or its token service, and what its answer means.

A request follows no redirect; a network failure, told in an operator's words, stops the step as
``unreachable``. A body is read only where it is needed (a token answer or an error), and only up
to 64 KiB.
"""

from __future__ import annotations

import ssl
from typing import Literal

import aiohttp
import msgspec
from yarl import URL

from controller.registryapi.results import Stop

_MAX_TOKEN_ANSWER = 64 * 1024
# OpenSSL verify codes (x509_vfy.h) carried by ssl.SSLCertVerificationError.verify_code.
_TLS_VERIFY_WORDS = {
    10: "TLS: certificate expired",
    62: "TLS: hostname mismatch",
    64: "TLS: hostname mismatch",
}


def refusal(status: int, who: str, refused: str) -> Stop:
    """What ``status`` means when it is not the 200 that was expected."""
    if status in (401, 403) and refused:
        return Stop("rejected", f"{refused} ({status})")
    if status >= 500 or status == 429:
        return Stop("unreachable", f"{who} answered {status}")
    if 300 <= status < 400:
        return Stop("error", f"{who} answered a redirect ({status}), which is not followed")
    return Stop("error", f"{who} answered {status}")


class Answer(msgspec.Struct, frozen=True):
    status: int
    challenges: tuple[str, ...]
    body: bytes


class Wire:
    """Sends the requests for one registry over an ``aiohttp.ClientSession`` that the caller
    owns, each within half the timeout to connect and half to read; ``trust`` is what verifies
    a certificate (the caller replaces it when the CA file changes)."""

    def __init__(self, session: aiohttp.ClientSession, *,
                 trust: ssl.SSLContext | Literal[True], insecure: bool,
                 timeout_seconds: float, user_agent: str) -> None:
        self._session = session
        self.trust = trust
        self._insecure = insecure
        self._request_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_seconds / 2, sock_read=timeout_seconds / 2)
        self._user_agent = user_agent

    async def request(self, method: str, url: str, *, authorization: str | None = None,
                      accept: str | None = None, form: str | None = None, read: bool = False,
                      verify_tls: bool | None = None) -> Answer:
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
                    ssl=self.trust if verify_tls else False,
                    timeout=self._request_timeout) as response:
                challenges = tuple(response.headers.getall("WWW-Authenticate", ()))
                body = await _body(response, where) if read else b""
                return Answer(response.status, challenges, body)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            words = _network_words(e)
        raise Stop("unreachable", f"{where}: {words}")


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


async def _body(response: aiohttp.ClientResponse, where: str) -> bytes:
    """The body, refused once past the token answer limit rather than after."""
    too_big = f"{where} answered more than {_MAX_TOKEN_ANSWER // 1024} KiB"
    if response.content_length is not None and response.content_length > _MAX_TOKEN_ANSWER:
        raise Stop("error", too_big)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > _MAX_TOKEN_ANSWER:
            raise Stop("error", too_big)
        chunks.append(chunk)
    return b"".join(chunks)
