"""The pure planning core: from one Marathon app and the config to the ``fetch`` list it needs.

No I/O, no logging, no clock: callers pass everything in and act on (and log) what comes back.
Two steps, because the bundle location is only known once the bundle exists:

1. ``eligibility(app, …)`` says which configured registry's bundle the app needs, or why none;
2. ``plan_app(app, eligibility, location)`` returns the desired list and the change.

Entries the controller manages are recognised by their file name (``pullsecret-<registry>.tar.gz``),
so a bundle that moved (new storage prefix, new registry) is replaced, and every other entry is
kept exactly as the user wrote it, in its place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal
from urllib.parse import urlsplit

from controller.errors import InvalidAppError
from controller.model import AppId, BundleLocation, RawApp, RawAppUpdate, RawFetch
from controller.reference import InvalidReferenceError, normalize_registry_host, parse_image

__all__ = [
    "AppPlan",
    "Change",
    "Eligibility",
    "Reason",
    "RegistryRule",
    "bundle_name",
    "eligibility",
    "is_managed_uri",
    "plan_app",
    "update_body",
]

Reason = Literal["eligible", "not_opted_in", "not_docker", "ucr", "unconfigured_registry",
                 "not_allowed"]
Change = Literal["add", "replace", "remove"]

_MANAGED_NAME = re.compile(r"^pullsecret-[a-z0-9._-]+\.tar\.gz$")
_SLUG_UNSAFE = re.compile(r"[^a-z0-9.-]")
_FETCH_DEFAULTS: dict[str, object] = {"extract": True, "executable": False, "cache": False}


def bundle_name(registry: str) -> str:
    """The object name of a registry's bundle, e.g. ``pullsecret-registry.example.com_5000.tar.gz``.

    It ends in ``.tar.gz`` because the Mesos fetcher decides to extract by the local file name.
    """
    return f"pullsecret-{_SLUG_UNSAFE.sub('_', registry.lower())}.tar.gz"


def is_managed_uri(uri: str) -> bool:
    """Whether a fetch URI points at a bundle this controller publishes (at any location)."""
    path = urlsplit(uri).path
    return bool(_MANAGED_NAME.match(path.rsplit("/", 1)[-1]))


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
    field: Literal["fetch", "uris"]
    current: tuple[RawFetch | str, ...]
    desired: tuple[RawFetch | str, ...]
    change: Change | None
    removed: tuple[str, ...] = ()
    added: str | None = None

    @property
    def changed(self) -> bool:
        return self.change is not None


def _opted_in(app: RawApp, label: str) -> bool:
    return (app.get("labels") or {}).get(label, "").strip().lower() == "true"


def eligibility(app: RawApp, *, label: str, rules: Sequence[RegistryRule]) -> Eligibility:
    """Which registry's bundle ``app`` needs; raises ``InvalidAppError`` for a malformed image."""
    if not _opted_in(app, label):
        return Eligibility(registry=None, reason="not_opted_in",
                           detail=f"label {label} is not \"true\"")
    container = app.get("container") or {}
    kind = container.get("type", "DOCKER")
    if kind == "MESOS":
        return Eligibility(registry=None, reason="ucr",
                           detail="container.type MESOS (UCR) pulls with "
                                  "container.docker.pullConfig, not the sandbox")
    image = (container.get("docker") or {}).get("image")
    if kind != "DOCKER" or not image:
        return Eligibility(registry=None, reason="not_docker", detail="no Docker image")
    try:
        registry = normalize_registry_host(parse_image(image).registry)  # Hub aliases: one
    except InvalidReferenceError as e:
        raise InvalidAppError(f"container.docker.image: {e}") from None
    rule = next((r for r in rules if r.registry == registry), None)
    if rule is None:
        return Eligibility(registry=None, reason="unconfigured_registry",
                           detail=f"image registry {registry} is not configured")
    if rule.apps and not any(fnmatchcase(app["id"], pattern) for pattern in rule.apps):
        return Eligibility(registry=None, reason="not_allowed",
                           detail=f"app is not allowed credentials for {registry}")
    return Eligibility(registry=registry, reason="eligible")


def _uri(entry: RawFetch | str) -> str:
    return entry if isinstance(entry, str) else entry["uri"]


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


def plan_app(app: RawApp, decision: Eligibility, location: BundleLocation | None) -> AppPlan:
    """The desired fetch (or legacy ``uris``) list of ``app``.

    ``location`` is the bundle of ``decision.registry``; ``None`` when the app needs none.
    Marathon ≤ 1.4 returns both ``uris`` and ``fetch``: ``fetch`` wins and ``uris`` is never
    written. Only apps from before ``fetch`` existed (no ``fetch`` key at all) get ``uris``.
    """
    field: Literal["fetch", "uris"] = "uris" if "fetch" not in app and "uris" in app else "fetch"
    current: tuple[RawFetch | str, ...] = tuple(app.get(field) or ())
    managed = [i for i, entry in enumerate(current) if is_managed_uri(_uri(entry))]
    wanted = location if decision.registry is not None else None

    change: Change | None
    if wanted is not None and len(managed) == 1 and _entry_ok(current[managed[0]], wanted):
        desired, change = current, None
    elif wanted is not None:
        new_entry = _desired_entry(field, wanted)
        at = managed[0] if managed else len(current)
        kept = [entry for i, entry in enumerate(current) if i not in managed]
        desired = (*kept[:at], new_entry, *kept[at:])
        change = "replace" if managed else "add"
    else:
        desired = tuple(entry for i, entry in enumerate(current) if i not in managed)
        change = "remove" if managed else None

    removed = tuple(_uri(current[i]) for i in managed) if change else ()
    return AppPlan(
        app_id=AppId(app["id"]),
        eligibility=decision,
        field=field,
        current=current,
        desired=desired,
        change=change,
        removed=removed,
        added=wanted.uri if change in ("add", "replace") and wanted else None,
    )


def update_body(app: RawApp, plan: AppPlan) -> RawAppUpdate:
    """The minimal PATCH/PUT body for ``plan``.

    Marathon's partial update drops ``executorResources`` and ``resourceLimits`` when the body
    omits them, so they are re-sent as the app has them; nothing else is.
    """
    body: RawAppUpdate = {}
    if plan.field == "uris":
        body["uris"] = [_uri(e) for e in plan.desired]
    else:
        body["fetch"] = [e for e in plan.desired if not isinstance(e, str)]
    if "executorResources" in app:
        body["executorResources"] = app["executorResources"]
    if "resourceLimits" in app:
        body["resourceLimits"] = app["resourceLimits"]
    return body
