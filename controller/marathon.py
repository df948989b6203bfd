"""Marathon REST client: a thin aiohttp wrapper that maps HTTP failures onto ``controller.errors``.

What it knows about real Marathon (``marathon-facts.md``): updates are partial ``PATCH`` (≥ 1.4)
or ``PUT`` (older); a 409 body names the deployments that lock the app; standbys proxy or
redirect to the leader, whose address every response carries in ``X-Marathon-Leader``; the
event stream wants ``Accept: text/event-stream`` exactly. Only idempotent reads are retried
here; writes are retried by the work queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import aiohttp
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from yarl import URL

from controller.config import MarathonSettings
from controller.errors import (
    MarathonConflict,
    MarathonNotFound,
    MarathonRejected,
    MarathonUnavailable,
)
from controller.model import AppId, RawApp, RawAppUpdate, RawDeployment, Secret, version_tuple

__all__ = ["MarathonAPI", "MarathonClient", "RequestObserver", "auth_header", "no_request_observer"]

log = structlog.get_logger(component="marathon")

_MAX_MESSAGE = 256
_MAX_REDIRECTS = 3
_EVENT_STREAM_READ_TIMEOUT = 30.0  # 3 x Marathon's 10 s heartbeat
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what aiohttp refuses to send


class MarathonAPI(Protocol):
    """The Marathon operations the controller needs."""

    async def list_apps(self, label_selector: str | None = None) -> list[RawApp]: ...

    async def get_app(self, app_id: AppId) -> RawApp: ...

    async def update_app(self, app_id: AppId, body: RawAppUpdate) -> str | None: ...

    async def list_deployments(self) -> list[RawDeployment]: ...

    def event_stream(
        self, event_types: Sequence[str]
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


class RequestObserver(Protocol):
    def __call__(self, method: str, status: str, seconds: float) -> None: ...


def no_request_observer(method: str, status: str, seconds: float) -> None:
    return None


def auth_header(settings: MarathonSettings, env: Mapping[str, str]) -> Secret | None:
    """The ``Authorization`` value, read fresh so a rotated password file takes effect.

    A secret that cannot be read or sent is ``MarathonUnavailable``, not a raw ``OSError`` that
    would kill the event watcher: the file may come back.
    """
    auth = settings.auth
    if auth is None:
        return None
    if auth.token_file or auth.token_env:
        source = (f"marathon.auth.token_file {auth.token_file}" if auth.token_file
                  else f"marathon.auth.token_env {auth.token_env}")
        token = (_read_secret(source, auth.token_file) if auth.token_file
                 else env.get(auth.token_env or "", ""))
        if _HEADER_UNSAFE.search(token):
            raise MarathonUnavailable(f"{source}: the token has control characters, which an "
                                      "HTTP header cannot carry")
        return Secret(f"token={token}")
    password = (_read_secret(f"marathon.auth.password_file {auth.password_file}",
                             auth.password_file) if auth.password_file
                else env.get(auth.password_env or "", ""))
    try:
        return Secret(aiohttp.encode_basic_auth(auth.username or "", password))
    except ValueError:  # a UnicodeEncodeError would quote the password, so nothing is chained
        pass
    raise MarathonUnavailable("marathon.auth: basic auth needs a username without ':' and a "
                              "password that is text")


def _read_secret(source: str, path: Path) -> str:
    """The file's text, stripped; a failure names the file but never chains an error quoting it."""
    try:
        return path.read_text().strip()
    except OSError as e:
        problem = e.strerror or type(e).__name__
    except ValueError:  # a UnicodeDecodeError carries the secret's bytes
        problem = "not UTF-8 text"
    raise MarathonUnavailable(f"cannot read {source}: {problem}")


def _message(status: int, body: bytes) -> str:
    """Marathon's own message, cut short; never the raw body of an unknown payload."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"HTTP {status}"
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return f"HTTP {status}"
    text = str(data["message"])
    details = data.get("details")
    if isinstance(details, list):
        parts = [f"{d.get('path')}: {'; '.join(map(str, d.get('errors', [])))}"
                 for d in details if isinstance(d, dict)]
        text += " (" + ", ".join(parts) + ")"
    return text[:_MAX_MESSAGE]


def _raise_for_status(method: str, path: str, status: int, body: bytes) -> None:
    if status < 400:
        return
    message = _message(status, body)
    if status == 404:
        raise MarathonNotFound(message)
    if status == 409:
        ids: tuple[str, ...] = ()
        with suppress(ValueError, AttributeError, KeyError, TypeError):
            ids = tuple(d["id"] for d in json.loads(body).get("deployments", []))
        raise MarathonConflict(message, deployment_ids=ids)
    if status >= 500:
        raise MarathonUnavailable(f"{method} {path}: {status} {message}", status=status)
    raise MarathonRejected(f"{method} {path}: {status} {message}", status=status)


class MarathonClient:
    """Marathon over one ``aiohttp.ClientSession`` that the caller owns and closes."""

    def __init__(
        self,
        settings: MarathonSettings,
        session: aiohttp.ClientSession,
        *,
        env: Mapping[str, str] = os.environ,
        user_agent: str = "marathon-pullsecret-controller",
        observe: RequestObserver = no_request_observer,
        retry_attempts: int = 3,
        retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._session = session
        self._env = env
        self._user_agent = user_agent
        self._observe = observe
        self._retry_attempts = retry_attempts
        self._retry_sleep = retry_sleep
        self._urls = list(settings.urls)
        self._behind_proxy = any(urlsplit(u).path.strip("/") for u in self._urls)
        self._leader: str | None = None
        self._failed_leader: str | None = None
        self._method: str | None = None if settings.update_method == "auto" else (
            settings.update_method.upper())
        self._ssl: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            self._ssl = ssl.create_default_context(cafile=str(settings.ca_file))
        # Connecting and each wait for data get timeout_seconds apiece, the whole request twice
        # that: were the total to expire first, a hung connect would be a plain TimeoutError,
        # and only a ConnectionTimeoutError proves nothing was sent (so a write may move on).
        self._timeout = aiohttp.ClientTimeout(total=2 * settings.timeout_seconds,
                                              connect=settings.timeout_seconds,
                                              sock_read=settings.timeout_seconds)

    # -- public API ------------------------------------------------------------------------

    async def list_apps(self, label_selector: str | None = None) -> list[RawApp]:
        params = {"label": label_selector} if label_selector else None
        data = await self._read("/v2/apps", params)
        return cast(list[RawApp], data["apps"])

    async def get_app(self, app_id: AppId) -> RawApp:
        data = await self._read(f"/v2/apps{app_id}")
        return cast(RawApp, data["app"])

    async def list_deployments(self) -> list[RawDeployment]:
        return cast(list[RawDeployment], await self._read("/v2/deployments"))

    async def info(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._read("/v2/info"))

    async def update_app(self, app_id: AppId, body: RawAppUpdate) -> str | None:
        """Partially update one app; return the deployment id Marathon started, if any.

        Never sends ``force``: a 409 surfaces as ``MarathonConflict`` for the caller to wait.
        """
        method = await self._update_method()
        params = {"partialUpdate": "true"} if method == "PUT" else None
        path = f"/v2/apps{app_id}"
        status, headers, payload = await self._send(method, path, params=params, body=body)
        if status == 405 and method == "PATCH":
            log.info("marathon_patch_unsupported", fallback="PUT")
            self._method = "PUT"
            return await self.update_app(app_id, body)
        _raise_for_status(method, path, status, payload)
        deployment = headers.get("Marathon-Deployment-Id")
        if deployment is None:
            try:
                deployment = json.loads(payload).get("deploymentId")
            except (ValueError, AttributeError):
                return None
        return str(deployment) if deployment else None

    @asynccontextmanager
    async def event_stream(self, event_types: Sequence[str]) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open ``/v2/events``; yields the raw byte chunks. A silent stream times out."""
        params = [("event_type", t) for t in event_types] + [("plan-format", "light")]
        timeout = aiohttp.ClientTimeout(total=None, connect=self._settings.timeout_seconds,
                                        sock_read=_EVENT_STREAM_READ_TIMEOUT)
        response = await self._open("GET", "/v2/events", params=params, client_timeout=timeout,
                                     accept="text/event-stream")
        try:
            if response.status >= 400:
                _raise_for_status("GET", "/v2/events", response.status, await response.read())
            yield response.content.iter_any()
        except (aiohttp.ClientError, TimeoutError) as e:
            self._forget_leader(str(response.url))
            raise MarathonUnavailable(f"event stream: {type(e).__name__}") from e
        finally:
            response.release()

    # -- plumbing --------------------------------------------------------------------------

    async def _update_method(self) -> str:
        if self._method is None:
            version = str((await self.info()).get("version", "0"))
            self._method = "PATCH" if version_tuple(version) >= (1, 4) else "PUT"
            log.info("marathon_version_detected", version=version, update_method=self._method)
        return self._method

    async def _read(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET with short jittered retries on connection errors and 5xx."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(MarathonUnavailable),
            stop=stop_after_attempt(self._retry_attempts)
            | stop_after_delay(2 * self._settings.timeout_seconds),
            wait=wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2),
            before_sleep=self._log_retry,
            reraise=True,
            sleep=self._retry_sleep,
        )
        async for attempt in retrying:
            with attempt:
                status, _, payload = await self._send("GET", path, params=params)
                _raise_for_status("GET", path, status, payload)
                try:
                    return json.loads(payload)
                except ValueError as e:
                    raise MarathonUnavailable(f"GET {path}: response is not JSON") from e
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("marathon_request_retrying", attempt=state.attempt_number, error=str(error))

    async def _send(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        response = await self._open(method, path, params=params, body=body,
                                    client_timeout=self._timeout)
        try:
            payload = await response.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            self._forget_leader(str(response.url))
            raise MarathonUnavailable(f"{method} {path}: {type(e).__name__}") from e
        finally:
            response.release()
        return response.status, response.headers, payload

    def _candidates(self) -> list[str]:
        return ([self._leader] if self._leader else []) + [
            u for u in self._urls if u != self._leader]

    async def _open(
        self, method: str, path: str, *, params: Any = None, body: Mapping[str, Any] | None = None,
        client_timeout: aiohttp.ClientTimeout, accept: str = "application/json",
    ) -> aiohttp.ClientResponse:
        """Send to the leader if known, else the configured URLs in order; follow redirects.

        A URL that refuses or does not connect in time is skipped whatever the method, as nothing
        was sent; one that does not answer is skipped by a GET only, as a write may have landed.
        """
        headers = {"Accept": accept, "User-Agent": self._user_agent}
        auth = auth_header(self._settings, self._env)
        if auth is not None:
            headers["Authorization"] = auth.reveal()
        if body is not None:
            headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode() if body is not None else None
        errors: list[str] = []
        for base in self._candidates():
            url, query = base + path, params
            for _ in range(_MAX_REDIRECTS + 1):
                started = time.perf_counter()
                try:
                    response = await self._session.request(
                        method, url, params=query, data=data, headers=headers,
                        timeout=client_timeout, ssl=self._ssl, allow_redirects=False)
                except (aiohttp.ClientError, TimeoutError) as e:
                    unsent = isinstance(e, (aiohttp.ClientConnectorError,
                                            aiohttp.ConnectionTimeoutError))
                    self._observe(method, "connection_error" if unsent else "error",
                                  time.perf_counter() - started)
                    self._forget_leader(url)
                    if not unsent and method != "GET":
                        raise MarathonUnavailable(f"{method} {path}: {type(e).__name__}") from e
                    errors.append(f"{_origin(url)}: {type(e).__name__}")
                    break
                self._observe(method, str(response.status), time.perf_counter() - started)
                location = response.headers.get("Location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    response.release()
                    target = str(response.url.join(URL(location)))
                    if _downgrades(url, target):
                        raise MarathonUnavailable(
                            f"{method} {path}: refused a redirect from https to http, which "
                            "would send the credentials in clear")
                    self._note_leader(_origin(target), url)
                    url, query = target, None  # the Location carries the query already
                    continue
                self._note_leader(response.headers.get("X-Marathon-Leader"), url)
                return response
            else:
                raise MarathonUnavailable(f"{method} {path}: too many redirects")
        raise MarathonUnavailable(f"{method} {path}: no Marathon reachable ({'; '.join(errors)})")

    def _note_leader(self, leader: str | None, current: str) -> None:
        """Prefer the leader Marathon names (header or redirect), so requests skip a standby.

        Not behind a path-routing proxy (DC/OS ``…/service/marathon``): there the leader's own
        address bypasses the proxy's authentication, may not be reachable at all, and lacks the
        base path. Never from https to http: the credentials would travel in clear. Not the
        leader that failed last until another is named: an address only Marathon's own network
        reaches would otherwise cost a timeout on every other request.
        """
        if self._behind_proxy or not leader or urlsplit(leader).scheme not in ("http", "https"):
            return
        leader = leader.rstrip("/")
        if leader != self._failed_leader and not _downgrades(current, leader):
            self._leader, self._failed_leader = leader, None

    def _forget_leader(self, url: str) -> None:
        """Fall back to the configured URLs once a request to the leader fails."""
        if self._leader is not None and url.startswith(self._leader + "/"):
            self._failed_leader, self._leader = self._leader, None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _downgrades(current: str, target: str) -> bool:
    return urlsplit(current).scheme == "https" and urlsplit(target).scheme != "https"

