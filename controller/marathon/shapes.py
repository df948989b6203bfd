"""An answer's JSON checked in shape: an object where one is due, a member of the kind due, and
list entries without a usable id dropped and logged (never quoted)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import structlog

from controller.applist import ListedApp
from controller.errors import MarathonUnavailable
from controller.marathon.text import kind_of

__all__ = ["checked_object", "id_problem", "listed_problem", "member", "usable_entries"]

log = structlog.get_logger(component="marathon")

_MAX_SKIPS_LOGGED = 20


def checked_object(data: Any, request: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MarathonUnavailable(f"{request}: the answer is {kind_of(data)}, not an object")
    return data


def member(data: Any, key: str, empty: list[Any] | dict[str, Any], request: str) -> Any:
    """``data[key]``, which must be what ``empty`` is (a list or an object)."""
    envelope = checked_object(data, request)
    if key not in envelope:
        raise MarathonUnavailable(f"{request}: the answer has no {key}")
    value = envelope[key]
    if not isinstance(value, type(empty)):
        raise MarathonUnavailable(f"{request}: {key} is {kind_of(value)}, not {kind_of(empty)}")
    return value


def id_problem(item: Any) -> str | None:
    """Why an entry of a Marathon list is unusable (no object, no string id), or None."""
    if not isinstance(item, dict):
        return f"it is {kind_of(item)}, not an object"
    if "id" not in item:
        return "it has no id"
    if not isinstance(item["id"], str):
        return f"its id is {kind_of(item['id'])}, not a string"
    return None


def listed_problem(item: Any) -> str | None:
    """Why an entry of a decoded app list (``controller.applist``) is no usable app (no object,
    no string id, an id without its leading ``/``), or None."""
    if not isinstance(item, ListedApp):
        return f"it is {kind_of(item)}, not an object"
    app_id = item.id
    if type(app_id) is str:
        return None if app_id.startswith("/") else "its id does not start with /"
    if app_id is msgspec.UNSET:
        return "it has no id"
    return f"its id is {kind_of(app_id)}, not a string"


def usable_entries(items: list[Any], event: str,
                   problem_of: Callable[[Any], str | None]) -> list[Any]:
    """The usable entries; a dropped one is logged with its index and why (never itself).

    Past the first few, the rest are only counted: a broken list must not flood the log.
    """
    kept = []
    skipped = 0
    for index, item in enumerate(items):
        problem = problem_of(item)
        if problem is None:
            kept.append(item)
            continue
        skipped += 1
        if skipped <= _MAX_SKIPS_LOGGED:
            log.warning(event, index=index, reason=problem)
    if skipped > _MAX_SKIPS_LOGGED:
        log.warning(event, not_logged=skipped - _MAX_SKIPS_LOGGED)
    return kept
