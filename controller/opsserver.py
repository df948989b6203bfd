"""The ops endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``/status`` and the page ``/``.

Health checks are named (as controller-runtime's healthz): each answers true or false, and the
endpoint is 200 only when all are true. ``/status`` (and the page rendered from it) never
carries a secret: it is built from ``StatusBook`` and bundle manifests, which hold none.

``/status`` and ``/`` serve one page of apps (``?limit=&after=``, ``AppPage``), so each costs
O(page) however many apps there are. The document is built on the event loop (it reads the
book, which the loop changes), then encoded or rendered in a thread; at most ``renders`` of
them are made at once, the others wait up to ``render_wait`` seconds and then get a 503, so
memory stays bounded and ``/healthz`` and ``/readyz`` never queue behind them.

Every response carries the security headers (``SECURITY_HEADERS``: a Content-Security-Policy
that allows only the page's own style, no framing, no sniffing, no referrer), also 404s and the
errors aiohttp makes for malformed requests; ``/status`` and ``/`` are never cached.

The server is often bound to 0.0.0.0, so any client may hold its connections open. ``serve``
bounds what one can take (``ServerLimits``): a connection must deliver a whole request head within
``idle_timeout``, request bodies are never read, and at ``max_connections`` a new connection
evicts the oldest one that is not in the middle of a request, so ``/healthz`` keeps answering.
A failed accept (out of file descriptors, say) is retried after a short back-off, and
logged once per ``log_interval``, as are evictions and refusals.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from controller.errors import ConfigError
from controller.statusbook import AppPage
from controller.statuspage import STYLE_SOURCE, render_page

__all__ = ["SECURITY_HEADERS", "Checks", "ServerLimits", "StatusSource", "make_app", "serve"]

log = structlog.get_logger(component="opsserver")

Checks = Callable[[], Mapping[str, bool]]
StatusSource = Callable[[AppPage], Mapping[str, Any]]
"""Builds the ``/status`` document of one page of apps (on the event loop: O(page))."""

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": f"default-src 'none'; style-src {STYLE_SOURCE}; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_NO_STORE = {"Cache-Control": "no-store"}

_BACKLOG = 128  # the kernel's queue of connections not yet accepted: these hold no fd of ours
_ACCEPT_RETRY_FIRST = 0.05  # seconds; doubled after each failed accept, up to the max
_ACCEPT_RETRY_MAX = 1.0


def _checks_handler(checks: Checks) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        results = dict(checks())
        ok = all(results.values())
        return web.json_response({"ok": ok, "checks": results}, status=200 if ok else 503)

    return handler


def make_app(*, collectors: CollectorRegistry, health: Checks, ready: Checks,
             status: StatusSource, renders: int = 2, render_wait: float = 2.0
             ) -> web.Application:
    """The ops application; ``renders`` and ``render_wait`` bound the ``/status`` and ``/``
    documents made at once, and how long a request waits for its turn before a 503."""
    slots = _RenderSlots(renders, render_wait)

    async def status_handler(request: web.Request) -> web.Response:
        return await slots.respond(request, status, _encode_json, "application/json")

    async def page_handler(request: web.Request) -> web.Response:
        return await slots.respond(request, status, _encode_page, "text/html")

    app = web.Application()
    app.on_response_prepare.append(_add_security_headers)
    app.router.add_get("/", page_handler)
    app.router.add_get("/healthz", _checks_handler(health))
    app.router.add_get("/readyz", _checks_handler(ready))
    app.router.add_get("/metrics", make_aiohttp_handler(collectors))
    app.router.add_get("/status", status_handler)
    return app


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


def _encode_json(document: Mapping[str, Any]) -> bytes:
    """Indented JSON with sorted keys: what ``json.dumps(indent=2, sort_keys=True)`` wrote
    (non-ASCII as UTF-8, not escaped), some eight times faster for a page of 500 apps."""
    return msgspec.json.format(msgspec.json.encode(document, order="sorted"), indent=2)


def _encode_page(document: Mapping[str, Any]) -> bytes:
    return render_page(document).encode()


class _RenderSlots:
    """At most ``limit`` documents made at once; a request waits ``wait`` s for a slot."""

    def __init__(self, limit: int, wait: float) -> None:
        self._free = asyncio.Semaphore(limit)
        self._wait = wait

    async def respond(self, request: web.Request, status: StatusSource,
                      encode: Callable[[Mapping[str, Any]], bytes], content_type: str
                      ) -> web.Response:
        try:
            page = AppPage.parse(request.query)
        except ValueError as e:
            return web.Response(status=400, text=f"{e}\n", headers=_NO_STORE)
        try:
            async with asyncio.timeout(self._wait):
                await self._free.acquire()
        except TimeoutError:
            return web.Response(status=503, text="busy: too many status pages at once\n",
                                headers={"Retry-After": "1", **_NO_STORE})
        try:
            document = status(page)
        except BaseException:
            self._free.release()
            raise
        # The slot is freed when the thread is done, even if this request is cancelled.
        work = asyncio.ensure_future(asyncio.to_thread(encode, document))
        work.add_done_callback(self._done)
        body = await asyncio.shield(work)
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers=_NO_STORE)

    def _done(self, work: asyncio.Future[bytes]) -> None:
        self._free.release()
        if not work.cancelled():
            work.exception()  # retrieved here: the request may have gone


class ServerLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one client may take from the ops server.

    ``idle_timeout`` bounds how long a connection may go without delivering a whole request head
    (request line and headers), counted from when it opened or from its last response: it closes
    half-sent, trickled and idle keep-alive connections alike. The head itself is bounded by
    ``max_line_size`` (request line and each header) and ``max_headers``.
    """

    max_connections: int = 64
    idle_timeout: float = 10.0
    max_line_size: int = 4096
    max_headers: int = 32
    log_interval: float = 10.0


class _ThrottledLog:
    """Logs one event at most once per ``interval``, counting the repeats in between."""

    def __init__(self, event: str, interval: float, *, level: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._event = event
        self._level = level
        self._interval = interval
        self._clock = clock
        self._quiet_until: float | None = None
        self._suppressed = 0

    def __call__(self, **fields: object) -> None:
        now = self._clock()
        if self._quiet_until is not None and now < self._quiet_until:
            self._suppressed += 1
            return
        log.log(self._level, self._event, suppressed=self._suppressed, **fields)
        self._suppressed = 0
        self._quiet_until = now + self._interval


class _Connections:
    """The open connections, oldest first, at most ``limit`` of them; and their throttled logs."""

    def __init__(self, limit: int, log_interval: float) -> None:
        self._limit = limit
        self._open: dict[_OpsConnection, None] = {}  # insertion order: oldest first
        self._log_evicted = _ThrottledLog("ops_connection_evicted", log_interval)
        self._log_refused = _ThrottledLog("ops_connection_refused", log_interval)
        self.log_rejected = _ThrottledLog("ops_request_rejected", log_interval)
        self.log_failed = _ThrottledLog("ops_request_failed", log_interval, level=logging.ERROR)

    def admit(self, connection: _OpsConnection) -> bool:
        """Make room by evicting the oldest connection not in a request; False if there is none.

        An evicted connection is waiting for (or slowly sending) a request head, or idle between
        requests, so a newcomer -- a health probe -- always wins over it.
        """
        if len(self._open) >= self._limit:
            victim = next((c for c in self._open if not c.in_request), None)
            if victim is None:
                self._log_refused(max_connections=self._limit)
                return False
            del self._open[victim]
            victim.force_close()
            self._log_evicted(max_connections=self._limit)
        self._open[connection] = None
        return True

    def remove(self, connection: _OpsConnection) -> None:
        self._open.pop(connection, None)


class _OpsConnection(web.RequestHandler):
    """aiohttp's HTTP/1 protocol, admitted by ``_Connections`` when the connection opens."""

    def __init__(self, manager: web.Server, connections: _Connections, **kwargs: Any) -> None:
        super().__init__(manager, loop=asyncio.get_running_loop(), **kwargs)
        self._connections = connections
        self.in_request = False  # set by _mark_in_request while a route handler runs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._connections.admit(self):
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._connections.remove(self)
        super().connection_lost(exc)

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        """aiohttp's answer to a malformed request or a failed handler, with our headers (no
        application signal sees these)."""
        response = super().handle_error(request, status, exc, message)
        response.headers.update(SECURITY_HEADERS)
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """Throttle aiohttp's per-request error tracebacks: any client can cause one at will.

        A malformed request is logged without its error text, which quotes the client's bytes
        (headers included); a failure in our handlers keeps its traceback.
        """
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            self._connections.log_rejected(status=error.code)
        else:
            self._connections.log_failed(exc_info=error)


@web.middleware
async def _mark_in_request(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Marks the connection busy while its request is handled, so that it is not evicted."""
    connection = request.protocol
    assert isinstance(connection, _OpsConnection)  # serve() installs this middleware with it
    connection.in_request = True
    try:
        return await handler(request)
    finally:
        connection.in_request = False


async def _listen(host: str, port: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address of ``host`` (as asyncio binds)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(infos):  # getaddrinfo may repeat one
            sock = socket.create_server(address, family=family, backlog=_BACKLOG)
            sockets.append(sock)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Listener(asyncio.AbstractServer):
    """Listening sockets, each served by an accept loop of ours that backs off when it fails.

    Not ``loop.create_server``: on Python 3.11, its accept loop (``_accept_connection`` in
    ``asyncio/selector_events.py``) reports each EMFILE/ENFILE/ENOBUFS/ENOMEM with a traceback
    and schedules a retry *per attempt*, up to ``backlog`` times per wake-up (CPython gh-151615,
    fixed only in later versions): at the fd limit the retries multiply and the log floods.
    """

    def __init__(self, sockets: list[socket.socket], protocol: Callable[[], asyncio.Protocol],
                 log_interval: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._sockets = sockets
        self._protocol = protocol
        self._log_failed = _ThrottledLog("ops_accept_failed", log_interval)
        self._tasks: list[asyncio.Task[None]] = []
        for sock in sockets:
            task = asyncio.create_task(self._accept(sock), name=f"ops-accept-{sock.fileno()}")
            task.add_done_callback(functools.partial(self._accept_stopped, sock))
            self._tasks.append(task)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def close(self) -> None:
        """Stop accepting; each socket is closed when its accept loop has stopped."""
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks)

    # The rest of asyncio.AbstractServer: it serves from construction until close().
    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return any(not task.done() for task in self._tasks)

    async def start_serving(self) -> None:
        pass

    async def serve_forever(self) -> None:
        await self.wait_closed()

    async def _accept(self, sock: socket.socket) -> None:
        loop = self._loop
        delay = _ACCEPT_RETRY_FIRST
        while True:
            try:
                connection, _ = await loop.sock_accept(sock)
            except ConnectionAbortedError:  # the client left before we accepted it
                continue
            except OSError as e:  # out of fds or memory, typically: it will not pass at once
                self._log_failed(error=errno.errorcode.get(e.errno or 0, "unknown"),
                                 reason=e.strerror, retry_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, _ACCEPT_RETRY_MAX)
                continue
            delay = _ACCEPT_RETRY_FIRST
            try:
                await loop.connect_accepted_socket(self._protocol, connection)
            except OSError:  # the client reset the connection while it was being set up
                connection.close()

    @staticmethod
    def _accept_stopped(sock: socket.socket, task: asyncio.Task[None]) -> None:
        sock.close()
        if not task.cancelled() and task.exception() is not None:
            log.error("ops_accept_stopped", exc_info=task.exception())


class _OpsSite(web.BaseSite):
    """A TCP site whose connections are ``_OpsConnection``s, accepted by a ``_Listener``."""

    def __init__(self, runner: web.AppRunner, host: str, port: int,
                 protocol: Callable[[], _OpsConnection], log_interval: float) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._protocol = protocol
        self._log_interval = log_interval

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        sockets = await _listen(self._host, self._port)
        self._server = _Listener(sockets, self._protocol, self._log_interval)

    async def stop(self) -> None:
        listener = self._server
        await super().stop()
        if listener is not None:
            await listener.wait_closed()


async def serve(app: web.Application, host: str, port: int,
                limits: ServerLimits | None = None) -> web.AppRunner:
    """Start serving; the caller stops it with ``runner.cleanup()`` (last, at shutdown).

    ``app`` gets one more middleware, so it must not be running yet.
    """
    limits = limits or ServerLimits()
    app.middlewares.append(_mark_in_request)
    runner = web.AppRunner(app)
    await runner.setup()
    server = runner.server
    assert server is not None  # set by setup()
    connections = _Connections(limits.max_connections, limits.log_interval)

    def protocol() -> _OpsConnection:
        return _OpsConnection(
            server, connections,
            keepalive_timeout=limits.idle_timeout,
            max_line_size=limits.max_line_size, max_field_size=limits.max_line_size,
            max_headers=limits.max_headers,
            lingering_time=0,  # our routes read no body: close rather than drain an unread one
            access_log=None)

    try:
        await _OpsSite(runner, host, port, protocol, limits.log_interval).start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError([f"server.listen: cannot listen on {host}:{port} ({e.strerror})"]
                          ) from None
    return runner
