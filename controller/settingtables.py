"""Registration tables: a config section that holds exactly one of several keys, one key per
adapter behind a port (a credential kind, a storage backend), as kopf registers handlers.

A port's table (``controller.credentials.kinds``, ``controller.storage.backends``) has one
``Choice`` per key, and the rest follows from it: the settings the loader builds (the entry's
dataclass: a subclass of the section's, with the key as its one field of its own), the section's
JSON Schema (``controller.settings_schema``), the loader's checks (the entry's ``check`` and the
table's rules for the section) and the adapter the wiring builds. An entry names its adapter's
factory by an import string, which the wiring imports only when a config sets the key: an
adapter's libraries (aiobotocore for S3 and ECR) are loaded only then, and the adapters stay
named by the wiring alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import SplitResult

__all__ = ["Check", "Choice", "ChoiceTable", "ConfigChecks", "Convert", "either", "own_fields",
           "shown"]

_MAX_SHOWN = 60  # characters of a value quoted in a message

Convert = Callable[[str, Any], Any]
"""Turns the value at a path into what its dataclass field holds, recording any problem."""


class ConfigChecks(Protocol):
    """What the loader (``controller.config``) offers a table's checks. Each conversion records
    a problem with the path of its key and goes on, so that a file's problems are reported all
    at once; one that cannot give a value raises, and its key is then left out."""

    offline: bool
    """Values only: nothing on this host (files, variables, groups, storage) is asked."""
    check_storage: bool
    """Whether the storage must be there (checked neither offline nor for a command that
    never touches storage)."""

    def problem(self, path: str, message: str) -> None:
        """Record ``message`` as the problem of the key at ``path``."""
        ...

    def given(self, path: str, data: Mapping[str, Any],
              converters: Mapping[str, Convert]) -> dict[str, Any]:
        """The keys ``data`` gives, each converted by its converter (if it has one)."""
        ...

    def file(self, path: str, value: str, limit: int) -> tuple[Path, str | None]:
        """The file ``value`` (relative to the config's directory) and its text, if readable."""
        ...

    def secret_file(self, path: str, value: str) -> Path:
        """A password or token file: it must hold something besides white space."""
        ...

    def env_var(self, path: str, name: str) -> str:
        """The name of a variable that must be set (and not empty)."""
        ...

    def duration(self, path: str, value: str | float) -> float:
        """Seconds, at least the key's ``Floor``."""
        ...

    def url(self, path: str, url: str, *,
            schemes: tuple[str, ...] = ("http", "https")) -> SplitResult | None:
        """The parts of a URL of one of ``schemes`` (any if empty), or ``None``."""
        ...

    def endpoint_url(self, path: str, url: str) -> str:
        """An http(s) URL of an API endpoint."""
        ...

    def basic_auth_username(self, path: str, data: Mapping[str, Any]) -> None:
        """The ``username`` in ``data``, if any, must fit basic auth (no ':')."""
        ...


Check = Callable[[ConfigChecks, str, Any], Any]
"""Converts a key's schema-valid value (at a path) into its field's, recording any problem."""

B = TypeVar("B")


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice(Generic[B]):
    """One key of a section that holds exactly one: a credential kind, a storage backend."""

    key: str
    """Its key in the config file, e.g. ``password_env`` or ``s3``."""
    settings: type[B]
    """The section's settings when the file sets this key: a subclass of the table's base with
    ``key`` as its one field of its own (whose docstring describes the key in the schema)."""
    factory: str
    """``module:function`` that builds the adapter (its signature is the port table's); the
    wiring imports it only when a config sets this key."""
    check: Check | None = None
    """Converts the key's value, recording problems; none: the value as the file writes it."""


E = TypeVar("E", bound=Choice[Any])


class ChoiceTable(Generic[B, E]):
    """A port's table: the section's base settings, and one entry per key in the order the
    schema and the messages list them."""

    def __init__(self, base: type[B], entries: Iterable[E], *, noun: str,
                 shared: Mapping[str, Check] | None = None) -> None:
        self.base = base
        """The section's settings class: the keys that every entry shares."""
        self.noun = noun
        """What one entry is, in messages (e.g. "backend")."""
        self.shared: Mapping[str, Check] = dict(shared or {})
        """Checks of the base's keys that need one."""
        self.entries: dict[str, E] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: E) -> E:
        """Add ``entry``: a new key, whose settings subclass ``base`` with the key as their one
        field of their own."""
        if entry.key in self.entries:
            raise ValueError(f"{entry.key} is already in the table")
        if not issubclass(entry.settings, self.base) or (
                own_fields(entry.settings, self.base) != [entry.key]):
            raise TypeError(f"{entry.settings.__name__} must subclass {self.base.__name__} "
                            f"with {entry.key} as its one field of its own")
        self.entries[entry.key] = entry
        return entry

    def entry_of(self, settings: B) -> E:
        """The entry whose key the section ``settings`` sets."""
        for entry in self.entries.values():
            if type(settings) is entry.settings:
                return entry
        raise LookupError(f"{type(settings).__name__} sets none of {', '.join(self.entries)}")

    def choices(self) -> list[str]:
        """The ways to fill the section, as the message of ``exactly_one`` lists them."""
        return list(self.entries)

    def exactly_one(self) -> str:
        """The problem of a section that sets none of the keys, or more than one."""
        return f"set exactly one {self.noun}: {either(self.choices())}"

    def check_section(self, checks: ConfigChecks, path: str, data: Mapping[str, Any],
                      found: Sequence[E]) -> None:
        """Rules of the section's shared keys, given the entries whose keys it sets (none here)."""

    def settings(self, checks: ConfigChecks, path: str, data: Mapping[str, Any]) -> B:
        """The section's settings, from its schema-valid ``data``: the class of the entry whose
        key it sets; the base (its problems recorded) when it sets none or more than one."""
        found = [entry for key, entry in self.entries.items() if key in data]
        if len(found) != 1:
            checks.problem(path, self.exactly_one())
        self.check_section(checks, path, data, found)
        checked = [*((entry.key, entry.check) for entry in self.entries.values() if entry.check),
                   *self.shared.items()]
        values = checks.given(path, data, {key: partial(check, checks) for key, check in checked})
        cls = found[0].settings if len(found) == 1 else self.base
        names = {item.name for item in fields(cls)}  # type: ignore[arg-type]
        return cls(**{key: value for key, value in values.items() if key in names})


def own_fields(cls: type, base: type) -> list[str]:
    """The names of the dataclass ``cls``'s fields that its base dataclass ``base`` lacks."""
    inherited = {item.name for item in fields(base)}
    return [item.name for item in fields(cls) if item.name not in inherited]


def either(choices: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b, or c``."""
    if len(choices) < 3:
        return " or ".join(choices)
    return f"{', '.join(choices[:-1])}, or {choices[-1]}"


def shown(value: object) -> str:
    """``value`` as a message quotes it: YAML spelling, cut short."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    else:
        text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 1] + "…"
