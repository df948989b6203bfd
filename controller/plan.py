"""The pure planning core: from one Marathon app and the config to the ``fetch`` list it needs.

No I/O, no logging, no clock: callers pass everything in and act on (and log) what comes back.
Two steps, because the bundle location is only known once the bundle exists:

1. ``eligibility(app, …)`` says which configured registry's bundle the app needs, or why none;
2. ``plan_app(app, eligibility, location)`` returns the desired list and the change.

Entries a controller manages are recognised by their file name, which carries the controller's
name (``controller.name``): ``pullsecret-<registry>.tar.gz`` for the controller named ``default``
(the names written before controllers had names), ``pullsecret_<name>_<registry>.tar.gz`` for any
other. A controller replaces or removes only its own entries, wherever they point, so a bundle that
moved is replaced in place; an app that already carries another controller's entry is a conflict,
reported and left alone. Every other entry is kept exactly as the user wrote it, in its place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal
from urllib.parse import urlsplit

from controller.dialect import Dialect, FetchField
from controller.errors import InvalidAppError
from controller.model import AppId, BundleLocation, RawApp, RawAppUpdate, RawFetch
from controller.reference import InvalidReferenceError, normalize_registry_host, parse_image

__all__ = [
    "DEFAULT_OWNER",
    "AppPlan",
    "Change",
    "Eligibility",
    "Reason",
    "RegistryRule",
    "bundle_name",
    "eligibility",
    "entry_owner",
    "is_managed_uri",
    "plan_app",
    "update_body",
]

Reason = Literal["eligible", "not_opted_in", "not_docker", "ucr", "unconfigured_registry",
                 "not_allowed"]
Change = Literal["add", "replace", "remove"]

DEFAULT_OWNER = "default"
"""The name of a controller whose config sets none; its entries keep the unnamed form."""

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
    """Whether a fetch URI points at a bundle some controller publishes (at any location)."""
    return entry_owner(uri) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryRule:
    """The planning view of one configured registry."""

    registry: str
    """Normalised ``host[:port]``, as ``reference.normalize_registry_host`` gives it."""
    apps: tuple[str, ...] = ()
    """App-id glob patterns allowed to receive these credentials; empty allows every app."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Eligibility:
    registry: str | None
    """The registry whose bundle the app needs; ``None`` when it needs none."""
    reason: Reason
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppPlan:
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


def _opted_in(app: RawApp, label: str) -> bool:
    labels = _member(app, "labels", dict, "a map of labels") or {}
    value = labels.get(label)
    if value is not None and not isinstance(value, str):
        raise InvalidAppError(f"label {label} is not text")
    return (value or "").strip().lower() == "true"


def eligibility(app: RawApp, *, label: str, rules: Sequence[RegistryRule]) -> Eligibility:
    """Which registry's bundle ``app`` needs; raises ``InvalidAppError`` for a malformed app."""
    app_id = _app_id(app)
    if not _opted_in(app, label):
        return Eligibility(registry=None, reason="not_opted_in",
                           detail=f"label {label} is not \"true\"")
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


def _entry_ok(entry: RawFetch | str, location: BundleLocation) -> bool:
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
             owner: str = DEFAULT_OWNER, dialect: Dialect = _UNKNOWN_MARATHON) -> AppPlan:
    """The desired fetch (or legacy ``uris``) list of ``app``, for the controller ``owner``.

    ``location`` is the bundle of ``decision.registry``; ``None`` when the app needs none.
    ``dialect`` says which list carries the entries (``Dialect.fetch_field``): ``fetch``, but
    for a Marathon from before it. Only ``owner``'s entries are ever replaced or removed.
    """
    field = dialect.fetch_field(app)
    current = _entries(app, field)
    owners = [entry_owner(_uri(entry)) for entry in current]
    ours = [i for i, name in enumerate(owners) if name == owner]
    others = tuple(sorted({name for name in owners if name is not None and name != owner}))
    wanted = location if decision.registry is not None else None

    change: Change | None
    settled = wanted is not None and (
        bool(others)  # two controllers would manage it: never fight
        or (len(ours) == 1 and _entry_ok(current[ours[0]], wanted)))
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


def update_body(app: RawApp, plan: AppPlan, dialect: Dialect = _UNKNOWN_MARATHON
                ) -> RawAppUpdate:
    """The minimal PATCH/PUT body for ``plan``, as ``dialect`` writes it
    (``Dialect.update_body``: the one list, and the fields a partial update would drop)."""
    return dialect.update_body(app, plan.field, plan.desired)
