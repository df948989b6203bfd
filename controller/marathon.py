"""Marathon REST client: a thin aiohttp wrapper that maps HTTP failures onto ``controller.errors``.

What it knows about real Marathon (``docs/marathon.md``): how a version writes an app is its
``Dialect`` (``controller.dialect``), read from ``/v2/info`` once; a 409 body names the
deployments that lock the app; standbys proxy or redirect to the leader, whose address every
response carries in ``X-Marathon-Leader``; the event stream wants ``Accept: text/event-stream``
exactly. Only idempotent reads are retried here; writes are retried by the work queue.

Nothing a response says is trusted blindly: credentials go only to the configured URLs, a 404
means "gone" only in Marathon's own words, bodies are bounded in size and checked in shape,
and every failure is named in words an operator reads.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import mmap
import os
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, cast
from urllib.parse import urlsplit

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
from yarl import URL

from controller.applist import AppList, AppListDecoder
from controller.dialect import Dialect
from controller.errors import (
    MarathonConflict,
    MarathonDeploymentLimit,
    MarathonNotFound,
    MarathonRejected,
    MarathonUnavailable,
)
from controller.files import SECRET_FILE_LIMIT, read_limited
from controller.model import AppId, RawApp, RawAppUpdate, RawDeployment, Secret
from controller.settings import MarathonSettings

__all__ = ["MarathonAPI", "MarathonClient", "RequestObserver", "auth_header"]

log = structlog.get_logger(component="marathon")

_MAX_MESSAGE = 256
_MAX_REDIRECTS = 3
_EVENT_STREAM_READ_TIMEOUT = 30.0  # 3 x Marathon's 10 s heartbeat
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what aiohttp refuses to send
_MIB = 1024 * 1024
# Body limits far above real clusters (an app is a few KiB; 10 000 apps ~ 100 MiB), far
# below what would exhaust memory.
_MAX_LIST_BYTES = 256 * _MIB
_MAX_APP_BYTES = 16 * _MIB
_MAX_ANSWER_BYTES = _MIB  # /v2/info, a write's answer, an error body: Marathon's are tiny
_MAX_RETRY_AFTER = 300.0
_MAX_LOGGED_LEADERS = 16
_MAX_SKIPS_LOGGED = 20
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Marathon's own not-found answer (``{"message": "App '/x' does not exist"}``, optionally
# `` in version …``): mesosphere/marathon src/main/scala/mesosphere/marathon/Exception.scala:16
# and api/RestResource.scala:57 at 90619da7. A proxy's or another server's 404 never says it.
_APP_NOT_FOUND = re.compile(r"App '[^']*' does not exist")
# Marathon's answer to DELETE /v2/queue/{id}/delay for an app with nothing to launch (a reset
# answers 204, though queue.raml says 200; docs/marathon.md §6):
# 404 {"message": "Application /x not found in tasks queue."}, mesosphere/marathon
# src/main/scala/mesosphere/marathon/api/v2/QueueResource.scala (1.x).
_NOT_QUEUED = re.compile(r"Application \S* not found in tasks queue")
# HTTP 403 when --max_running_deployments is reached (Marathon >= 1.6.486, docs/marathon.md §6).
# The text, unchanged since it was added (3e49e3fe, #6178), at mesosphere/marathon 90619da7
# src/main/scala/mesosphere/marathon/Exception.scala:39-44:
#   s"Max number ($maxNum) of running deployments is achieved. Wait for existing deployments to
#   complete or cancel one" + "using force=true parameter. You can increase max deployment
#   number by using --max_running_deployments parameter " + "but be advised that …"
# mapped to 403 {"message": …} by api/MarathonExceptionMapper.scala:113. Either half matches,
# whatever the spacing, case or number.
_DEPLOYMENT_LIMIT = re.compile(
    r"max\s+number\s*(\(\s*\d+\s*\)\s*)?of\s+running\s+deployments|max_running_deployments",
    re.IGNORECASE)


class MarathonAPI(Protocol):
    """The Marathon operations the controller needs."""

    async def list_apps(self, label_selector: str | None = None) -> list[RawApp]: ...

    async def get_app(self, app_id: AppId) -> RawApp: ...

    async def update_app(self, app_id: AppId, body: RawAppUpdate, *, force: bool = False
                         ) -> str | None: ...

    async def dialect(self) -> Dialect:
        """How this Marathon writes an app (its version's method and body)."""
        ...

    async def list_deployments(self) -> list[RawDeployment]: ...

    def event_stream(
        self, event_types: Sequence[str]
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


class RequestObserver(Protocol):
    """What the client reports of each request (``Metrics`` is one)."""

    def on_request(self, method: str, status: str, seconds: float) -> None:
        """An answer (its status) or a failure (``connection_error``, ``error``)."""


class _Unobserved:
    def on_request(self, method: str, status: str, seconds: float) -> None:
        pass


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
        return read_limited(path, SECRET_FILE_LIMIT).decode().strip()
    except OSError as e:
        problem = e.strerror or type(e).__name__
    except ValueError:  # a UnicodeDecodeError carries the secret's bytes
        problem = "not UTF-8 text"
    raise MarathonUnavailable(f"cannot read {source}: {problem}")


_NOT_JSON: Any = object()
_DEFAULT_PORTS = {"http": 80, "https": 443}
# OpenSSL verify codes (x509_vfy.h) that ssl.SSLCertVerificationError.verify_code carries.
_HOSTNAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
_CERT_EXPIRED = 10  # X509_V_ERR_CERT_HAS_EXPIRED


def _network_problem(error: BaseException) -> str:
    """What went wrong on the wire, in an operator's words rather than an exception's name."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        code = getattr(error.certificate_error, "verify_code", None)
        if code in _HOSTNAME_MISMATCH:
            return "TLS: hostname mismatch"
        if code == _CERT_EXPIRED:
            return "TLS: certificate expired"
        return "TLS: certificate not trusted"
    if isinstance(error, (aiohttp.ClientSSLError, ssl.SSLError)):
        return "TLS: handshake failed"
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return "timed out connecting"
    if isinstance(error, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return "timed out waiting for the answer"
    cause = error.os_error if isinstance(error, aiohttp.ClientConnectorError) else error
    if isinstance(error, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        return "name not resolved"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the connection was closed before the answer"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    if isinstance(cause, ConnectionRefusedError):  # asyncio words it "Connect call failed"
        return "connection refused"
    if isinstance(error, ValueError):
        return "not a usable address"
    if isinstance(cause, OSError) and cause.strerror:
        return _shown(cause.strerror.lower())
    return "network error"


@dataclass(frozen=True, slots=True)
class _Answer:
    """One HTTP answer with its body, read within a size limit."""

    status: int
    headers: Mapping[str, str]
    body: bytes | memoryview
    where: str
    """The URL that answered, without its query (``_where``)."""
    authorized: bool
    """Whether the request carried credentials."""


class _RedirectRefused(Exception):
    """A redirect that must not be followed; its text says why."""


def _loads(body: bytes | memoryview) -> Any:
    """The JSON value, or ``_NOT_JSON``: a body nested too deep is as unreadable as a broken one."""
    try:
        return json.loads(body if isinstance(body, bytes) else body.tobytes())
    except (ValueError, RecursionError):
        return _NOT_JSON


def _kind(value: Any) -> str:
    """What a JSON value is, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _shown(text: str) -> str:
    """Text from a response made fit for a message: printable and cut short."""
    return "".join(c if c.isprintable() else "?" for c in text[:_MAX_MESSAGE])


def _error_body(body: bytes | memoryview) -> dict[str, Any] | None:
    """A Marathon error body (``{"message": "…", …}``, docs/marathon.md §1.7), or None for
    anything else."""
    data = _loads(body)
    return data if isinstance(data, dict) and isinstance(data.get("message"), str) else None


def _message(status: int, error: dict[str, Any] | None) -> str:
    """Marathon's own message, cut short; never the raw body of an unknown payload."""
    if error is None:
        return f"HTTP {status}"
    text = str(error["message"])
    details = error.get("details")
    if isinstance(details, list):
        parts = [f"{d.get('path')}: {_joined(d.get('errors'))}" for d in details
                 if isinstance(d, dict)]
        text += " (" + ", ".join(parts) + ")"
    return text[:_MAX_MESSAGE]


def _joined(errors: Any) -> str:
    return "; ".join(map(str, errors)) if isinstance(errors, list) else ""


def _deployment_ids(error: dict[str, Any] | None) -> tuple[str, ...]:
    """The ids a 409 names as locking the app (docs/marathon.md §1.6); anything else is skipped."""
    deployments = error.get("deployments") if error else None
    if not isinstance(deployments, list):
        return ()
    return tuple(d["id"] for d in deployments
                 if isinstance(d, dict) and isinstance(d.get("id"), str))


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` (delay-seconds or an HTTP-date) as seconds from now, at most 300."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value) if len(value) <= 12 else _MAX_RETRY_AFTER
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _raise_for_status(method: str, path: str, answer: _Answer) -> None:
    """Map an error answer onto ``controller.errors``; a success passes.

    A 404 is "the app is gone" only in Marathon's own words: a proxy's or a wrong host's 404
    must not make the controller forget an app. A 403 from the running-deployment limit,
    a 429 and a 5xx are transient; 429 and 503 carry the server's ``Retry-After``.
    """
    status = answer.status
    if status < 400:
        return
    request = f"{method} {path}"
    error = _error_body(answer.body)
    said = str(error["message"]) if error else ""
    message = _message(status, error)
    if status == 404:
        if _APP_NOT_FOUND.match(said):
            raise MarathonNotFound(message)
        raise MarathonUnavailable(f"{request}: {answer.where} answered 404 but is not Marathon "
                                  "(no Marathon error body)", status=404)
    if status == 409:
        raise MarathonConflict(message, deployment_ids=_deployment_ids(error))
    if status == 403 and _DEPLOYMENT_LIMIT.search(said):
        raise MarathonDeploymentLimit(f"{request}: 403 {message}")
    if status == 429 or status >= 500:
        wait = _retry_after(answer.headers.get("Retry-After")) if status in (429, 503) else None
        raise MarathonUnavailable(f"{request}: {status} {message}", status=status,
                                  retry_after=wait)
    if status == 401 and not answer.authorized:
        message += " (Marathon asks for credentials: set marathon.auth)"
    raise MarathonRejected(f"{request}: {status} {message}", status=status)


def _object(data: Any, request: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MarathonUnavailable(f"{request}: the answer is {_kind(data)}, not an object")
    return data


def _member(data: Any, key: str, empty: list[Any] | dict[str, Any], request: str) -> Any:
    """``data[key]``, which must be what ``empty`` is (a list or an object)."""
    envelope = _object(data, request)
    if key not in envelope:
        raise MarathonUnavailable(f"{request}: the answer has no {key}")
    value = envelope[key]
    if not isinstance(value, type(empty)):
        raise MarathonUnavailable(f"{request}: {key} is {_kind(value)}, not {_kind(empty)}")
    return value


def _id_problem(item: Any) -> str | None:
    """Why an entry of a Marathon list is unusable (no object, no string id), or None."""
    if not isinstance(item, dict):
        return f"it is {_kind(item)}, not an object"
    if "id" not in item:
        return "it has no id"
    if not isinstance(item["id"], str):
        return f"its id is {_kind(item['id'])}, not a string"
    return None


def _app_problem(item: Any) -> str | None:
    problem = _id_problem(item)
    if problem is None and not item["id"].startswith("/"):
        return "its id does not start with /"
    return problem


def _kept(items: list[Any], event: str, problem_of: Callable[[Any], str | None]) -> list[Any]:
    """The usable entries; a dropped one is logged with its index and why (never itself).

    Past the first few, the rest are only counted: a broken list must not flood the log.
    """
    kept = []
    skipped = 0
    for index, item in enumerate(items):
        problem = problem_of(item)
        if problem is None:
            kept.append(item)
            continue
        skipped += 1
        if skipped <= _MAX_SKIPS_LOGGED:
            log.warning(event, index=index, reason=problem)
    if skipped > _MAX_SKIPS_LOGGED:
        log.warning(event, not_logged=skipped - _MAX_SKIPS_LOGGED)
    return kept


async def _answer(response: aiohttp.ClientResponse, limit: int, request: str) -> _Answer:
    """Read the body, refusing it once past ``limit`` bytes rather than after it is all in."""
    where = _where(str(response.url))
    if response.status >= 400:
        limit = _MAX_ANSWER_BYTES
    refusal = f"{request}: {where} answered more than {limit // _MIB} MiB, which is refused"
    if response.content_length is not None and response.content_length > limit:
        raise MarathonUnavailable(refusal, status=response.status)
    body = _Body(mapped=limit > _MAX_APP_BYTES)  # lists may be tens of MB
    async for chunk in response.content.iter_any():
        if body.size + len(chunk) > limit:
            raise MarathonUnavailable(refusal, status=response.status)
        body.append(chunk)
    return _Answer(response.status, response.headers, body.view(), where,
                   "Authorization" in response.request_info.headers)


class _Body:
    """An answer's bytes as they come, in memory that is mapped in place of copied: a 60 MB
    list costs 60 MB, where chunks joined at the end (or a bytearray grown by reallocation)
    cost twice that at the peak. The mapping goes back to the system when the last view of it
    is dropped, so the raw body lives no longer than its decoding."""

    _FIRST = 1024 * 1024

    def __init__(self, *, mapped: bool) -> None:
        self.size = 0
        self._chunks: list[bytes] = []
        self._map: mmap.mmap | None = None
        self._mapped = mapped
        """Map past the first MiB; else (answers that are small) keep the chunks."""

    def append(self, chunk: bytes) -> None:
        end = self.size + len(chunk)
        if self._map is None and (end <= self._FIRST or not self._mapped):
            self._chunks.append(chunk)
        else:
            if self._map is None:
                self._map = mmap.mmap(-1, 2 * self._FIRST, flags=mmap.MAP_PRIVATE)
                self._map[:self.size] = b"".join(self._chunks)
                self._chunks = []
            if end > len(self._map):
                self._grow(max(end, 2 * len(self._map)))
            self._map[self.size:end] = chunk
        self.size = end

    def _grow(self, size: int) -> None:
        assert self._map is not None
        try:
            self._map.resize(size)  # mremap: nothing is copied
        except (OSError, SystemError):  # no mremap (not Linux): copy once per doubling
            grown = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
            grown[:self.size] = self._map[:self.size]
            self._map.close()
            self._map = grown

    def view(self) -> bytes | memoryview:
        if self._map is None:
            return b"".join(self._chunks)
        return memoryview(self._map)[:self.size]


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
        self._urls = list(settings.urls)
        self._configured: dict[str, str] = {}
        for url in self._urls:
            self._configured.setdefault(_origin(url), url)
        self._behind_proxy = any(urlsplit(u).path.strip("/") for u in self._urls)
        self._leader: str | None = None
        self._failed_leader: str | None = None
        self._ignored_leaders: set[str] = set()
        self._dialect: Dialect | None = None if settings.update_method == "auto" else Dialect(
            write_method="PATCH" if settings.update_method == "patch" else "PUT")
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

    async def list_apps(self, label_selector: str | None = None) -> list[RawApp]:
        """Every app (matching the selector), with only the fields planning reads
        (``controller.applist``); entries that are no app are dropped and logged."""
        params = {"label": label_selector} if label_selector else None
        data = await self._read("/v2/apps", params, max_bytes=_MAX_LIST_BYTES,
                                decode=self._decode_app_list)
        listed = data if isinstance(data, AppList) else self._app_list.convert(
            _member(data, "apps", [], "GET /v2/apps"))
        del data  # the slow path's whole answer: only the cut copies are kept
        return cast(list[RawApp], _kept(self._app_list.planned(listed), "marathon_app_skipped",
                                        _app_problem))

    def _decode_app_list(self, body: bytes | memoryview) -> Any:
        """The typed decoder's list; else the answer as ``json.loads`` reads it."""
        listed = self._app_list.decode(body)
        return _loads(body) if listed is None else listed

    async def get_app(self, app_id: AppId) -> RawApp:
        """One app; ``MarathonNotFound`` only when Marathon itself says it does not exist."""
        request = f"GET /v2/apps{app_id}"
        app = _member(await self._read(f"/v2/apps{app_id}", max_bytes=_MAX_APP_BYTES), "app",
                      {}, request)
        problem = _id_problem(app)
        if problem is None and app["id"] != app_id:
            problem = f"it is another app, {_shown(app['id'])!r}"
        if problem is not None:
            raise MarathonUnavailable(f"{request}: the answer's app is unusable: {problem}")
        return cast(RawApp, app)

    async def list_deployments(self) -> list[RawDeployment]:
        """Running deployments; entries without a string id are dropped and logged."""
        data = await self._read("/v2/deployments", max_bytes=_MAX_LIST_BYTES)
        if not isinstance(data, list):
            raise MarathonUnavailable(
                f"GET /v2/deployments: the answer is {_kind(data)}, not a list")
        return cast(list[RawDeployment], _kept(data, "marathon_deployment_skipped", _id_problem))

    async def info(self) -> dict[str, Any]:
        return _object(await self._read("/v2/info", max_bytes=_MAX_ANSWER_BYTES),
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
                                  max_bytes=_MAX_ANSWER_BYTES)
        if answer.status == 405 and method == "PATCH":
            log.info("marathon_patch_unsupported", fallback="PUT")
            self._dialect = dialect.without_patch()
            return await self.update_app(app_id, body, force=force)
        _raise_for_status(method, path, answer)
        deployment: Any = answer.headers.get("Marathon-Deployment-Id")
        if deployment is None:
            data = _loads(answer.body)
            deployment = data.get("deploymentId") if isinstance(data, dict) else None
        return deployment if isinstance(deployment, str) and deployment else None

    async def dialect(self) -> Dialect:
        """This Marathon's dialect: forced by ``marathon.update_method``, else read from
        ``/v2/info`` the first time a write needs it."""
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
        answer = await self._send("DELETE", path, max_bytes=_MAX_ANSWER_BYTES)
        if answer.status == 404:
            error = _error_body(answer.body)
            if error is not None and _NOT_QUEUED.match(str(error["message"])):
                return False
        _raise_for_status("DELETE", path, answer)
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
                _raise_for_status("GET", "/v2/events",
                                  await _answer(response, _MAX_ANSWER_BYTES, request))
            if response.content_type != "text/event-stream":
                kind = (_shown(response.content_type) if "Content-Type" in response.headers
                        else "without a Content-Type")
                raise MarathonUnavailable(
                    f"{request}: {_where(str(response.url))} answered {kind}, "
                    "not an event stream", status=response.status)
            yield response.content.iter_any()
        except (aiohttp.ClientError, TimeoutError) as e:
            self._forget_leader(str(response.url))
            raise MarathonUnavailable(f"{request}: {_network_problem(e)}") from e
        finally:
            response.release()

    # -- plumbing --------------------------------------------------------------------------

    async def _read(self, path: str, params: Mapping[str, str] | None = None, *,
                    max_bytes: int, decode: Callable[[bytes | memoryview], Any] = _loads) -> Any:
        """GET with short jittered retries on connection errors, 5xx and 429.

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
        async for attempt in retrying:
            with attempt:
                answer = await self._send("GET", path, params=params, max_bytes=max_bytes)
                _raise_for_status("GET", path, answer)
                data = decode(answer.body)
                if data is _NOT_JSON:
                    raise MarathonUnavailable(f"GET {path}: {answer.where} answered something "
                                              "that is not JSON", status=answer.status)
                return data
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("marathon_request_retrying", attempt=state.attempt_number, error=str(error))

    async def _send(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None, max_bytes: int,
    ) -> _Answer:
        response = await self._open(method, path, params=params, body=body,
                                    client_timeout=self._timeout)
        try:
            return await _answer(response, max_bytes, f"{method} {path}")
        except (aiohttp.ClientError, TimeoutError) as e:
            self._forget_leader(str(response.url))
            raise MarathonUnavailable(f"{method} {path}: {_network_problem(e)}") from e
        finally:
            response.release()

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
        A redirect that may not be followed (see ``_redirect``) skips its URL too.
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
        for base in self._candidates():
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
                    self._forget_leader(url)
                    problem = f"{_where(url)}: {_network_problem(e)}"
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
                        url = self._redirect(url, location, with_credentials=auth is not None)
                    except _RedirectRefused as e:
                        errors.append(f"{_where(url)}: {e}")
                        break
                    query = None  # the Location carries the query already
                    continue
                self._note_leader(response.headers.get("X-Marathon-Leader"), url)
                return response
            else:
                raise MarathonUnavailable(f"{method} {path}: too many redirects")
        raise MarathonUnavailable(f"{method} {path}: no Marathon reachable ({'; '.join(errors)})")

    def _redirect(self, current: str, location: str, *, with_credentials: bool) -> str:
        """Where a redirect leads, if it may be followed (else ``_RedirectRefused``).

        Credentials go only where the operator sent them. A redirect within one origin, or to
        another origin in ``marathon.urls``, is followed with them (and a configured target is
        remembered as the leader). A redirect to any other origin (scheme, host or port) is
        followed only when there are no credentials to send; with credentials it is refused,
        not followed without them: that would end in a 401 that reads like a wrong password.
        The next configured URL is tried instead. Never from https to http.
        """
        try:
            target = str(URL(current).join(URL(location)))
        except ValueError:
            raise _RedirectRefused("redirected to something that is not a URL") from None
        origin = _origin(target)
        if not origin:
            raise _RedirectRefused("redirected to an address that is not http(s)")
        if _downgrades(current, target):
            raise _RedirectRefused("refused a redirect from https to http, which would send "
                                   "the credentials in clear")
        if with_credentials and origin != _origin(current) and origin not in self._configured:
            raise _RedirectRefused(f"redirected to {origin}, which is not in marathon.urls, so "
                                   "the credentials were not sent there")
        self._note_leader(target, current)
        return target

    def _note_leader(self, leader: str | None, current: str) -> None:
        """Prefer the leader Marathon names (header or redirect) if it is a configured URL.

        Only a URL in ``marathon.urls`` (same scheme, host and port): the credentials go only
        where the operator sent them, and a standby proxies to the leader anyway; any other
        is logged once and ignored. Not behind a path-routing proxy (DC/OS
        ``…/service/marathon``): there the leader's own address bypasses the proxy's
        authentication, may not be reachable at all, and lacks the base path. Never from https
        to http: the credentials would travel in clear. Not the leader that failed last until
        another is named: an address that does not answer would otherwise cost a timeout on
        every other request.
        """
        origin = _origin(leader or "")
        if self._behind_proxy or not origin:
            return
        configured = self._configured.get(origin)
        if configured is None:
            self._ignore_leader(origin)
        elif configured != self._failed_leader and not _downgrades(current, configured):
            self._leader, self._failed_leader = configured, None

    def _ignore_leader(self, origin: str) -> None:
        """Say once per origin (for the first few) that a leader outside the config was named."""
        if origin not in self._ignored_leaders and len(self._ignored_leaders) < _MAX_LOGGED_LEADERS:
            self._ignored_leaders.add(origin)
            log.info("marathon_leader_ignored", origin=origin)

    def _forget_leader(self, url: str) -> None:
        """Fall back to the configured URLs once a request to the leader fails."""
        if self._leader is not None and url.startswith(self._leader + "/"):
            self._failed_leader, self._leader = self._leader, None


_BACKOFF = wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2)


def _retry_wait(state: RetryCallState) -> float:
    """The server's ``Retry-After`` if it sent one, else a short jittered backoff."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, MarathonUnavailable) and error.retry_after is not None:
        return error.retry_after
    return _BACKOFF(state)


def _origin(url: str) -> str:
    """``scheme://host:port`` with the port spelt out, or "" when ``url`` is no http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return _shown(f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}")


def _where(url: str) -> str:
    """The Marathon a message names: ``_origin`` and the base path the API path (``/v2…``,
    which the message names already) follows, so that a Marathon behind a proxy at
    ``https://dcos.example/service/marathon`` is told from the proxy itself; no query."""
    origin = _origin(url)
    return origin and _shown(origin + urlsplit(url).path.partition("/v2")[0])


def _downgrades(current: str, target: str) -> bool:
    return urlsplit(current).scheme == "https" and urlsplit(target).scheme != "https"
