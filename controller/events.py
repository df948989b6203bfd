"""The Marathon event stream as a source of work: events name apps, and failed image pulls.

Marathon cannot resume a stream (no ``Last-Event-ID``), so every (re)connect asks for a full
relist (``on_attached``), which runs elsewhere: the stream only adds keys, and events only make
convergence fast. A ``status_update_event`` matters only when a task failed to pull its image
(``controller.pullfailure``); the stream is mostly running tasks' updates, so an unwanted event
type is dropped by its ``event:`` line and a status update is decoded only when its raw text
may name a failed state. ``effect_of`` is pure; ``EventWatcher`` owns the connection and reconnects
forever with jittered backoff, never sooner than a server's ``Retry-After`` asks.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
import structlog

from controller.backoff import Backoff
from controller.errors import MarathonUnavailable
from controller.marathon.api import MarathonAPI
from controller.model import AppId
from controller.pullfailure import FailedPull, failed_pull, may_report_failed_task
from controller.sse import SSEDecoder

__all__ = ["EVENT_TYPES", "EventEffect", "EventObserver", "EventWatcher", "Posted", "effect_of"]

log = structlog.get_logger(component="events")

EVENT_TYPES = (
    "event_stream_attached",
    "api_post_event",
    "app_terminated_event",
    "deployment_info",
    "deployment_success",
    "deployment_failed",
    "status_update_event",
)
_WANTED = frozenset(EVENT_TYPES)
_STABLE_SECONDS = 30.0
_RECONNECT_BACKOFF = Backoff(0.5, 30.0)


class Posted(msgspec.Struct, frozen=True):
    """Who wrote an app through the REST API (``api_post_event``), and the fetch URIs it wrote:
    to name the other writer when the entry this controller wrote is taken away."""

    app_id: AppId
    writer: str
    """The request, as Marathon names it: ``clientIp`` and ``uri``."""
    uris: tuple[str, ...]


class EventEffect(msgspec.Struct, frozen=True):
    """What one event means for the controller."""

    app_ids: tuple[AppId, ...] = ()
    finished_deployment: str | None = None
    failed_pull: FailedPull | None = None
    """A task that failed to pull its image (the evidence is the event's text, not a read)."""
    posted: Posted | None = None


_WRITER_LIMIT = 200
"""Characters of an ``api_post_event``'s client and request URI kept to name a writer."""


def _plan_apps(plan: Any) -> tuple[AppId, ...]:
    """App ids in a deployment plan's steps: ``steps[].actions[].app`` as Marathon's code writes
    it, and ``steps[].action``/``steps[].app`` as its event-bus documentation shows it
    (docs/docs/event-bus.md); both are read."""
    if not isinstance(plan, dict):
        return ()
    apps: list[AppId] = []
    for step in plan.get("steps") or ():
        if not isinstance(step, dict):
            continue
        actions = step.get("actions")
        for action in actions if isinstance(actions, list) else (step,):
            if isinstance(action, dict) and isinstance(action.get("app"), str):
                apps.append(AppId(action["app"]))
    return tuple(dict.fromkeys(apps))


def _posted(app_id: AppId, payload: dict[str, Any], app: dict[str, Any]) -> Posted:
    client, uri = payload.get("clientIp"), payload.get("uri")
    writer = " ".join(str(part)[:_WRITER_LIMIT] for part in (client, uri)
                      if isinstance(part, str) and part)
    listed = app.get("fetch") if isinstance(app.get("fetch"), list) else app.get("uris")
    uris = tuple(entry if isinstance(entry, str) else entry.get("uri")
                 for entry in listed or () if isinstance(entry, str | dict))
    return Posted(app_id=app_id, writer=writer or "unknown",
                  uris=tuple(u for u in uris if isinstance(u, str)))


def effect_of(event_type: str, payload: dict[str, Any]) -> EventEffect:
    """Which apps an event names, and which deployment it ends. Pure."""
    if event_type == "api_post_event":
        app = payload.get("appDefinition")
        if isinstance(app, dict) and isinstance(app.get("id"), str):
            app_id = AppId(app["id"])
            return EventEffect(app_ids=(app_id,), posted=_posted(app_id, payload, app))
    elif event_type == "app_terminated_event" and isinstance(payload.get("appId"), str):
        return EventEffect(app_ids=(AppId(payload["appId"]),))
    elif event_type == "deployment_info":
        return EventEffect(app_ids=_plan_apps(payload.get("plan")))
    elif event_type in ("deployment_success", "deployment_failed"):
        plan = payload.get("plan")
        deployment = payload.get("id") or (plan.get("id") if isinstance(plan, dict) else None)
        apps = _plan_apps(plan)
        return EventEffect(app_ids=apps,
                           finished_deployment=deployment if isinstance(deployment, str) else None)
    elif event_type == "status_update_event":
        return EventEffect(failed_pull=failed_pull(payload))
    return EventEffect()


class EventObserver(Protocol):
    """What the watcher reports of the stream (``Metrics`` is one)."""

    def on_stream_connected(self, connected: bool) -> None: ...

    def on_event(self, event_type: str) -> None: ...

    def on_reconnect(self) -> None: ...


class _Unobserved:
    def on_stream_connected(self, connected: bool) -> None:
        pass

    def on_event(self, event_type: str) -> None:
        pass

    def on_reconnect(self) -> None:
        pass


class EventWatcher:
    """Connect, ask for a relist, then feed each event's effect to ``on_effect`` (and a failed
    pull to ``on_failed_pull``); reconnect forever."""

    def __init__(
        self,
        marathon: MarathonAPI,
        *,
        on_effect: Callable[[EventEffect], None],
        on_attached: Callable[[], None],
        observer: EventObserver | None = None,
        on_failed_pull: Callable[[FailedPull], None] = lambda failed: None,
        max_event_bytes: int = 4 * 1024 * 1024,
        backoff: Backoff = _RECONNECT_BACKOFF,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._marathon = marathon
        self._on_effect = on_effect
        self._on_attached = on_attached
        self._observer: EventObserver = observer if observer is not None else _Unobserved()
        self._on_failed_pull = on_failed_pull
        self._max_event_bytes = max_event_bytes
        self._backoff = backoff
        self._sleep = sleep
        self.connected = False

    async def run(self, *, _iterations: int | None = None) -> None:
        """Watch until cancelled (``_iterations`` bounds the connections, for tests)."""
        failures = 0
        count = 0
        while _iterations is None or count < _iterations:
            count += 1
            connected_at = time.monotonic()
            asked_wait = 0.0  # a server's Retry-After is a floor under the backoff
            try:
                await self._watch_once()
                log.info("event_stream_ended")
            except Exception as e:  # noqa: BLE001 - whatever broke the stream, reconnect
                log.warning("event_stream_failed", error=str(e) or type(e).__name__,
                            error_type=type(e).__name__, failures=failures + 1)
                if isinstance(e, MarathonUnavailable) and e.retry_after is not None:
                    asked_wait = e.retry_after
            finally:
                self._set_connected(False)
            # Only a stream that stayed up resets the backoff: a proxy that closes every
            # stream at once must not turn into a relist loop.
            stayed_up = time.monotonic() - connected_at >= _STABLE_SECONDS
            failures = 0 if stayed_up else failures + 1
            if _iterations is not None and count >= _iterations:
                return
            self._observer.on_reconnect()
            backoff = self._backoff.delay(failures + 1)  # after a stream that stayed up: base
            delay = max(backoff * random.uniform(0.5, 1.0), asked_wait)  # noqa: S311
            log.info("sse_reconnecting", delay=round(delay, 3))
            await self._sleep(delay)

    async def _watch_once(self) -> None:
        decoder = SSEDecoder(max_event_bytes=self._max_event_bytes)
        async with self._marathon.event_stream(EVENT_TYPES) as chunks:
            self._set_connected(True)
            log.info("event_stream_attached")
            self._on_attached()
            async for chunk in chunks:
                for event_type, data, _, _ in decoder.feed_bytes(chunk):
                    if event_type in _WANTED:
                        self._dispatch(event_type, data)

    def _dispatch(self, event_type: str, data: str) -> None:
        self._observer.on_event(event_type)
        if event_type == "status_update_event" and not may_report_failed_task(data):
            return  # a running, staging or finished task: not worth decoding
        try:
            payload = json.loads(data)
        except ValueError:
            log.warning("event_undecodable", event_type=event_type)
            return
        if isinstance(payload, dict):
            effect = effect_of(event_type, payload)
            if effect.failed_pull is not None:
                self._on_failed_pull(effect.failed_pull)
            if effect.app_ids or effect.finished_deployment:
                self._on_effect(effect)

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self._observer.on_stream_connected(connected)
