"""Marathon's label selector grammar (``LabelSelector.scala``), for ``GET /v2/apps?label=``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from controller.simulator.wire import ApiError

_SELECTOR_TOKEN: Final = re.compile(r"\s*(?:(?P<term>(?:\\.|[-A-Za-z0-9_.])+)|(?P<op>==|!=|[(),]))")
_ESCAPE: Final = re.compile(r"\\(.)")
_END: Final = ("end", "")


def _tokens(query: str) -> list[tuple[str, str]] | None:
    """``("term", unescaped)`` and ``("op", …)`` tokens, then ``_END``; ``None`` if unlexable."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while query[position:].strip():
        match = _SELECTOR_TOKEN.match(query, position)
        if match is None:
            return None
        term = match.group("term")
        tokens.append(("term", _ESCAPE.sub(r"\1", term)) if term is not None
                      else ("op", match.group("op")))
        position = match.end()
    return [*tokens, _END]


def parse_label_selector(query: str) -> Callable[[Mapping[str, str]], bool]:
    """Compile Marathon's selector grammar (``LabelSelector.scala``, docs/marathon.md §1.1).

    Each clause is ``(key, operator, values)``; every operator needs the label to exist.
    """
    error = ApiError(422, {"message": f"Can not parse label selector {query}"})
    tokens = _tokens(query)
    if tokens is None:
        raise error
    at = 0

    def take(kind: str, value: str | None = None) -> str:
        nonlocal at
        found_kind, found = tokens[at]
        if found_kind != kind or (value is not None and found != value):
            raise error
        at += 1
        return found

    clauses: list[tuple[str, str, frozenset[str]]] = []
    while tokens[at] != _END:
        if clauses:
            take("op", ",")
        key = take("term")
        kind, operator = tokens[at]
        if kind == "op" and operator in ("==", "!="):
            take("op")
            clauses.append((key, operator, frozenset([take("term")])))
        elif kind == "term" and operator in ("in", "notin") and tokens[at + 1] == ("op", "("):
            take("term")
            take("op", "(")
            members: list[str] = []
            while tokens[at] != ("op", ")"):
                if members:
                    take("op", ",")
                members.append(take("term"))
            take("op", ")")
            clauses.append((key, operator, frozenset(members)))
        else:
            clauses.append((key, "exists", frozenset()))

    def matches(labels: Mapping[str, str]) -> bool:
        for key, operator, values in clauses:
            value = labels.get(key)
            if value is None:
                return False
            if operator in ("==", "in") and value not in values:
                return False
            if operator in ("!=", "notin") and value in values:
                return False
        return True

    return matches

