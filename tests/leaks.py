"""Which asyncio tasks a test left behind; ``tests/conftest.py`` fails the test on any.

A task still pending when a test's fixtures are torn down was started by the test, or by code
it ran, and never awaited or cancelled: closing the loop would cancel it silently and hide a
shutdown that does not stop its work.
"""

from __future__ import annotations

import asyncio

SETTLE_ROUNDS = 5
"""Loop iterations given to tasks that already had ``cancel()`` to finish cancelling."""


async def pending_since(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Tasks of the running loop that are not in ``before``, not the caller and not done,
    once tasks that are only finishing a cancellation had a few loop iterations to end."""
    this = asyncio.current_task()

    def pending() -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() - before if t is not this and not t.done()}

    for _ in range(SETTLE_ROUNDS):
        if not any(t.cancelling() for t in pending()):
            break
        await asyncio.sleep(0)
    return pending()


def describe(task: asyncio.Task[object]) -> str:
    """The task's name and its coroutine, with the line where it waits."""
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
    return f"{task.get_name()}: {getattr(coro, '__qualname__', repr(coro))}{where}"


async def cancel_all(tasks: set[asyncio.Task[object]]) -> None:
    """Cancel ``tasks`` and wait for them, so the loop closes clean after a reported leak."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
