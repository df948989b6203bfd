"""The simulator's event bus: encoded events and the subscribers that receive them."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from controller.simulator.wire import Json, dumps


class Event(NamedTuple):
    """A published event; ``frame`` is its SSE encoding, made once for every subscriber.

    A named tuple rather than a frozen dataclass: floods create hundreds of thousands.
    """

    type: str
    payload: Json
    frame: bytes


class Subscriber(Protocol):
    """Receives every published event (filtering is its own business)."""

    def deliver(self, event: Event) -> None: ...

    def close(self) -> None:
        """The stream was cut (``disconnect_streams``, a slow consumer, shutdown)."""


def encode(event_type: str, body: Json) -> Event:
    """An event with its SSE frame, the Jetty framing Marathon uses (facts §3)."""
    return Event(event_type, body, f"event: {event_type}\r\ndata: {dumps(body)}\r\n\r\n".encode())
