"""Planned failures for a facade's requests, and the log of the writes it received."""

from __future__ import annotations

import asyncio
import re
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from controller.simulator.wire import ApiError


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRecord:
    """One write request on ``/v2/apps…``, ``/v2/groups…`` or ``/v2/queue…`` as a facade
    received it, refused or not (401, 405, 409, injected faults …)."""

    method: str
    path: str
    body: Any
    """The parsed JSON body; the raw text if it was not JSON; ``None`` if empty."""
    client: str
    """The request's ``User-Agent``: which process wrote."""
    status: int
    at: datetime
    query: str = ""
    """The raw query string, e.g. ``force=true``."""


FaultKind = Literal["status", "hang", "truncate"]


@dataclass(slots=True, kw_only=True, eq=False)
class Fault:
    """One planned failure for the requests whose path ``pattern`` finds (and ``method``, if set).

    ``status`` answers ``status`` instead of handling the request. ``hang`` holds the request
    for ``seconds`` (``None``: until ``release``), then handles it; with ``landed`` it handles it
    first (a write lands) and then holds the answer. ``truncate`` handles the request and sends
    the first half of the body as if it were all of it (a proxy cut it).
    """

    pattern: re.Pattern[str]
    kind: FaultKind = "status"
    method: str | None = None
    status: int = 503
    remaining: int | None = 1
    """Requests left to spoil; ``None``: every one until ``MarathonState.clear_faults``."""
    seconds: float | None = None
    landed: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def matches(self, method: str, path: str) -> bool:
        return self.method in (None, method) and self.pattern.search(path) is not None

    def release(self) -> None:
        """Let every request this fault holds go on."""
        self.released.set()

    def error(self) -> ApiError:
        return ApiError(self.status, {"message": f"simulated failure ({self.status})"})

    async def hold(self) -> None:
        """Wait ``seconds``, or until released."""
        with suppress(TimeoutError):
            async with asyncio.timeout(self.seconds):
                await self.released.wait()

