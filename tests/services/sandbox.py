"""The Mesos fetcher, as the simulator's agent runs it, kept to this machine for tests."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from controller.simulator.fetcher import ARCHIVE_SUFFIXES
from controller.simulator.fetcher import fetch_into_sandbox as fetch_like_mesos

__all__ = ["ARCHIVE_SUFFIXES", "fetch_into_sandbox"]


def _is_loopback(host: str | None) -> bool:
    """Tests must never reach beyond this machine."""
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch_into_sandbox(uri: str, sandbox: Path, dest_path: str | None = None, *,
                       extract: bool = True, executable: bool = False) -> Path:
    """What the Mesos fetcher leaves in ``sandbox`` for one ``fetch`` entry (loopback only)."""
    return fetch_like_mesos(uri, sandbox, dest_path, extract=extract, executable=executable,
                            allow_host=_is_loopback)
