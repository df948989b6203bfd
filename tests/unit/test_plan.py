"""The pure planner: tables of cases, then properties."""

from __future__ import annotations

import copy
import re
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
    entry_owner,
    is_managed_uri,
    location_of,
    plan_app,
    update_body,
)
from tests.factories import LABEL, REGISTRY, docker_app

RULES = [RegistryRule(registry=REGISTRY), RegistryRule(registry="docker.io", apps=("/team-a/*",))]
HOME = "file:///mnt/pullsecrets"
PREVIOUS = "file:///old/place"
URI = f"{HOME}/{bundle_name(REGISTRY)}"
WANTED = {"uri": URI, "extract": True, "cache": False}
USER_ENTRY = {
    "uri": "https://example.com/app.tgz",
    "extract": True,
    "executable": False,
    "cache": True,
}


def app(**fields: Any) -> dict[str, Any]:
    """The table's base case, an opted-in app with no fetch entries; ``fields`` replace keys."""
    return {**docker_app("/team-a/web", f"{REGISTRY}/team-a/web:1", fetch=[]), **fields}


def run(a: dict[str, Any], location: BundleLocation | None = None):
    """Plan as the default controller publishing at ``HOME`` (or at ``location``'s home), that
    published at ``PREVIOUS`` before."""
    decision = eligibility(a, label=LABEL, rules=RULES)
    loc = location or BundleLocation(uri=URI)
    ours = Ownership(owner="default", homes=(location_of(loc.uri), PREVIOUS))
    return plan_app(a, decision, loc if decision.registry else None, ownership=ours)


class TestEligibility:
    @pytest.mark.parametrize(
        ("fields", "reason"),
        [
            ({"labels": {}}, "not_opted_in"),
            ({"labels": {LABEL: "false"}}, "not_opted_in"),
            ({"labels": {LABEL: "TRUE"}}, "eligible"),
            ({"labels": {LABEL: " yes "}}, "label_unrecognised"),
            ({"container": None}, "not_docker"),
            ({"container": {"type": "MESOS", "docker": {"image": f"{REGISTRY}/x"}}}, "ucr"),
            ({"container": {"docker": {"image": f"{REGISTRY}/x"}}}, "eligible"),
            (
                {"container": {"type": "DOCKER", "docker": {"image": "quay.io/coreos/etcd:3"}}},
                "unconfigured_registry",
            ),
            (
                {"container": {"type": "DOCKER", "docker": {"image": "nginx"}}, "id": "/team-b/x"},
                "not_allowed",
            ),
            (
                {
                    "container": {"type": "DOCKER", "docker": {"image": "docker.io/acme/x"}},
                    "id": "/team-b/x",
                },
                "not_allowed",
            ),
            (
                {
                    "container": {"type": "DOCKER", "docker": {"image": "index.docker.io/acme/x"}},
                    "id": "/team-a/deep/x",
                },
                "eligible",
            ),
            (
                {"container": {"type": "DOCKER",
                               "docker": {"image": "registry-1.docker.io/acme/x"}}},
                "eligible",
            ),
        ],
        ids=[
            "no-label",
            "label-false",
            "label-case",
            "label-yes",
            "no-container",
            "ucr",
            "type-default",
            "public-image",
            "hub-short-name-not-allowed",
            "not-allowed",
            "hub-alias-allowed",
            "registry-1-alias",
        ],
    )
    def test_reason(self, fields, reason):
        """Each app gets the documented reason."""
        assert eligibility(app(**fields), label=LABEL, rules=RULES).reason == reason

    def test_malformed_image_is_an_app_error(self):
        """A malformed image raises for that app only."""
        bad = app(container={"type": "DOCKER", "docker": {"image": "Registry:5000/UPPER"}})
        with pytest.raises(InvalidAppError, match=r"container\.docker\.image"):
            eligibility(bad, label=LABEL, rules=RULES)

    def test_without_registries_the_image_is_not_parsed(self):
        """With no registry configured (uninstall), every app gets none, whatever its image:
        its entries go by their owner, so a malformed image cannot hold the way out."""
        bad = app(container={"type": "DOCKER", "docker": {"image": "Registry:5000/UPPER"}},
                  fetch=[{"uri": URI, "extract": True, "cache": False}])
        decision = eligibility(bad, label=LABEL, rules=())
        assert (decision.registry, decision.reason, decision.detail) == (
            None, "unconfigured_registry", "no registry is configured")
        ours = Ownership(owner="default", homes=(HOME,))
        assert plan_app(bad, decision, None, ownership=ours).change == "remove"


class TestPlan:
    def test_missing_entry_is_appended(self):
        """An opted-in app without the bundle gets it after its own entries."""
        plan = run(app(fetch=[USER_ENTRY]))
        assert plan.change == "add"
        assert plan.desired == (USER_ENTRY, WANTED)

    def test_converged_app_is_unchanged(self):
        """An app with the right entry (as Marathon returns it) needs nothing."""
        have = {**WANTED, "executable": False}
        assert run(app(fetch=[USER_ENTRY, have])).change is None

    def test_previous_location_is_replaced_in_place(self):
        """An entry of ours at a listed previous location is replaced where it stood."""
        old = {"uri": f"{PREVIOUS}/{bundle_name(REGISTRY)}", "extract": True}
        plan = run(app(fetch=[old, USER_ENTRY]))
        assert plan.change == "replace"
        assert plan.desired == (WANTED, USER_ENTRY)
        assert plan.removed == (old["uri"],)

    def test_our_name_at_an_unlisted_location_is_a_conflict(self):
        """Our file name elsewhere is someone else's: the app is left alone, and the report
        says where and what to do."""
        elsewhere = {"uri": f"file:///mnt/other/{bundle_name(REGISTRY)}", "extract": True}
        plan = run(app(fetch=[elsewhere, USER_ENTRY]))
        assert plan.change is None
        (who,) = plan.conflict
        assert "file:///mnt/other" in who
        assert "storage.previous_locations" in who

    def test_a_look_alike_user_entry_on_an_app_not_opted_in_is_kept(self):
        """A user's own pullsecret-*.tar.gz elsewhere is never removed from an app that is not
        ours."""
        tools = {"uri": "https://cdn.example/tools/pullsecret-tools.tar.gz"}
        plan = run(app(fetch=[tools], labels={}))
        assert (plan.change, plan.desired, plan.conflict) == (None, (tools,), ())

    def test_wrong_flags_are_fixed(self):
        """The right URI with cache on is rewritten (the fetcher cache never refreshes)."""
        plan = run(app(fetch=[{**WANTED, "cache": True}]))
        assert plan.change == "replace"
        assert plan.desired == (WANTED,)

    def test_duplicates_collapse_to_one(self):
        """Two managed entries become one."""
        other = {"uri": f"{HOME}/{bundle_name('docker.io')}"}
        plan = run(app(fetch=[WANTED, USER_ENTRY, other]))
        assert plan.desired == (WANTED, USER_ENTRY)

    @pytest.mark.parametrize(
        "fields",
        [
            {"labels": {LABEL: "false"}},
            {"container": {"type": "DOCKER", "docker": {"image": "quay.io/coreos/etcd"}}},
            {"id": "/team-b/x", "container": {"type": "DOCKER", "docker": {"image": "acme/x"}}},
        ],
        ids=["opted-out", "public-image", "not-allowed"],
    )
    def test_entry_removed_when_no_longer_eligible(self, fields):
        """Opting out, a public image or a disallowed app removes only our entry."""
        plan = run(app(fetch=[USER_ENTRY, WANTED], **fields))
        assert plan.change == "remove"
        assert plan.desired == (USER_ENTRY,)

    def test_query_string_uri_gets_dest_path(self):
        """A URI with a query string needs destPath so Mesos extracts it."""
        signed = f"https://b.s3.amazonaws.com/{bundle_name(REGISTRY)}?X-Amz-Signature=abc"
        plan = run(app(), BundleLocation(uri=signed))
        assert plan.desired == (
            {"uri": signed, "extract": True, "cache": False, "destPath": "docker.tar.gz"},
        )

    def test_accepted_uri_is_kept(self):
        """A URI the location still accepts (a fresh presigned URL) is not rewritten."""
        old = f"https://b/{bundle_name(REGISTRY)}?sig=1"
        loc = BundleLocation(
            uri=f"https://b/{bundle_name(REGISTRY)}?sig=2", accepts=lambda u: u.endswith("sig=1")
        )
        have = {"uri": old, "extract": True, "cache": False, "destPath": "docker.tar.gz"}
        assert run(app(fetch=[have]), loc).change is None

    def test_old_marathon_with_uris_and_fetch_uses_fetch(self):
        """Marathon <= 1.4 returns both; fetch wins and uris is never written."""
        a = app(fetch=[USER_ENTRY], uris=[USER_ENTRY["uri"]])
        plan = run(a)
        body = update_body(a, plan)
        assert "uris" not in body
        assert body["fetch"] == [USER_ENTRY, WANTED]

    def test_legacy_uris_only(self):
        """An app from before fetch existed keeps using uris."""
        a = app(uris=["https://example.com/x.tgz"])
        del a["fetch"]
        plan = run(a)
        assert update_body(a, plan) == {"uris": ["https://example.com/x.tgz", URI]}

    def test_body_resends_executor_resources(self):
        """executorResources and resourceLimits survive the partial update."""
        a = app(
            executorResources={"cpus": 0.1},
            resourceLimits={"cpus": "unlimited"},
            version="2020-01-01T00:00:00Z",
            uris=[],
        )
        body = update_body(a, run(a))
        assert set(body) == {"fetch", "executorResources", "resourceLimits"}


class TestManagedNames:
    @pytest.mark.parametrize(
        ("uri", "managed"),
        [
            (URI, True),
            (f"https://bucket.s3.amazonaws.com/p/{bundle_name(REGISTRY)}?X-Amz-Expires=60", True),
            (f"s3a://bucket/p/{bundle_name('docker.io')}", True),
            ("file:///etc/docker.tar.gz", False),
            ("https://example.com/pullsecret-x.tar.gz.sig", False),
        ],
    )
    def test_recognised(self, uri, managed):
        """Only our naming scheme is managed, whatever the location."""
        assert is_managed_uri(uri) is managed


# -- properties -----------------------------------------------------------------------------

user_entries = st.builds(
    lambda name, extract, cache: {
        "uri": f"https://files.example.com/{name}.tgz",
        "extract": extract,
        "executable": False,
        "cache": cache,
    },
    st.text("abcdefghij", min_size=1, max_size=6),
    st.booleans(),
    st.booleans(),
)
managed_entries = st.sampled_from(
    [
        WANTED,
        {**WANTED, "cache": True},
        {"uri": f"{PREVIOUS}/{bundle_name(REGISTRY)}"},
        {"uri": f"file:///elsewhere/{bundle_name(REGISTRY)}"},
        {"uri": f"s3a://b/{bundle_name('docker.io')}", "extract": True},
    ]
)
apps = st.builds(
    lambda label, image, fetch: app(
        labels={LABEL: label} if label else {},
        container={"type": "DOCKER", "docker": {"image": image}},
        fetch=fetch,
    ),
    st.sampled_from(["true", "false", None]),
    st.sampled_from([f"{REGISTRY}/team-a/web:1", "nginx", "docker.io/acme/x", "quay.io/a/b"]),
    st.lists(st.one_of(user_entries, managed_entries), max_size=6),
)


@given(apps)
def test_planning_a_planned_app_changes_nothing(a):
    """Converged: applying the plan and planning again yields no change."""
    plan = run(a)
    applied = {**a, "fetch": list(plan.desired)}
    assert run(applied).change is None


@given(apps)
def test_user_entries_are_never_touched(a):
    """Entries the planner does not manage keep their flags and relative order."""
    plan = run(a)
    mine = [e for e in a["fetch"] if not is_managed_uri(e["uri"])]
    assert [e for e in plan.desired if not is_managed_uri(e["uri"])] == mine


@given(apps, st.randoms())
def test_decision_does_not_depend_on_entry_order(a, rnd):
    """Shuffling the fetch list does not change which bundle is wanted or its presence."""
    shuffled = copy.deepcopy(a)
    rnd.shuffle(shuffled["fetch"])
    first, second = run(a), run(shuffled)
    assert first.eligibility == second.eligibility
    managed = sorted(str(e) for e in first.desired if is_managed_uri(e["uri"]))
    assert managed == sorted(str(e) for e in second.desired if is_managed_uri(e["uri"]))
    assert sorted(map(str, first.desired)) == sorted(map(str, second.desired))


@given(apps)
def test_plan_does_not_mutate_its_input(a):
    """The planner is pure: the app it is given is left as it was."""
    before = copy.deepcopy(a)
    run(a)
    assert a == before


def run_as(owner: str, a: dict[str, Any], uri: str | None = None):
    decision = eligibility(a, label=LABEL, rules=RULES)
    location = BundleLocation(uri=uri or f"{HOME}/{bundle_name(REGISTRY, owner)}")
    return plan_app(a, decision, location if decision.registry else None,
                    ownership=Ownership(owner=owner, homes=(HOME,)))


class TestOwnership:
    """A controller changes only the entries that carry its name."""

    def test_named_bundles_carry_the_name_and_default_keeps_the_old_form(self):
        """The default controller's names are today's, so its entries stay owned on upgrade."""
        assert bundle_name(REGISTRY) == "pullsecret-registry.example.com_5000.tar.gz"
        assert (bundle_name(REGISTRY, "team-b")
                == "pullsecret_team-b_registry.example.com_5000.tar.gz")

    @pytest.mark.parametrize(
        ("uri", "owner"),
        [
            (f"file:///x/{bundle_name(REGISTRY)}", "default"),
            (f"s3a://b/p/{bundle_name(REGISTRY, 'team-b')}", "team-b"),
            (f"https://b/{bundle_name('docker.io', 'a1')}?sig=1", "a1"),
            ("file:///x/pullsecret_-bad.tar.gz", None),
            ("https://example.com/app.tgz", None),
            ("http://[::1", None),
        ],
        ids=["default", "named", "presigned", "malformed", "user", "not-a-uri"],
    )
    def test_entry_owner(self, uri, owner):
        """The owner is read from the file name alone, wherever the entry points."""
        assert entry_owner(uri) == owner

    def test_another_controllers_entry_is_a_conflict_and_is_left_alone(self):
        """Both would manage the app: report it, write nothing (never fight)."""
        theirs = {"uri": f"file:///other/{bundle_name(REGISTRY, 'team-b')}", "extract": True}
        plan = run_as("default", app(fetch=[USER_ENTRY, theirs]))
        assert plan.change is None
        assert plan.conflict == ("controller team-b",)

    def test_both_entries_present_is_a_conflict_for_each(self):
        """After a simultaneous first write, neither removes anything."""
        mine = {"uri": f"file:///mnt/pullsecrets/{bundle_name(REGISTRY, 'team-a')}",
                "extract": True, "cache": False}
        theirs = {"uri": f"file:///mnt/pullsecrets/{bundle_name(REGISTRY)}", "extract": True,
                  "cache": False}
        for owner, other in (("team-a", "default"), ("default", "team-a")):
            plan = run_as(owner, app(fetch=[mine, theirs]))
            assert (plan.change, plan.conflict) == (None, (f"controller {other}",))

    def test_not_managing_the_app_removes_only_its_own_entry(self):
        """An unconfigured registry removes this controller's entry, never another's."""
        mine = {"uri": f"{HOME}/{bundle_name('quay.io', 'team-a')}"}
        theirs = {"uri": f"{HOME}/{bundle_name('quay.io')}"}
        a = app(fetch=[theirs, USER_ENTRY, mine],
                container={"type": "DOCKER", "docker": {"image": "quay.io/x/y:1"}})
        plan = run_as("team-a", a)
        assert (plan.change, plan.desired, plan.conflict) == ("remove", (theirs, USER_ENTRY), ())

    def test_a_named_controller_adds_its_own_entry_beside_user_entries(self):
        plan = run_as("team-a", app(fetch=[USER_ENTRY]))
        assert plan.change == "add"
        assert plan.desired[0] == USER_ENTRY
        assert entry_owner(plan.desired[1]["uri"]) == "team-a"


class TestMalformedApps:
    """Odd shapes from Marathon are a clear per-app error, never a crash or a lost entry."""

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"id": None}, "no id"),
            ({"id": 7}, "no id"),
            ({"labels": ["a"]}, "labels is not a map"),
            ({"labels": {LABEL: True}}, "is not text"),
            ({"container": "DOCKER"}, "container is not an object"),
            ({"container": {"type": 1}}, "type is not text"),
            ({"container": {"type": "DOCKER", "docker": []}}, "docker is not an object"),
            ({"container": {"type": "DOCKER", "docker": {"image": 5}}}, "image is not text"),
            ({"fetch": [{"extract": True}]}, "fetch[0] is not an object with a uri"),
            ({"fetch": ["https://example.com/a.tgz"]}, "fetch[0] is not an object with a uri"),
            ({"fetch": {"uri": "x"}}, "fetch is not a list"),
        ],
        ids=["id-null", "id-int", "labels-list", "label-bool", "container-str", "type-int",
             "docker-list", "image-int", "fetch-no-uri", "fetch-str", "fetch-object"],
    )
    def test_invalid_app_error_names_the_field(self, fields, message):
        with pytest.raises(InvalidAppError, match=re.escape(message)):
            run(app(**fields))

    def test_not_opted_in_app_with_odd_container_is_skipped(self):
        """An app that is not ours is not judged on fields we never read."""
        plan = run(app(labels={}, container="weird"))
        assert (plan.eligibility.reason, plan.change) == ("not_opted_in", None)

    def test_uris_must_be_strings(self):
        a = app(uris=[{"uri": "x"}])
        del a["fetch"]
        with pytest.raises(InvalidAppError, match=re.escape("uris[0] is not a URI")):
            run(a)

    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                        lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                        max_leaves=12),
           st.sampled_from(["labels", "container", "fetch", "uris", "id"]))
    def test_any_field_value_gives_a_plan_or_invalid_app_error(self, value, field):
        """Whatever Marathon sends in a field, only InvalidAppError escapes."""
        a = app(**{field: value})
        try:
            plan = run(a)
        except InvalidAppError:
            return
        update_body(a, plan)
