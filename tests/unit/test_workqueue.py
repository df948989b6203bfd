"""The work queue: one test per behaviour, then a state machine against a plain model."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controller.backoff import Backoff
from controller.workqueue import QueueEmpty, QueueShutDown, WorkQueue
from tests.clock import FakeClock

# Powers of two, so sums of clock steps are exact and "due at" comparisons are too.
TICK = 1 / 1024


@dataclass
class RecordingObserver:
    adds: list[str] = field(default_factory=list)
    gets: list[tuple[str, float]] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    worked: list[tuple[str, float]] = field(default_factory=list)

    def on_add(self, key: str) -> None:
        self.adds.append(key)

    def on_get(self, key: str, waited_seconds: float) -> None:
        self.gets.append((key, waited_seconds))

    def on_done(self, key: str, worked_seconds: float) -> None:
        self.worked.append((key, worked_seconds))

    def on_retry(self, key: str) -> None:
        self.retries.append(key)

    def on_depth(self, depth: int) -> None:
        self.depths.append(depth)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> WorkQueue[str]:
    return WorkQueue(clock=clock, backoff=Backoff(1.0, 8.0))


def drain_ready(queue: WorkQueue[str]) -> list[str]:
    """Take every ready key (marking each done), in order."""
    keys: list[str] = []
    while True:
        try:
            key = queue.get_nowait()
        except (QueueEmpty, QueueShutDown):
            return keys
        queue.done(key)
        keys.append(key)


def fail_three_times(queue: WorkQueue[str], clock: FakeClock, key: str) -> None:
    """Three rate-limited adds of ``key``, each waited out and handed out: its next wait is
    longer than the base."""
    for _ in range(3):
        queue.add_rate_limited(key)
        clock.advance(8)
        drain_ready(queue)


class TestAdd:
    def test_keys_come_out_in_insertion_order(self, queue: WorkQueue[str]) -> None:
        """Ready keys are handed out first in, first out."""
        for key in "cab":
            queue.add(key)
        assert drain_ready(queue) == ["c", "a", "b"]

    def test_queued_key_is_not_queued_twice(self, queue: WorkQueue[str]) -> None:
        """Adding a key that is already waiting changes nothing."""
        queue.add("a")
        queue.add("b")
        queue.add("a")
        assert drain_ready(queue) == ["a", "b"]

    def test_key_held_by_a_worker_is_not_handed_out(self, queue: WorkQueue[str]) -> None:
        """A key re-added while processing waits for ``done``."""
        queue.add("a")
        queue.get_nowait()
        queue.add("a")
        with pytest.raises(QueueEmpty):
            queue.get_nowait()

    def test_readd_while_processing_is_delivered_after_done(self, queue: WorkQueue[str]) -> None:
        """After ``done`` the re-added key is ready again, once however often it was added."""
        queue.add("a")
        queue.get_nowait()
        queue.add("a")
        queue.add("a")
        queue.done("a")
        assert drain_ready(queue) == ["a"]

    def test_done_without_get_is_an_error(self, queue: WorkQueue[str]) -> None:
        """Releasing a key nobody holds is a bug in the caller."""
        with pytest.raises(ValueError, match="not being processed"):
            queue.done("a")


class TestSizes:
    def test_sizes_count_each_state(self, queue: WorkQueue[str]) -> None:
        """``len`` counts ready keys, ``depth`` adds owed ones; held and delayed apart."""
        for key in "abc":
            queue.add(key)
        queue.get_nowait()
        queue.add("a")
        queue.add_after("d", 5)
        assert (len(queue), queue.depth, queue.processing, queue.pending_delayed) == (2, 3, 1, 1)

    def test_membership_covers_every_state(self, queue: WorkQueue[str]) -> None:
        """``in`` sees queued, held and delayed keys, and nothing once a key is done."""
        queue.add("a")
        queue.add("b")
        queue.add_after("c", 5)
        queue.get_nowait()
        assert [k in queue for k in "abcd"] == [True, True, True, False]
        queue.done("a")
        assert "a" not in queue

    def test_due_keys_count_as_ready(self, queue: WorkQueue[str], clock: FakeClock) -> None:
        """A delayed key counts as ready as soon as its time has come."""
        queue.add_after("a", 5)
        clock.advance(5)
        assert (len(queue), queue.pending_delayed) == (1, 0)


class TestAddAfter:
    def test_key_is_ready_when_the_delay_has_passed(self, queue: WorkQueue[str],
                                                    clock: FakeClock) -> None:
        """A delayed key stays hidden until its time."""
        queue.add_after("a", 5)
        clock.advance(5 - TICK)
        assert drain_ready(queue) == []
        clock.advance(TICK)
        assert drain_ready(queue) == ["a"]

    def test_earlier_time_wins(self, queue: WorkQueue[str], clock: FakeClock) -> None:
        """Of two delays for one key the shorter counts, and the key comes once."""
        queue.add_after("a", 10)
        queue.add_after("a", 2)
        queue.add_after("a", 6)
        clock.advance(2)
        assert drain_ready(queue) == ["a"]
        clock.advance(10)
        assert drain_ready(queue) == []

    @pytest.mark.parametrize("delay", [0, -1], ids=["zero", "negative"])
    def test_non_positive_delay_adds_now(self, queue: WorkQueue[str], delay: float) -> None:
        """A delay of zero or less is a plain add."""
        queue.add_after("a", delay)
        assert drain_ready(queue) == ["a"]

    @pytest.mark.parametrize("delay_first", [True, False], ids=["delay-then-add", "add-then-delay"])
    def test_a_key_added_now_and_later_is_delivered_once(
            self, queue: WorkQueue[str], clock: FakeClock, delay_first: bool) -> None:
        """Added now, a key is not delivered a second time when its old delay ends; already
        waiting, it is delivered sooner anyway, so a new delay adds nothing."""
        if delay_first:
            queue.add_after("a", 5)
        queue.add("a")
        if not delay_first:
            queue.add_after("a", 5)
        assert drain_ready(queue) == ["a"]
        clock.advance(5)
        assert drain_ready(queue) == []

    def test_delay_for_a_held_key_delivers_it_again(self, queue: WorkQueue[str],
                                                    clock: FakeClock) -> None:
        """The usual requeue-after: scheduled while processing, delivered after the delay."""
        queue.add("a")
        queue.get_nowait()
        queue.add_after("a", 5)
        queue.done("a")
        assert drain_ready(queue) == []
        clock.advance(5)
        assert drain_ready(queue) == ["a"]

    def test_due_keys_keep_the_order_they_fell_due_in(self, queue: WorkQueue[str],
                                                      clock: FakeClock) -> None:
        """Keys that fell due before a plain add are handed out before it."""
        queue.add_after("b", 2)
        queue.add_after("a", 1)
        clock.advance(3)
        queue.add("c")
        assert drain_ready(queue) == ["a", "b", "c"]


class TestRateLimit:
    def test_backoff_doubles_up_to_the_cap(self, queue: WorkQueue[str], clock: FakeClock) -> None:
        """Each failure doubles the wait from the backoff's base until its cap."""
        for expected in [1, 2, 4, 8, 8]:
            queue.add_rate_limited("a")
            clock.advance(expected - TICK)
            assert drain_ready(queue) == [], expected
            clock.advance(TICK)
            assert drain_ready(queue) == ["a"], expected

    def test_retries_counts_failures_until_forget(self, queue: WorkQueue[str]) -> None:
        """``retries`` counts rate-limited adds; ``forget`` resets it."""
        for _ in range(3):
            queue.add_rate_limited("a")
        assert queue.retries("a") == 3
        queue.forget("a")
        assert queue.retries("a") == 0

    def test_forget_restarts_the_backoff(self, queue: WorkQueue[str], clock: FakeClock) -> None:
        """After ``forget`` the next wait is the base again."""
        fail_three_times(queue, clock, "a")
        queue.forget("a")
        queue.add_rate_limited("a")
        clock.advance(1)
        assert drain_ready(queue) == ["a"]

    def test_backoff_is_per_key(self, queue: WorkQueue[str], clock: FakeClock) -> None:
        """One key's failures do not slow another key down."""
        fail_three_times(queue, clock, "a")
        queue.add_rate_limited("a")
        queue.add_rate_limited("b")
        clock.advance(1)
        assert drain_ready(queue) == ["b"]

    def test_backoff_stays_finite_after_many_failures(self, queue: WorkQueue[str],
                                                      clock: FakeClock) -> None:
        """Thousands of failures still wait the cap, with no overflow."""
        for _ in range(5000):
            queue.add_rate_limited("a")
        clock.advance(8)
        assert drain_ready(queue) == ["a"]


class TestObserver:
    @pytest.fixture
    def observer(self) -> RecordingObserver:
        return RecordingObserver()

    @pytest.fixture
    def queue(self, clock: FakeClock, observer: RecordingObserver) -> WorkQueue[str]:
        return WorkQueue(clock=clock, observer=observer)

    def test_adds_are_reported_without_duplicates(self, queue: WorkQueue[str],
                                                  observer: RecordingObserver) -> None:
        """Only adds that queue something are reported."""
        queue.add("a")
        queue.add("a")
        queue.add("b")
        assert observer.adds == ["a", "b"]

    def test_get_reports_the_time_spent_ready(self, queue: WorkQueue[str], clock: FakeClock,
                                              observer: RecordingObserver) -> None:
        """The wait is measured from the add to the get."""
        queue.add("a")
        clock.advance(3)
        queue.get_nowait()
        assert observer.gets == [("a", 3)]

    def test_delayed_wait_starts_when_the_key_falls_due(
            self, queue: WorkQueue[str], clock: FakeClock, observer: RecordingObserver) -> None:
        """The delay itself is not counted as waiting."""
        queue.add_after("a", 5)
        clock.advance(7)
        queue.get_nowait()
        assert observer.gets == [("a", 2)]

    def test_retries_are_reported(self, queue: WorkQueue[str],
                                  observer: RecordingObserver) -> None:
        """Every rate-limited add is reported as a retry."""
        queue.add_rate_limited("a")
        queue.add_rate_limited("a")
        assert observer.retries == ["a", "a"]

    def test_work_is_timed_while_held_and_when_done(self, queue: WorkQueue[str],
                                                    clock: FakeClock,
                                                    observer: RecordingObserver) -> None:
        """While workers hold keys, the unfinished work and the longest hold grow with time;
        ``done`` reports how long the key was held, and a queue with nothing held reads 0."""
        queue.add("a")
        queue.add("b")
        queue.get_nowait()
        clock.advance(4)
        queue.get_nowait()
        clock.advance(1)
        assert (queue.unfinished_work_seconds(), queue.longest_running_processor_seconds()) == (
            6, 5)
        queue.done("a")
        queue.done("b")
        assert observer.worked == [("a", 5), ("b", 1)]
        assert (queue.unfinished_work_seconds(), queue.longest_running_processor_seconds()) == (
            0, 0)

    def test_depth_follows_adds_and_gets(self, queue: WorkQueue[str],
                                         observer: RecordingObserver) -> None:
        """Depth is reported whenever it changes."""
        queue.add("a")
        queue.add("b")
        queue.get_nowait()
        assert observer.depths == [1, 2, 1]


class TestShutdown:
    def test_adds_are_ignored(self, queue: WorkQueue[str]) -> None:
        """After shutdown nothing new gets in."""
        queue.shutdown()
        queue.add("a")
        queue.add_after("b", 1)
        queue.add_rate_limited("c")
        assert (queue.depth, queue.pending_delayed) == (0, 0)

    def test_drain_hands_out_queued_keys_then_stops(self, queue: WorkQueue[str]) -> None:
        """With drain, ready keys still come out; then ``QueueShutDown``."""
        queue.add("a")
        queue.shutdown(drain=True)
        assert queue.get_nowait() == "a"
        with pytest.raises(QueueShutDown):
            queue.get_nowait()

    def test_drain_drops_keys_not_yet_due(self, queue: WorkQueue[str], clock: FakeClock) -> None:
        """Delayed keys are not waited for, but keys already due are kept."""
        queue.add_after("a", 1)
        queue.add_after("b", 10)
        clock.advance(1)
        queue.shutdown()
        assert drain_ready(queue) == ["a"]
        assert queue.pending_delayed == 0

    def test_drain_delivers_keys_owed_to_a_worker(self, queue: WorkQueue[str]) -> None:
        """A key re-added while held before shutdown is still delivered after ``done``."""
        queue.add("a")
        queue.get_nowait()
        queue.add("a")
        queue.shutdown()
        queue.done("a")
        assert queue.get_nowait() == "a"

    def test_without_drain_get_stops_at_once(self, queue: WorkQueue[str]) -> None:
        """Without drain, queued keys are dropped."""
        queue.add("a")
        queue.shutdown(drain=False)
        with pytest.raises(QueueShutDown):
            queue.get_nowait()
        assert queue.depth == 0

    def test_second_call_can_stop_a_drain(self, queue: WorkQueue[str]) -> None:
        """``shutdown(drain=False)`` after a drain started drops what is left."""
        queue.add("a")
        queue.shutdown(drain=True)
        queue.shutdown(drain=False)
        with pytest.raises(QueueShutDown):
            queue.get_nowait()

    async def test_blocked_get_is_released(self, queue: WorkQueue[str]) -> None:
        """A worker waiting on an empty queue gets ``QueueShutDown``."""
        worker = asyncio.create_task(queue.get())
        await asyncio.sleep(0)  # let the worker block
        queue.shutdown()
        with pytest.raises(QueueShutDown):
            await worker


class TestAsyncGet:
    async def test_get_waits_for_an_add(self, queue: WorkQueue[str]) -> None:
        """A blocked ``get`` wakes when a key is added."""
        worker = asyncio.create_task(queue.get())
        await asyncio.sleep(0)  # let the worker block
        queue.add("a")
        async with asyncio.timeout(1):
            assert await worker == "a"

    async def test_get_wakes_when_a_delay_ends(self) -> None:
        """With the real clock, a blocked ``get`` returns the delayed key once it is due."""
        queue: WorkQueue[str] = WorkQueue()
        worker = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.add_after("a", 0.01)
        async with asyncio.timeout(1):
            assert await worker == "a"

    async def test_earlier_delay_shortens_a_blocked_get(self) -> None:
        """A blocked ``get`` that waits for a far delay notices a nearer one."""
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("far", 60)
        worker = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.add_after("near", 0.01)
        async with asyncio.timeout(1):
            assert await worker == "near"

    async def test_two_workers_never_hold_one_key(self, queue: WorkQueue[str]) -> None:
        """The second worker gets a re-added key only after the first is done with it."""
        workers = [asyncio.create_task(queue.get()) for _ in range(2)]
        await asyncio.sleep(0)
        queue.add("a")
        done, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
        queue.add("a")
        await asyncio.sleep(0)
        assert not pending.pop().done()
        queue.done(done.pop().result())
        async with asyncio.timeout(1):
            assert await asyncio.gather(*workers) == ["a", "a"]

    async def test_cancelled_get_loses_nothing(self, queue: WorkQueue[str]) -> None:
        """Cancelling a waiting worker leaves later keys for others."""
        worker = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
        queue.add("a")
        assert queue.get_nowait() == "a"


# -- state machine -------------------------------------------------------------------------

keys = st.sampled_from("abcd")
delays = st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 5.0])


class WorkQueueMachine(RuleBasedStateMachine):
    """The queue against a model of lists and dicts, in the spirit of controller-runtime's
    ``TestFuzzPriorityQueue``.

    Invariants: a key is ready at most once (dedup); a key is never handed out while a worker
    holds it; a key re-added while held is delivered again after ``done``; keys come out in
    the order they became ready; sizes and the reported depth match the model.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.observer = RecordingObserver()
        self.queue: WorkQueue[str] = WorkQueue(clock=self.clock, backoff=Backoff(1.0, 4.0),
                                               observer=self.observer)
        self.ready: list[str] = []
        self.owed: set[str] = set()
        self.held: set[str] = set()
        self.delayed: dict[str, tuple[float, int]] = {}  # key -> (due, schedule order)
        self.scheduled = 0
        self.failures: dict[str, int] = {}
        self.shut = False
        self.drain = True

    def _model_add(self, key: str) -> None:
        if self.shut or key in self.ready or key in self.owed:
            return
        self.delayed.pop(key, None)
        if key in self.held:
            self.owed.add(key)
        else:
            self.ready.append(key)

    def _model_add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self._model_add(key)
            return
        if self.shut or key in self.ready or key in self.owed:
            return
        due = self.clock.now + delay
        if key in self.delayed and self.delayed[key][0] <= due:
            return
        self.delayed[key] = (due, self.scheduled)
        self.scheduled += 1

    @rule(key=keys)
    def add(self, key: str) -> None:
        self.queue.add(key)
        self._model_add(key)

    @rule(key=keys, delay=delays)
    def add_after(self, key: str, delay: float) -> None:
        self.queue.add_after(key, delay)
        self._model_add_after(key, delay)

    @rule(key=keys)
    def add_rate_limited(self, key: str) -> None:
        self.queue.add_rate_limited(key)
        if self.shut:
            return
        failures = self.failures.get(key, 0)
        self.failures[key] = failures + 1
        self._model_add_after(key, min(4.0, 2.0**failures))

    @rule(key=keys)
    def forget(self, key: str) -> None:
        self.queue.forget(key)
        self.failures.pop(key, None)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 5.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        due = sorted((when, key) for key, when in self.delayed.items()
                     if when[0] <= self.clock.now)
        for _, key in due:
            del self.delayed[key]
            if key in self.held:
                self.owed.add(key)
            else:
                self.ready.append(key)

    @rule()
    def get(self) -> None:
        if self.shut and (not self.drain or not self.ready):
            with pytest.raises(QueueShutDown):
                self.queue.get_nowait()
        elif not self.ready:
            with pytest.raises(QueueEmpty):
                self.queue.get_nowait()
        else:
            key = self.queue.get_nowait()
            assert key not in self.held, "a key was handed out twice at once"
            assert key == self.ready.pop(0)
            self.held.add(key)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.held)))
        self.queue.done(key)
        self.held.remove(key)
        if key in self.owed:
            self.owed.remove(key)
            self.ready.append(key)

    @rule(drain=st.booleans())
    def shutdown(self, drain: bool) -> None:
        self.queue.shutdown(drain=drain)
        self.shut = True
        self.drain = self.drain and drain
        self.delayed.clear()
        if not self.drain:
            self.ready.clear()
            self.owed.clear()

    @invariant()
    def ready_keys_are_unique_and_not_held(self) -> None:
        assert len(set(self.ready)) == len(self.ready)
        assert not set(self.ready) & self.held
        assert self.owed <= self.held

    @invariant()
    def sizes_match_the_model(self) -> None:
        assert len(self.queue) == len(self.ready)
        assert self.queue.depth == len(self.ready) + len(self.owed)
        assert self.queue.processing == len(self.held)
        assert self.queue.pending_delayed == len(self.delayed)

    @invariant()
    def last_reported_depth_is_current(self) -> None:
        depth = self.queue.depth  # first: reading it may promote due keys, and report that
        assert (self.observer.depths[-1] if self.observer.depths else 0) == depth

    @invariant()
    def retries_match_the_model(self) -> None:
        for key in "abcd":
            assert self.queue.retries(key) == self.failures.get(key, 0)


TestWorkQueueMachine = WorkQueueMachine.TestCase
