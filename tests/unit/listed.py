"""Apps as ``GET /v2/apps`` may list them, for the properties of the planned fields and of the
triage: every planned field present or not, of the right kind or not, with the values that
steer the planner (the label's words, Docker or not, registries configured or not and allowed
or not, entries of ours, of other controllers, look-alikes, malformed ones), and fields the
planner never reads; and the two oracles the triage is held to (``planner_says``,
``triage_says``), shared with the fuzz target."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from controller.applist import AppListDecoder, ListedApp, Triage
from controller.errors import InvalidAppError
from controller.model import BundleLocation
from controller.plan import Ownership, Planner, RegistryRule, bundle_name, location_of

LABEL = "pullsecret.enabled"
REG = "registry.example.com:5000"
HOME = "file:///mnt/pullsecrets"
OLD_HOME = "file:///mnt/old"
PLAIN = BundleLocation(uri=f"{HOME}/{bundle_name(REG)}")
SIGNED_URI = f"https://b.s3.amazonaws.com/p/{bundle_name(REG)}?X-Amz-Signature=1"
SIGNED = BundleLocation(uri=SIGNED_URI, renew_in=3000.0,
                        accepts=lambda uri: uri.startswith("https://b.s3.amazonaws.com/p/"))
RULES = (RegistryRule(registry=REG), RegistryRule(registry="docker.io", apps=("/team-a/*",)),
         RegistryRule(registry="nolocation.example.com"))
PLANNER = Planner(label=LABEL, rules=RULES, ownership=Ownership(
    owner="default", homes=(location_of(f"{HOME}/x"), location_of(f"{OLD_HOME}/x"),
                            location_of(f"{SIGNED_URI.partition('?')[0]}"))))
LOCATIONS = {"plain": {REG: PLAIN, "docker.io": PLAIN},
             "signed": {REG: SIGNED, "docker.io": SIGNED},
             "none": {}}
"""Bundle locations one list is planned against (``nolocation.example.com`` never has one)."""

_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.text(max_size=4))
any_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=6)


def sometimes_odd(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``good``, now and then any JSON value (a field of the wrong kind)."""
    return st.one_of(good, good, good, any_json)


def optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


_ABSENT = object()
label_values = st.sampled_from(["true", "false", "TRUE ", " False", "", "yes", "1"]) | st.none()
labels = sometimes_odd(st.builds(
    lambda others, value: {**others, **({} if value is _ABSENT else {LABEL: value})},
    st.dictionaries(st.sampled_from(["team", "HAPROXY_GROUP"]), st.text(max_size=3),
                    max_size=2),
    st.just(_ABSENT) | label_values | any_json))
images = st.sampled_from([
    f"{REG}/team/web:1", f"{REG.upper()}/team/web@sha256:{'a' * 64}", "nginx:1.25",
    "docker.io/library/redis", "other.example.com/x/y:2", "nolocation.example.com/a:1",
    "Bad/Upper:1", "", f"{REG}/UPPER:1"]) | st.text(max_size=6)
containers = sometimes_odd(optional({
    "type": sometimes_odd(st.sampled_from(["DOCKER", "MESOS", "docker", ""]) | st.none()),
    "docker": sometimes_odd(optional({"image": sometimes_odd(images),
                                      "privileged": st.booleans()})),
    "volumes": st.just([]),
}))
OURS = [PLAIN.uri, SIGNED_URI, SIGNED_URI.replace("Signature=1", "Signature=2"),
        f"{OLD_HOME}/{bundle_name(REG)}"]
THEIRS = [f"{HOME}/{bundle_name(REG, 'blue')}", f"file:///elsewhere/{bundle_name(REG)}",
          f"https://b.s3.amazonaws.com/p/{bundle_name(REG, 'blue')}?X-Amz-Signature=3"]
"""Other controllers' entries: another name (even where the store accepts it), our name
elsewhere."""
USERS = ["https://files.example.com/app.tgz", f"{HOME}/pullsecret-x.tgz", "not a uri ::"]
uris = st.sampled_from(OURS + THEIRS + USERS)
flags = optional({"extract": sometimes_odd(st.booleans() | st.just(1)),
                  "cache": sometimes_odd(st.booleans() | st.just(0)),
                  "executable": st.booleans(),
                  "destPath": st.sampled_from(["docker.tar.gz", "x"])})
fetch_entries = sometimes_odd(st.builds(lambda uri, more: {"uri": uri, **more}, uris, flags))
entry_lists = st.lists(fetch_entries, max_size=3)
app_ids = st.sampled_from(["/team-a/web", "/team-b/api", "/x"])
unread = optional({"cmd": st.text(max_size=5),
                   "env": st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
                   "deployments": st.lists(st.builds(lambda i: {"id": i}, st.text(max_size=3)),
                                           max_size=2)})
apps = st.builds(
    lambda app_id, fields, extra: {"id": app_id, **fields, **extra},
    app_ids,
    optional({"labels": labels, "container": containers,
              "fetch": sometimes_odd(entry_lists),
              "uris": sometimes_odd(st.lists(uris, max_size=3))}),
    unread)
"""App definitions as a list holds them: an id (``list_apps`` keeps no other), any planned field
present or not and now and then of the wrong kind, and fields the planner never reads."""
EXACT = {"plain": {"uri": PLAIN.uri, "extract": True, "cache": False},
         "signed": {"uri": SIGNED_URI, "cache": False, "destPath": "docker.tar.gz"},
         "none": {"uri": PLAIN.uri}}
"""The entry exactly in place, per ``LOCATIONS`` key."""


def converged(where: str) -> dict[str, Any]:
    return {"id": "/team-a/web", "labels": {LABEL: "true", "team": "a"},
            "container": {"type": "DOCKER", "docker": {"image": f"{REG}/team/web:1"}},
            "fetch": [EXACT[where]]}


def _changed(app: dict[str, Any], how: str, value: Any) -> dict[str, Any]:
    app = json.loads(json.dumps(app))
    if how == "label":
        app["labels"][LABEL] = value
    elif how in ("type", "image"):
        app["container"].update({"type": value} if how == "type" else {"docker": {"image": value}})
    elif how == "entry":
        app["fetch"].insert(value[0], value[1])
    elif how == "swap":
        app["fetch"][0] = value
    elif how == "flags":
        app["fetch"][0].update(value)
    elif how == "uris":
        app["uris"] = [e["uri"] for e in app.pop("fetch")]
    elif how == "id":
        app["id"] = value
    return app


def nearly_converged(where: str) -> st.SearchStrategy[dict[str, Any]]:
    """The app converged for ``where``'s location, as it is (mostly) or changed in one way that
    may or may not matter to the planner."""
    changes = st.one_of(
        st.tuples(st.just("label"), label_values),
        st.tuples(st.just("type"), st.sampled_from(["", "MESOS", "docker"]) | st.none()),
        st.tuples(st.just("image"), images),
        st.tuples(st.just("entry"), st.tuples(st.integers(0, 1), fetch_entries)),
        st.tuples(st.just("swap"), fetch_entries),
        st.tuples(st.just("flags"), flags),
        st.tuples(st.just("uris"), st.none()),
        st.tuples(st.just("id"), app_ids))
    return st.one_of(st.just(converged(where)), st.builds(
        lambda change, extra: {**_changed(converged(where), *change), **extra}, changes, unread))


cases = st.sampled_from(sorted(LOCATIONS)).flatmap(
    lambda where: st.tuples(st.one_of(apps, nearly_converged(where), nearly_converged(where)),
                            st.just(where)))
"""An app, mostly one near converged for the location it is planned against, and the key of
that location in ``LOCATIONS``."""

DECODER = AppListDecoder(LABEL)


def listed(app: dict[str, Any]) -> ListedApp:
    """``app`` as ``MarathonClient.list_apps`` decodes it."""
    decoded = DECODER.decode(json.dumps({"apps": [app]}).encode())
    assert decoded is not None
    (entry,) = decoded.apps
    assert isinstance(entry, ListedApp)
    return entry


def planner_says(app: dict[str, Any], locations: dict[str, BundleLocation]) -> Any:
    """What the planner makes of ``app``: ("nothing", decision, location) when it needs
    nothing of the triage's two kinds, else why not."""
    try:
        decision = PLANNER.eligibility(app)
        location = locations.get(decision.registry) if decision.registry else None
        if decision.registry is not None and location is None:
            return "no bundle location"
        plan = PLANNER.plan(app, decision, location)
    except InvalidAppError:
        return "invalid"
    if plan.changed or plan.conflict:
        return "a change or a conflict"
    if decision.reason not in ("not_opted_in", "eligible"):
        return "skipped for a reason to report"
    return "nothing", decision, location


def triage_says(app: dict[str, Any], locations: dict[str, BundleLocation]) -> Any:
    found = Triage(PLANNER, locations).settled(listed(app))
    if found is None:
        return None
    image = app["container"]["docker"]["image"] if found.location is not None else None
    assert found.image == image
    return "nothing", found.decision, found.location
