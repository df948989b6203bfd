"""The controller's handler: what a reconciler says decides when a key comes back."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from controller.backoff import Backoff
from controller.errors import InvalidAppError, MarathonUnavailable
from controller.handler import Controller, Result
from controller.metrics import Metrics


class Says:
    """A reconciler that answers each key with a prepared result or error."""

    key_field = "app_id"

    def __init__(self, answer: Result | Exception) -> None:
        self.answer = answer

    async def reconcile(self, key: str) -> Result:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def controller(answer: Result | Exception, *, once: bool = False) -> Controller[str]:
    return Controller(Says(answer), Metrics(CollectorRegistry()), workers=1, timeout=5,
                      backoff=Backoff(2.0, 60.0), once=once)


def scheduled(c: Controller[str]) -> tuple[bool, int]:
    return "k" in c.queue, c.queue.pending_delayed


class TestHandler:
    async def test_retry_after_sets_when_the_key_comes_back(self):
        """A 429 or 503 with Retry-After: the key returns after the server's wait."""
        c = controller(MarathonUnavailable("busy", status=429, retry_after=7.0))
        await c.process("k")
        assert scheduled(c) == (True, 1)
        assert c.queue.retries("k") == 0  # not counted as a backoff step

    async def test_other_errors_back_off(self):
        c = controller(MarathonUnavailable("down", status=503))
        await c.process("k")
        assert (scheduled(c), c.queue.retries("k")) == ((True, 1), 1)

    async def test_terminal_errors_are_forgotten(self):
        c = controller(InvalidAppError("bad image"))
        await c.process("k")
        assert scheduled(c) == (False, 0)

    @pytest.mark.parametrize(("waiting", "kept"), [(False, False), (True, True)])
    async def test_a_one_shot_pass_keeps_only_waiting_keys(self, waiting, kept):
        """Once, a later refresh is dropped; a key waiting for a lock or a slot is kept."""
        c = controller(Result(requeue_after=30.0, waiting=waiting), once=True)
        await c.process("k")
        assert ("k" in c.queue) is kept

    async def test_drain_reconciles_a_key_added_while_held(self):
        """A key re-added while a worker holds it is reconciled again before ``drain`` ends."""
        seen: list[str] = []

        class AddsItselfOnce:
            key_field = "app_id"

            async def reconcile(self, key: str) -> Result:
                seen.append(key)
                if len(seen) == 1:
                    c.queue.add(key)  # an event names the app while it is being reconciled
                return Result()

        c = Controller(AddsItselfOnce(), Metrics(CollectorRegistry()), workers=2, timeout=5,
                       backoff=Backoff(2.0, 60.0), once=True)
        c.queue.add("k")
        async with asyncio.timeout(5):
            await c.drain()
        assert (seen, c.idle) == (["k", "k"], True)

    async def test_drain_returns_once_nothing_is_left(self):
        c = controller(Result(requeue_after=3600.0), once=True)
        for key in ("a", "b", "c"):
            c.queue.add(key)
        await c.drain()
        assert c.idle
