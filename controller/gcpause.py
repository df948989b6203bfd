"""Pausing the garbage collector while a large list is built or walked, for the app list."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection inside: use it around synchronous work that allocates many objects
    that cannot be garbage yet (decoding 50,000 apps, planning them), where the collector's
    passes over the growing heap would cost as much as the work, and more as the list grows.
    Never around an ``await``: other tasks would run without a collector."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
