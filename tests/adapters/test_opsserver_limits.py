"""The ops server against hostile clients: slow heads, bodies, connection floods (127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from structlog.testing import capture_logs

from controller.errors import ConfigError
from controller.opsserver import ServerLimits, make_app, serve

Start = Callable[..., Awaitable[int]]
Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Starts ``serve`` on 127.0.0.1 and an ephemeral port; returns the port."""
    runners: list[web.AppRunner] = []

    async def started(app: web.Application | None = None, **limits: float) -> int:
        runner = await serve(app or ops_app(), "127.0.0.1", 0, ServerLimits(**limits))
        runners.append(runner)
        return int(runner.addresses[0][1])

    yield started
    for runner in runners:
        await runner.cleanup()


def ops_app(*, ready: bool = True, registry: CollectorRegistry | None = None) -> web.Application:
    return make_app(collectors=registry or CollectorRegistry(), health=lambda: {"loop": True},
                    ready=lambda: {"synced": ready}, status=lambda page: {"b": 1, "a": [2]})


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Opens raw client connections to 127.0.0.1; closes them all at teardown."""
    writers: list[asyncio.StreamWriter] = []

    async def connected(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writers.append(writer)
        return reader, writer

    yield connected
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        return b""


async def get(port: int, path: str, timeout: float = 5) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
            session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


class TestEndpoints:
    async def test_healthz_lists_its_checks(self, start) -> None:
        """/healthz answers 200 with every named check."""
        status, body = await get(await start(), "/healthz")
        assert (status, body) == (200, '{"ok": true, "checks": {"loop": true}}')

    async def test_readyz_is_503_while_a_check_fails(self, start) -> None:
        """/readyz answers 503 when one check is false."""
        status, body = await get(await start(ops_app(ready=False)), "/readyz")
        assert (status, json.loads(body)) == (503, {"ok": False, "checks": {"synced": False}})

    async def test_metrics_serves_the_given_registry(self, start) -> None:
        """/metrics exposes the registry it was given."""
        registry = CollectorRegistry()
        Counter("probe_total", "A probe.", registry=registry).inc(3)
        status, body = await get(await start(ops_app(registry=registry)), "/metrics")
        assert status == 200
        assert "probe_total 3.0" in body

    async def test_status_is_indented_sorted_json(self, start) -> None:
        """/status is JSON with sorted keys and an indent of two."""
        assert await get(await start(), "/status") == (200, '{\n  "a": [\n    2\n  ],\n  "b": 1\n}')


class TestSlowClients:
    async def test_half_sent_request_line_is_closed(self, start, connect) -> None:
        """A connection that stops mid request line is closed after the idle timeout."""
        reader, writer = await connect(await start(idle_timeout=0.5))
        writer.write(b"GET /heal")
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await read_until_closed(reader, 5) == b""
        assert loop.time() - began >= 0.4

    async def test_trickled_headers_do_not_extend_the_timeout(self, start, connect) -> None:
        """A client trickling header bytes is closed on time although bytes keep arriving."""
        reader, writer = await connect(await start(idle_timeout=0.5))
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Slow: ")

        async def trickle() -> None:
            while not reader.at_eof():
                writer.write(b"a")
                await asyncio.sleep(0.05)  # the pace of the attack, not a synchronisation

        trickling = asyncio.create_task(trickle())
        try:
            assert await read_until_closed(reader, 3) == b""
        finally:
            trickling.cancel()

    async def test_idle_keep_alive_connection_is_closed(self, start, connect) -> None:
        """A keep-alive connection closes one idle timeout after its last response."""
        reader, writer = await connect(await start(idle_timeout=0.5))
        writer.write(HEAD)
        received = await read_until_closed(reader, 3)
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Connection: close" not in received  # closed for idleness, not after the reply

    async def test_request_body_is_not_read(self, start, connect) -> None:
        """A request announcing a huge body gets its answer and the connection closes unread."""
        reader, writer = await connect(await start(idle_timeout=30))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nab")
        received = await read_until_closed(reader, 3)
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")

    async def test_overlong_header_is_refused(self, start, connect) -> None:
        """A header line over ``max_line_size`` is answered 400."""
        reader, writer = await connect(await start(max_line_size=100))
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 200 + b"\r\n\r\n")
        assert (await read_until_closed(reader, 3)).startswith(b"HTTP/1.0 400 Bad Request\r\n")


class TestRequestErrorLogs:
    async def test_malformed_requests_are_logged_once_per_interval_without_their_text(
            self, start, connect, caplog: pytest.LogCaptureFixture) -> None:
        """Many malformed requests make one warning that quotes none of the client's bytes."""
        port = await start(log_interval=60)
        with capture_logs() as logs:
            for _ in range(20):
                reader, writer = await connect(port)
                writer.write(b"GET /healthz HTTP/1.1\r\nAuthorization secret-token\r\n\r\n")
                assert (await read_until_closed(reader, 3)).startswith(b"HTTP/1.0 400 ")
        assert logs == [{"component": "opsserver", "event": "ops_request_rejected",
                         "log_level": "warning", "status": 400, "suppressed": 0}]
        assert "secret-token" not in caplog.text

    async def test_handler_failure_is_logged_with_its_traceback(self, start) -> None:
        """A route handler that raises answers 500 and logs an error carrying the exception."""
        async def broken(request: web.Request) -> web.Response:
            raise RuntimeError("handler bug")

        app = ops_app()
        app.router.add_get("/broken", broken)
        port = await start(app)
        with capture_logs() as logs:
            assert (await get(port, "/broken"))[0] == 500
        assert [(e["event"], e["log_level"], str(e["exc_info"])) for e in logs] == [
            ("ops_request_failed", "error", "handler bug")]


def blocking_app(entered: asyncio.Event, release: asyncio.Event) -> web.Application:
    """The ops app plus ``/block``, whose handler waits for ``release``."""
    async def block(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response(text="released")

    app = ops_app()
    app.router.add_get("/block", block)
    return app


class TestConnectionCap:
    async def test_healthz_answers_beyond_the_cap(self, start, connect) -> None:
        """With twice the cap of half-sent connections open, /healthz still answers 200 at once."""
        cap = 16
        port = await start(max_connections=cap, idle_timeout=30)
        slow = [await connect(port) for _ in range(2 * cap)]
        for _, writer in slow:
            writer.write(b"GET /heal")
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert (await get(port, "/healthz", timeout=2))[0] == 200
        assert loop.time() - began < 2
        closed = await asyncio.gather(*(read_until_closed(r, 0.5) for r, _ in slow[:cap + 1]))
        assert closed == [b""] * (cap + 1)  # the oldest were evicted to make room

    async def test_connection_in_a_request_is_not_evicted(self, start, connect) -> None:
        """At the cap, the oldest idle connection is evicted, not an older one mid-request."""
        entered, release = asyncio.Event(), asyncio.Event()
        port = await start(blocking_app(entered, release), max_connections=2, idle_timeout=30)
        busy_reader, busy_writer = await connect(port)
        busy_writer.write(b"GET /block HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await asyncio.wait_for(entered.wait(), 5)
        idle_reader, idle_writer = await connect(port)
        idle_writer.write(b"GET /heal")
        assert (await get(port, "/healthz"))[0] == 200
        assert await read_until_closed(idle_reader, 3) == b""
        release.set()
        assert (await read_until_closed(busy_reader, 3)).endswith(b"released")

    async def test_newcomer_is_refused_when_every_connection_is_in_a_request(
            self, start: Start, connect: Connect) -> None:
        """At the cap with every connection mid-request, a new connection is closed at once."""
        entered, release = asyncio.Event(), asyncio.Event()
        port = await start(blocking_app(entered, release), max_connections=1, idle_timeout=30)
        busy_reader, busy_writer = await connect(port)
        busy_writer.write(b"GET /block HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await asyncio.wait_for(entered.wait(), 5)
        with capture_logs() as logs:
            reader, writer = await connect(port)
            writer.write(HEAD)
            assert await read_until_closed(reader, 3) == b""
        assert [e["event"] for e in logs] == ["ops_connection_refused"]
        release.set()
        assert (await read_until_closed(busy_reader, 3)).endswith(b"released")

    async def test_evictions_are_logged_once_per_interval(self, start, connect) -> None:
        """Many evictions within one log interval make one warning that counts the rest."""
        port = await start(max_connections=2, idle_timeout=30, log_interval=60)
        with capture_logs() as logs:
            conns = [await connect(port) for _ in range(10)]
            await asyncio.gather(*(read_until_closed(r, 3) for r, _ in conns[:8]))
            assert (await get(port, "/healthz"))[0] == 200
        evicted = [e for e in logs if e["event"] == "ops_connection_evicted"]
        assert [(e["log_level"], e["suppressed"]) for e in evicted] == [("warning", 0)]


class TestListener:
    async def test_port_in_use_is_a_config_error(self, start) -> None:
        """Listening on a port that is taken fails with a config error naming the address."""
        port = await start()
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await serve(ops_app(), "127.0.0.1", port)

    async def test_cleanup_closes_the_listening_socket(self) -> None:
        """After ``runner.cleanup()`` the port refuses connections."""
        runner = await serve(ops_app(), "127.0.0.1", 0)
        port = int(runner.addresses[0][1])
        assert (await get(port, "/healthz"))[0] == 200
        await runner.cleanup()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)

    async def test_every_address_of_the_host_is_served(self) -> None:
        """A host name is bound on each address it resolves to, as asyncio does."""
        expected = {info[4][0] for info in await asyncio.get_running_loop().getaddrinfo(
            "localhost", 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)}
        runner = await serve(ops_app(), "localhost", 0)
        try:
            assert {address[0] for address in runner.addresses} == expected
        finally:
            await runner.cleanup()
