"""The HTTP facade over a ``MarathonState``: Marathon's REST API and its ``/v2/events`` stream."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import suppress
from types import TracebackType
from typing import Any, Final, Self, cast
from urllib.parse import urlsplit

from aiohttp import encode_basic_auth, hdrs, web
from aiohttp.typedefs import Handler

from controller.simulator.deployments import DeploymentResult
from controller.simulator.events import Event
from controller.simulator.groups import resolve
from controller.simulator.serving import serve
from controller.simulator.state import MarathonState
from controller.simulator.wire import LOCAL, ApiError, canonical, dumps, no_leader

_EVENT_STREAM: Final = "text/event-stream"
_DEPLOYMENT_HEADER: Final = "Marathon-Deployment-Id"
_WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOGGED_PATHS: Final = ("/v2/apps", "/v2/queue", "/v2/groups")

STATE_KEY: Final = web.AppKey("marathon_state", MarathonState)
"""Where a facade's ``web.Application`` keeps its state (for ``aiohttp_client(sim.app)`` users)."""

_EVENTS_405: Final = (
    '<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=ISO-8859-1"/>\n'
    "<title>Error 405 </title>\n</head>\n<body>\n<h2>HTTP ERROR: 405</h2>\n"
    "<p>Problem accessing /v2/events. Reason:\n<pre>    HTTP method GET is not supported by this "
    "URL</pre></p>\n</body>\n</html>\n"
)


class EventStream:
    """One ``/v2/events`` connection: a bounded queue of encoded frames and its writer.

    Frames queue up synchronously and leave in one write per wake-up, so a burst costs one
    socket write. Past ``max_outstanding`` queued frames the stream is closed, as Marathon
    closes a slow consumer; so is a producer that publishes that many without yielding.
    """

    def __init__(self, response: web.StreamResponse, transport: asyncio.Transport | None,
                 event_types: frozenset[str] | None, max_outstanding: int, *,
                 light: bool = True) -> None:
        self._response = response
        self._transport = transport
        self._event_types = event_types
        self._light = light
        self._max_outstanding = max_outstanding
        self._pending: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self._writing = False
        self._cut = False

    def deliver(self, event: Event) -> None:
        if self._closed or (self._event_types is not None and event.type not in self._event_types):
            return
        if len(self._pending) >= self._max_outstanding:
            self.close()
            return
        self._pending.append(event.frame if self._light or event.full_frame is None
                             else event.full_frame)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._writing and self._transport is not None:
            self._transport.abort()  # a write waiting on a full socket would never see the flag

    def cut_mid_event(self) -> None:
        """Send half of the next frame, then drop the connection."""
        self._cut = True

    async def _write_half(self, frame: bytes) -> None:
        self._closed = True
        await self._response.write(frame[:len(frame) // 2])
        if self._transport is not None:
            self._transport.close()  # flushes the half frame; no chunked-encoding end follows

    async def run(self, heartbeat_seconds: float) -> None:
        """Write frames until closed, with a bare ``\\r\\n`` every ``heartbeat_seconds``."""
        loop = asyncio.get_running_loop()
        beat_at = loop.time() + heartbeat_seconds
        while not self._closed:
            if not self._pending:
                self._wake.clear()
                with suppress(TimeoutError):
                    async with asyncio.timeout_at(beat_at):
                        await self._wake.wait()
                if self._closed:
                    return
            if self._cut and self._pending:
                await self._write_half(self._pending[0])
                return
            chunk = b"".join(self._pending)
            self._pending.clear()
            if loop.time() >= beat_at:
                chunk += b"\r\n"
                beat_at = loop.time() + heartbeat_seconds
            if not chunk:
                continue  # the timer fired within the clock's resolution, a hair early
            self._writing = True
            try:
                await self._response.write(chunk)
            finally:
                self._writing = False


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    return default if value is None else value.lower() == "true"


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.text())
    except ValueError as e:
        raise ApiError(400, {"message": "Invalid JSON", "details": str(e)}) from None


def _json(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
          ) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


class MarathonSimulator:
    """The HTTP API over a ``MarathonState``: ``async with MarathonSimulator(state) as sim``.

    ``credentials`` enables HTTP basic auth and ``token`` DC/OS ``Authorization: token=…`` auth
    (either is accepted) on every path. With ``leader_url`` this instance is a standby: it
    answers requests itself, which models proxying when it shares the leader's state, and
    redirects ``/v2/events`` there from the versions that do (``MarathonVersion
    .redirects_events``). Every response names the leader in ``X-Marathon-Leader``.
    """

    def __init__(
        self,
        state: MarathonState | None = None,
        *,
        credentials: tuple[str, str] | None = None,
        token: str | None = None,
        leader_url: str | None = None,
        heartbeat_seconds: float = 10.0,
        max_outstanding: int = 1024,
    ) -> None:
        self.state = state if state is not None else MarathonState()
        self.credentials = credentials
        self.token = token
        self.leader_url = leader_url.rstrip("/") if leader_url else None
        self.heartbeat_seconds = heartbeat_seconds
        self.max_outstanding = max_outstanding
        self.app = self._make_app()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: set[EventStream] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def url(self) -> str:
        """``http://host:port`` once started."""
        if self._url is None:
            raise RuntimeError("the simulator is not started")
        return self._url

    async def start(self, host: str = LOCAL, port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); returns ``url``."""
        self._runner, address = await serve(self.app, host, port)
        self._url = f"http://{address}"
        return self._url

    async def stop(self) -> None:
        """Close every event stream, then the server."""
        if self._runner is not None:
            runner, self._runner, self._url = self._runner, None, None
            await runner.cleanup()

    async def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down ``down_seconds``, and serve again on the same address and state
        (a Marathon restart: the state survives in ZooKeeper, every event stream is cut)."""
        split = urlsplit(self.url)
        host, port = split.hostname or LOCAL, split.port or 0
        await self.stop()
        await asyncio.sleep(down_seconds)
        self.app = self._make_app()  # an aiohttp application runs once
        await self.start(host, port)

    def follow(self, leader_url: str | None) -> None:
        """Become a standby of ``leader_url``, or the leader with ``None`` (a leader change).

        A leader that steps down cuts its event streams; its clients reconnect and are
        redirected to the new leader.
        """
        self.leader_url = leader_url.rstrip("/") if leader_url else None
        if self.leader_url is not None:
            for stream in list(self._streams):
                stream.close()

    def cut_streams_mid_event(self) -> None:
        """Cut each open event stream halfway through the next event it sends.

        The client gets half a frame and then a broken connection, so that event is lost
        to it (only a relist can find what it named).
        """
        for stream in self._streams:
            stream.cut_mid_event()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- wiring --------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_writes, self._answer_errors,
                                           self._authenticate, self._inject_faults])
        app[STATE_KEY] = self.state
        router = app.router
        router.add_get("/ping", self._ping)
        router.add_get("/v2/info", self._info)
        router.add_get("/v2/leader", self._leader)
        router.add_get("/v2/events", self._events, allow_head=False)
        router.add_get("/v2/apps", self._list_apps)
        router.add_post("/v2/apps", self._create_app)
        router.add_put("/v2/apps", self._put_apps)
        if self.state.features.has_patch:
            router.add_patch("/v2/apps", self._patch_apps)
        router.add_get("/v2/apps/{id:.+}/tasks", self._list_tasks)  # before the greedy {id}
        router.add_post("/v2/apps/{id:.+}/restart", self._restart_app)
        router.add_get("/v2/apps/{id:.+}", self._get_app)
        router.add_put("/v2/apps/{id:.+}", self._put_app)
        if self.state.features.has_patch:
            router.add_patch("/v2/apps/{id:.+}", self._patch_app)
        router.add_delete("/v2/apps/{id:.+}", self._delete_app)
        router.add_get("/v2/tasks", self._list_all_tasks)
        router.add_get("/v2/groups", self._get_group)
        router.add_get("/v2/groups/{id:.+}", self._get_group)
        router.add_post("/v2/groups", self._create_group)
        router.add_post("/v2/groups/{id:.+}", self._create_group)
        router.add_put("/v2/groups", self._put_group)
        router.add_put("/v2/groups/{id:.+}", self._put_group)
        router.add_get("/v2/deployments", self._list_deployments)
        router.add_delete("/v2/deployments/{id}", self._delete_deployment)
        router.add_get("/v2/queue", self._queue)
        router.add_delete("/v2/queue/{id:.+}/delay", self._reset_delay)
        app.on_response_prepare.append(self._name_leader)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self.state.attach_scheduler(self._schedule)

    async def _on_shutdown(self, app: web.Application) -> None:
        for stream in list(self._streams):
            stream.close()

    async def _on_cleanup(self, app: web.Application) -> None:
        self.state.detach_scheduler(self._schedule)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _schedule(self, delay: float, callback: Callable[[], object]) -> None:
        assert self._loop is not None  # attached in _on_startup

        def fire() -> None:
            self._timers.discard(handle)
            callback()

        handle = self._loop.call_later(delay, fire)
        self._timers.add(handle)

    def _leader_address(self, request: web.Request) -> str:
        return urlsplit(self.leader_url).netloc if self.leader_url else request.host

    async def _name_leader(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Marathon-Leader"] = (
            self.leader_url or f"{request.scheme}://{request.host}")

    @web.middleware
    async def _record_writes(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Log every write on ``/v2/apps…``, ``/v2/groups…`` and ``/v2/queue…`` with its final
        status, refused ones included."""
        if request.method not in _WRITE_METHODS or not request.path.startswith(_LOGGED_PATHS):
            return await handler(request)
        text = await request.text()
        body: Any = None
        if text:
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            self.state.record_write(request.method, request.path, body,
                                    request.headers.get(hdrs.USER_AGENT, ""), status,
                                    request.query_string)

    @web.middleware
    async def _answer_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return _json(e.body, status=e.status)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._authorised(request.headers.get(hdrs.AUTHORIZATION)):
            return await handler(request)
        challenge = {"WWW-Authenticate": 'Basic realm="Mesosphere"'} if self.credentials else {}
        return _json({"message": "Invalid username or password."}, status=401, headers=challenge)

    def _authorised(self, header: str | None) -> bool:
        if self.credentials is None and self.token is None:
            return True
        accepted = [f"token={self.token}"] if self.token is not None else []
        if self.credentials is not None:
            accepted.append(encode_basic_auth(*self.credentials))
        given = (header or "").encode()
        return any(hmac.compare_digest(given, value.encode()) for value in accepted)

    @web.middleware
    async def _inject_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.state.unavailable:
            raise no_leader()
        fault = self.state.claim_fault(request.method, request.path)
        if fault is None:
            return await handler(request)
        if fault.kind == "status":
            raise fault.error()
        hang = fault.kind == "hang"
        if hang and not fault.landed:
            await fault.hold()
        response = await handler(request)
        if hang and fault.landed:
            await fault.hold()
        if fault.kind == "truncate" and isinstance(response, web.Response) and response.body:
            body = cast(bytes, response.body)
            response.body = body[:len(body) // 2]
        return response

    def _deployed(self, result: DeploymentResult, status: int) -> web.Response:
        headers = ({_DEPLOYMENT_HEADER: result.deployment_id}
                   if self.state.features.has_patch else None)
        return _json(result.body(), status=status, headers=headers)

    # -- handlers ------------------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def _info(self, request: web.Request) -> web.Response:
        own = request.url
        return _json({
            "name": "marathon", "version": self.state.version, "buildref": "simulator",
            "elected": self.leader_url is None, "leader": self._leader_address(request),
            "frameworkId": "00000000-0000-0000-0000-000000000000-0000",
            "marathon_config": {"checkpoint": True, "executor": "//cmd", "features": [],
                                "framework_name": "marathon", "ha": True, "hostname": own.host,
                                "master": "zk://localhost:2181/mesos", "mesos_role": "*",
                                "mesos_user": "root", "webui_url": str(own.origin())},
            "zookeeper_config": {"zk": "zk://localhost:2181/marathon", "zk_timeout": 10000},
            "http_config": {"http_port": own.port, "https_port": 8443},
        })

    async def _leader(self, request: web.Request) -> web.Response:
        return _json({"leader": self._leader_address(request)})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Jetty's ``EventSourceServlet`` as Marathon uses it (docs/marathon.md §3)."""
        state = self.state
        if self.leader_url is not None and state.features.redirects_events(
                "proxy_events" in state.deprecated_features):
            query = f"?{request.query_string}" if request.query_string else ""
            raise web.HTTPFound(f"{self.leader_url}/v2/events{query}")
        if _EVENT_STREAM not in request.headers.getall(hdrs.ACCEPT, ()):
            return web.Response(status=405, text=_EVENTS_405, content_type="text/html")
        wanted = request.query.getall("event_type", ())
        event_types = frozenset(wanted) if wanted and self.state.features.filters_events else None
        response = web.StreamResponse(
            headers={hdrs.CONTENT_TYPE: f"{_EVENT_STREAM};charset=UTF-8"})
        response.force_close()
        await response.prepare(request)
        light = state.features.light_plans(request.query.getall("plan-format", []),
                                           "api_heavy_events" in state.deprecated_features)
        stream = EventStream(response, request.transport, event_types, self.max_outstanding,
                             light=light)
        remote = {"remoteAddress": request.remote or ""}
        self._streams.add(stream)
        self.state.subscribe(stream)
        try:
            self.state.publish("event_stream_attached", remote)
            await stream.run(self.heartbeat_seconds)
        except ConnectionError:
            pass  # the client went away
        finally:
            self.state.unsubscribe(stream)
            self._streams.discard(stream)
            self.state.publish("event_stream_detached", remote)
        return response

    async def _list_apps(self, request: web.Request) -> web.Response:
        query = request.query
        body = self.state.list_apps_json(label=query.get("label"), id=query.get("id"),
                                         cmd=query.get("cmd"), embed=query.getall("embed", ()))
        return web.Response(text=body, content_type="application/json")

    async def _create_app(self, request: web.Request) -> web.Response:
        app = self.state.add_app(await _json_body(request), force=_flag(request, "force", False),
                                 client_ip=request.remote or "")
        deployment_id = app["deployments"][0]["id"]
        # Response.created(URI(app.id)): Jersey resolves the bare id against the server root.
        headers = {"Location": f"{request.url.origin()}{app['id']}"}
        if self.state.features.has_patch:
            headers[_DEPLOYMENT_HEADER] = deployment_id
        return _json(app, status=201, headers=headers)

    async def _get_app(self, request: web.Request) -> web.Response:
        app = self.state.get_app(request.match_info["id"], embed=request.query.getall("embed", ()))
        return _json({"app": app})

    async def _put_app(self, request: web.Request) -> web.Response:
        # ≤ 1.3 had no partialUpdate: PUT was always patch-like.
        partial = (_flag(request, "partialUpdate", True)
                   if self.state.features.has_patch else True)
        result = self.state.update_app(
            request.match_info["id"], await _json_body(request), partial=partial,
            force=_flag(request, "force", False), client_ip=request.remote or "")
        return self._deployed(result, 201 if result.created else 200)

    async def _put_apps(self, request: web.Request) -> web.Response:
        partial = (_flag(request, "partialUpdate", True)
                   if self.state.features.has_patch else True)
        result = self.state.update_apps(await _json_body(request), partial=partial,
                                        force=_flag(request, "force", False))
        return self._deployed(result, 200)

    async def _patch_apps(self, request: web.Request) -> web.Response:
        result = self.state.update_apps(await _json_body(request), partial=True,
                                        force=_flag(request, "force", False),
                                        allow_creation=False)
        return self._deployed(result, 200)

    async def _get_group(self, request: web.Request) -> web.Response:
        return _json(self.state.get_group(request.match_info.get("id", "/")))

    async def _put_group(self, request: web.Request) -> web.Response:
        result = self.state.update_group(request.match_info.get("id", "/"),
                                         await _json_body(request),
                                         force=_flag(request, "force", False))
        return self._deployed(result, 200)

    async def _create_group(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        base = request.match_info.get("id", "/")
        result = self.state.update_group(base, body, force=_flag(request, "force", False),
                                         create=True)
        response = self._deployed(result, 201)
        group_id = body.get("id") if isinstance(body, dict) else None
        path = resolve(group_id, canonical(base)) if isinstance(group_id, str) else canonical(base)
        response.headers["Location"] = f"{request.url.origin()}{path}"
        return response

    async def _list_all_tasks(self, request: web.Request) -> web.Response:
        statuses = [*request.query.getall("status", []), *request.query.getall("status[]", [])]
        return _json({"tasks": self.state.list_all_tasks(statuses)})

    async def _patch_app(self, request: web.Request) -> web.Response:
        result = self.state.update_app(
            request.match_info["id"], await _json_body(request), partial=True,
            force=_flag(request, "force", False), allow_creation=False,
            client_ip=request.remote or "")
        return self._deployed(result, 200)

    async def _delete_app(self, request: web.Request) -> web.Response:
        result = self.state.delete_app(request.match_info["id"],
                                       force=_flag(request, "force", True))
        return self._deployed(result, 200)

    async def _restart_app(self, request: web.Request) -> web.Response:
        result = self.state.restart_app(request.match_info["id"],
                                        force=_flag(request, "force", False))
        return self._deployed(result, 200)

    async def _list_tasks(self, request: web.Request) -> web.Response:
        return _json({"tasks": self.state.list_tasks(request.match_info["id"])})

    async def _queue(self, request: web.Request) -> web.Response:
        return _json({"queue": self.state.queue()})

    async def _reset_delay(self, request: web.Request) -> web.Response:
        self.state.reset_delay(request.match_info["id"])
        return web.Response(status=204)

    async def _list_deployments(self, request: web.Request) -> web.Response:
        return _json(self.state.list_deployments())

    async def _delete_deployment(self, request: web.Request) -> web.Response:
        result = self.state.delete_deployment(request.match_info["id"],
                                              force=_flag(request, "force", False))
        if result is None:
            return web.Response(status=202)
        return self._deployed(result, 200)

