"""StatusBook keeps its counts right through every kind of change."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from controller.model import AppId
from controller.statusbook import AppStatus, DelayReset, PullFailureNote, StatusBook

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


def test_pull_failure_and_delay_reset_outlive_each_reconcile_until_the_app_is_forgotten():
    """Each reconcile replaces an app's status; what was seen of its pulls stays with it."""
    book = StatusBook()
    app = AppId("/a")
    book.pull_failed(app, PullFailureNote(reason="auth", at=NOW, task_id=None, message="m"))
    assert app not in book.apps  # only apps in the book are noted
    book.record(app, AppStatus(state="converged", registry="r"))
    book.pull_failed(app, PullFailureNote(reason="auth", at=NOW, task_id="t.1", message="m"))
    book.delay_reset(app, DelayReset(at=NOW, result="ok"))
    book.record(app, AppStatus(state="pending", registry="r"))
    book.fail(app, "boom", NOW)
    entry = book.snapshot({}, NOW)["apps"][app]
    assert entry["last_pull_failure"] == {"reason": "auth", "at": NOW.isoformat(),
                                          "task_id": "t.1", "message": "m"}
    assert entry["last_delay_reset"] == {"at": NOW.isoformat(), "result": "ok"}
    assert {"state", "detail", "registry", "last_reconcile", "last_error",
            "deployment_id"} <= set(entry)
    book.forget(app)
    book.record(app, AppStatus(state="converged", registry="r"))
    entry = book.snapshot({}, NOW)["apps"][app]
    assert (entry["last_pull_failure"], entry["last_delay_reset"]) == (None, None)
