"""Leader election through ZooKeeper (kazoo's lock recipe), with fencing before every write.

Every Mesos/Marathon cluster already runs ZooKeeper. The replica holding the lock leads; its
lock node's sequence number is the leader *epoch*, recorded in bundle metadata. kazoo runs its
own thread, so its callbacks reach the event loop through ``call_soon_threadsafe``.

Safety: on SUSPENDED the leader stops writing at once (``fence`` refuses); on LOST it drops its
queue and goes back to standby. ``fence`` also asks ZooKeeper whether the lock node still exists,
so a process that was frozen (SIGSTOP) past its session expiry cannot write on waking up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.recipe.lock import Lock

from controller.backoff import Backoff
from controller.errors import NotLeaderError
from controller.settings import LeaderElectionSettings

__all__ = ["ZooKeeperElection"]

log = structlog.get_logger(component="leader")

_LOCK_PATH = "/leader"
_ACQUIRE_POLL_SECONDS = 1.0
_CONNECT_BACKOFF = Backoff(2.0, 30.0)


class ZooKeeperElection:
    def __init__(self, settings: LeaderElectionSettings, identity: str) -> None:
        self._settings = settings
        self._identity = identity
        self._client: KazooClient | None = None
        self._lock: Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.epoch: int | None = None
        self.connected = False
        self.lost = asyncio.Event()
        """Set when leadership ended (session suspended or lost); the term must stop."""

    @property
    def leading(self) -> bool:
        return self.epoch is not None and self.connected and not self.lost.is_set()

    async def start(self) -> None:
        """Connect, retrying until ZooKeeper answers: meanwhile this replica stands by."""
        self._loop = asyncio.get_running_loop()
        client = KazooClient(hosts=self._settings.zookeeper,
                             timeout=self._settings.session_timeout_seconds)
        client.add_listener(self._on_state)
        self._client = client
        attempt = 0
        while True:
            attempt += 1
            try:
                await asyncio.to_thread(client.start, self._settings.session_timeout_seconds)
                break
            except (KazooException, KazooTimeoutError) as e:
                log.warning("zookeeper_unreachable", hosts=self._settings.zookeeper,
                            attempt=attempt, error=type(e).__name__)
                await asyncio.sleep(_CONNECT_BACKOFF.delay(attempt))
        self.connected = True
        log.info("zookeeper_connected", hosts=self._settings.zookeeper)

    async def stop(self) -> None:
        """Give up leadership (deleting the lock node) and close the session."""
        client = self._client
        if client is None:
            return
        await self.release()
        await asyncio.to_thread(client.stop)
        await asyncio.to_thread(client.close)
        self._client = None

    async def acquire(self) -> int:
        """Wait until this replica holds the lock; return the new leader epoch."""
        client = self._require_client()
        lock = client.Lock(_LOCK_PATH, self._identity)
        self._lock = lock  # so that stop() releases it even while we still wait
        while not await asyncio.to_thread(self._try_acquire, lock):
            pass
        self._lock = lock  # a session lost while waiting cleared it; this lock is now held
        node = lock.node or ""
        self.epoch = int(node.rsplit("__", 1)[-1]) if node[-10:].isdigit() else 0
        self.lost.clear()
        log.info("leadership_acquired", epoch=self.epoch)
        return self.epoch

    @staticmethod
    def _try_acquire(lock: Lock) -> bool:
        try:
            return bool(lock.acquire(blocking=True, timeout=_ACQUIRE_POLL_SECONDS))
        except KazooException:  # LockTimeout included
            return False

    async def release(self) -> None:
        lock, self._lock = self._lock, None
        self.epoch = None
        if lock is not None:  # bounded: while suspended, kazoo may wait for the session
            with contextlib.suppress(KazooException, TimeoutError):
                await asyncio.wait_for(asyncio.to_thread(lock.release),
                                       timeout=self._settings.session_timeout_seconds)

    async def fence(self) -> int | None:
        """Raise ``NotLeaderError`` unless this replica still leads; return the epoch."""
        lock = self._lock
        if not self.leading or lock is None or lock.node is None:
            raise NotLeaderError("not the leader")
        client = self._require_client()
        path = f"{_LOCK_PATH}/{lock.node}"
        try:
            exists = await asyncio.wait_for(asyncio.to_thread(client.exists, path),
                                            timeout=self._settings.session_timeout_seconds)
        except (KazooException, TimeoutError) as e:
            raise NotLeaderError(f"leadership unconfirmed: {type(e).__name__}") from e
        if not exists or not self.leading:
            raise NotLeaderError("leadership lost")
        return self.epoch

    def _require_client(self) -> KazooClient:
        if self._client is None:
            raise NotLeaderError("leader election is not started")
        return self._client

    def _on_state(self, state: Any) -> None:
        """kazoo thread: hand the state change to the event loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply_state, state)

    def _apply_state(self, state: Any) -> None:
        if state == KazooState.CONNECTED:
            self.connected = True
            log.info("zookeeper_connected")
            return
        self.connected = False
        if self.epoch is not None:
            self.lost.set()
        if state == KazooState.SUSPENDED:
            log.warning("zookeeper_suspended", leading=self.epoch is not None)
        else:
            log.warning("zookeeper_session_lost", leading=self.epoch is not None)
            if self.epoch is not None:  # a waiting acquire() keeps its lock object
                self.epoch = None
                self._lock = None
