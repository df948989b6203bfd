"""``inject``: a deploy pipeline's app definitions, given the entry the daemon would give them.

Every Marathon write starts a deployment. A pipeline that PUTs an opted-in app without its
bundle entry starts tasks that cannot pull their image, and the controller must then deploy the
app a second time to add the entry. ``inject`` adds it before the pipeline deploys, planned by
the daemon's own ``plan.Planner`` (built by the caller as the daemon builds it), with the
dialect of a Marathon whose version is not known, so that the app's own fields choose ``fetch``
or legacy ``uris`` as for an app the daemon lists. The daemon, seeing the deployed app, then
plans no change and writes nothing.

Pure: JSON text in, JSON text out, no I/O. The input is one app, a list of apps (the body of
``PUT /v2/apps``) or a group with nested groups (``/v2/groups``). Inside a group, ids may be
relative to it; they are resolved as Marathon resolves them, for planning only. The output keeps
every key in its place and every value as it was (ids as written), except the list that carries
the managed entry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

import msgspec

from controller.errors import ConfigError, InvalidAppError
from controller.model import BundleLocation, RawApp
from controller.plan import AppPlan, Ownership, Planner, bundle_name, shown_entry, shown_uri

__all__ = ["Finding", "Injected", "Injector", "inject", "parse_document", "render",
           "resolve_id"]

FindingKind = Literal["add", "replace", "remove", "conflict", "invalid"]

_CHANGES: tuple[FindingKind, ...] = ("add", "replace", "remove")


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """What ``inject`` did to one app, or why it left it alone."""

    app: str
    """The app as the input names it: its id as written (with the resolved id when that
    differs), or its place in the document when it has no id."""
    kind: FindingKind
    detail: str

    def __str__(self) -> str:
        return f"{self.app}: {self.detail}"


class Injected(msgspec.Struct, frozen=True, kw_only=True):
    document: Any
    """The input with each managed entry as the daemon wants it."""
    findings: tuple[Finding, ...]

    @property
    def changes(self) -> tuple[Finding, ...]:
        """The apps whose entry was added, replaced or removed."""
        return tuple(f for f in self.findings if f.kind in _CHANGES)

    @property
    def invalid(self) -> tuple[Finding, ...]:
        """The apps the planner refused (printed unchanged)."""
        return tuple(f for f in self.findings if f.kind == "invalid")

    @property
    def conflicts(self) -> tuple[Finding, ...]:
        """The apps that carry another controller's entry (left alone, as the daemon does)."""
        return tuple(f for f in self.findings if f.kind == "conflict")


class Injector(msgspec.Struct, frozen=True, kw_only=True):
    """What the daemon plans with, known offline: its planner, and each configured registry's
    bundle location."""

    planner: Planner
    locations: Mapping[str, BundleLocation]

    @classmethod
    def of(cls, planner: Planner,
           fixed_location: Callable[[str], BundleLocation | None]) -> Injector:
        """``fixed_location`` is the store's (``BundleStore.fixed_location``). Raises
        ``ConfigError`` when a location cannot be known offline (a presigned URL)."""
        locations: dict[str, BundleLocation] = {}
        for rule in planner.rules:
            location = fixed_location(bundle_name(rule.registry, planner.ownership.owner))
            if location is None:
                raise ConfigError([
                    "inject cannot know the bundle URI offline: with storage.s3.uri_style "
                    "presigned each URI is signed by the running controller. Use uri_style "
                    "s3a or https, or a filesystem store, to deploy apps with their entry"])
            locations[rule.registry] = location
        return cls(planner=planner, locations=locations)


def resolve_id(path: str, base: str = "/") -> str:
    """``path`` made absolute as Marathon makes it: relative to ``base`` (an absolute id)
    unless it starts with ``/``; empty segments dropped, ``.`` and ``..`` resolved (``..`` above
    the root stays at the root).

    Read from mesosphere/marathon v1.10.26, ``src/main/scala/mesosphere/marathon/state/
    PathId.scala``: ``PathId.apply`` (leading and trailing slashes stripped, split on ``/``,
    empty segments dropped, absolute when it starts with ``/``) and ``canonicalPath``.
    """
    def segments(text: str) -> list[str]:
        return [segment for segment in text.split("/") if segment]

    path_segments = segments(path) if path.startswith("/") else segments(base) + segments(path)
    resolved: list[str] = []
    for segment in path_segments:
        if segment == "..":
            del resolved[-1:]
        elif segment != ".":
            resolved.append(segment)
    return "/" + "/".join(resolved)


class _Refused(ValueError):
    """JSON that ``json`` would accept but that is no app definition's."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are unique: a duplicate would be dropped without a word."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _Refused(f"the key {json.dumps(key)} appears twice in one object")
        found[key] = value
    return found


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is too large")
    return value


def _constant(name: str) -> float:
    raise _Refused(f"{name} is not JSON")


def parse_document(text: str, source: str) -> Any:
    """The JSON in ``text``; ``ConfigError`` names ``source`` and where it is not JSON."""
    if not text.strip():
        raise ConfigError([f"{source}: is empty: expected an app, a list of apps or a group, "
                           "as JSON"])
    try:
        return json.loads(text, object_pairs_hook=_object, parse_float=_number,
                          parse_constant=_constant)
    except json.JSONDecodeError as e:
        problem = f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
    except _Refused as e:
        problem = f"refused: {e}"
    raise ConfigError([f"{source}: {problem}"])


def render(document: Any) -> str:
    """``document`` as JSON text: keys in their order, two-space indents, ASCII only (any
    pipe's encoding carries it), and a final newline."""
    return json.dumps(document, indent=2) + "\n"


def inject(document: Any, injector: Injector) -> Injected:
    """``document`` with each app's entry as the daemon would have it.

    An app the planner refuses (``InvalidAppError``) and one that carries another
    controller's entry are left as they are, and named in the findings. Raises
    ``ConfigError`` when ``document`` is not an app, a list of apps, or a group.
    """
    walk = _Walk(injector)
    return Injected(document=walk.document(document), findings=tuple(walk.findings))


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _is_group(node: Mapping[str, Any]) -> bool:
    """Apps have neither field; a group (``/v2/groups``) has at least one of them."""
    return "apps" in node or "groups" in node


class _Walk:
    """One pass over a document, collecting findings."""

    def __init__(self, injector: Injector) -> None:
        self.injector = injector
        self.findings: list[Finding] = []

    def document(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.app(item, "/", f"[{i}]") for i, item in enumerate(node)]
        if isinstance(node, dict):
            return self.group(node, "/", "") if _is_group(node) else self.app(node, "/", "")
        raise ConfigError([f"expected an app, a list of apps or a group (a JSON object or "
                           f"list), got {_kind(node)}"])

    def group(self, group: dict[str, Any], parent: str, place: str) -> dict[str, Any]:
        """Apps and groups inside are relative to the group's id, itself relative to its
        parent's (mesosphere/marathon v1.10.26, ``src/main/scala/mesosphere/marathon/raml/
        GroupConversion.scala``, ``createGroup``)."""
        group_id = group.get("id")
        where = place or "the group"
        if not isinstance(group_id, str):
            raise ConfigError([f"{where}: a group needs its id, as text: the ids of its apps "
                               "are relative to it"])
        base = resolve_id(group_id, parent)
        out = dict(group)
        for key, member in (("apps", self.app), ("groups", self.group)):
            items = group.get(key)
            field = f"{place}.{key}" if place else key
            if items is None:
                continue
            if not isinstance(items, list):
                raise ConfigError([f"{field}: expected a list, got {_kind(items)}"])
            out[key] = [member(item, base, f"{field}[{i}]") for i, item in enumerate(items)]
        return out

    def app(self, app: Any, base: str, place: str) -> Any:
        if not isinstance(app, dict):
            raise ConfigError([f"{place or 'the document'}: expected an app (a JSON object), "
                               f"got {_kind(app)}"])
        written = app.get("id")
        if isinstance(written, str):
            resolved = resolve_id(written, base)
            name = written if written == resolved else f"{written} ({resolved})"
            planned = {**app, "id": resolved}
        else:
            name, planned = place or "the app", app
        try:
            plan = self.plan(cast(RawApp, planned))
        except InvalidAppError as e:
            self.findings.append(Finding(app=name, kind="invalid", detail=f"invalid app: {e}"))
            return app
        if plan.conflict:
            self.findings.append(Finding(
                app=name, kind="conflict", detail="conflict (another owner's entry: "
                f"{'; '.join(plan.conflict)}); left alone"))
        if plan.change is None:
            return app
        self.findings.append(Finding(
            app=name, kind=plan.change,
            detail=_change_detail(plan, self.injector.planner.ownership)))
        out = dict(app)
        out[plan.field] = list(plan.desired)
        return out

    def plan(self, app: RawApp) -> AppPlan:
        planner, locations = self.injector.planner, self.injector.locations
        decision = planner.eligibility(app)
        location = locations[decision.registry] if decision.registry is not None else None
        return planner.plan(app, decision, location)


def _change_detail(plan: AppPlan, ownership: Ownership) -> str:
    removed = ", ".join(map(shown_uri, plan.removed))
    if plan.change == "remove":
        return f"must not carry the entry ({plan.eligibility.detail}); would remove {removed}"
    entry = next(e for e in plan.desired
                 if ownership.owns(e if isinstance(e, str) else e["uri"]))
    if plan.change == "add":
        return f"lacks its entry; would add {shown_entry(entry)}"
    return f"carries a wrong entry ({removed}); would replace it with {shown_entry(entry)}"
