"""``/status`` and ``/`` on the ops server: pages asked for by query, a bounded number made at
once (off the event loop), and the security headers on every answer (127.0.0.1)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from controller.opsserver import SECURITY_HEADERS, make_app
from controller.statusbook import AppPage
from tests.adapters.test_opsserver_limits import Start, connect, get, read_until_closed, start

__all__ = ["connect", "start"]  # fixtures, used by name


class Asked:
    """A status source that remembers the pages asked for."""

    def __init__(self) -> None:
        self.pages: list[AppPage] = []

    def __call__(self, page: AppPage) -> Mapping[str, Any]:
        self.pages.append(page)
        return {"page": {"limit": page.limit, "after": page.after}}


class Held(Mapping[str, Any]):
    """A document whose first read (in the rendering thread) waits until it is released."""

    def __init__(self) -> None:
        self.reading = threading.Event()
        self.release = threading.Event()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.reading.set()
        assert self.release.wait(10)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def app_for(status: Any, **kwargs: Any) -> Any:
    return make_app(collectors=CollectorRegistry(), health=lambda: {"loop": True},
                    ready=lambda: {"synced": True}, status=status, **kwargs)


async def head(port: int, path: str) -> tuple[int, Mapping[str, str]]:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}{path}") as response:
        await response.read()
        return response.status, dict(response.headers)


class TestHeaders:
    @pytest.mark.parametrize("path", ["/", "/status", "/healthz", "/readyz", "/metrics",
                                      "/nothing-here", "/status?limit=0"])
    async def test_every_answer_carries_the_security_headers(self, start: Start, path) -> None:
        _, headers = await head(await start(app_for(Asked())), path)
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name) == value, name

    async def test_the_policy_is_strict(self) -> None:
        policy = SECURITY_HEADERS["Content-Security-Policy"]
        assert policy.startswith("default-src 'none'; style-src 'sha256-")
        assert "frame-ancestors 'none'" in policy
        assert "unsafe" not in policy
        assert "script-src" not in policy

    async def test_a_malformed_request_gets_them_too(self, start: Start, connect) -> None:
        """aiohttp answers it without the application: the connection adds the headers."""
        reader, writer = await connect(await start(app_for(Asked())))
        writer.write(b"GET /healthz HTTP/1.1\r\nBroken header\r\n\r\n")
        answer = (await read_until_closed(reader, 3)).decode()
        assert answer.startswith("HTTP/1.0 400 ")
        for name, value in SECURITY_HEADERS.items():
            assert f"{name}: {value}\r\n" in answer

    @pytest.mark.parametrize("path", ["/", "/status", "/status?limit=x"])
    async def test_status_and_page_are_never_cached(self, start: Start, path) -> None:
        _, headers = await head(await start(app_for(Asked())), path)
        assert headers["Cache-Control"] == "no-store"


class TestPages:
    async def test_the_query_names_the_page(self, start: Start) -> None:
        asked = Asked()
        port = await start(app_for(asked))
        assert (await get(port, "/status?limit=3&after=/a/b"))[0] == 200
        assert (await get(port, "/"))[0] == 200
        assert asked.pages == [AppPage(limit=3, after="/a/b"), AppPage()]

    @pytest.mark.parametrize("query", ["limit=0", "limit=2001", "limit=ten", "after=a",
                                       "after=%2Fa%0Ab"])
    async def test_a_bad_query_is_a_400_that_says_why(self, start: Start, query) -> None:
        asked = Asked()
        port = await start(app_for(asked))
        for path in ("/status", "/"):
            status, body = await get(port, f"{path}?{query}")
            assert status == 400
            assert "must be" in body
        assert asked.pages == []


class TestRenderSlots:
    async def test_extra_renders_get_a_quick_503_while_healthz_answers(self, start: Start
                                                                       ) -> None:
        """With its one slot held by a page being rendered (in a thread), a second page waits
        ``render_wait`` and gets 503 with Retry-After; /healthz answers meanwhile."""
        held = Held()
        port = await start(app_for(lambda page: held, renders=1, render_wait=0.2))
        first = asyncio.create_task(get(port, "/"))
        try:
            assert await asyncio.to_thread(held.reading.wait, 10)
            assert (await get(port, "/healthz"))[0] == 200
            status, headers = await head(port, "/status")
            assert (status, headers["Retry-After"]) == (503, "1")
        finally:
            held.release.set()
        assert (await first)[0] == 200
        assert (await get(port, "/"))[0] == 200  # the slot is free again
