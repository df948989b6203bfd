"""Runs calls in a child process with an address-space cap and a deadline per call.

An input that makes the code under test allocate without end, recurse without end or spin
for minutes must fail as one example, not take the test run (or the shared machine) with it.
The child is started once and reused; a call that times out or kills it gets a fresh one.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import resource
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Outcome", "Sandbox"]

_PAGE = resource.getpagesize()


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Literal["returned", "raised", "timed out", "died"]
    summary: str
    """The returned value, or ``ExceptionType: message`` (cut short)."""
    details: str = ""
    """The traceback of what was raised (its last lines)."""


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * _PAGE


def _serve(conn: multiprocessing.connection.Connection, headroom: int, warm: str) -> None:
    __import__(warm)  # the code under test is loaded before the cap is measured from
    limit = _address_space() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send("ready")
    while True:
        try:
            function, args = conn.recv()
        except EOFError:
            return
        except MemoryError:  # the input alone is over the cap
            conn.send(("raised", "MemoryError: the input does not fit in the cap", ""))
            continue
        try:
            conn.send(("returned", str(function(*args)), ""))
        except BaseException as e:  # noqa: BLE001 - MemoryError, RecursionError: all reported
            text = "".join(traceback.format_exception(e))
            conn.send(("raised", f"{type(e).__name__}: {str(e)[:300]}", text[-4000:]))


_STARTUP_SECONDS = 120.0
"""For the child to import the code under test: not part of any call's deadline."""


class Sandbox:
    """``run(f, *args)`` calls ``f`` (importable, picklable) in the child."""

    def __init__(self, *, headroom_bytes: int, seconds: float, warm: str) -> None:
        self._headroom = headroom_bytes
        self._seconds = seconds
        self._warm = warm
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: multiprocessing.connection.Connection | None = None

    def _start(self) -> multiprocessing.connection.Connection:
        if self._conn is None:
            ours, theirs = self._context.Pipe()
            self._process = self._context.Process(
                target=_serve, args=(theirs, self._headroom, self._warm), daemon=True)
            self._process.start()
            theirs.close()
            self._conn = ours
            try:
                ready = ours.poll(_STARTUP_SECONDS) and ours.recv() == "ready"
            except EOFError:  # it died importing
                ready = False
            if not ready:
                self.close()
                raise RuntimeError(f"the sandbox did not start within {_STARTUP_SECONDS:g}s")
        return self._conn

    def run(self, function: Callable[..., object], *args: object) -> Outcome:
        conn = self._start()
        try:
            conn.send((function, args))
        except OSError:  # BrokenPipeError: it died since the last call
            self.close()
            return Outcome("died", "the child died before the call")
        if not conn.poll(self._seconds):
            self.close()
            return Outcome("timed out", f"no answer within {self._seconds:g}s")
        try:
            kind, summary, details = conn.recv()
        except EOFError:
            code = self._process.exitcode if self._process else None
            self.close()
            return Outcome("died", f"the child died (exit code {code})")
        return Outcome(kind, summary, details)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.kill()
            self._process.join()
            self._process.close()
            self._process = None
