"""Fuzzing the planner with app JSON and ``/v2/apps`` bodies as a hostile Marathon could send.

The contract: ``eligibility``, ``plan_app`` and ``update_body`` either plan an app or raise
``InvalidAppError`` (the engine logs it and moves on); nothing else escapes, whatever the
types, nulls, missing fields or sizes; and a body to write is JSON.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import InvalidAppError
from controller.model import BundleLocation
from controller.plan import (
    Ownership,
    RegistryRule,
    bundle_name,
    eligibility,
    location_of,
    plan_app,
    update_body,
)
from tests.fuzz.budget import count, fuzz_settings
from tests.fuzz.grammar import garbage, references
from tests.unit.listed import LOCATIONS as LISTED_LOCATIONS
from tests.unit.listed import cases as listed_cases
from tests.unit.listed import planner_says, triage_says

LABEL = "pullsecret.enabled"
REG = "registry.example.com:5000"
RULES = [RegistryRule(registry=REG), RegistryRule(registry="docker.io", apps=("/team-a/*",))]
LOCATIONS = {
    "plain": BundleLocation(uri=f"file:///mnt/pullsecrets/{bundle_name(REG)}"),
    "presigned": BundleLocation(uri=f"https://b.s3.amazonaws.com/{bundle_name(REG)}?X-Amz-S=1"),
}

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=10)
"""Any JSON value: what a field holds when it has the wrong type."""


@st.composite
def either(draw: st.DrawFn, good: st.SearchStrategy[Any]) -> Any:
    """Mostly the right shape (3 times in 4), else any JSON value."""
    return draw(json_values) if draw(st.integers(0, 3)) == 0 else draw(good)


class ManyLabels(dict[str, str]):
    """A huge label map that a failure report shows by its size (its repr would be 200 kB)."""

    def __repr__(self) -> str:
        return f"ManyLabels({len(self)} labels, {LABEL}={self.get(LABEL)!r})"


label_values = st.sampled_from(["true", "TRUE ", "false", "", "yes"]) | json_values
labels = either(st.one_of(
    st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=5).flatmap(
        lambda d: st.builds(lambda v: {**d, LABEL: v}, label_values)),
    st.integers(0, 20_000).map(lambda n: ManyLabels(
        {**{f"k{i}": "v" * (i % 7) for i in range(n)}, LABEL: "true"})),
))
"""Opted in or not, wrong types, and maps of up to 20,000 labels."""

images = either(st.one_of(
    st.builds(lambda g: f"{REG}/{g.expected.path}", references()),
    references().map(lambda g: g.text),
    garbage,
))
dockers = either(st.fixed_dictionaries({}, optional={"image": images,
                                                     "forcePullImage": json_values}))
containers = st.one_of(st.none(), either(st.fixed_dictionaries({}, optional={
    "type": either(st.sampled_from(["DOCKER", "MESOS", "docker", ""])),
    "docker": dockers,
})))
managed_uris = st.sampled_from([*(loc.uri for loc in LOCATIONS.values()),
                                f"file:///old/{bundle_name('other:1')}",
                                "https://x/pullsecret-a.tar.gz?sig=1"])
uris = managed_uris | st.text(max_size=30) | st.just("https://files.example.com/app.tgz")
fetch_entries = either(st.fixed_dictionaries(
    {"uri": either(uris)},
    optional={"extract": either(st.booleans()), "cache": either(st.booleans()),
              "executable": either(st.booleans()), "destPath": either(st.text(max_size=12))}))
fetch_lists = either(st.lists(st.one_of(fetch_entries, uris), max_size=5))
app_ids = either(st.sampled_from(["/team-a/web", "/team-b/api", "/x"]) | st.text(max_size=10))
apps = st.fixed_dictionaries({}, optional={
    "id": app_ids,
    "labels": labels,
    "container": containers,
    "fetch": fetch_lists,
    "uris": either(st.lists(uris, max_size=4)),
    "executorResources": json_values,
    "resourceLimits": json_values,
    "version": json_values,
})
"""App definitions with every field optional and any of them wrongly typed."""
bodies = st.fixed_dictionaries({"apps": either(st.lists(either(apps), max_size=6))})


def plan_one(app: Any, location: BundleLocation) -> None:
    """What the reconciler does with one app from Marathon, short of the write itself."""
    try:
        decision = eligibility(app, label=LABEL, rules=RULES)
        ours = Ownership(owner="default", homes=(location_of(location.uri),))
        plan = plan_app(app, decision, location if decision.registry else None, ownership=ours)
        if plan.changed:
            json.dumps(update_body(app, plan), allow_nan=True)
    except InvalidAppError:
        pass


OPTED_IN = {"id": "/x", "labels": {LABEL: "true"}}
KNOWN_CRASHES = {
    "no id": {},
    "labels not an object": {"id": "/x", "labels": 1.0},
    "label value null": {"id": "/x", "labels": {LABEL: None}},
    "container not an object": {**OPTED_IN, "container": True},
    "docker not an object": {**OPTED_IN, "container": {"docker": True}},
    "image not a string": {**OPTED_IN, "container": {"docker": {"image": ["x"]}}},
    "id not a string (allow-list)": {**OPTED_IN, "id": ["x"],
                                     "container": {"docker": {"image": "ubuntu"}}},
    "fetch not a list": {"id": "/x", "fetch": 1},
    "fetch item null": {"id": "/x", "fetch": [None]},
    "fetch item without uri": {"id": "/x", "fetch": [{}]},
    "fetch uri null": {"id": "/x", "fetch": [{"uri": None}]},
    "uris item not a string": {"id": "/x", "uris": [{}]},
}
"""Minimal inputs these targets found on which the planner once raised something else than
``InvalidAppError``: kept as regressions."""



class TestPlanner:
    @fuzz_settings(quick=200, full=15_000)
    @given(app=apps, location=st.sampled_from(sorted(LOCATIONS)))
    def test_any_app_plans_or_raises_invalid_app_error(self, app: dict[str, Any],
                                                       location: str) -> None:
        """Any app definition is planned, or refused with ``InvalidAppError`` only."""
        count("plan: apps")
        plan_one(app, LOCATIONS[location])

    @fuzz_settings(quick=50, full=5_000)
    @given(body=bodies)
    def test_any_app_list_plans_or_raises_invalid_app_error(self, body: dict[str, Any]) -> None:
        """Every app of a ``/v2/apps`` body, read back from the wire, plans or is refused.

        An entry that is not a JSON object is no app: the client drops it before planning."""
        count("plan: /v2/apps bodies")
        wire = json.loads(json.dumps(body))
        for app in wire["apps"] if isinstance(wire["apps"], list) else [wire["apps"]]:
            if isinstance(app, dict):
                plan_one(app, LOCATIONS["plain"])

    @pytest.mark.parametrize("app", KNOWN_CRASHES.values(), ids=KNOWN_CRASHES.keys())
    def test_known_crash_plans_or_raises_invalid_app_error(self, app: Any) -> None:
        """Each input the targets found plans, or raises ``InvalidAppError`` only."""
        plan_one(app, LOCATIONS["plain"])


class TestTriage:
    @fuzz_settings(quick=200, full=20_000)
    @given(case=listed_cases)
    def test_the_triage_settles_what_the_planner_finds_needs_nothing(
            self, case: tuple[dict[str, Any], str]) -> None:
        """The fast path of a relist (``controller.applist.Triage``) against the planner, as in
        ``tests/unit/test_triage.py``, with the fuzz budget: it settles an app, with the
        planner's decision and location, exactly when the planner finds it needs nothing."""
        count("plan: triage")
        app, where = case
        planned = planner_says(app, LISTED_LOCATIONS[where])
        triaged = triage_says(app, LISTED_LOCATIONS[where])
        if isinstance(planned, tuple):
            assert triaged == planned
        else:
            assert triaged is None, planned
