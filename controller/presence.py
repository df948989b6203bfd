"""One name, one controller: a presence record per ``controller.name`` in the bundle storage.

Two controllers left at the same ``controller.name`` with different configurations on one
Marathon would each take the other's entries for its own and remove them, for ever. So the
controller that runs (the leader, with leader election) keeps a small record beside the bundles,
``.pullsecret-presence-<name>.json``: an instance id, its host and pid, and a fingerprint of the
configuration that decides which entries are its own (registries, their app globs and formats,
the opt-in label, the storage location), refreshed every ``interval``. Replicas of one
controller share the fingerprint, so they are one controller.

Before it runs, a controller reads the record. One of another configuration whose heartbeat
moves is a live second controller with this name: this one refuses (``NameTakenError``, exit
2). A record whose heartbeat stops moving for ``3 * interval`` is a controller that died, and is
taken over; one its owner released on shutdown is gone at once. While running, a record found
rewritten by another configuration (both started at the same moment) stops this one too: the
later writer keeps the name. The record holds no secret. A dry run's store only records the
writes (``WriteRecorded``): such a controller checks for others but leaves no record.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from controller.errors import ConfigError, StorageError, WriteRecorded
from controller.settings import Settings
from controller.storage.base import BundleStore

__all__ = ["NameTakenError", "Presence", "PresenceRecord", "config_fingerprint", "record_name"]

log = structlog.get_logger(component="presence")

_LIMIT = 4096
"""A record is a few hundred bytes."""


class NameTakenError(ConfigError):
    """Another controller with this ``controller.name`` and another configuration runs."""


def record_name(owner: str) -> str:
    return f".pullsecret-presence-{owner}.json"


def config_fingerprint(settings: Settings, home: str) -> str:
    """What makes entries this controller's: the same for its replicas, different for a second
    controller that would fight it. No credential source and no secret goes in."""
    identity = {
        "name": settings.controller.name,
        "label": settings.selector.label,
        "registries": sorted((r.registry, list(r.apps), r.format) for r in settings.registries),
        "home": home,
        "previous": sorted(settings.storage.previous_locations),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class PresenceRecord(msgspec.Struct, frozen=True, kw_only=True):
    instance: str
    host: str
    pid: int
    fingerprint: str
    heartbeat: str
    """ISO time of the last refresh."""
    released: bool = False

    def describe(self) -> str:
        return f"instance {self.instance[:8]} on {self.host} (pid {self.pid})"


def _parse(data: bytes | None) -> PresenceRecord | None:
    if data is None:
        return None
    try:
        fields: dict[str, Any] = json.loads(data)
        return PresenceRecord(**{k: fields[k] for k in (
            "instance", "host", "pid", "fingerprint", "heartbeat")},
            released=bool(fields.get("released", False)))
    except (ValueError, KeyError, TypeError):
        log.warning("presence_record_unreadable")
        return None  # not ours to judge: overwritten as if absent


class Presence:
    """This controller's record: claimed before it runs, kept while it runs, released after."""

    def __init__(self, store: BundleStore, owner: str, fingerprint: str, *,
                 interval: float = 10.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._owner = owner
        self._name = record_name(owner)
        self._fingerprint = fingerprint
        self._interval = interval
        self._sleep = sleep
        self._clock = clock
        self.instance = uuid.uuid4().hex

    async def claim(self) -> None:
        """Refuse (``NameTakenError``) while a controller of another configuration runs under
        this name; else write this one's record."""
        await self.check()
        await self._write()

    async def keep(self) -> None:
        """Refresh the record every ``interval`` until cancelled; raise ``NameTakenError`` when
        another configuration rewrote it (started at the same moment: the later one stays)."""
        while True:
            await self._sleep(self._interval)
            found = await self._read()
            if found is not None and self._foreign(found) and not found.released:
                raise self._taken(found)
            await self._write()

    async def check(self) -> None:
        """Refuse (``NameTakenError``) while a live controller of another configuration runs
        under this name, writing nothing: a record whose heartbeat moves within
        ``3 * interval``; one that does not is a controller that died (taken over)."""
        found = await self._read()
        if found is None or not self._foreign(found) or found.released:
            return
        started = self._clock()
        while self._clock() - started < 3 * self._interval:
            await self._sleep(self._interval / 2)
            now = await self._read()
            if now is None or not self._foreign(now) or now.released:
                return
            if now.heartbeat != found.heartbeat:
                raise self._taken(now)
        log.warning("presence_record_taken_over", previous=found.describe(),
                    controller_name=self._owner)

    async def release(self) -> None:
        """Mark the record released (a clean shutdown), if it is still this instance's."""
        found = await self._read()
        if found is not None and found.instance == self.instance:
            await self._write(released=True)

    def _foreign(self, record: PresenceRecord) -> bool:
        return record.fingerprint != self._fingerprint

    def _taken(self, record: PresenceRecord) -> NameTakenError:
        return NameTakenError([
            f"controller.name: another controller named {self._owner!r} with another "
            f"configuration runs ({record.describe()}, last seen {record.heartbeat}): two "
            "controllers with one name would take each other's entries away; give each its own "
            "controller.name"])

    async def _read(self) -> PresenceRecord | None:
        try:
            return _parse(await self._store.read_note(self._name, _LIMIT))
        except StorageError as e:
            log.warning("presence_record_unreadable", error=str(e))
            return None

    async def _write(self, *, released: bool = False) -> None:
        record = PresenceRecord(instance=self.instance, host=socket.gethostname(),
                                pid=os.getpid(), fingerprint=self._fingerprint,
                                heartbeat=datetime.now(UTC).isoformat(), released=released)
        try:
            await self._store.write_note(self._name, msgspec.json.encode(record))
        except WriteRecorded:
            pass  # a dry run writes no record: the name stays free for a controller that writes
        except StorageError as e:
            log.warning("presence_record_unwritable", error=str(e))
