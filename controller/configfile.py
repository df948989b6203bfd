"""Reading the config file: bounded, UTF-8, and one YAML document read by a strict loader.

The file is read with a size bound and parsed by a YAML loader that refuses what an operator's
config never needs and a hostile one abuses (anchors and aliases, tags, deep nesting), and
reports duplicate keys, which PyYAML would silently resolve. No problem quotes the file's text:
it may hold a secret put in the wrong place.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, cast

import yaml

from controller.configproblems import config_error
from controller.errors import ConfigError
from controller.files import read_limited
from controller.settingtables import shown

__all__ = ["CONFIG_FILE_LIMIT", "read_document"]

CONFIG_FILE_LIMIT = 1 << 20
"""Bytes; a config file is a few kB, so anything past this is the wrong file."""

_MAX_DEPTH = 32  # the schema nests 5 deep
_YAML_WORDS = (
    (re.compile(r"found character '\\t' that cannot start any token"),
     "found a tab character where indentation is expected (indent with spaces)"),
    (re.compile(r"found character '(.+)' that cannot start any token"),
     r"\1 cannot start a value here (put the value in quotes)"),
    (re.compile(r"mapping values are not allowed here"),
     "found ':' where no key can start (put a value that contains ': ' in quotes, or fix "
     "the indentation)"),
    (re.compile(r"found unexpected end of stream"),
     "the file ends inside a quoted value (a closing quote is missing)"),
    (re.compile(r"but found another document"),
     "found a second document (---); a config file holds one"),
    (re.compile(r"found unhashable key"), "a key must be a name, not a list or a mapping"),
    (re.compile(r"'<stream end>'"), "the end of the file"),
    (re.compile(r"'<scalar>'"), "a value"),
    (re.compile(r"'<block end>'"), "the end of an indented block"),
)
_TAG_PREFIX = "tag:yaml.org,2002:"
_PLAIN_TAGS = frozenset({None, "!", _TAG_PREFIX + "str"})
"""Tags allowed on a node: none, or the ones that make a value text (others can crash PyYAML)."""


class _ConfigLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses what an operator's config never needs and a hostile one abuses.

    Anchors and aliases are refused outright rather than capped: an alias is how a few hundred
    bytes ("billion laughs") become gigabytes (jsonschema's messages ``repr`` the shared value),
    and a config has no need of them. Nesting is bounded as each node is composed, because
    PyYAML's composer recurses once per level. Duplicate keys, which PyYAML would silently
    resolve to the last one, are collected in ``duplicates``. Dates stay text.
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TAG_PREFIX + "timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0
        self.duplicates: list[tuple[int, str]] = []

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:  # &name or *name
            raise _refusal("anchors and aliases (&name, *name) are not supported: write each "
                           "value out", event)
        if getattr(event, "tag", None) not in _PLAIN_TAGS:
            raise _refusal("tags (!name) are not supported, except !!str: write a plain value",
                           event)
        nests = isinstance(event, yaml.CollectionStartEvent)
        if nests:
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise _refusal(f"nested more than {_MAX_DEPTH} levels deep", event)
        try:
            return super().compose_node(parent, index)
        finally:
            if nests:
                self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode,
                          deep: bool = False) -> dict[Hashable, Any]:
        first_line: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _TAG_PREFIX + "merge":
                raise yaml.constructor.ConstructorError(
                    None, None, "merge keys (<<) are not supported: write the keys out",
                    key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # SafeLoader refuses it as an unhashable key
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                self.duplicates.append((line, f"line {line}: duplicate key {shown(key)} (first "
                                              f"at line {first_line[key]}); remove one of them"))
            first_line.setdefault(key, line)
        return super().construct_mapping(node, deep)

    def construct_checked_int(self, node: yaml.ScalarNode) -> int:
        """An integer, or a problem with its line: Python refuses more than 4300 digits, and
        PyYAML crashes on ``0x_``. The ``ValueError`` (which quotes the text) is not kept."""
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            pass
        raise yaml.constructor.ConstructorError(
            None, None, "this number cannot be read (too many digits, or none): put it in "
            "quotes if it is meant as text", node.start_mark)


_ConfigLoader.add_constructor(_TAG_PREFIX + "int", _ConfigLoader.construct_checked_int)


def _refusal(problem: str, event: yaml.Event) -> yaml.MarkedYAMLError:
    return yaml.composer.ComposerError(None, None, problem, cast(yaml.Mark, event.start_mark))


def read_document(path: Path) -> object:
    """The one YAML document of the config file at ``path``; ``ConfigError`` says why there is
    none (each problem starts with the path)."""
    try:
        data = read_limited(path, CONFIG_FILE_LIMIT)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read the config file ({e.strerror})"]) from None
    text = _decode(path, data)
    try:
        document, duplicates = _parse(text)
    except yaml.MarkedYAMLError as e:
        where = _at(e.problem_mark.line, e.problem_mark.column) if e.problem_mark else ""
        problem = f"not valid YAML{where}: {_yaml_reason(e)}"
    except yaml.reader.ReaderError as e:
        line_start = text.rfind("\n", 0, e.position) + 1
        where = _at(text.count("\n", 0, e.position), e.position - line_start)
        problem = f"not valid YAML{where}: control character U+{e.character:04X} is not allowed"
    else:
        if duplicates:
            raise config_error([f"{path}: {d}" for d in duplicates])
        return document
    # Raised outside the except blocks: a YAML error's marks hold the whole file.
    raise ConfigError([f"{path}: {problem}"])


def _parse(text: str) -> tuple[object, list[str]]:
    """The one YAML document in ``text``, and its duplicate keys (see ``_ConfigLoader``)."""
    loader = _ConfigLoader(text)
    try:
        document = loader.get_single_data()
        return document, [problem for _, problem in sorted(loader.duplicates)]
    finally:
        loader.dispose()


def _decode(path: Path, data: bytes) -> str:
    """The config text; the problem locates the first byte that is not UTF-8 (line and byte).

    The error is raised outside the ``except`` block: a ``UnicodeDecodeError`` holds the bytes.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = e.start
    line = data.count(b"\n", 0, start) + 1
    byte = start - data.rfind(b"\n", 0, start)
    raise ConfigError([f"{path}: the config file is not UTF-8 text (line {line}, byte {byte}); "
                       "save it as UTF-8"])


def _at(line: int, column: int) -> str:
    """Where in the file, from 0-based ``line`` and ``column``."""
    return f" at line {line + 1}, column {column + 1}"


def _yaml_reason(error: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem in plainer words; never its snippet of the file, which may hold a secret."""
    reason = error.problem or error.context or "cannot be parsed"
    for pattern, words in _YAML_WORDS:
        reason = pattern.sub(words, reason)
    return reason
