"""The triage of listed apps (``controller.applist.Triage``) agrees with the planner: it settles
exactly the apps whose plan needs nothing (not opted in without an entry of ours; opted in with
its entry in place and no other controller's), with the planner's own decision, and leaves every
other app to the planner."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from tests.unit.listed import (
    LABEL,
    LOCATIONS,
    OLD_HOME,
    PLAIN,
    REG,
    SIGNED_URI,
    THEIRS,
    cases,
    planner_says,
    triage_says,
)


@settings(max_examples=200)  # make fuzz runs 20,000 (tests/fuzz/test_fuzz_plan.py)
@given(case=cases)
def test_the_triage_settles_what_the_planner_finds_needs_nothing(case):
    """For any app: the triage settles it, with the planner's decision and location, exactly
    when the planner finds it needs nothing; the planner has the last word on every other."""
    app, where = case
    locations = LOCATIONS[where]
    planned = planner_says(app, locations)
    triaged = triage_says(app, locations)
    if isinstance(planned, tuple):
        assert triaged == planned
    else:
        assert triaged is None, planned


def docker(fetch: Any = None, *, label: Any = "true", image: str = f"{REG}/team/web:1",
           **more: Any) -> dict[str, Any]:
    app: dict[str, Any] = {"id": "/team-a/web", "labels": {LABEL: label, "team": "a"},
                           "container": {"type": "DOCKER", "docker": {"image": image}},
                           "cmd": "sleep 1", **more}
    if fetch is not None:
        app["fetch"] = fetch
    return app


OURS = {"uri": PLAIN.uri, "extract": True, "cache": False}
USERS = {"uri": "https://files.example.com/app.tgz"}


@pytest.mark.parametrize(("app", "settled"), [
    (docker([USERS, OURS]), True),
    (docker([OURS], label=" TRUE"), True),
    (docker(uris=[PLAIN.uri]), True),  # legacy uris only: a Marathon before fetch
    (docker([USERS], label="false"), True),
    (docker(label=None), True),
    ({"id": "/x", "container": "not even an object"}, True),
    (docker([OURS], label="false"), False),  # our entry is removed
    (docker([OURS], label="yes"), False),  # reported: label_unrecognised
    (docker([USERS]), False),  # the entry is added
    (docker([{**OURS, "cache": True}]), False),  # replaced
    (docker([OURS, OURS]), False),
    (docker([{"uri": f"{OLD_HOME}/pullsecret-{REG.replace(':', '_')}.tar.gz"}]), False),
    (docker([OURS, {"uri": THEIRS[0]}]), False),  # a conflict, reported
    (docker([OURS], image="nginx:1"), True),  # docker.io, which /team-a/* may have
    ({**docker([OURS], image="nginx:1"), "id": "/team-b/api"}, False),  # not allowed: reported
    (docker([OURS], image="other.example.com/a:1"), False),  # unconfigured: reported
    (docker([OURS], image="Bad/Upper:1"), False),  # invalid image: reported
    ({**docker([OURS]), "container": {"type": "MESOS", "docker": {"image": "x"}}}, False),
    (docker([{"uri": 5}], label="false"), False),  # malformed entry: reported
], ids=lambda v: "" if isinstance(v, bool) else None)
def test_the_usual_apps(app, settled):
    """The two kinds the triage settles, and the look-alikes it leaves to the planner."""
    triaged, planned = triage_says(app, LOCATIONS["plain"]), planner_says(app, LOCATIONS["plain"])
    assert (triaged is not None) is settled
    assert triaged == planned if settled else not isinstance(planned, tuple)


def test_another_controllers_entry_where_the_store_accepts_it_is_not_ours():
    """The store accepts any URL under its prefix, but the name is another controller's: a
    conflict, which the planner reports."""
    blue = {"uri": THEIRS[2], "cache": False, "destPath": "docker.tar.gz"}
    assert triage_says(docker([blue]), LOCATIONS["signed"]) is None


def test_a_presigned_entry_still_good_is_in_place():
    """A presigned URL the store still accepts (another signature) is the entry in place."""
    signed = SIGNED_URI.replace("Signature=1", "Signature=2")
    app = docker([{"uri": signed, "extract": True, "cache": False, "destPath": "docker.tar.gz"}])
    found = triage_says(app, LOCATIONS["signed"])
    assert found is not None
    assert found == planner_says(app, LOCATIONS["signed"])
