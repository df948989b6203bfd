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
    Never around an ``await``: other tasks would run without a collector.

    On the way out, what was allocated inside goes straight to the oldest generation
    (``freeze`` then ``unfreeze``: two list splices, and the young generation's count reset), so
    the young collections that would otherwise follow at once do not walk it all again; cyclic
    garbage among it is still found, by the next full collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()
