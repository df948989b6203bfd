"""Registry logins in /status and on the status page: the last one, and "credentials rejected"."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.appindex import AppIndex
from controller.bundles import LoginCheck, RegistryState
from controller.statusbook import StatusBook
from controller.statuspage import render_page

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
REG = "registry.example.com"


def snapshot(state: RegistryState) -> dict:
    return StatusBook(AppIndex()).snapshot({REG: state}, NOW)["registries"][REG]


class TestStatusDocument:
    def test_login_and_rejection_are_reported(self):
        """The last login's result, time and detail, and the rejection flag, are in /status."""
        state = RegistryState(verify="best_effort", credentials_rejected=True, failures=2,
                              login=LoginCheck(result="rejected", at=NOW, sha256="ab" * 32,
                                               detail="the registry refused the basic auth (401)"))
        doc = snapshot(state)
        assert doc["credentials_rejected"] is True
        assert doc["verify"] == "best_effort"
        assert doc["login"] == {"result": "rejected", "at": NOW.isoformat(),
                                "detail": "the registry refused the basic auth (401)",
                                "next_attempt": None}

    def test_the_next_login_the_gate_allows_is_shown_until_it_passes(self):
        """While a refusal holds the same credential back, /status says until when."""
        later = NOW.replace(minute=5)
        state = RegistryState(verify="required", credentials_rejected=True, next_login=later,
                              login=LoginCheck(result="rejected", at=NOW, sha256="ab" * 32,
                                               detail="refused"))
        assert snapshot(state)["login"]["next_attempt"] == later.isoformat()
        passed = StatusBook(AppIndex()).snapshot({REG: state}, later)["registries"][REG]
        assert passed["login"]["next_attempt"] is None

    def test_existing_fields_are_kept(self):
        """The fields /status had before logins are all still there (the bundle's hash became a
        keyed fingerprint: a hash of the bundle would confirm guessed passwords)."""
        assert {"fingerprint", "format", "created_at", "age_seconds", "expires_at", "refresh_at",
                "failures", "last_error", "damage", "repairs"} <= snapshot(RegistryState()).keys()

    def test_no_login_yet_is_null(self):
        """Before the first login (or with verify: off) there is no login to report."""
        doc = snapshot(RegistryState())
        assert (doc["login"], doc["credentials_rejected"], doc["verify"]) == (None, False, "off")


class TestStatusPage:
    def test_rejection_is_named_first(self):
        """A rejected credential reads as such, before the failure count, with the login."""
        state = RegistryState(verify="required", credentials_rejected=True, failures=3,
                              last_error="registry.example.com: the registry rejected it",
                              login=LoginCheck(result="rejected", at=NOW, sha256="ab" * 32,
                                               detail="the token service refused it (401)"))
        page = render_page(StatusBook(AppIndex()).snapshot({REG: state}, NOW))
        assert "credentials rejected" in page
        assert "failing (3x)" not in page
        assert "rejected (2026-12-01 10:00:00 UTC): the token service refused it (401)" in page

    def test_login_column_says_off_or_not_yet(self):
        """Without a login the column says whether one is configured."""
        off = render_page(StatusBook(AppIndex()).snapshot({REG: RegistryState()}, NOW))
        waiting = render_page(StatusBook(AppIndex()).snapshot(
            {REG: RegistryState(verify="required")}, NOW))
        assert "<td>off</td>" in off
        assert "<td>not tried yet</td>" in waiting
