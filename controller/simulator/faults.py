"""Planned failures for a facade's requests, and the log of the writes it received."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from controller.simulator.wire import ApiError, no_leader


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


class FaultsAndWrites:
    """``MarathonState``'s planned faults for the requests a facade gets, and its log of the
    write requests."""

    if TYPE_CHECKING:  # what MarathonState provides (its __init__ sets them)
        writes: list[WriteRecord]
        unavailable: bool
        _faults: list[Fault]
        _spent_hangs: list[Fault]
        _now: Callable[[], datetime]

    def fail_next(
        self, target: str, status: int = 503, count: int | None = 1, *, method: str | None = None,
    ) -> Fault:
        """Answer ``status`` to the next ``count`` requests whose path matches ``target``.

        ``target`` is a regex searched in the request path, so an app id such as ``/team/web``
        works as it is (it also matches ``/team/web-2``; end it with ``$`` to be exact).
        ``count=None`` fails every matching request until ``clear_faults``.
        """
        return self.inject(target, "status", status=status, count=count, method=method)

    def inject(
        self, target: str, kind: FaultKind, *, method: str | None = None, status: int = 503,
        count: int | None = 1, seconds: float | None = None, landed: bool = False,
    ) -> Fault:
        """Plan a ``Fault`` of ``kind`` for requests whose path matches the regex ``target``.

        Faults are tried in the order they were planned; each request uses up at most one.
        Keep the returned fault to ``release`` the requests a ``hang`` holds.
        """
        fault = Fault(pattern=re.compile(target), kind=kind, method=method, status=status,
                      remaining=count, seconds=seconds, landed=landed)
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Drop every planned fault and let held requests go on, also those of a ``hang`` that
        was used up (``unavailable`` stays)."""
        for fault in (*self._faults, *self._spent_hangs):
            fault.release()
        self._faults.clear()
        self._spent_hangs.clear()

    def claim_fault(self, method: str, path: str) -> Fault | None:
        """The fault this request meets, if any (each request uses up one). The facade asks
        this after ``unavailable``."""
        return self._use_fault(method, path, ("status", "hang", "truncate"))

    def take_fault(self, method: str, path: str) -> ApiError | None:
        """The failure planned for this request, if any (each planned one is used up).

        Failures are ``unavailable`` and ``status`` faults; other kinds are left for
        ``claim_fault``.
        """
        if self.unavailable:
            return no_leader()
        fault = self._use_fault(method, path, ("status",))
        return fault.error() if fault is not None else None

    def _use_fault(self, method: str, path: str, kinds: tuple[FaultKind, ...]) -> Fault | None:
        for fault in self._faults:
            if fault.kind in kinds and fault.matches(method, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                        if fault.kind == "hang":  # it may still hold requests
                            self._spent_hangs.append(fault)
                return fault
        return None

    def record_write(self, method: str, path: str, body: Any, client: str, status: int,
                     query: str = "") -> None:
        self.writes.append(WriteRecord(method=method, path=path, body=body, client=client,
                                       status=status, at=self._now(), query=query))
