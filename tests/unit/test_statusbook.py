"""StatusBook keeps its counts right through every kind of change."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from controller.model import AppId
from controller.statusbook import AppStatus, StatusBook

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ops = st.lists(st.tuples(st.sampled_from(["record", "fail", "forget"]),
                         st.sampled_from([AppId("/a"), AppId("/b"), AppId("/c")]),
                         st.sampled_from(["converged", "pending", "skipped", "locked"])))


@given(ops)
def test_counts_match_a_recount(steps):
    """After any sequence of record/fail/forget, counts equal a fresh count of the states."""
    book = StatusBook()
    for op, app_id, state in steps:
        if op == "record":
            book.record(app_id, AppStatus(state=state))
        elif op == "fail":
            book.fail(app_id, "boom", NOW)
        else:
            book.forget(app_id)
    assert book.counts() == Counter(s.state for s in book.apps.values())
