"""Groups as the simulator has them: implied by app ids (``/a/b/web`` lives in ``/a/b``, which
lives in ``/a``), shown as Marathon's group tree, and changed by a ``GroupUpdate``. Pure.

An empty group is not kept (it has no app to imply it), and ``dependencies`` are always empty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from controller.simulator.wire import ApiError, Json, canonical, invalid_json

__all__ = ["group_targets", "group_tree", "missing_group", "parent_of", "resolve"]


def parent_of(path: str) -> str:
    """``/a/b/web`` → ``/a/b``; ``/web`` → ``/``."""
    return path.rsplit("/", 1)[0] or "/"


def _within(path: str, group_id: str) -> bool:
    return group_id == "/" or path == group_id or path.startswith(group_id + "/")


def resolve(raw: str, base: str) -> str:
    """A path of a group update against the group it is in (``PathId.canonicalPath``):
    absolute as it is, relative below ``base``."""
    if raw.startswith("/"):
        return canonical(raw)
    return canonical(f"{base.rstrip('/')}/{raw}")


def group_tree(apps: Iterable[Json], group_id: str, version: str, *, pods: bool) -> Json | None:
    """The group ``group_id`` with its apps (as given: definitions as written) and subgroups,
    sorted by id (``GroupInfo``/``Group``: ``id, apps, pods, groups, dependencies, version``);
    ``None`` when no app implies it (the root always exists)."""
    members: dict[str, list[Json]] = defaultdict(list)
    children: dict[str, set[str]] = defaultdict(set)
    for app in apps:
        parent = parent_of(app["id"])
        if not _within(parent, group_id):
            continue
        members[parent].append(app)
        while parent != group_id and parent != "/":
            up = parent_of(parent)
            children[up].add(parent)
            parent = up
    if group_id != "/" and group_id not in members and group_id not in children:
        return None

    def render(gid: str) -> Json:
        group: Json = {"id": gid, "apps": sorted(members[gid], key=lambda a: str(a["id"]))}
        if pods:
            group["pods"] = []
        group["groups"] = [render(child) for child in sorted(children[gid])]
        group["dependencies"] = []
        group["version"] = version
        return group

    return render(group_id)


def group_targets(
    apps: Mapping[str, Json], group_id: str, update: Mapping[str, Any],
    complete: Callable[[Mapping[str, Any], str], Json],
) -> dict[str, Json | None]:
    """What a ``GroupUpdate`` makes of the apps (``None``: removed), by
    ``UpdateGroupStructureOp@v1.10.26``: a group's ``apps``, when given, replace its own apps
    (those not listed go), and its ``groups``, when given, replace its subgroups (the apps of
    those not listed go); ``complete`` reads one app of the update as a full definition."""
    targets: dict[str, Json | None] = {}

    def visit(gid: str, body: Mapping[str, Any], at: str) -> None:
        if not isinstance(body, Mapping):
            raise invalid_json(at, "error.expected.jsobject")
        listed_apps = body.get("apps")
        if listed_apps is not None:
            listed: dict[str, Json] = {}
            for index, app in enumerate(_list(listed_apps, f"{at}/apps")):
                app_id = resolve(_id(app, f"{at}/apps({index})"), gid)
                listed[app_id] = complete(app, app_id)
            targets.update({a: None for a in apps if parent_of(a) == gid and a not in listed})
            targets.update(listed)
        listed_groups = body.get("groups")
        if listed_groups is not None:
            kept = set()
            for index, sub in enumerate(_list(listed_groups, f"{at}/groups")):
                sub_id = resolve(_id(sub, f"{at}/groups({index})"), gid)
                kept.add(sub_id)
                visit(sub_id, sub, f"{at}/groups({index})")
            for app_id in apps:
                parent = parent_of(app_id)
                if parent != gid and _within(parent, gid) and not any(
                        _within(parent, k) for k in kept):
                    targets[app_id] = None

    visit(group_id, update, "")
    return targets


def _list(value: Any, at: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid_json(at, "error.expected.jsarray")
    return value


def _id(item: Any, at: str) -> str:
    if not isinstance(item, Mapping):
        raise invalid_json(at, "error.expected.jsobject")
    value = item.get("id")
    if value is None:
        raise invalid_json(f"{at}/id", "error.path.missing")
    if not isinstance(value, str):
        raise invalid_json(f"{at}/id", "error.expected.jsstring")
    return value


def missing_group(group_id: str) -> ApiError:
    return ApiError(404, {"message": f"Group '{group_id}' does not exist"})
