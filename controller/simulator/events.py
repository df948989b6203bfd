"""The simulator's event bus: encoded events and the subscribers that receive them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from controller.simulator.wire import Json, dumps, iso


class Event(NamedTuple):
    """A published event; ``frame`` is its SSE encoding, made once for every subscriber.

    ``full_payload``/``full_frame`` are a deployment event's heavy form (``plan.original`` and
    ``plan.target``) on versions that can write it, ``None`` otherwise: streams that want heavy
    plans send ``full_frame or frame`` (Marathon's ``fullJsonString``/``lightJsonString``).
    A named tuple rather than a frozen dataclass: floods create hundreds of thousands.
    """

    type: str
    payload: Json
    frame: bytes
    full_payload: Json | None = None
    full_frame: bytes | None = None


class Subscriber(Protocol):
    """Receives every published event (filtering is its own business)."""

    def deliver(self, event: Event) -> None: ...

    def close(self) -> None:
        """The stream was cut (``disconnect_streams``, a slow consumer, shutdown)."""


def _frame(event_type: str, body: Json) -> bytes:
    """Jetty's ``EventSourceEmitter`` framing: ``event:``, one ``data:`` line, a blank line,
    CRLF line ends (``jetty-servlets`` ``EventSourceServlet``, as Marathon uses it)."""
    return f"event: {event_type}\r\ndata: {dumps(body)}\r\n\r\n".encode()


def encode(event_type: str, body: Json, full: Json | None = None) -> Event:
    """An event with its SSE frame (and its heavy form's, if it has one)."""
    if full is None:
        return Event(event_type, body, _frame(event_type, body))
    return Event(event_type, body, _frame(event_type, body), full, _frame(event_type, full))


class EventBus:
    """``MarathonState``'s event bus: who subscribed, and every event published to them."""

    if TYPE_CHECKING:  # what MarathonState provides (its __init__ sets them)
        _subscribers: tuple[Subscriber, ...]
        _now: Callable[[], datetime]

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = (*self._subscribers, subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

    def publish(self, event_type: str, payload: Mapping[str, Any], *,
                full: Mapping[str, Any] | None = None) -> None:
        """Deliver an event to every subscriber, encoded once (``full``: the heavy form of a
        deployment event, for streams that want ``plan.original``/``plan.target``).

        ``eventType`` and ``timestamp`` are appended unless the payload has them.
        """
        subscribers = self._subscribers
        if not subscribers:
            return
        body = dict(payload)
        body.setdefault("eventType", event_type)
        body.setdefault("timestamp", iso(self._now()))
        heavy = (None if full is None else
                 {**full, "eventType": body["eventType"], "timestamp": body["timestamp"]})
        event = encode(event_type, body, heavy)
        for subscriber in subscribers:
            subscriber.deliver(event)

    trigger_event = publish
    """Inject any event, as if Marathon sent it (e.g. a ``status_update_event`` flood)."""

    def disconnect_streams(self) -> None:
        """Cut every subscriber, as a Marathon restart or leader change would."""
        for subscriber in self._subscribers:
            subscriber.close()
