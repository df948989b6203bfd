"""The leaked-task check that ``tests/conftest.py`` runs after every async test."""

from __future__ import annotations

import asyncio

from tests import leaks


async def test_a_forgotten_task_is_reported_by_name_and_place() -> None:
    before = asyncio.all_tasks()
    forgotten = asyncio.create_task(asyncio.Event().wait(), name="forgotten")
    await asyncio.sleep(0)  # let it reach its first wait
    assert await leaks.pending_since(before) == {forgotten}
    description = leaks.describe(forgotten)
    await leaks.cancel_all({forgotten})
    assert description.startswith("forgotten: Event.wait at ")
    assert forgotten.cancelled()


async def test_finished_and_cancelling_tasks_are_not_leaks() -> None:
    before = asyncio.all_tasks()
    finished = asyncio.create_task(asyncio.sleep(0))
    await finished
    cancelling = asyncio.create_task(asyncio.sleep(100))
    await asyncio.sleep(0)
    cancelling.cancel()  # cancelled, but its cancellation has not run yet
    assert await leaks.pending_since(before) == set()
    assert cancelling.cancelled()


async def test_tasks_from_before_are_not_the_tests() -> None:
    older = asyncio.create_task(asyncio.Event().wait())
    before = asyncio.all_tasks()
    assert await leaks.pending_since(before) == set()
    await leaks.cancel_all({older})
