"""The simulator's event bus: encoded events and the subscribers that receive them."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from controller.simulator.wire import Json, dumps


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
