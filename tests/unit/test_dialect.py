"""The Marathon dialect: which method and which body a version takes (docs/marathon.md §1.3,
§1.4, §2.2, §3)."""

from __future__ import annotations

import pytest

from controller.dialect import RESENT_FIELDS, Dialect
from controller.model import RawApp

FETCH = {"uri": "https://example.com/a.tgz", "extract": True}


class TestVersions:
    @pytest.mark.parametrize(("version", "method", "params"), [
        ("1.3.14", "PUT", {"partialUpdate": "true"}),
        ("1.4.0-RC1", "PATCH", None),
        ("1.10.26", "PATCH", None),
    ], ids=["before-patch", "patch-from-1.4", "newest"])
    def test_write_method(self, version: str, method: str, params: dict | None) -> None:
        """PATCH from 1.4.0 on; before, a PUT that asks for a partial update."""
        dialect = Dialect.of(version)
        assert (dialect.write_method, dialect.write_params) == (method, params)

    @pytest.mark.parametrize(("version", "flags"), [
        ("0.14.0", (False, False, True, False, False)),
        ("1.3.7", (True, False, True, True, False)),
        ("1.4.13", (True, True, True, True, False)),
        ("1.5.0", (True, True, False, True, False)),
        ("1.7.236", (True, True, False, True, True)),
    ])
    def test_feature_table(self, version: str, flags: tuple[bool, ...]) -> None:
        """fetch 0.15, event filter 1.3.7, PATCH 1.4, uris hidden 1.5, resources dropped 1.7."""
        d = Dialect.of(version)
        assert (d.has_fetch, d.has_patch, d.shows_uris, d.filters_events,
                d.drops_omitted_resources) == flags

    def test_unknown_version_is_the_newest(self) -> None:
        """A forced method (no /v2/info read) behaves as the newest Marathon."""
        d = Dialect(write_method="PUT")
        assert (d.has_fetch, d.has_patch, d.shows_uris, d.drops_omitted_resources) == (
            True, True, False, True)
        assert d.write_params == {"partialUpdate": "true"}

    def test_without_patch_keeps_the_version(self) -> None:
        """A 405 to PATCH turns the writes to PUT and changes nothing else."""
        d = Dialect.of("1.10.26").without_patch()
        assert (d.write_method, d.version) == ("PUT", (1, 10, 26))


class TestFetchField:
    @pytest.mark.parametrize(("dialect", "app", "field"), [
        (Dialect(), {"id": "/a", "uris": ["https://x/y"]}, "uris"),
        (Dialect(), {"id": "/a", "uris": [], "fetch": []}, "fetch"),
        (Dialect(), {"id": "/a"}, "fetch"),
        (Dialect.of("1.4.13"), {"id": "/a", "uris": ["https://x/y"], "fetch": [FETCH]}, "fetch"),
        (Dialect.of("0.14.0"), {"id": "/a", "uris": ["https://x/y"]}, "uris"),
        (Dialect.of("1.10.0"), {"id": "/a", "uris": ["https://x/y"]}, "fetch"),
    ], ids=["unknown-uris-only", "unknown-both", "unknown-neither", "1.4-shows-both",
            "before-fetch", "known-has-fetch"])
    def test_field(self, dialect: Dialect, app: RawApp, field: str) -> None:
        """``fetch`` wherever it exists; ``uris`` only before it (or, version unknown, when the
        app has no ``fetch`` key)."""
        assert dialect.fetch_field(app) == field


class TestUpdateBody:
    def test_fetch_body_resends_what_a_partial_update_drops(self) -> None:
        """The list, plus executorResources/resourceLimits as the app has them; nothing else."""
        app: RawApp = {"id": "/a", "version": "v1", "uris": ["https://x/y"], "fetch": [FETCH],
                       "executorResources": {"cpus": 0.1}, "resourceLimits": {"mem": 64}}
        body = Dialect().update_body(app, "fetch", [FETCH])
        assert body == {"fetch": [FETCH], "executorResources": {"cpus": 0.1},
                        "resourceLimits": {"mem": 64}}
        assert set(body) - {"fetch"} == set(RESENT_FIELDS)

    def test_uris_body_carries_uris_only(self) -> None:
        """A Marathon from before ``fetch`` gets the URIs as plain strings."""
        body = Dialect.of("0.14.0").update_body({"id": "/a"}, "uris", ["https://x/y", FETCH])
        assert body == {"uris": ["https://x/y", FETCH["uri"]]}
