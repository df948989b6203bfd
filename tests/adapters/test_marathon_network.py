"""MarathonClient names network failures in words, and always verifies TLS certificates."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from controller.errors import MarathonUnavailable
from controller.model import AppId
from tests.adapters.marathon_helpers import (
    APPS,
    Recorder,
    client,
    free_url,
    self_signed,
    server_tls,
)

CONTROLLER = Path(__file__).resolve().parents[2] / "controller"


class NoDnsResolver(aiohttp.ThreadedResolver):
    """The system resolver limited to IP literals: a name fails, and no query leaves the host."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET):
        await asyncio.get_running_loop().getaddrinfo(host, port, flags=socket.AI_NUMERICHOST)
        return await super().resolve(host, port, family)


async def failure(session, *urls: str, **settings) -> str:
    """The text of the error a read from ``urls`` raises."""
    with pytest.raises(MarathonUnavailable) as info:
        await client(session, *urls, timeout_seconds=0.3, **settings).list_apps()
    text = str(info.value)
    assert not re.search(r"[A-Z][a-z]+(Error|Exception)\b", text), text
    return text


async def https_url(aiohttp_server, cert: Path, key: Path) -> str:
    server = await aiohttp_server(Recorder().app(lambda r: web.json_response(APPS)),
                                  ssl=server_tls(cert, key))
    return str(server.make_url("")).rstrip("/")


Conversation = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(talk: Conversation) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that holds ``talk`` with each client; yields its port."""
    server = await asyncio.start_server(talk, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def close_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def cut_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"apps\": [")
    await writer.drain()
    writer.close()


async def reset_after_request(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    linger_zero = struct.pack("ii", 1, 0)  # close with RST
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero)
    writer.transport.abort()


async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


class TestNetworkErrorsInWords:
    @pytest.mark.parametrize(("talk", "scheme", "words"), [
        (close_after_request, "http", "the connection was closed before the answer"),
        (cut_answer, "http", "the answer was cut short"),
        (reset_after_request, "http", "connection reset by peer"),
        (plain_http, "https", "TLS: handshake failed"),
    ], ids=["closed", "cut-short", "reset", "tls-to-plain-http"])
    async def test_broken_conversations_are_named(self, session, talk, scheme, words):
        """A server that breaks off the exchange is described, not named by exception class."""
        async with raw_server(talk) as port:
            assert words in await failure(session, f"{scheme}://127.0.0.1:{port}")

    async def test_closed_port_is_connection_refused(self, session):
        """Nothing listening is "connection refused"."""
        url = free_url()
        assert f"{url}:" in await failure(session, url)
        assert "connection refused" in await failure(session, url)

    async def test_server_that_never_answers_timed_out(self, session, silent_url):
        """A server that accepts but never answers "timed out waiting for the answer"."""
        assert "timed out waiting for the answer" in await failure(session, silent_url)

    async def test_host_that_never_accepts_timed_out(self, session, black_hole_url):
        """A connect that hangs "timed out connecting"."""
        assert "timed out connecting" in await failure(session, black_hole_url)

    async def test_unknown_name_is_not_resolved(self):
        """A host name no resolver knows is "name not resolved"."""
        connector = aiohttp.TCPConnector(resolver=NoDnsResolver())
        async with aiohttp.ClientSession(connector=connector) as session:
            assert "name not resolved" in await failure(session, "http://marathon.invalid:8080")

    async def test_self_signed_certificate_is_not_trusted(self, aiohttp_server, session,
                                                          tls_files):
        """Without its CA configured, a self-signed server is refused as not trusted."""
        url = await https_url(aiohttp_server, *tls_files)
        assert "TLS: certificate not trusted" in await failure(session, url)

    async def test_certificate_for_another_address_is_a_hostname_mismatch(
            self, aiohttp_server, session, tmp_path):
        """A trusted certificate issued to another address is a hostname mismatch."""
        cert, key = self_signed(tmp_path, ip="127.0.0.2")
        url = await https_url(aiohttp_server, cert, key)
        assert "TLS: hostname mismatch" in await failure(session, url, ca_file=cert)

    async def test_expired_certificate_is_named(self, aiohttp_server, session, tmp_path):
        """A trusted but expired certificate says so."""
        cert, key = self_signed(tmp_path, expired=True)
        url = await https_url(aiohttp_server, cert, key)
        assert "TLS: certificate expired" in await failure(session, url, ca_file=cert)

    async def test_write_that_timed_out_says_so(self, session, silent_url):
        """A write that got no answer names the timeout in words too."""
        c = client(session, silent_url, timeout_seconds=0.3, update_method="patch")
        with pytest.raises(MarathonUnavailable, match=r"timed out waiting for the answer$"):
            await c.update_app(AppId("/x"), {"fetch": []})


class TestTlsAlwaysVerified:
    async def test_configured_ca_is_trusted(self, aiohttp_server, session, tls_files):
        """With its CA configured the same server is used: verification is on, not broken."""
        cert, key = tls_files
        url = await https_url(aiohttp_server, cert, key)
        assert len(await client(session, url, ca_file=cert).list_apps()) == 1

    def test_no_code_turns_verification_off(self):
        """Nothing in the controller disables certificate checks."""
        off = re.compile(r"ssl\s*=\s*False|verify_ssl|CERT_NONE|check_hostname\s*=\s*False"
                         r"|_create_unverified_context")
        hits = [f"{path.relative_to(CONTROLLER)}:{n}"
                for path in sorted(CONTROLLER.rglob("*.py"))
                for n, line in enumerate(path.read_text().splitlines(), 1) if off.search(line)]
        assert hits == []
