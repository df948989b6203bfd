"""``MarathonClient``: requests to the leader or the configured URLs, short retries of the
idempotent reads, the API methods, and the event stream."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar, cast

import aiohttp
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from controller.applist import AppList, AppListDecoder, ListedApp
from controller.dialect import Dialect
from controller.errors import MarathonUnavailable
from controller.marathon.answers import NOT_QUEUED, error_body, raise_for_status
from controller.marathon.api import RequestObserver
from controller.marathon.auth import auth_header
from controller.marathon.body import (
    MAX_ANSWER_BYTES,
    MAX_APP_BYTES,
    MAX_LIST_BYTES,
    Answer,
    BodySink,
    read_answer,
)
from controller.marathon.leaders import Leaders, RedirectRefused
from controller.marathon.network import network_problem
from controller.marathon.shapes import (
    checked_object,
    id_problem,
    listed_problem,
    member,
    usable_entries,
)
from controller.marathon.text import NOT_JSON, json_value, kind_of, shown
from controller.marathon.urls import where_of
from controller.model import AppId, RawApp, RawAppUpdate, RawDeployment
from controller.settings import MarathonSettings

__all__ = ["MarathonClient"]

log = structlog.get_logger(component="marathon")

_MAX_REDIRECTS = 3
_EVENT_STREAM_READ_TIMEOUT = 30.0  # 3 x Marathon's 10 s heartbeat
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_READ_AGAIN: Any = object()
"""A list decoded in pieces whose end the typed decoder refused: it is read again whole."""
_T = TypeVar("_T")


class _Unobserved:
    def on_request(self, method: str, status: str, seconds: float) -> None:
        pass


class MarathonClient:
    """Marathon over one ``aiohttp.ClientSession`` that the caller owns and closes."""

    def __init__(
        self,
        settings: MarathonSettings,
        session: aiohttp.ClientSession,
        *,
        env: Mapping[str, str] = os.environ,
        user_agent: str = "marathon-pullsecret-controller",
        observer: RequestObserver | None = None,
        retry_attempts: int = 3,
        retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        planned_label: str | None = None,
    ) -> None:
        self._settings = settings
        self._app_list = AppListDecoder(planned_label)
        """Lists keep only what planning reads; of the labels, ``planned_label`` if given."""
        self._session = session
        self._env = env
        self._user_agent = user_agent
        self._observer: RequestObserver = observer if observer is not None else _Unobserved()
        self.last_answered: float | None = None
        """When Marathon last answered with a status below 500 (monotonic), for ``/readyz``."""
        self._retry_attempts = retry_attempts
        self._retry_sleep = retry_sleep
        self._leaders = Leaders(settings.urls)
        self._dialect: Dialect | None = None if settings.update_method == "auto" else Dialect(
            write_method="PATCH" if settings.update_method == "patch" else "PUT")
        self._dialect_read = asyncio.Lock()
        """Writers that need the dialect at once share one ``/v2/info`` read."""
        # Certificates are always verified; there is deliberately no way to turn that off.
        self._ssl: ssl.SSLContext | Literal[True] = True
        if settings.ca_file is not None:
            self._ssl = ssl.create_default_context(cafile=str(settings.ca_file))
        # Connecting and each wait for data get timeout_seconds apiece, the whole request twice
        # that: were the total to expire first, a hung connect would be a plain TimeoutError,
        # and only a ConnectionTimeoutError proves nothing was sent (so a write may move on).
        self._timeout = aiohttp.ClientTimeout(total=2 * settings.timeout_seconds,
                                              connect=settings.timeout_seconds,
                                              sock_read=settings.timeout_seconds)

    # -- public API ------------------------------------------------------------------------

    async def list_apps(self, label_selector: str | None = None) -> list[ListedApp]:
        """Every app (matching the selector), with only the fields planning reads, decoded
        as the answer comes (``controller.applist``); entries that are no app are dropped and
        logged."""
        params = {"label": label_selector} if label_selector else None
        data = await self._retried(lambda: self._read_list(params))
        if data is _READ_AGAIN:
            data = await self._read("/v2/apps", params, max_bytes=MAX_LIST_BYTES,
                                    decode=self._decode_app_list)
        listed = data if isinstance(data, AppList) else self._app_list.convert(
            member(data, "apps", [], "GET /v2/apps"))
        del data  # the slow path's whole answer: only the cut copies are kept
        apps, listed.apps = listed.apps, []
        if all(listed_problem(app) is None for app in apps):  # as a rule: nothing to drop
            return cast(list[ListedApp], apps)
        return cast(list[ListedApp],
                    usable_entries(apps, "marathon_app_skipped", listed_problem))

    async def _read_list(self, params: Mapping[str, str] | None) -> Any:
        """One read of the list, decoded as it comes: the typed decoder's list; else, for an
        answer kept whole, what ``json.loads`` reads; else ``_READ_AGAIN``."""
        stream = self._app_list.stream()
        answer = await self._send("GET", "/v2/apps", params=params, max_bytes=MAX_LIST_BYTES,
                                  sink=stream)
        raise_for_status("GET", "/v2/apps", answer)
        listed = stream.result()
        if listed is not None:
            return listed
        return _json(answer, "/v2/apps", json_value(answer.body)) if stream.whole else (
            _READ_AGAIN)

    def _decode_app_list(self, body: bytes | memoryview) -> Any:
        """The typed decoder's list; else the answer as ``json.loads`` reads it."""
        listed = self._app_list.decode(body)
        return json_value(body) if listed is None else listed

    async def get_app(self, app_id: AppId) -> RawApp:
        """One app; ``MarathonNotFound`` only when Marathon itself says it does not exist."""
        request = f"GET /v2/apps{app_id}"
        app = member(await self._read(f"/v2/apps{app_id}", max_bytes=MAX_APP_BYTES), "app",
                     {}, request)
        problem = id_problem(app)
        if problem is None and app["id"] != app_id:
            problem = f"it is another app, {shown(app['id'])!r}"
        if problem is not None:
            raise MarathonUnavailable(f"{request}: the answer's app is unusable: {problem}")
        return cast(RawApp, app)

    async def list_deployments(self) -> list[RawDeployment]:
        """Running deployments; entries without a string id are dropped and logged."""
        data = await self._read("/v2/deployments", max_bytes=MAX_LIST_BYTES)
        if not isinstance(data, list):
            raise MarathonUnavailable(
                f"GET /v2/deployments: the answer is {kind_of(data)}, not a list")
        return cast(list[RawDeployment],
                    usable_entries(data, "marathon_deployment_skipped", id_problem))

    async def info(self) -> dict[str, Any]:
        return checked_object(await self._read("/v2/info", max_bytes=MAX_ANSWER_BYTES),
                              "GET /v2/info")

    async def update_app(self, app_id: AppId, body: RawAppUpdate, *, force: bool = False
                         ) -> str | None:
        """Partially update one app; return the deployment id Marathon started, if any.

        A 409 surfaces as ``MarathonConflict`` for the caller to wait, the running-deployment
        limit as ``MarathonDeploymentLimit``. ``force`` (``?force=true``) replaces the
        deployments that lock the app: only ever to rescue a stuck one.
        """
        dialect = await self.dialect()
        method = dialect.write_method
        path = f"/v2/apps{app_id}"
        params = {**(dialect.write_params or {}), **({"force": "true"} if force else {})}
        answer = await self._send(method, path, params=params or None, body=body,
                                  max_bytes=MAX_ANSWER_BYTES)
        if answer.status == 405 and method == "PATCH":
            log.info("marathon_patch_unsupported", fallback="PUT")
            self._dialect = dialect.without_patch()
            return await self.update_app(app_id, body, force=force)
        raise_for_status(method, path, answer)
        deployment: Any = answer.headers.get("Marathon-Deployment-Id")
        if deployment is None:
            data = json_value(answer.body)
            deployment = data.get("deploymentId") if isinstance(data, dict) else None
        return deployment if isinstance(deployment, str) and deployment else None

    async def dialect(self) -> Dialect:
        """This Marathon's dialect: forced by ``marathon.update_method``, else read from
        ``/v2/info`` the first time a write needs it."""
        if self._dialect is None:
            async with self._dialect_read:
                if self._dialect is None:
                    version = str((await self.info()).get("version", "0"))
                    self._dialect = Dialect.of(version)
                    log.info("marathon_version_detected", version=version,
                             update_method=self._dialect.write_method)
        return self._dialect

    async def reset_launch_delay(self, app_id: AppId) -> bool:
        """``DELETE /v2/queue/{app_id}/delay``: True when reset (204), False when Marathon says
        the app is not queued (404), which is no error. Starts no deployment, kills no task."""
        path = f"/v2/queue{app_id}/delay"
        answer = await self._send("DELETE", path, max_bytes=MAX_ANSWER_BYTES)
        if answer.status == 404:
            error = error_body(answer.body)
            if error is not None and NOT_QUEUED.match(str(error["message"])):
                return False
        raise_for_status("DELETE", path, answer)
        return True

    @asynccontextmanager
    async def event_stream(self, event_types: Sequence[str]) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open ``/v2/events``; yields the raw byte chunks. A silent stream times out.

        Only a ``text/event-stream`` answer is read as one: an HTML page (a login form, a
        proxy's error) is a transient failure, not a stream without events.
        """
        params = [("event_type", t) for t in event_types] + [("plan-format", "light")]
        timeout = aiohttp.ClientTimeout(total=None, connect=self._settings.timeout_seconds,
                                        sock_read=_EVENT_STREAM_READ_TIMEOUT)
        request = "GET /v2/events"
        response = await self._open("GET", "/v2/events", params=params, client_timeout=timeout,
                                    accept="text/event-stream")
        try:
            if response.status >= 400:
                raise_for_status("GET", "/v2/events",
                                 await read_answer(response, MAX_ANSWER_BYTES, request))
            if response.content_type != "text/event-stream":
                kind = (shown(response.content_type) if "Content-Type" in response.headers
                        else "without a Content-Type")
                raise MarathonUnavailable(
                    f"{request}: {where_of(str(response.url))} answered {kind}, "
                    "not an event stream", status=response.status)
            yield response.content.iter_any()
        except (aiohttp.ClientError, TimeoutError) as e:
            self._leaders.forget_leader(str(response.url))
            raise MarathonUnavailable(f"{request}: {network_problem(e)}") from e
        finally:
            response.release()

    # -- plumbing --------------------------------------------------------------------------

    async def _read(self, path: str, params: Mapping[str, str] | None = None, *, max_bytes: int,
                    decode: Callable[[bytes | memoryview], Any] = json_value) -> Any:
        """GET with short jittered retries on connection errors, 5xx and 429 (``_retried``)."""
        async def attempt() -> Any:
            answer = await self._send("GET", path, params=params, max_bytes=max_bytes)
            raise_for_status("GET", path, answer)
            return _json(answer, path, decode(answer.body))

        return await self._retried(attempt)

    async def _retried(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Short jittered retries of a read on connection errors, 5xx and 429.

        A ``Retry-After`` is honoured when the wait fits the budget (twice the timeout);
        otherwise the error, carrying ``retry_after``, goes to the caller's work queue.
        """
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(MarathonUnavailable),
            stop=stop_after_attempt(self._retry_attempts)
            | stop_before_delay(2 * self._settings.timeout_seconds),
            wait=_retry_wait,
            before_sleep=self._log_retry,
            reraise=True,
            sleep=self._retry_sleep,
        )
        async for trying in retrying:
            with trying:
                return await attempt()
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("marathon_request_retrying", attempt=state.attempt_number, error=str(error))

    async def _send(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None, max_bytes: int, sink: BodySink | None = None,
    ) -> Answer:
        response = await self._open(method, path, params=params, body=body,
                                    client_timeout=self._timeout)
        try:
            return await read_answer(response, max_bytes, f"{method} {path}", sink)
        except (aiohttp.ClientError, TimeoutError) as e:
            self._leaders.forget_leader(str(response.url))
            raise MarathonUnavailable(f"{method} {path}: {network_problem(e)}") from e
        finally:
            response.release()

    async def _open(
        self, method: str, path: str, *, params: Any = None, body: Mapping[str, Any] | None = None,
        client_timeout: aiohttp.ClientTimeout, accept: str = "application/json",
    ) -> aiohttp.ClientResponse:
        """Send to the leader if known, else the configured URLs in order; follow redirects.

        A URL that refuses or does not connect in time is skipped whatever the method, as nothing
        was sent; one that does not answer is skipped by a GET only, as a write may have landed.
        A redirect that may not be followed (see ``Leaders.redirect``) skips its URL too.
        """
        # gzip: a 12 MB list is 0.7 MB on the wire, read 6x faster on a 1 Gbit/s link and as
        # fast on loopback (bench/README.md).
        headers = {"Accept": accept, "Accept-Encoding": "gzip", "User-Agent": self._user_agent}
        auth = auth_header(self._settings, self._env)
        if auth is not None:
            headers["Authorization"] = auth.reveal()
        if body is not None:
            headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode() if body is not None else None
        errors: list[str] = []
        for base in self._leaders.candidates():
            url, query = base + path, params
            for _ in range(_MAX_REDIRECTS + 1):
                started = time.perf_counter()
                try:
                    response = await self._session.request(
                        method, url, params=query, data=data, headers=headers,
                        timeout=client_timeout, ssl=self._ssl, allow_redirects=False)
                except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                    # A ValueError is an address aiohttp cannot use (a redirect's hostile
                    # Location, say): nothing was sent.
                    unsent = isinstance(e, (aiohttp.ClientConnectorError,
                                            aiohttp.ConnectionTimeoutError, ValueError))
                    self._observer.on_request(method, "connection_error" if unsent else "error",
                                              time.perf_counter() - started)
                    self._leaders.forget_leader(url)
                    problem = f"{where_of(url)}: {network_problem(e)}"
                    if not unsent and method != "GET":
                        raise MarathonUnavailable(f"{method} {path}: {problem}") from e
                    errors.append(problem)
                    break
                self._observer.on_request(method, str(response.status),
                                          time.perf_counter() - started)
                if response.status < 500:
                    self.last_answered = time.monotonic()
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    response.release()
                    try:
                        url = self._leaders.redirect(url, location,
                                                     with_credentials=auth is not None)
                    except RedirectRefused as e:
                        errors.append(f"{where_of(url)}: {e}")
                        break
                    query = None  # the Location carries the query already
                    continue
                self._leaders.note_leader(response.headers.get("X-Marathon-Leader"), url)
                return response
            else:
                raise MarathonUnavailable(f"{method} {path}: too many redirects")
        raise MarathonUnavailable(f"{method} {path}: no Marathon reachable ({'; '.join(errors)})")


_BACKOFF = wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2)


def _json(answer: Answer, path: str, data: Any) -> Any:
    """``data``, decoded from ``answer``, unless it is ``NOT_JSON`` (a transient failure)."""
    if data is NOT_JSON:
        raise MarathonUnavailable(f"GET {path}: {answer.where} answered something that is not "
                                  "JSON", status=answer.status)
    return data


def _retry_wait(state: RetryCallState) -> float:
    """The server's ``Retry-After`` if it sent one, else a short jittered backoff."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, MarathonUnavailable) and error.retry_after is not None:
        return error.retry_after
    return _BACKOFF(state)
