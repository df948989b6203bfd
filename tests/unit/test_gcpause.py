"""The collector pause around large synchronous loops: the collector comes back as it was, and
cyclic garbage made inside is still collected (it is moved to the oldest generation, not lost)."""

from __future__ import annotations

import gc
import weakref

from controller.gcpause import collector_paused


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_the_collector_comes_back_as_it_was():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_cyclic_garbage_made_inside_is_still_collected():
    with collector_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
    assert gc.get_freeze_count() == 0  # nothing stays frozen
    assert alive() is not None  # a cycle: only the collector frees it
    gc.collect()
    assert alive() is None


def test_the_young_generation_starts_empty_after_a_pause():
    with collector_paused():
        kept = [[i] for i in range(10_000)]
    assert gc.get_count()[0] < 100
    assert len(kept) == 10_000
