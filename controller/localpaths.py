"""Local file system paths cut out of texts that the ops port shows (``/status``, the page).

Error texts name the files they failed on: a storage error its bundle directory, a credential
source its password file, an ``OSError`` its file name. The ops port is often reachable by more
people than the host, so before a text is shown each path the config names becomes that
config key (``cannot write <storage.filesystem.path>/pullsecret-x.tar.gz: read-only file
system``), and any other absolute path on this host becomes ``<local path>``. Logs keep the
paths: they stay with the operators.

A path is told from an app id (also ``/a/b``) by its first component: a local path starts with
an entry of this host's root directory (``/etc``, ``/mnt``, ``/tmp``...). An app id that starts
the same way is cut from an error text too (never from the app's own row): that hides, it never
reveals.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import fields, is_dataclass
from pathlib import PurePath

__all__ = ["LocalPaths"]

_PATH = re.compile(r"(?:(?<=file://)|(?<![\w/.:~-]))/[^\s'\"`<>|;,()\[\]{}]+")
"""An absolute path: after ``file://`` or after a character no URL or word puts before its
path (so ``https://host/p`` and ``registry:5000/p`` are left alone)."""
_TRAILING = ".:!?"
"""Punctuation that ends the sentence, not the path."""
_LOCAL = "<local path>"


class LocalPaths:
    """A text with local paths cut out (call it); the paths the config names become its keys."""

    def __init__(self, named: Mapping[str, str | os.PathLike[str]], roots: Iterable[str]) -> None:
        """``named``: config key -> path; ``roots``: the names in this host's ``/``."""
        by_path = {os.fspath(path).rstrip("/"): key for key, path in named.items()}
        self._keys = {path: key for path, key in by_path.items() if len(path) > 1}
        longest_first = sorted(self._keys, key=len, reverse=True)
        alternatives = "|".join(re.escape(path) for path in longest_first)
        self._named = (re.compile(f"(?:{alternatives})" + r"(?=$|[/\s'\",;:)\]]|\.(?:\s|$))")
                       if longest_first else None)
        self._roots = frozenset(roots)

    @classmethod
    def of(cls, config: object) -> LocalPaths:
        """The paths named anywhere in ``config`` (a tree of dataclasses), and this host's
        root directory."""
        roots: list[str] = []
        with contextlib.suppress(OSError):
            roots = os.listdir("/")
        return cls(dict(_paths_in(config, "")), roots)

    def __call__(self, text: str) -> str:
        if "/" not in text:  # most texts: no path at all, at the cost of one scan
            return text
        if self._named is not None:
            text = self._named.sub(lambda m: f"<{self._keys[m.group(0)]}>", text)
        return _PATH.sub(self._cut, text)

    def _cut(self, match: re.Match[str]) -> str:
        path = match.group(0)
        core = path.rstrip(_TRAILING)
        if core.split("/", 2)[1] not in self._roots:
            return path
        return _LOCAL + path[len(core):]


def _paths_in(value: object, key: str) -> Iterator[tuple[str, PurePath]]:
    if isinstance(value, PurePath):
        yield key, value
    elif is_dataclass(value) and not isinstance(value, type):
        for field in fields(value):
            yield from _paths_in(getattr(value, field.name),
                                 f"{key}.{field.name}" if key else field.name)
    elif isinstance(value, tuple | list):
        for i, item in enumerate(value):
            yield from _paths_in(item, f"{key}[{i}]")
