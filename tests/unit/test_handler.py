"""The controller's handler: what a reconciler says decides when a key comes back."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from controller.backoff import Backoff
from controller.errors import InvalidAppError, MarathonUnavailable
from controller.handler import Controller, Result
from controller.metrics import PREFIX, Metrics
from controller.ratelimit import DeploymentBudget, TokenBucket, WriteGate
from controller.workqueue import WorkQueue
from tests.clock import FakeClock


class Says:
    """A reconciler that answers each key with a prepared result or error."""

    key_field = "app_id"

    def __init__(self, answer: Result | Exception) -> None:
        self.answer = answer

    async def reconcile(self, key: str) -> Result:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def queue(clock: FakeClock | None = None) -> WorkQueue[str]:
    return WorkQueue(backoff=Backoff(2.0, 60.0), clock=clock or FakeClock())


def controller(answer: Result | Exception, *, once: bool = False,
               holds: dict[str, float] | None = None) -> Controller[str]:
    held = holds or {}
    return Controller("app", Says(answer), queue(), Metrics(CollectorRegistry()), workers=1,
                      timeout=5, once=once, holds=lambda key: held.get(key, 0.0))


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

        c = Controller("app", AddsItselfOnce(), queue(), Metrics(CollectorRegistry()),
                       workers=2, timeout=5, once=True)
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

    async def test_a_held_key_comes_back_when_its_hold_ends_without_a_reconcile(self):
        """The index says the app is locked for 30 s more: no reconcile (it would only earn a
        409), the key is scheduled for then."""
        c = controller(RuntimeError("reconciled while held"), holds={"k": 30.0})
        await c.process("k")
        assert scheduled(c) == (True, 1)
        assert c.queue.retries("k") == 0


def sample(collectors: CollectorRegistry, series: str, **labels: str) -> float | None:
    return collectors.get_sample_value(PREFIX + series, labels)


class TestMetricsPerController:
    async def test_a_worker_stalled_in_the_deployment_budget_shows_in_its_queue(self):
        """A worker waits for a deployment slot: ``longest_running_processor_seconds`` of the
        app queue grows with it, the registry queue's stays 0; when the slot frees up the
        reconcile is counted under ``controller="app"`` alone."""
        clock = FakeClock()

        async def still_running() -> set[str]:
            return {"d-1"}

        budget = DeploymentBudget(1, running=still_running, poll_seconds=3600.0)
        assert await budget.try_acquire()
        budget.commit("d-1")  # the one slot is taken
        gate = WriteGate(TokenBucket(100.0, 10), budget)
        entered = asyncio.Event()

        class WritesThroughTheGate:
            key_field = "app_id"

            async def reconcile(self, key: str) -> Result:
                entered.set()
                async with gate.write(wait=True):
                    return Result()

        collectors = CollectorRegistry()
        metrics = Metrics(collectors)
        apps = Controller("app", WritesThroughTheGate(), queue(clock), metrics, workers=1,
                          timeout=None)
        Controller("registry", Says(Result()), queue(clock), metrics, workers=1, timeout=None)
        apps.queue.add("/a")
        worker = asyncio.create_task(apps.worker())
        async with asyncio.timeout(5):
            await entered.wait()
        longest = [sample(collectors, "workqueue_longest_running_processor_seconds", name=n)
                   for n in ("app", "registry")]
        clock.advance(40.0)
        later = sample(collectors, "workqueue_longest_running_processor_seconds", name="app")
        assert (longest, later) == ([0.0, 0.0], 40.0)
        assert sample(collectors, "controller_active_workers", controller="app") == 1
        budget.finished("d-1")
        async with asyncio.timeout(5):
            while sample(collectors, "controller_reconcile_total", controller="app",
                         result="success") != 1:
                await asyncio.sleep(0.01)  # poll with a deadline
        apps.queue.shutdown()
        await worker
        assert sample(collectors, "workqueue_longest_running_processor_seconds",
                      name="app") == 0
        assert sample(collectors, "controller_reconcile_total", controller="registry",
                      result="success") == 0
