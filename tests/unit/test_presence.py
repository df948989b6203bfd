"""One name, one controller: the presence record, on the in-memory store, with time driven by
the test (each sleep moves the clock)."""

from __future__ import annotations

import json

import pytest

from controller.errors import StorageError
from controller.presence import NameTakenError, Presence, record_name
from controller.storage.memory import MemoryStore
from tests.clock import FakeClock

NAME = record_name("default")


class Time:
    """A clock the presence's sleeps move; ``during`` runs at each sleep (another writer)."""

    def __init__(self) -> None:
        self.clock = FakeClock(0.0)
        self.during: list[object] = []

    async def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)
        for action in self.during:
            await action()  # type: ignore[operator]


def presence(store: MemoryStore, fingerprint: str, time: Time) -> Presence:
    return Presence(store, "default", fingerprint, interval=10, sleep=time.sleep,
                    clock=time.clock)


def record(store: MemoryStore) -> dict[str, object]:
    return dict(json.loads(store.notes[NAME]))


class TestClaim:
    async def test_an_empty_store_is_claimed(self):
        store, time = MemoryStore(), Time()
        mine = presence(store, "aaa", time)
        await mine.claim()
        assert record(store)["fingerprint"] == "aaa"
        assert time.clock.now == 0  # nothing to wait for

    async def test_a_replica_of_the_same_configuration_takes_over_at_once(self):
        store, time = MemoryStore(), Time()
        await presence(store, "aaa", time).claim()
        await presence(store, "aaa", time).claim()
        assert time.clock.now == 0

    async def test_a_live_controller_of_another_configuration_refuses_the_second(self):
        """Its heartbeat moves while the second one looks: the name is taken."""
        store, time = MemoryStore(), Time()
        first = presence(store, "aaa", time)
        await first.claim()
        time.during.append(first._write)  # the first keeps writing while the second waits
        with pytest.raises(NameTakenError, match="another controller named 'default'"):
            await presence(store, "bbb", time).claim()
        assert record(store)["fingerprint"] == "aaa"

    async def test_a_dead_controller_is_taken_over_after_three_intervals(self):
        store, time = MemoryStore(), Time()
        await presence(store, "aaa", time).claim()
        await presence(store, "bbb", time).claim()
        assert record(store)["fingerprint"] == "bbb"
        assert time.clock.now >= 30

    async def test_a_released_record_is_taken_at_once(self):
        store, time = MemoryStore(), Time()
        first = presence(store, "aaa", time)
        await first.claim()
        await first.release()
        await presence(store, "bbb", time).claim()
        assert (record(store)["fingerprint"], time.clock.now) == ("bbb", 0)

    async def test_an_unreadable_record_is_overwritten(self):
        store, time = MemoryStore(), Time()
        store.notes[NAME] = b"{not json"
        await presence(store, "bbb", time).claim()
        assert record(store)["fingerprint"] == "bbb"


class TestKeep:
    async def test_a_rewrite_by_another_configuration_stops_this_one(self):
        """Started at the same moment: the later writer keeps the name."""
        store, time = MemoryStore(), Time()
        mine, other = presence(store, "aaa", time), presence(store, "bbb", time)
        await mine.claim()
        await other.claim()  # it read before ours was there: both wrote
        with pytest.raises(NameTakenError):
            await mine.keep()

    async def test_the_record_is_refreshed_while_nobody_else_writes(self):
        store, time = MemoryStore(), Time()
        mine = presence(store, "aaa", time)
        await mine.claim()
        first = record(store)["heartbeat"]
        beats: list[object] = []

        async def stop_after_three() -> None:
            beats.append(record(store)["heartbeat"])
            if len(beats) == 3:
                raise RuntimeError("enough")

        time.during.append(stop_after_three)
        with pytest.raises(RuntimeError, match="enough"):
            await mine.keep()
        assert beats[-1] != first


class Unreachable(MemoryStore):
    """A store that answers every note request with a storage error."""

    async def read_note(self, name: str, limit: int) -> bytes | None:
        raise StorageError("cannot read: permission denied")

    async def write_note(self, name: str, data: bytes) -> None:
        raise StorageError("cannot write: permission denied")


async def test_storage_that_fails_keeps_no_controller_from_running():
    """Storage down or not writable is the publisher's to report: the record is skipped."""
    await presence(Unreachable(), "aaa", Time()).claim()
