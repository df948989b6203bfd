"""The status page: what people see, escaped, self-contained."""

from __future__ import annotations

import re

from controller.statuspage import render_page

SNAPSHOT = {
    "leader": True,
    "ready": {"synced": True, "marathon": True, "events": False},
    "event_stream": {"connected": False},
    "queue": {"depth": 2, "processing": 1},
    "dry_run": False,
    "registries": {
        "registry.example.com": {"sha256": "ab" * 32, "age_seconds": 3725.0,
                                 "expires_at": None, "refresh_at": "2026-12-01T12:00:00+00:00",
                                 "failures": 0, "last_error": None, "damage": None},
        "ecr.example.com": {"sha256": None, "age_seconds": None, "expires_at": None,
                            "refresh_at": None, "failures": 3, "last_error": "denied",
                            "damage": None},
    },
    "apps": {
        "/a/<script>alert(1)</script>": {"state": "failed", "registry": None,
                                         "detail": "bad image", "last_error": "x & y"},
        "/a/web": {"state": "converged", "registry": "registry.example.com",
                   "detail": "add", "last_error": None},
    },
    "counts": {"failed": 1, "converged": 1},
    "recent": [{"at": "2026-12-01T10:00:00+00:00", "kind": "write", "subject": "/a/web",
                "detail": "add the bundle entry (deployment d-1)"}],
}


def test_page_shows_leadership_bundles_apps_and_recent_writes():
    page = render_page(SNAPSHOT)
    for words in ("leader", "no (events)", "disconnected", "2 waiting, 1 in work",
                  "registry.example.com", "abababababab", "1h 2m", "never expires",
                  "failing (3x): denied", "1 failed, 1 converged", "/a/web",
                  "add the bundle entry (deployment d-1)"):
        assert words in page, words


def test_every_value_is_escaped():
    page = render_page(SNAPSHOT)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "x &amp; y" in page


def test_page_is_self_contained_and_refreshes_itself():
    """No script, stylesheet or image from anywhere: it must work through a bare tunnel."""
    page = render_page(SNAPSHOT)
    assert '<meta http-equiv="refresh"' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page


def test_failed_apps_come_first():
    page = render_page(SNAPSHOT)
    assert page.index("&lt;script&gt;") < page.index("/a/web</td>")


def test_empty_status_renders():
    assert "No registry is configured." in render_page({})


def test_last_pull_failure_and_delay_reset_are_shown_escaped():
    snapshot = {**SNAPSHOT, "apps": {"/a/web": {
        "state": "converged", "registry": "registry.example.com", "detail": "add",
        "last_error": None,
        "last_pull_failure": {"reason": "auth", "at": "2026-12-01T06:00:01+00:00",
                              "task_id": "a_web.1", "message": "denied: <b>no</b>"},
        "last_delay_reset": {"at": "2026-12-01T06:00:05+00:00", "result": "ok"}}}}
    page = render_page(snapshot)
    assert ("auth at 2026-12-01 06:00:01 UTC, task a_web.1: denied: &lt;b&gt;no&lt;/b&gt;"
            in page)
    assert "ok at 2026-12-01 06:00:05 UTC" in page
    assert "<b>no</b>" not in page
