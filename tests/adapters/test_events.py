"""EventWatcher against raw local servers: cuts mid-event, oversize events, exact Accept."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest
from aiohttp import web

from controller.config import MarathonSettings
from controller.events import EventEffect, EventWatcher
from controller.marathon import MarathonClient

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


async def watch(aiohttp_server, stream: Stream, iterations: int, **kw):
    app = web.Application()
    app.router.add_get("/v2/events", stream.handler)
    server = await aiohttp_server(app)
    effects: list[EventEffect] = []
    relists = 0

    def relist() -> None:
        nonlocal relists
        relists += 1

    async with aiohttp.ClientSession() as session:
        client = MarathonClient(MarathonSettings(urls=(str(server.make_url("")).rstrip("/"),)),
                                session)
        watcher = EventWatcher(client, on_effect=effects.append, on_attached=relist, sleep=no_sleep,
                               **kw)
        await asyncio.wait_for(watcher.run(_iterations=iterations), 10)
    return effects, relists


async def test_cut_mid_event_reconnects_and_relists(aiohttp_server):
    """A stream cut inside an event drops that half event, reconnects and asks for a relist
    again."""
    half = post("/half")[:40]
    stream = Stream(ATTACHED + post("/first") + half, ATTACHED + post("/second"))
    effects, relists = await watch(aiohttp_server, stream, iterations=2)
    assert [e.app_ids for e in effects] == [("/first",), ("/second",)]
    assert relists == 2


async def test_oversize_event_drops_the_stream_not_the_process(aiohttp_server):
    """An event over the size limit ends that connection; the next one works."""
    huge = b"event: api_post_event\r\ndata: " + b"x" * 5000 + b"\r\n\r\n"
    stream = Stream(ATTACHED + huge + post("/lost"), ATTACHED + post("/after"))
    effects, _ = await watch(aiohttp_server, stream, iterations=2, max_event_bytes=1000)
    assert [e.app_ids for e in effects] == [("/after",)]


async def test_accept_header_is_exactly_event_stream(aiohttp_server):
    """Jetty compares Accept with equals(): nothing may be added to it."""
    stream = Stream(ATTACHED)
    await watch(aiohttp_server, stream, iterations=1)
    assert stream.accept == ["text/event-stream"]


@pytest.mark.parametrize("status", [405, 503])
async def test_refused_stream_is_retried(aiohttp_server, status):
    """An error answer counts as a failed connection and is retried, never fatal."""
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"message": "no"}, status=status)

    app = web.Application()
    app.router.add_get("/v2/events", handler)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        client = MarathonClient(MarathonSettings(urls=(str(server.make_url("")).rstrip("/"),)),
                                session)

        def relist() -> None:
            raise AssertionError("no relist without a stream")

        watcher = EventWatcher(client, on_effect=lambda e: None, on_attached=relist, sleep=no_sleep)
        await asyncio.wait_for(watcher.run(_iterations=3), 10)
    assert calls == 3


async def test_streams_that_end_at_once_back_off(aiohttp_server):
    """A proxy closing every stream at once does not turn into a tight relist loop."""
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    app = web.Application()
    app.router.add_get("/v2/events", Stream(*[ATTACHED] * 6).handler)
    server = await aiohttp_server(app)

    def relist() -> None:
        return None

    async with aiohttp.ClientSession() as session:
        client = MarathonClient(MarathonSettings(urls=(str(server.make_url("")).rstrip("/"),)),
                                session)
        watcher = EventWatcher(client, on_effect=lambda e: None, on_attached=relist, sleep=record,
                               backoff_initial=1.0, backoff_max=64.0)
        await asyncio.wait_for(watcher.run(_iterations=6), 10)
    assert len(delays) == 5
    assert all(later > earlier for earlier, later in itertools.pairwise(delays))
