"""Reads the challenges of a ``WWW-Authenticate`` header (RFC 9110 section 11.6.1): pure
parsing, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

_TCHAR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class Challenge(msgspec.Struct, frozen=True):
    """One challenge of a ``WWW-Authenticate`` header; scheme and names are lowercase."""

    scheme: str
    params: Mapping[str, str]


def _top_level_items(header: str) -> list[str]:
    """``header`` split at the commas that are outside quoted strings."""
    items: list[str] = []
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(header):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append(header[start:index])
            start = index + 1
    if quoted:
        raise ValueError("a quoted value is not closed")
    items.append(header[start:])
    return items


def _param_value(text: str) -> str:
    """A token or a quoted string (with ``\\`` escapes), and nothing after it."""
    if not text.startswith('"'):
        if not _TCHAR.fullmatch(text):
            raise ValueError("a parameter value is neither a token nor a quoted string")
        return text
    chars: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            chars.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            if index != len(text) - 1:
                raise ValueError("text follows a quoted value")
            return "".join(chars)
        chars.append(char)
        index += 1
    raise ValueError("a quoted value is not closed")


def _param(text: str) -> tuple[str, str] | None:
    """``name = value`` as a pair, or ``None`` when ``text`` is no parameter."""
    name = _TCHAR.match(text)
    if name is None:
        return None
    rest = text[name.end():].lstrip(" \t")
    if not rest.startswith("="):
        return None
    return name.group().lower(), _param_value(rest[1:].strip(" \t"))


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges in one ``WWW-Authenticate`` value (RFC 9110 section 11.6.1).

    Quoted values may hold commas and escaped quotes; schemes and parameter names are
    case-insensitive.  Raises ``ValueError`` naming what is malformed.
    """
    challenges: list[Challenge] = []
    params: dict[str, str] = {}
    for raw in _top_level_items(header):
        item = raw.strip(" \t")
        if not item:
            continue
        pair = _param(item)
        if pair is None:  # a new challenge: scheme [1*SP (param / token68)]
            scheme = _TCHAR.match(item)
            if scheme is None:
                raise ValueError("a challenge does not start with a scheme")
            rest = item[scheme.end():]
            params = {}
            challenges.append(Challenge(scheme.group().lower(), params))
            if not rest:
                continue
            if rest[0] not in " \t":
                raise ValueError("a scheme is followed by something that is not a parameter")
            rest = rest.strip(" \t")
            pair = _param(rest)
            if pair is None:
                if not _TOKEN68.fullmatch(rest):
                    raise ValueError("a scheme is followed by something that is not a parameter")
                continue
        if not challenges:
            raise ValueError("a parameter comes before any scheme")
        name, value = pair
        if name in params:
            raise ValueError(f"parameter {name!r} is given twice")
        params[name] = value
    return challenges
