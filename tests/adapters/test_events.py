"""EventWatcher against raw local servers: cuts mid-event, oversize events, exact Accept, type."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest
from aiohttp import web

from controller.backoff import Backoff
from controller.errors import MarathonUnavailable
from controller.events import EVENT_TYPES, EventEffect, EventWatcher
from controller.marathon.client import MarathonClient
from controller.settings import MarathonSettings
from controller.simulator import MarathonSimulator

ATTACHED = b'event: event_stream_attached\r\ndata: {"remoteAddress":"127.0.0.1"}\r\n\r\n'


def post(app_id: str) -> bytes:
    return (b'event: api_post_event\r\ndata: {"appDefinition":{"id":"' + app_id.encode()
            + b'"},"eventType":"api_post_event"}\r\n\r\n')


async def no_sleep(_: float) -> None:
    return None


class Stream:
    """Serves one scripted byte sequence per connection, then closes it."""

    def __init__(self, *connections: bytes) -> None:
        self.connections = list(connections)
        self.accept: list[str] = []

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.accept.append(request.headers.get("Accept", ""))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.connections:
            await response.write(self.connections.pop(0))
        return response


async def events_url(aiohttp_server, handler) -> str:
    """Serve ``handler`` as ``/v2/events``; returns the server's URL."""
    app = web.Application()
    app.router.add_get("/v2/events", handler)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


async def watch(aiohttp_server, handler, iterations: int, **kw):
    """Run an EventWatcher for ``iterations`` connections to ``handler``: (effects, relists)."""
    url = await events_url(aiohttp_server, handler)
    effects: list[EventEffect] = []
    relists = 0

    def relist() -> None:
        nonlocal relists
        relists += 1

    kw.setdefault("sleep", no_sleep)
    async with aiohttp.ClientSession() as session:
        client = MarathonClient(MarathonSettings(urls=(url,)), session)
        watcher = EventWatcher(client, on_effect=effects.append, on_attached=relist, **kw)
        await asyncio.wait_for(watcher.run(_iterations=iterations), 10)
    return effects, relists


async def test_cut_mid_event_reconnects_and_relists(aiohttp_server):
    """A stream cut inside an event drops that half event, reconnects and asks for a relist
    again."""
    half = post("/half")[:40]
    stream = Stream(ATTACHED + post("/first") + half, ATTACHED + post("/second"))
    effects, relists = await watch(aiohttp_server, stream.handler, iterations=2)
    assert [e.app_ids for e in effects] == [("/first",), ("/second",)]
    assert relists == 2


async def test_oversize_event_drops_the_stream_not_the_process(aiohttp_server):
    """An event over the size limit ends that connection; the next one works."""
    huge = b"event: api_post_event\r\ndata: " + b"x" * 5000 + b"\r\n\r\n"
    stream = Stream(ATTACHED + huge + post("/lost"), ATTACHED + post("/after"))
    effects, _ = await watch(aiohttp_server, stream.handler, iterations=2, max_event_bytes=1000)
    assert [e.app_ids for e in effects] == [("/after",)]


async def test_accept_header_is_exactly_event_stream(aiohttp_server):
    """Jetty compares Accept with equals(): nothing may be added to it."""
    stream = Stream(ATTACHED)
    await watch(aiohttp_server, stream.handler, iterations=1)
    assert stream.accept == ["text/event-stream"]


@pytest.mark.parametrize("status", [405, 503])
async def test_refused_stream_is_retried(aiohttp_server, status):
    """An error answer counts as a failed connection and is retried, never fatal."""
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"message": "no"}, status=status)

    _, relists = await watch(aiohttp_server, handler, iterations=3)
    assert (calls, relists) == (3, 0)


async def test_streams_that_end_at_once_back_off(aiohttp_server):
    """A proxy closing every stream at once does not turn into a tight relist loop."""
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    await watch(aiohttp_server, Stream(*[ATTACHED] * 6).handler, iterations=6, sleep=record,
                backoff=Backoff(1.0, 64.0))
    assert len(delays) == 5
    assert all(later > earlier for earlier, later in itertools.pairwise(delays))


class TestOnlyAnEventStreamIsRead:
    @pytest.mark.parametrize(("headers", "words"), [
        ({"Content-Type": "text/html; charset=utf-8"}, "answered text/html, not an event stream"),
        ({"Content-Type": "application/json"}, "answered application/json, not an event"),
    ], ids=["html", "json"])
    async def test_other_content_is_refused(self, aiohttp_server, headers, words):
        """A 200 that is not text/event-stream (a login page, a proxy) is a transient error."""
        async def page(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
            await response.write(ATTACHED + post("/from-a-page"))
            return response

        url = await events_url(aiohttp_server, page)
        async with aiohttp.ClientSession() as session:
            client = MarathonClient(MarathonSettings(urls=(url,)), session)
            with pytest.raises(MarathonUnavailable, match=words):
                async with client.event_stream(EVENT_TYPES):
                    pass

    async def test_answer_without_content_type_is_refused(self):
        """A bare HTTP answer without a Content-Type is no event stream either."""
        async def bare(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + ATTACHED)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(bare, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            async with aiohttp.ClientSession() as session:
                client = MarathonClient(MarathonSettings(urls=(url,)), session)
                with pytest.raises(MarathonUnavailable, match="answered without a Content-Type"):
                    async with client.event_stream(EVENT_TYPES):
                        pass
        finally:
            server.close()
            await server.wait_closed()

    async def test_watcher_neither_relists_nor_reads_a_page(self, aiohttp_server):
        """An HTML answer is a failed connection: no relist, no events taken from it."""
        async def page(request: web.Request) -> web.Response:
            return web.Response(text=(ATTACHED + post("/from-a-page")).decode(),
                                content_type="text/html")

        effects, relists = await watch(aiohttp_server, page, iterations=2)
        assert (relists, effects) == (0, [])

    async def test_simulator_serves_an_event_stream(self):
        """The shipped simulator answers text/event-stream, so the client reads it."""
        async with MarathonSimulator() as simulator, aiohttp.ClientSession() as session:
            client = MarathonClient(MarathonSettings(urls=(simulator.url,)), session)
            async with client.event_stream(EVENT_TYPES) as chunks:
                first = await asyncio.wait_for(anext(aiter(chunks)), 10)
        assert first.startswith(b"event: event_stream_attached\r\n")


async def test_retry_after_is_a_floor_under_the_reconnect_delay(aiohttp_server):
    """A stream refused with Retry-After is not retried sooner than asked."""
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    async def busy(request: web.Request) -> web.Response:
        return web.json_response({"message": "busy"}, status=503, headers={"Retry-After": "42"})

    await watch(aiohttp_server, busy, iterations=2, sleep=record)
    assert delays == [42.0]
