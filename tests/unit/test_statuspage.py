"""The status page: what people see, escaped, self-contained, problems first and in words."""

from __future__ import annotations

import base64
import hashlib
import re
from html import unescape
from typing import Any

from controller.statusbook import PROBLEM_STATES
from controller.statuspage import _STATE_WORDS, STYLE_SOURCE, render_page

REGISTRY_OK = {"fingerprint": "0123456789abcdef", "created_at": "2026-12-01T09:00:00+00:00",
               "age_seconds": 3725.0, "expires_at": None,
               "refresh_at": "2026-12-01T12:00:00+00:00", "failures": 0, "last_error": None,
               "damage": None}


def document(**changes: Any) -> dict[str, Any]:
    """A leader's ``/status`` where all is well, with ``changes``."""
    doc: dict[str, Any] = {
        "role": "leader", "leader": True,
        "ready": {"synced": True, "marathon": True, "events": True},
        "event_stream": {"connected": True},
        "queue": {"depth": 2, "processing": 1},
        "dry_run": False,
        "generated_at": "2026-12-01T10:00:05+00:00",
        "registries": {"registry.example.com": REGISTRY_OK},
        "counts": {"converged": 1},
        "problems": {"total": 0, "apps": []},
        "apps": {"/a/web": {"state": "converged", "registry": "registry.example.com",
                            "detail": "add", "last_error": None}},
        "page": {"limit": 500, "after": None, "next": None, "total": 1},
        "recent": [{"at": "2026-12-01T10:00:00+00:00", "kind": "write", "subject": "/a/web",
                    "detail": "add the bundle entry (deployment d-1)"}],
    }
    return doc | changes


def headline(page: str) -> tuple[str, str]:
    found = re.search(r'<p class="headline (\w+)">([^<]*)</p>', page)
    assert found is not None
    return found.group(1), found.group(2)


def problems(page: str) -> list[str]:
    """The items of the Problems list, as text."""
    section = page.split('<h2 id="problems">', 1)[1].split("</section>", 1)[0]
    return [unescape(re.sub(r"<[^>]+>", "", item))
            for item in re.findall(r"<li>(.*?)</li>", section)]


class TestContent:
    def test_page_shows_the_replica_bundles_apps_and_recent_writes(self):
        page = render_page(document())
        for words in ("leader", "2 waiting, 1 in work", "registry.example.com",
                      "0123456789abcdef", "2026-12-01 09:00:00 UTC", "1h 2m", "never expires",
                      "1 converged", "/a/web", "add the bundle entry (deployment d-1)",
                      "Made at 2026-12-01 10:00:05 UTC"):
            assert words in page, words

    def test_every_value_is_escaped(self):
        doc = document(apps={"/a/<script>alert(1)</script>": {
            "state": "failed", "registry": None, "detail": "bad image", "last_error": "x & y"}},
            counts={"failed": 1})
        page = render_page(doc)
        assert "<script" not in page
        assert "&lt;script&gt;" in page
        assert "x &amp; y" in page

    def test_empty_document_renders(self):
        assert "No registry is configured." in render_page({})

    def test_last_pull_failure_and_delay_reset_are_shown_escaped(self):
        page = render_page(document(apps={"/a/web": {
            "state": "converged", "registry": "registry.example.com", "detail": "add",
            "last_error": None,
            "last_pull_failure": {"reason": "auth", "at": "2026-12-01T06:00:01+00:00",
                                  "task_id": "a_web.1", "message": "denied: <b>no</b>"},
            "last_delay_reset": {"at": "2026-12-01T06:00:05+00:00", "result": "ok"}}}))
        assert ("auth at 2026-12-01 06:00:01 UTC, task a_web.1: denied: &lt;b&gt;no&lt;/b&gt;"
                in page)
        assert "ok at 2026-12-01 06:00:05 UTC" in page
        assert "<b>no</b>" not in page


class TestSelfContainedAndAccessible:
    def test_no_external_asset_no_script_no_timed_refresh(self):
        """It must work through a bare tunnel, and nothing changes under the reader (WCAG
        2.2.1): no meta refresh, no script; a reload link instead."""
        page = render_page(document())
        assert "http-equiv" not in page
        assert "<script" not in page
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
        assert '<a href="">reload</a>' in page

    def test_landmarks_headings_and_viewport(self):
        page = render_page(document())
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
        for tag in ("<header>", "<main>", "<footer>", '<nav aria-label="Sections">', "<h1>"):
            assert page.count(tag) == 1, tag
        assert re.findall(r'<h2 id="(\w+)">', page) == [
            "problems", "replica", "registries", "apps", "recent"]

    def test_tables_scroll_in_their_own_focusable_region(self):
        """At 375 px a wide table scrolls inside its region, which keyboards can reach."""
        page = render_page(document())
        tables = page.count("<table>")
        assert tables == page.count('<div class="scroll" role="region" aria-label=') > 0
        assert page.count('tabindex="0"') == tables

    def test_the_style_is_the_one_the_policy_allows(self):
        """The CSP allows the inline style by its hash: the two must not drift apart."""
        style = re.search(r"<style>(.*?)</style>", render_page(document()), re.S)
        assert style is not None
        digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
        assert f"'sha256-{digest}'" == STYLE_SOURCE


class TestProblems:
    def test_all_well_is_green_and_says_so(self):
        page = render_page(document())
        assert headline(page) == ("ok", "All good: nothing needs attention.")
        assert "Nothing needs attention." in page
        assert "Problem</strong>" not in page

    def test_each_problem_is_named_in_words_and_the_headline_is_not_green(self):
        """Rejected credentials, a failing refresh, apps in trouble and a disconnected stream
        are each a problem in words, not only in colour."""
        doc = document(
            event_stream={"connected": False},
            registries={
                "a.example.com": {**REGISTRY_OK, "credentials_rejected": True, "failures": 3},
                "b.example.com": {**REGISTRY_OK, "failures": 2, "last_error": "timed out"},
                "c.example.com": {**REGISTRY_OK, "fingerprint": None},
            },
            counts={"converged": 1, "failed": 2, "locked": 1},
            problems={"total": 3, "apps": [
                {"app_id": "/a/x", "state": "failed", "last_error": "boom"},
                {"app_id": "/a/y", "state": "failed", "last_error": "boom"},
                {"app_id": "/a/z", "state": "locked"}]})
        page = render_page(doc)
        assert headline(page) == ("bad", "Needs attention: 6 problems.")
        assert problems(page) == [
            "Problem: The Marathon event stream is disconnected: changes are seen only at the "
            "next relist.",
            "Problem: Registry a.example.com: credentials rejected: the registry refuses the "
            "source's credential; the last good bundle stays.",
            "Problem: Registry b.example.com: refresh failing (2x): timed out.",
            "Problem: Registry c.example.com: no bundle published yet.",
            "Problem: 2 apps failed: the controller could not give them their bundle entry.",
            "Problem: 1 app locked: waiting for a deployment to end.",
        ]
        assert "failing (3x)" not in page  # a rejection is named as such
        assert page.count("<td><strong class=\"bad\">Problem</strong>: failed</td>") == 2
        assert "Apps that need attention (all 3)" in page

    def test_an_unknown_state_renders_as_a_problem_after_the_known_ones(self):
        """A state added after this page was written is shown, named as it is, after the
        known problems and before the settled states."""
        doc = document(counts={"converged": 4, "waiting_for_godot": 1, "stuck": 2},
                       problems={"total": 3, "apps": []})
        page = render_page(doc)
        assert "2 stuck, 1 waiting_for_godot, 4 converged" in page
        assert problems(page)[-2:] == [
            "Problem: 2 apps stuck: their change has not gone through.",
            "Problem: 1 app in state waiting_for_godot."]
        assert headline(page)[0] == "bad"

    def test_a_locked_or_stuck_app_says_since_when(self):
        page = render_page(document(counts={"stuck": 1}, problems={"total": 1, "apps": [
            {"app_id": "/a/x", "state": "stuck", "since": "2026-12-01T09:30:00+00:00"}]}))
        assert "Problem</strong>: stuck since 2026-12-01 09:30:00 UTC</td>" in page

    def test_every_known_problem_state_has_its_words(self):
        assert set(_STATE_WORDS) == set(PROBLEM_STATES)

    def test_the_first_sync_is_a_note_not_a_problem(self):
        page = render_page(document(ready={"synced": False, "marathon": True, "events": True}))
        assert headline(page) == ("warn", "Starting: The first full sync with Marathon is not "
                                          "done yet.")

    def test_a_dry_run_without_bundles_is_not_a_problem(self):
        page = render_page(document(dry_run=True, registries={
            "r.example.com": {**REGISTRY_OK, "fingerprint": None}}))
        assert headline(page)[0] == "ok"
        assert "dry run: nothing is published" in page


class TestStandby:
    STANDBY = {"role": "standby", "leader": False, "ready": {"standby": True},
               "event_stream": {"connected": False}, "queue": None, "dry_run": False,
               "registries": {"registry.example.com": {**REGISTRY_OK, "fingerprint": None}},
               "counts": {}, "problems": {"total": 0, "apps": []}, "apps": {},
               "page": {"limit": 500, "after": None, "next": None, "total": 0}, "recent": []}

    def test_a_standby_says_so_and_does_not_look_broken(self):
        page = render_page(self.STANDBY)
        tone, words = headline(page)
        assert tone == "standby"
        assert words.startswith("Standby: this replica waits to take over")
        for broken in ("disconnected", "no bundle published", "Problem</strong>"):
            assert broken not in page, broken
        assert "not watched (the leader watches Marathon)" in page

    def test_the_leader_is_named_when_known(self):
        page = render_page(self.STANDBY | {"leader_identity": "controller-1 (pid 7)"})
        assert "The leader is controller-1 (pid 7)." in headline(page)[1]

    def test_a_standby_that_cannot_take_over_needs_attention(self):
        page = render_page(self.STANDBY | {"ready": {"standby": False}})
        assert headline(page)[0] == "bad"
        assert problems(page) == [
            "Problem: ZooKeeper does not answer: this replica could not take over."]


def test_a_replica_starting_or_stopping_says_so():
    page = render_page(TestStandby.STANDBY | {"role": "inactive", "ready": {"standby": False}})
    assert headline(page) == ("warn", "Not working now: this replica is starting or stopping.")
    assert problems(page) == []


class TestPages:
    def test_next_and_first_page_links_carry_the_cursor(self):
        doc = document(page={"limit": 2, "after": "/a/b c", "next": "/a/x&y", "total": 9})
        page = render_page(doc)
        assert '<a href="?limit=2">First page</a>' in page
        assert '<a href="?after=%2Fa%2Fx%26y&amp;limit=2" rel="next">Next page</a>' in page
        assert "1 app after /a/b c, of 9, at most 2 a page." in page

    def test_the_last_page_has_no_next_link(self):
        assert "Next page" not in render_page(document())
