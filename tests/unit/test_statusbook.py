"""The index keeps its status counts right through every kind of change; the status book's
``/status`` document costs a page, lists apps in trouble worst first, and shows no bundle
hash."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.appindex import AppIndex, AppStatus, DelayReset, PullFailureNote
from controller.bundles import LoginCheck, RegistryState
from controller.fingerprint import fingerprint
from controller.model import AppId, BundleManifest
from controller.statusbook import (
    DEFAULT_PAGE,
    MAX_PAGE,
    PROBLEMS_SHOWN,
    AppOrder,
    AppPage,
    StatusBook,
)
from tests.clock import FakeClock

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ops = st.lists(st.tuples(st.sampled_from(["record", "fail", "forget"]),
                         st.sampled_from([AppId("/a"), AppId("/b"), AppId("/c")]),
                         st.sampled_from(["converged", "pending", "skipped", "locked"])))


@given(ops)
def test_counts_match_a_recount(steps):
    """After any sequence of record/fail/forget, counts equal a fresh count of the states."""
    index = AppIndex(now=lambda: NOW)
    for op, app_id, state in steps:
        if op == "record":
            index.set_status(app_id, AppStatus(state=state))
        elif op == "fail":
            index.fail(app_id, "boom")
        else:
            index.forget(app_id)
    assert index.counts() == Counter(s.state for s in index.statuses.values())


def test_pull_failure_and_delay_reset_outlive_each_reconcile_until_the_app_is_forgotten():
    """Each reconcile replaces an app's status; what was seen of its pulls stays with it."""
    index = AppIndex(now=lambda: NOW)
    book = StatusBook(index)
    app = AppId("/a")
    index.note_pull_failure(app, PullFailureNote(reason="auth", at=NOW, task_id=None,
                                                 message="m"))
    assert app not in index.statuses  # only apps in the book are noted
    index.set_status(app, AppStatus(state="converged", registry="r"))
    index.note_pull_failure(app, PullFailureNote(reason="auth", at=NOW, task_id="t.1",
                                                 message="m"))
    index.note_delay_reset(app, DelayReset(at=NOW, result="ok"))
    index.set_status(app, AppStatus(state="pending", registry="r"))
    index.fail(app, "boom")
    entry = book.snapshot({}, NOW)["apps"][app]
    assert entry["last_pull_failure"] == {"reason": "auth", "at": NOW.isoformat(),
                                          "task_id": "t.1", "message": "m"}
    assert entry["last_delay_reset"] == {"at": NOW.isoformat(), "result": "ok"}
    assert {"state", "detail", "registry", "last_reconcile", "last_error",
            "deployment_id"} <= set(entry)
    index.forget(app)
    index.set_status(app, AppStatus(state="converged", registry="r"))
    entry = book.snapshot({}, NOW)["apps"][app]
    assert (entry["last_pull_failure"], entry["last_delay_reset"]) == (None, None)


def book_of(states: dict[str, str]) -> StatusBook:
    index = AppIndex(now=lambda: NOW)
    for app_id, state in states.items():
        index.set_status(AppId(app_id), AppStatus(state=state))  # type: ignore[arg-type]
    return StatusBook(index)


class TestPages:
    @given(st.sets(st.from_regex(r"/[a-z]{1,3}(/[a-z]{1,3})?", fullmatch=True), max_size=40),
           st.integers(min_value=1, max_value=7))
    def test_pages_list_every_app_once_in_order_of_id(self, ids, limit):
        """Following ``next`` from the first page lists every app exactly once, by id."""
        book = book_of(dict.fromkeys(ids, "converged"))
        seen: list[str] = []
        page = AppPage(limit=limit)
        for _ in range(len(ids) + 2):  # bounded: one page more than there can be
            doc = book.snapshot({}, NOW, page)
            assert len(doc["apps"]) <= limit
            seen += doc["apps"]
            if doc["page"]["next"] is None:
                break
            page = AppPage(limit=limit, after=doc["page"]["next"])
        assert seen == sorted(ids)
        assert doc["page"]["total"] == len(ids)

    def test_a_page_costs_the_page_not_the_book(self):
        """A page of 500 holds 500 apps whatever the book's size, and the default is 500."""
        book = book_of({f"/a/{i:05d}": "converged" for i in range(5000)})
        doc = book.snapshot({}, NOW)
        assert len(doc["apps"]) == DEFAULT_PAGE == doc["page"]["limit"]
        assert doc["page"]["next"] == f"/a/{DEFAULT_PAGE - 1:05d}"
        assert doc["counts"] == {"converged": 5000}

    def test_the_first_page_at_any_cursor_value(self):
        """``after`` need not name an app: the page starts after where it would sort."""
        book = book_of({"/a": "converged", "/c": "converged"})
        assert list(book.snapshot({}, NOW, AppPage(after="/b"))["apps"]) == ["/c"]
        assert list(book.snapshot({}, NOW, AppPage(after="/z"))["apps"]) == []


class TestProblems:
    def test_apps_in_trouble_come_worst_first_and_unknown_states_after_known_ones(self):
        book = book_of({"/a": "converged", "/b": "locked", "/c": "failed", "/d": "mystery",
                        "/e": "failed", "/f": "pending", "/g": "conflict"})
        doc = book.snapshot({}, NOW)
        assert [(a["app_id"], a["state"]) for a in doc["problems"]["apps"]] == [
            ("/c", "failed"), ("/e", "failed"), ("/g", "conflict"), ("/b", "locked"),
            ("/d", "mystery")]
        assert doc["problems"]["total"] == 5

    def test_problems_are_capped_and_all_counted(self):
        book = book_of({f"/x/{i:04d}": "failed" for i in range(3 * PROBLEMS_SHOWN)})
        doc = book.snapshot({}, NOW)
        assert len(doc["problems"]["apps"]) == PROBLEMS_SHOWN
        assert doc["problems"]["total"] == 3 * PROBLEMS_SHOWN

    def test_a_fixed_app_leaves_the_problems_at_once(self):
        """What a page shows of an app is read from the book, never from the order's copy."""
        book = book_of({"/a": "failed"})
        book.snapshot({}, NOW)
        book.index.set_status(AppId("/a"), AppStatus(state="converged"))
        doc = book.snapshot({}, NOW)
        assert doc["problems"] == {"total": 0, "apps": []}
        assert doc["apps"]["/a"]["state"] == "converged"


class TestAppOrder:
    def test_rebuilt_on_a_change_but_not_more_often_than_its_minimum_age(self):
        clock = FakeClock(0.0)
        order = AppOrder(min_age=0.25, max_age=1.0, clock=clock)
        apps = {AppId("/a"): AppStatus(state="converged")}
        order.update(apps, 0)
        apps[AppId("/b")] = AppStatus(state="failed")
        clock.now = 0.1
        order.update(apps, 1)
        assert order.ids == ["/a"]  # too soon
        clock.now = 0.3
        order.update(apps, 1)
        assert (order.ids, order.problems) == (["/a", "/b"], ["/b"])

    def test_a_swap_that_keeps_the_sizes_shows_once_the_order_is_old(self):
        clock = FakeClock(0.0)
        order = AppOrder(min_age=0.25, max_age=1.0, clock=clock)
        order.update({AppId("/a"): AppStatus(state="converged")}, 0)
        swapped = {AppId("/b"): AppStatus(state="converged")}
        clock.now = 0.5
        order.update(swapped, 0)
        assert order.ids == ["/a"]  # same size, not yet old
        clock.now = 1.0
        order.update(swapped, 0)
        assert order.ids == ["/b"]


class TestAppPageQuery:
    def test_defaults_and_values(self):
        assert AppPage.parse({}) == AppPage(limit=DEFAULT_PAGE, after=None)
        assert AppPage.parse({"limit": "7", "after": "/a/b"}) == AppPage(limit=7, after="/a/b")
        assert AppPage.parse({"after": ""}) == AppPage()

    @pytest.mark.parametrize("query", [
        {"limit": "0"}, {"limit": "-1"}, {"limit": str(MAX_PAGE + 1)}, {"limit": "1e3"},
        {"limit": "²"}, {"limit": " 5"}, {"after": "a/b"}, {"after": "/" + "a" * 1024},
        {"after": "/a\nb"}])
    def test_bad_values_are_refused_with_a_reason(self, query):
        with pytest.raises(ValueError, match=r"limit must|after must"):
            AppPage.parse(query)


class TestRegistryAndTexts:
    def test_the_bundle_is_named_by_a_keyed_fingerprint_never_by_its_hash(self):
        digest = hashlib.sha256(b"bundle").hexdigest()
        manifest = BundleManifest(registry="r", sha256=digest, format="config.json",
                                  created_at=NOW, refresh_at=NOW, expires_at=None,
                                  leader_epoch=3)
        entry = StatusBook(AppIndex()).snapshot({"r": RegistryState(manifest=manifest)}, NOW)[
            "registries"]["r"]
        assert "sha256" not in entry
        assert entry["fingerprint"] == fingerprint(digest)
        assert entry["fingerprint"] not in digest
        assert fingerprint(digest, key=b"another key") != entry["fingerprint"]
        assert (entry["created_at"], entry["leader_epoch"]) == (NOW.isoformat(), 3)

    def test_texts_shown_go_through_the_cut(self):
        """Errors, reasons, login details and pull failure messages are cut; ids are not."""
        index = AppIndex(now=lambda: NOW)
        book = StatusBook(index)
        app = AppId("/secret/app")
        index.set_status(app, AppStatus(state="converged", detail="secret in detail"))
        index.note_pull_failure(app, PullFailureNote(reason="auth", at=NOW, task_id=None,
                                                     message="secret in message"))
        index.fail(app, "secret in error")
        state = RegistryState(failures=1, last_error="secret in refresh", damage="secret dmg",
                              login=LoginCheck(result="rejected", detail="secret in login",
                                               at=NOW, sha256="ab" * 32))
        doc = book.snapshot({"r": state}, NOW, cut=lambda text: text.replace("secret", "***"))
        text = json.dumps(doc)
        assert "secret in" not in text
        assert "secret dmg" not in text
        assert "/secret/app" in text
