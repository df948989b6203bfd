"""A controller in controller-runtime's shape: one work queue, N workers, one reconciler.

The handler is the one place that decides a key's future, as controller-runtime's
``reconcileHandler`` does, from what its reconciler said and from the holds of the term's
index (a locked app waits for its deployment, or its recheck):

- a key on hold comes back when the hold ends, without a reconcile;
- a ``Result`` resets the key's backoff, and brings it back after ``requeue_after`` if set;
- a ``TerminalError`` is final for that input: the key is forgotten;
- any other exception is retried: after the server's ``retry_after`` when it gave one, else
  with the controller's ``Backoff``. A one-shot pass (``once=True``) records it and moves on,
  and brings a key back only while it is ``waiting``.

It also writes the reconcile metrics and exactly one ``reconcile_finished`` line per reconcile.
The daemon runs ``worker()`` tasks for ever; a one-shot pass calls ``drain()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, Protocol, TypeVar

import msgspec
import structlog
from structlog.contextvars import bound_contextvars

from controller.errors import TerminalError
from controller.model import ErrorKind, ReconcileOutcome
from controller.workqueue import QueueObserver, QueueShutDown, WorkQueue

__all__ = ["Controller", "HandlerObserver", "Reconciler", "Result"]

log = structlog.get_logger(component="controller")

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """What a reconciler says of one key: when to look again, and what to log."""

    requeue_after: float | None = None
    waiting: bool = False
    """The key is not done (it waits for a lock or a slot): it comes back even in a one-shot
    pass, which otherwise drops ``requeue_after`` (a later refresh is the daemon's business)."""
    log: Mapping[str, object] = msgspec.field(default_factory=dict)


class Reconciler(Protocol[K_contra]):
    """Brings one key to its desired state, from scratch (level-triggered)."""

    key_field: str
    """The log field that names the key (``app_id``, ``registry``)."""

    async def reconcile(self, key: K_contra) -> Result: ...


class HandlerObserver(Protocol):
    """What the handler counts (``Metrics`` is one): each reconcile, and the busy workers."""

    def on_reconciled(self, controller: str, outcome: ReconcileOutcome, seconds: float,
                      error: ErrorKind | None) -> None: ...

    def on_worker(self, controller: str, active: int) -> None: ...

    def queue(self, name: str, *, unfinished: Callable[[], float],
              longest: Callable[[], float]) -> QueueObserver[object]:
        """The observer of the controller's queue, also read for its unfinished work."""
        ...


class Controller(Generic[K]):
    """``name`` labels the controller's series and its queue's (``app``, ``registry``)."""

    def __init__(
        self,
        name: str,
        reconciler: Reconciler[K],
        queue: WorkQueue[K],
        observer: HandlerObserver,
        *,
        workers: int,
        timeout: float | None,
        once: bool = False,
        holds: Callable[[K], float] = lambda key: 0.0,
        on_done: Callable[[K], None] = lambda key: None,
    ) -> None:
        self.name = name
        self.queue = queue
        queue.observe(observer.queue(name, unfinished=queue.unfinished_work_seconds,
                                     longest=queue.longest_running_processor_seconds))
        self.workers = workers
        self._reconciler = reconciler
        self._observer = observer
        self._timeout = timeout
        self._once = once
        self._holds = holds
        self._on_done = on_done
        self._active = 0

    async def worker(self) -> None:
        """Take keys until the queue shuts down."""
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                await self.process(key)
            finally:
                self.queue.done(key)
                self._on_done(key)

    async def drain(self) -> None:
        """Run the workers until no key is ready, held or scheduled (a one-shot pass)."""
        on_done = self._on_done

        def shut_down_when_idle(key: K) -> None:
            on_done(key)
            if self.idle:
                self.queue.shutdown(drain=True)

        self._on_done = shut_down_when_idle
        try:
            if self.idle:
                self.queue.shutdown(drain=True)
            async with asyncio.TaskGroup() as tasks:
                for i in range(self.workers):
                    tasks.create_task(self.worker(), name=f"drain-{i}")
        finally:
            self._on_done = on_done

    @property
    def idle(self) -> bool:
        queue = self.queue
        return not (queue.depth or queue.processing or queue.pending_delayed)

    async def process(self, key: K) -> None:
        """Reconcile one key, decide when it comes back, count it and log it once; a key that
        ``holds`` says must wait (its app is locked by a deployment) comes back then, without a
        reconcile that would only earn another 409."""
        held = self._holds(key)
        if held > 0:
            self.queue.add_after(key, held)
            return
        started = time.perf_counter()
        fields: dict[str, object] = {}
        error: ErrorKind | None = None
        self._active += 1
        self._observer.on_worker(self.name, self._active)
        with bound_contextvars(**{self._reconciler.key_field: str(key)},
                               reconcile_id=uuid.uuid4().hex[:12],
                               attempt=self.queue.retries(key) + 1):
            try:
                async with asyncio.timeout(self._timeout):
                    result = await self._reconciler.reconcile(key)
            except TerminalError as e:
                error = "terminal"
                outcome = self._failed(key, e, fields, retry=False)
            except Exception as e:  # noqa: BLE001 - transient, timeouts and bugs: back off
                error = "timeout" if isinstance(e, TimeoutError) else "transient"
                outcome = self._failed(key, e, fields, retry=not self._once)
            else:
                outcome = self._succeeded(key, result, fields)
            finally:
                self._active -= 1
                self._observer.on_worker(self.name, self._active)
            duration = time.perf_counter() - started
            self._observer.on_reconciled(self.name, outcome, duration, error)
            log.log(logging.WARNING if outcome == "error" else logging.INFO,
                    "reconcile_finished", outcome=outcome,
                    duration_ms=round(duration * 1000, 2), **fields)

    def _succeeded(self, key: K, result: Result, fields: dict[str, object]
                   ) -> ReconcileOutcome:
        fields.update(result.log)
        self.queue.forget(key)
        if result.requeue_after is None or (self._once and not result.waiting):
            return "success"
        self.queue.add_after(key, result.requeue_after)
        fields["requeue_after"] = round(result.requeue_after, 1)
        return "requeue_after"

    def _failed(self, key: K, error: Exception, fields: dict[str, object], *, retry: bool
                ) -> ReconcileOutcome:
        fields.update(error=str(error) or type(error).__name__,
                      error_type=type(error).__name__, retry=retry)
        retry_after = getattr(error, "retry_after", None)  # the server said when
        if not retry:
            self.queue.forget(key)
        elif retry_after is not None:
            self.queue.add_after(key, retry_after)
            fields["requeue_after"] = retry_after
        else:
            self.queue.add_rate_limited(key)
        return "error"
