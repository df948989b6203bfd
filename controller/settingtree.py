"""The settings classes as one tree of keys, the registration tables' entries included.

A section with a registration table (``controller.settingtables``) has its own keys and, in
the table's order, each entry's key. The schema generator (``controller.settings_schema``)
describes the keys from here, and the loader finds here each key's duration floor and the words
for each pattern; both follow an entry registered after import.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from controller.credentials.kinds import CREDENTIAL_KINDS
from controller.settings import Floor, Pattern, Settings, ValueKind
from controller.settingtables import ChoiceTable, own_fields
from controller.storage.backends import STORAGE_BACKENDS

__all__ = ["TABLES", "floor_at", "pattern_words", "section_fields", "table_of", "type_hints"]

TABLES: tuple[ChoiceTable[Any, Any], ...] = (CREDENTIAL_KINDS, STORAGE_BACKENDS)
"""Each section that holds exactly one key of a port's table."""


def table_of(cls: type) -> ChoiceTable[Any, Any] | None:
    """The registration table whose base is the section ``cls``, if any."""
    return next((table for table in TABLES if table.base is cls), None)


def section_fields(cls: type) -> list[tuple[type, dataclasses.Field[Any]]]:
    """The keys of the section ``cls``, each with the class that declares it: its fields, then
    each table entry's own field."""
    found = [(cls, item) for item in dataclasses.fields(cls)]
    table = table_of(cls)
    if table is not None:
        for entry in table.entries.values():
            own = own_fields(entry.settings, cls)
            found += [(entry.settings, item) for item in dataclasses.fields(entry.settings)
                      if item.name in own]
    return found


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """The fields' types of the dataclass ``cls``, ``Annotated`` metadata included."""
    return get_type_hints(cls, include_extras=True)


def floor_at(path: str) -> Floor | None:
    """The ``Floor`` of the duration key at ``path`` (e.g. ``registries[0].max_age``). Only
    the sections along the path are read: every start pays for this, and a file names few
    durations."""
    hint: Any = Settings
    metadata: tuple[Any, ...] = ()
    for name in re.sub(r"\[[0-9]+\]", "", path).split("."):
        if not (dataclasses.is_dataclass(hint) and isinstance(hint, type)):
            return None
        owner = next((o for o, item in section_fields(hint) if item.name == name), None)
        if owner is None:
            return None
        hint, metadata, _ = _unwrapped(type_hints(owner)[name])
    return next((extra for extra in metadata if isinstance(extra, Floor)), None)


def pattern_words() -> Mapping[str, Pattern]:
    """Every pattern a key uses, by its regex: the words that messages use instead of it."""
    return _patterns(_registered())


def _registered() -> tuple[type, ...]:
    """What the tables hold now: the caches below are kept per state of the tables."""
    return tuple(entry.settings for table in TABLES for entry in table.entries.values())


@functools.cache
def _patterns(_: tuple[type, ...]) -> dict[str, Pattern]:
    found = {}
    for _path, metadata in _keys():
        for extra in metadata:
            pattern = extra.pattern if isinstance(extra, ValueKind) else extra
            if isinstance(pattern, Pattern):
                found[pattern.regex] = pattern
    return found


def _keys() -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Each key by its path with list indexes left out (``registries[].max_age``), and the
    ``Annotated`` metadata of its type."""
    sections: list[tuple[str, type]] = [("", Settings)]
    while sections:
        prefix, cls = sections.pop()
        for owner, item in section_fields(cls):
            path = f"{prefix}.{item.name}" if prefix else item.name
            hint, metadata, listed = _unwrapped(type_hints(owner)[item.name])
            path += "[]" if listed else ""
            yield path, metadata
            if dataclasses.is_dataclass(hint) and isinstance(hint, type):
                sections.append((path, hint))


def _unwrapped(hint: Any) -> tuple[Any, tuple[Any, ...], bool]:
    """A key's type without ``Annotated``, ``None`` and ``tuple[...]``: the type, the
    ``Annotated`` metadata, and whether the key holds a list."""
    metadata: tuple[Any, ...] = ()
    listed = False
    while True:
        if get_origin(hint) is Annotated:
            metadata += hint.__metadata__
            hint = hint.__origin__
        elif get_origin(hint) in (Union, types.UnionType):
            hint = next(a for a in get_args(hint) if a is not type(None))
        elif get_origin(hint) is tuple:
            hint, listed = get_args(hint)[0], True
        else:
            return hint, metadata, listed
