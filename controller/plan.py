"""The pure planning core: from one Marathon app and the config to the ``fetch`` list it needs.

No I/O, no logging, no clock: callers pass everything in and act on (and log) what comes back.
Two steps, because the bundle location is only known once the bundle exists:

1. ``eligibility(app, …)`` says which configured registry's bundle the app needs, or why none;
2. ``plan_app(app, eligibility, location)`` returns the desired list and the change.

An entry is a controller's by its file name, which carries the controller's name
(``controller.name``): ``pullsecret-<registry>.tar.gz`` for the controller named ``default`` (the
names written before controllers had names), ``pullsecret_<name>_<registry>.tar.gz`` for any
other. It is *this* controller's (``Ownership``) only when it also points into this controller's
storage location, or into one it used before and the operator listed
(``storage.previous_locations``), where it is replaced in place. An entry that carries a
controller's name at any other location is someone else's: another controller's (a second one
left at the same name, or a storage move not listed) or a user's look-alike. An app this
controller would manage that carries someone else's controller entry is a conflict, reported and
left alone; an app it would not manage is never touched for it. Every other entry is kept exactly
as the user wrote it, in its place.

The planner reads only ``PLANNED_FIELDS`` of an app: a listed app is decoded to those alone
(``controller.applist``), and most listed apps are found to need nothing straight from that
decoding, without a plan (``controller.applist.Triage``, built on ``label_says``,
``image_decision``, ``entry_owner`` and ``entry_ok`` here). A rule that reads another field
adds it to ``PLANNED_FIELDS``; the tests hold the planner, the decoding and the triage to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from controller.dialect import Dialect, FetchField
from controller.errors import InvalidAppError
from controller.model import AppId, BundleLocation, RawApp, RawAppUpdate, RawFetch
from controller.reference import InvalidReferenceError, normalize_registry_host, parse_image

__all__ = [
    "DEFAULT_OWNER",
    "PLANNED_FIELDS",
    "AppPlan",
    "Change",
    "Eligibility",
    "Ownership",
    "Planner",
    "Reason",
    "RegistryRule",
    "bundle_name",
    "eligibility",
    "entry_ok",
    "entry_owner",
    "image_decision",
    "is_managed_uri",
    "label_says",
    "location_of",
    "not_opted_in",
    "plan_app",
    "shown_entry",
    "shown_uri",
    "update_body",
]

Reason = Literal["eligible", "not_opted_in", "label_unrecognised", "not_docker", "ucr",
                 "unconfigured_registry", "not_allowed"]
Change = Literal["add", "replace", "remove"]

DEFAULT_OWNER = "default"
"""The name of a controller whose config sets none; its entries keep the unnamed form."""

PLANNED_FIELDS: Final = ("id", "labels.<label>", "container.type", "container.docker.image",
                         "fetch", "uris")
"""Every field of an app the planner reads (``eligibility``, ``plan_app``, and the unknown
``Dialect``'s choice of list), as a path of keys: ``<label>`` is the opt-in label alone, not
the other labels; ``fetch`` and ``uris`` are read whole."""

# Owner names are [a-z0-9-] (config enforces it) and never hold "_", so the first "_" after
# the prefix ends the name; registry slugs are [a-z0-9._-].
_DEFAULT_NAME = re.compile(r"^pullsecret-[a-z0-9._-]+\.tar\.gz$")
_NAMED_NAME = re.compile(r"^pullsecret_(?P<owner>[a-z0-9-]+)_[a-z0-9._-]+\.tar\.gz$")
_SLUG_UNSAFE = re.compile(r"[^a-z0-9.-]")
_FETCH_DEFAULTS: dict[str, object] = {"extract": True, "executable": False, "cache": False}
_UNKNOWN_MARATHON = Dialect()


def bundle_name(registry: str, owner: str = DEFAULT_OWNER) -> str:
    """The object name of a registry's bundle, e.g. ``pullsecret-registry.example.com_5000.tar.gz``.

    It ends in ``.tar.gz`` because the Mesos fetcher decides to extract by the local file name.
    """
    slug = _SLUG_UNSAFE.sub("_", registry.lower())
    return f"pullsecret-{slug}.tar.gz" if owner == DEFAULT_OWNER else (
        f"pullsecret_{owner}_{slug}.tar.gz")


def entry_owner(uri: str) -> str | None:
    """The controller that manages a fetch URI (by its file name), or ``None`` for a user's."""
    if "pullsecret" not in uri:  # most entries: no bundle's name, whatever the URI
        return None
    try:
        path = urlsplit(uri).path
    except ValueError:  # not a URI at all: certainly not ours
        return None
    name = path.rsplit("/", 1)[-1]
    if _DEFAULT_NAME.match(name):
        return DEFAULT_OWNER
    named = _NAMED_NAME.match(name)
    return named["owner"] if named else None


def is_managed_uri(uri: str) -> bool:
    """Whether a fetch URI is named like a bundle some controller publishes (at any location)."""
    return entry_owner(uri) is not None


def shown_uri(uri: str) -> str:
    """A URI fit to print (a CI log, a report): a presigned URL's query string is a bearer
    credential, so it is hidden."""
    base, sep, _ = uri.partition("?")
    return f"{base}?<signature hidden>" if sep else uri


def shown_entry(entry: RawFetch | str) -> str:
    """A fetch entry (or legacy URI) fit to print, its URI as ``shown_uri`` has it."""
    if isinstance(entry, str):
        return shown_uri(entry)
    return json.dumps({**entry, "uri": shown_uri(entry["uri"])}, sort_keys=True)


def location_of(uri: str) -> str:
    """The directory or prefix a URI points into, without its file name, query or fragment:
    ``s3a://bucket/prefix`` for ``s3a://bucket/prefix/pullsecret-x.tar.gz?sig``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return ""
    directory = parts.path.rsplit("/", 1)[0]
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{directory}"


class Ownership(msgspec.Struct, frozen=True):
    """Which fetch entries are this controller's: its name in the file name, and a location it
    publishes to (``homes``: the configured storage location first, then the
    ``storage.previous_locations`` it may replace entries from)."""

    owner: str
    homes: tuple[str, ...]
    """Locations as ``location_of`` gives them (no trailing slash)."""

    def owns(self, uri: str) -> bool:
        return entry_owner(uri) == self.owner and location_of(uri) in self.homes

    def foreign(self, uri: str) -> str | None:
        """Who else's controller entry ``uri`` is, for a conflict report; ``None`` when it is
        ours or a plain user entry."""
        owner = entry_owner(uri)
        if owner is None or self.owns(uri):
            return None
        if owner != self.owner:
            return f"controller {owner}"
        return (f"an entry named for controller {owner} at {location_of(uri)} (another "
                f"controller with this name, or an old storage location not listed in "
                f"storage.previous_locations)")


class RegistryRule(msgspec.Struct, frozen=True, kw_only=True):
    """The planning view of one configured registry."""

    registry: str
    """Normalised ``host[:port]``, as ``reference.normalize_registry_host`` gives it."""
    apps: tuple[str, ...] = ()
    """App-id glob patterns allowed to receive these credentials; empty allows every app."""


class Eligibility(msgspec.Struct, frozen=True, kw_only=True):
    registry: str | None
    """The registry whose bundle the app needs; ``None`` when it needs none."""
    reason: Reason
    detail: str = ""


class AppPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of planning one app: the list to write (if ``change``) and why."""

    app_id: AppId
    eligibility: Eligibility
    field: FetchField
    current: tuple[RawFetch | str, ...]
    desired: tuple[RawFetch | str, ...]
    change: Change | None
    removed: tuple[str, ...] = ()
    conflict: tuple[str, ...] = ()
    """Other controllers whose entries the app carries while this one would manage it too."""

    @property
    def changed(self) -> bool:
        return self.change is not None


def _member(data: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    """``data[key]`` if it is a ``kind`` (``None`` when absent or null); else the app is invalid."""
    value = data.get(key)
    if value is None or isinstance(value, kind):
        return value
    raise InvalidAppError(f"{key} is not {what}")


_LABEL_WORDS: dict[str, bool] = {"true": True, "false": False, "": False}


def label_says(value: str | None) -> bool | None:
    """Whether the opt-in label's value (``None``: no such label) opts in, opts out, or is
    neither (``None``): only ``"true"`` opts in; ``"false"`` or no value opts out."""
    word = value or ""
    found = _LABEL_WORDS.get(word)  # as it is mostly written
    return found if found is not None else _LABEL_WORDS.get(word.strip().lower())


def not_opted_in(label: str) -> Eligibility:
    return Eligibility(registry=None, reason="not_opted_in",
                       detail=f"label {label} is not \"true\"")


def _label_value(app: RawApp, label: str) -> str | None:
    labels = _member(app, "labels", dict, "a map of labels") or {}
    value = labels.get(label)
    if value is not None and not isinstance(value, str):
        raise InvalidAppError(f"label {label} is not text")
    return value


def eligibility(app: RawApp, *, label: str, rules: Sequence[RegistryRule]) -> Eligibility:
    """Which registry's bundle ``app`` needs; raises ``InvalidAppError`` for a malformed app.

    Only ``"true"`` opts in. Any other value opts out, but one that is neither ``"true"`` nor
    ``"false"`` (``"yes"``, say) is ``label_unrecognised``, so that the mistake shows.
    """
    app_id = _app_id(app)
    value = _label_value(app, label)
    opted_in = label_says(value)
    if opted_in is None:
        shown = (value or "").strip().lower()[:40]
        return Eligibility(registry=None, reason="label_unrecognised",
                           detail=f"label {label} is {shown!r}: only \"true\" opts in "
                                  "(\"false\" opts out)")
    if not opted_in:
        return not_opted_in(label)
    container = _member(app, "container", dict, "an object") or {}
    kind = _member(container, "type", str, "text") or "DOCKER"
    if kind == "MESOS":
        return Eligibility(registry=None, reason="ucr",
                           detail="container.type MESOS (UCR) pulls with "
                                  "container.docker.pullConfig, not the sandbox")
    docker = _member(container, "docker", dict, "an object") or {}
    image = _member(docker, "image", str, "text")
    if kind != "DOCKER" or not image:
        return Eligibility(registry=None, reason="not_docker", detail="no Docker image")
    return image_decision(app_id, image, rules)


def image_decision(app_id: str, image: str, rules: Sequence[RegistryRule]) -> Eligibility:
    """Which registry's bundle an opted-in Docker app with ``image`` needs, or why none;
    raises ``InvalidAppError`` for an image ``docker pull`` would refuse."""
    if not rules:  # none configured (uninstall): the image need not even be valid to say so
        return Eligibility(registry=None, reason="unconfigured_registry",
                           detail="no registry is configured")
    try:
        registry = normalize_registry_host(parse_image(image).registry)  # Hub aliases: one
    except InvalidReferenceError as e:
        raise InvalidAppError(f"container.docker.image: {e}") from None
    rule = next((r for r in rules if r.registry == registry), None)
    if rule is None:
        return Eligibility(registry=None, reason="unconfigured_registry",
                           detail=f"image registry {registry} is not configured")
    if rule.apps and not any(fnmatchcase(app_id, pattern) for pattern in rule.apps):
        return Eligibility(registry=None, reason="not_allowed",
                           detail=f"app is not allowed credentials for {registry}")
    return Eligibility(registry=registry, reason="eligible")


def _app_id(app: RawApp) -> str:
    app_id = app.get("id")
    if not isinstance(app_id, str) or not app_id.startswith("/"):
        raise InvalidAppError("the app has no id")
    return app_id


def _uri(entry: RawFetch | str) -> str:
    return entry if isinstance(entry, str) else entry["uri"]


def _entries(app: RawApp, field: FetchField) -> tuple[RawFetch | str, ...]:
    """The app's list, each entry checked: a malformed one is never dropped on a write."""
    entries = _member(app, field, list, "a list") or []
    for i, entry in enumerate(entries):
        if field == "uris" and not isinstance(entry, str):
            raise InvalidAppError(f"uris[{i}] is not a URI")
        if field == "fetch" and not (isinstance(entry, dict)
                                     and isinstance(entry.get("uri"), str)):
            raise InvalidAppError(f"fetch[{i}] is not an object with a uri")
    return tuple(entries)


def entry_ok(entry: RawFetch | str, location: BundleLocation) -> bool:
    """Whether this controller's entry is the very one ``location`` wants."""
    if not location.matches(_uri(entry)):
        return False
    if isinstance(entry, str):
        return True
    flags_ok = all(entry.get(k, v) == v for k, v in _FETCH_DEFAULTS.items())
    return flags_ok and entry.get("destPath") == location.dest_path


def _desired_entry(field: str, location: BundleLocation) -> RawFetch | str:
    if field == "uris":
        if location.dest_path:
            raise InvalidAppError("this Marathon only has the legacy uris field, which cannot "
                                  "carry the destPath a URI with a query string needs")
        return location.uri
    entry: RawFetch = {"uri": location.uri, "extract": True, "cache": False}
    if location.dest_path:
        entry["destPath"] = location.dest_path
    return entry


def plan_app(app: RawApp, decision: Eligibility, location: BundleLocation | None, *,
             ownership: Ownership, dialect: Dialect = _UNKNOWN_MARATHON) -> AppPlan:
    """The desired fetch (or legacy ``uris``) list of ``app``, for the controller whose entries
    ``ownership`` recognises.

    ``location`` is the bundle of ``decision.registry``; ``None`` when the app needs none.
    ``dialect`` says which list carries the entries (``Dialect.fetch_field``): ``fetch``, but
    for a Marathon from before it. Only this controller's entries are ever replaced or removed.
    """
    field = dialect.fetch_field(app)
    current = _entries(app, field)
    uris = [_uri(entry) for entry in current]
    ours = [i for i, uri in enumerate(uris) if ownership.owns(uri)]
    others = tuple(sorted({who for uri in uris if (who := ownership.foreign(uri)) is not None}))
    wanted = location if decision.registry is not None else None

    change: Change | None
    settled = wanted is not None and (
        bool(others)  # two controllers would manage it: never fight
        or (len(ours) == 1 and entry_ok(current[ours[0]], wanted)))
    if settled:
        desired, change = current, None
    elif wanted is not None:
        new_entry = _desired_entry(field, wanted)
        at = ours[0] if ours else len(current)
        kept = [entry for i, entry in enumerate(current) if i not in ours]
        desired = (*kept[:at], new_entry, *kept[at:])
        change = "replace" if ours else "add"
    else:
        desired = tuple(entry for i, entry in enumerate(current) if i not in ours)
        change = "remove" if ours else None

    return AppPlan(
        app_id=AppId(_app_id(app)),
        eligibility=decision,
        field=field,
        current=current,
        desired=desired,
        change=change,
        removed=tuple(_uri(current[i]) for i in ours) if change else (),
        conflict=others if wanted is not None else (),
    )


class Planner(msgspec.Struct, frozen=True, kw_only=True):
    """One controller's planning rules: its opt-in label, its registries, its entries."""

    label: str
    rules: tuple[RegistryRule, ...]
    ownership: Ownership

    def eligibility(self, app: RawApp) -> Eligibility:
        return eligibility(app, label=self.label, rules=self.rules)

    def plan(self, app: RawApp, decision: Eligibility, location: BundleLocation | None,
             dialect: Dialect = _UNKNOWN_MARATHON) -> AppPlan:
        return plan_app(app, decision, location, ownership=self.ownership, dialect=dialect)


def update_body(app: RawApp, plan: AppPlan, dialect: Dialect = _UNKNOWN_MARATHON
                ) -> RawAppUpdate:
    """The minimal PATCH/PUT body for ``plan``, as ``dialect`` writes it
    (``Dialect.update_body``: the one list, and the fields a partial update would drop)."""
    return dialect.update_body(app, plan.field, plan.desired)
