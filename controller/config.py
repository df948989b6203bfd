"""Configuration: YAML → validated, frozen ``Settings`` tree (defined in ``controller.settings``).

The file is read with a size bound and parsed by a strict YAML loader (no anchors or aliases,
bounded nesting, no duplicate keys). The structure is then checked against
``config_schema.json`` (generated from the settings dataclasses), then the meaning (files exist
and hold something, env vars set, one credential kind …). Every problem is collected and reported
at once with its path, in words, e.g.
``registries[1].credentials.password_env: variable REG_PW is not set``. Secrets never live in
the file: it names where they are (a file or an environment variable), and no message quotes a
value that may be a secret put in the wrong place. Relative file paths are relative to the
config file's directory, as in Prometheus. A key the file leaves out is not passed to its
dataclass, so the default written there applies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import grp
import json
import math
import re
import types
from collections.abc import Callable, Hashable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union, cast, get_args, get_origin, get_type_hints
from urllib.parse import SplitResult, urlsplit, urlunsplit

import yaml

from controller.errors import ConfigError
from controller.files import DOCKER_CONFIG_LIMIT, SECRET_FILE_LIMIT, read_limited
from controller.mounts import directory_problem
from controller.reference import InvalidReferenceError, normalize_registry_host, repository_path
from controller.schemacheck import conforms
from controller.settings import (
    DURATION,
    DURATION_RULE,
    PATTERNS,
    ControllerSettings,
    CredentialKind,
    CredentialSettings,
    EcrSettings,
    FilesystemStorageSettings,
    Floor,
    LeaderElectionSettings,
    LoggingSettings,
    MarathonAuthSettings,
    MarathonSettings,
    Pattern,
    ReconcileSettings,
    RegistrySettings,
    RemediationSettings,
    S3StorageSettings,
    SelectorSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    duration_text,
)

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "CONFIG_FILE_LIMIT",
    "load_schema",
    "load_settings",
    "parse_duration",
    "settings_from_mapping",
]

CONFIG_FILE_LIMIT = 1 << 20
"""Bytes; a config file is a few kB, so anything past this is the wrong file."""

_SCHEMA_FILE = "config_schema.json"
_CA_FILE_LIMIT = 1 << 20  # bytes; Mozilla's whole CA bundle is about 220 kB
_HOUR = 3600.0
_MAX_DURATION = 365 * 24 * _HOUR  # longer is a mistake, and overflows date arithmetic
_MAX_DEPTH = 32  # the schema nests 5 deep
_MAX_PROBLEMS = 50  # a hostile file can make thousands; the first ones say enough
_MAX_SHOWN = 60  # characters of a value quoted in a message
_SECRET_KEYS = frozenset({"password", "token", "secret", "auth", "identitytoken",
                          "aws_secret_access_key", "secret_access_key"})
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": _HOUR, "d": 24 * _HOUR}
_PORT = re.compile(r"[0-9]{1,5}")
_HOST_PORT = re.compile(r"(?P<host>\[[^]]*\]|[^:]*)(?::(?P<port>[0-9]+))?")
"""A registry's ``host[:port]`` (an IPv6 address in brackets), as far as the port goes."""
_DURATION_REF = f"#/$defs/{DURATION.name}"
_SHOWN_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
"""An env var name echoed in messages; a name with lower-case letters may be a misplaced
password, so it is not shown."""

_PATTERN_RULES = {pattern.regex: pattern for pattern in PATTERNS}
"""Words for each schema ``pattern``: what the value should be, and how to write it."""
_UNWORDED = Pattern(regex="", noun="valid", rule=f"see {_SCHEMA_FILE} in the controller package")
_LENGTH_UNITS = {"minLength": "characters", "minItems": "items"}
_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "text",
               "number": "a number", "integer": "a whole number", "boolean": "true or false",
               "null": "nothing (null)"}
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
                self.duplicates.append((line, f"line {line}: duplicate key {_shown(key)} (first "
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


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (``python -m controller.settings_schema`` writes it)."""
    text = resources.files("controller").joinpath(_SCHEMA_FILE).read_text("utf-8")
    return cast(dict[str, Any], json.loads(text))


def load_settings(path: Path, env: Mapping[str, str], *, offline: bool = False,
                  storage: bool = True) -> Settings:
    """Read, validate and convert the YAML at ``path``; ``ConfigError`` lists all problems.

    Relative paths in the file are relative to the file's own directory. ``offline`` checks
    the file's syntax and values only: whether the files it names exist, its variables are
    set, its group exists and its storage directory is there is not asked (a config checked
    off its target host). ``storage=False`` leaves out the storage directory alone (a command
    that never touches storage).
    """
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
            raise _config_error([f"{path}: {d}" for d in duplicates])
        return settings_from_mapping(document, env, base_dir=path.absolute().parent,
                                     offline=offline, storage=storage)
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


def _config_error(problems: list[str]) -> ConfigError:
    if len(problems) > _MAX_PROBLEMS:
        more = len(problems) - _MAX_PROBLEMS
        problems = [*problems[:_MAX_PROBLEMS], f"… and {more} more problems"]
    return ConfigError(problems)


def settings_from_mapping(data: object, env: Mapping[str, str], *,
                          base_dir: Path | None = None, offline: bool = False,
                          storage: bool = True) -> Settings:
    """Validate an already-parsed config document and build ``Settings``.

    Relative file paths are resolved against ``base_dir`` (default: the working directory);
    ``offline`` and ``storage`` as in ``load_settings``.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping of sections, got {_kind(data)}"])
    problems = _value_problems(data) or ([] if conforms(data, _schema()) else
                                         _schema_problems(data))
    if problems:
        raise _config_error(problems)
    builder = _Builder(env, base_dir or Path.cwd(), offline=offline, storage=storage)
    settings = builder.settings(data)
    if builder.problems:
        raise _config_error(builder.problems)
    return settings


@functools.cache
def _floors() -> dict[str, Floor]:
    """Each duration key's ``Floor`` (``controller.settings``), by its path with list indexes
    left out, e.g. ``registries[].max_age``."""
    found: dict[str, Floor] = {}
    sections: list[tuple[str, type]] = [("", Settings)]
    while sections:
        prefix, cls = sections.pop()
        for name, hint in get_type_hints(cls, include_extras=True).items():
            path = f"{prefix}.{name}" if prefix else name
            metadata: tuple[Any, ...] = ()
            while True:
                if get_origin(hint) is Annotated:
                    metadata += hint.__metadata__
                    hint = hint.__origin__
                elif get_origin(hint) in (Union, types.UnionType):
                    hint = next(a for a in get_args(hint) if a is not type(None))
                elif get_origin(hint) is tuple:
                    hint, path = get_args(hint)[0], path + "[]"
                else:
                    break
            for floor in (extra for extra in metadata if isinstance(extra, Floor)):
                found[path] = floor
            if dataclasses.is_dataclass(hint) and isinstance(hint, type):
                sections.append((path, hint))
    return found


def _floor(path: str) -> Floor | None:
    """The ``Floor`` of the duration key at ``path`` (e.g. ``registries[0].max_age``)."""
    return _floors().get(re.sub(r"\[[0-9]+\]", "[]", path))


def _too_short(floor: Floor) -> str:
    return f"must be at least {duration_text(floor.seconds)} ({floor.why})"


def parse_duration(value: str | float, floor: Floor | None = None) -> float:
    """Seconds in ``90s``, ``30m``, ``6h``, ``1d``, ``1h30m`` or a plain number of seconds;
    at least ``floor`` when given."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(f"{_shown(value)} is not a duration: {DURATION_RULE}")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if floor is not None and not seconds >= floor.seconds:  # also NaN
        raise ValueError(_too_short(floor))
    if not seconds > 0:  # also NaN
        raise ValueError("must be more than 0 seconds")
    if seconds > _MAX_DURATION:
        raise ValueError("must be at most 365d")
    return seconds


def _format_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _join(path: str, key: str) -> str:
    return key if path == "(top level)" else f"{path}.{key}"


def _shown(value: object) -> str:
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


def _kind(value: object, *, show: bool = True) -> str:
    """What ``value`` is, in words (never a Python type name); ``show`` quotes a scalar."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return _shown(value) if show else "true or false"
    if isinstance(value, int | float):
        return f"the number {_shown(value)}" if show else "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a value of another kind"


def _value_problems(data: dict[str, Any]) -> list[str]:
    """Keys that are not names and numbers that are not finite: things the schema lets pass.

    Walks with an explicit stack rather than recursion.
    """
    problems: list[str] = []
    stack: list[tuple[tuple[str | int, ...], object]] = [((), data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            items = list(value.items())
            for key, _ in items:
                if not isinstance(key, str):
                    problems.append(f"{_format_path(where)}: the key {_shown(key)} is not "
                                    "text (put it in quotes if it is meant as a name)")
            stack.extend(((*where, k), v) for k, v in reversed(items) if isinstance(k, str))
        elif isinstance(value, list):
            stack.extend(((*where, i), v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{_format_path(where)}: expected a finite number, got "
                            f"{_shown(value)}")
    return problems


@functools.cache
def _schema() -> dict[str, Any]:
    return load_schema()


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    """The schema's validator, built once: the schema is package data. Loaded only for a config
    that ``conforms`` doubts, to find and word its problems."""
    import jsonschema

    return jsonschema.Draft202012Validator(_schema())


def _schema_problems(data: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for error in _validator().iter_errors(data):
        problems.extend(_schema_problem(_format_path(error.absolute_path), error))
    return sorted(set(problems), key=problems.index)


def _schema_problem(path: str, error: jsonschema.ValidationError) -> list[str]:
    """One schema error in words: what is wrong and what is allowed, never a regex."""
    kind, expected, instance = error.validator, error.validator_value, error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if kind == "additionalProperties":
        allowed = set(schema.get("properties", {}))
        return [_unknown_key(_join(path, key), allowed) for key in sorted(set(instance) - allowed)]
    if kind == "required":
        return [f"{_join(path, key)}: missing required key" for key in expected
                if key not in instance]
    rule = _PATTERN_RULES.get(schema.get("pattern", ""))
    echo = rule is None or rule.echo
    if kind == "type":
        wanted = rule.noun if rule else " or ".join(
            _TYPE_WORDS[t] for t in (expected if isinstance(expected, list) else [expected]))
        hint = (" (put it in quotes if it is meant as text)"
                if "text" in wanted and isinstance(instance, int | float) else "")
        return [f"{path}: expected {wanted}, got {_kind(instance, show=echo)}{hint}"]
    if kind == "enum":
        return [f"{path}: must be one of {', '.join(_shown(v) for v in expected)}"]
    if kind == "pattern":
        rule = rule or _UNWORDED
        if not echo:
            return [f"{path}: {rule.rule}; the value is not shown, as it may be a secret"]
        return [f"{path}: {_shown(instance)} is not {rule.noun}: {rule.rule}"]
    if kind in ("minLength", "minItems"):
        return [f"{path}: must not be empty" if expected == 1 else
                f"{path}: must have at least {expected} {_LENGTH_UNITS[kind]}"]
    if kind == "minimum":
        floor = _floor(path) if schema.get("$ref") == _DURATION_REF else None
        return [f"{path}: {_too_short(floor) if floor else f'must be at least {expected}'}"]
    if kind == "maximum":
        return [f"{path}: must be at most {expected}"]
    if kind == "exclusiveMinimum":
        return [f"{path}: must be more than {expected}"]
    return [f"{path}: not allowed here (see rule {kind} in {_SCHEMA_FILE} in the "
            "controller package)"]


def _unknown_key(path: str, allowed: set[str]) -> str:
    if path.rsplit(".", 1)[-1].lower() in _SECRET_KEYS:
        return (f"{path}: secrets must not be written in the config file; name a file or an "
                "environment variable instead (e.g. password_file, password_env)")
    return f"{path}: unknown key (allowed: {', '.join(sorted(allowed))})"


def _port(text: str) -> int | None:
    """``text`` as a TCP port (1 to 65535, ASCII digits only), else ``None``."""
    return int(text) if _PORT.fullmatch(text) and 0 < int(text) < 65536 else None


_Convert = Callable[[str, Any], Any]
"""Turns the value at a path into what its dataclass field holds, recording any problem."""


class _Invalid(Exception):
    """A value has a problem (already recorded): its key is left out, so its default applies."""


class _Builder:
    """Converts a schema-valid document into ``Settings``, collecting semantic problems."""

    def __init__(self, env: Mapping[str, str], base_dir: Path, *, offline: bool,
                 storage: bool) -> None:
        self.env = env
        self.base_dir = base_dir
        self.offline = offline
        """Values only: nothing on this host (files, variables, groups, storage) is asked."""
        self.check_storage = storage and not offline
        """Whether the storage directory must be there."""
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def given(self, path: str, data: Mapping[str, Any],
              converters: Mapping[str, _Convert]) -> dict[str, Any]:
        """The keys ``data`` gives, each converted by its converter (if it has one).

        Keys left out of ``data`` are left out here too, so the dataclass default applies; so is
        a key whose converter raised ``_Invalid``. Converters run in their mapping's order.
        """
        out = {key: value for key, value in data.items() if key not in converters}
        for key, convert in converters.items():
            if key in data:
                with contextlib.suppress(_Invalid):
                    out[key] = convert(_join(path, key), data[key])
        return out

    def settings(self, data: dict[str, Any]) -> Settings:
        settings = Settings(**self.given("(top level)", data, {
            "marathon": self.marathon,
            "controller": lambda _, section: ControllerSettings(**section),
            "selector": lambda _, section: SelectorSettings(**section),
            "registries": self.registries,
            "storage": self.storage,
            "reconcile": self.reconcile,
            "remediation": lambda _, section: RemediationSettings(**section),
            "server": self.server,
            "leader_election": self.leader_election,
            "logging": lambda _, section: LoggingSettings(**section),
        }))
        self.login_within_reconcile(data, settings)
        return settings

    def login_within_reconcile(self, data: dict[str, Any], settings: Settings) -> None:
        """A login time set explicitly must end before the reconcile that runs it is cut off
        (the default is only ever shortened, by the wiring)."""
        bound = settings.reconcile.timeout_seconds
        for i, registry in enumerate(settings.registries):
            given = "verify_timeout" in data["registries"][i]
            if given and registry.verify != "off" and registry.verify_timeout >= bound:
                self.problem(f"registries[{i}].verify_timeout",
                             f"must be less than reconcile.timeout_seconds ({bound:g}s), which "
                             "bounds the whole refresh")

    # -- conversions shared by several sections --------------------------------------------

    def file(self, path: str, value: str, limit: int) -> tuple[Path, str | None]:
        """The file ``value`` (relative to the config's directory) and its text, if readable
        (never read offline)."""
        file = self.base_dir / value
        if self.offline:
            return file, None
        try:
            data = read_limited(file, limit)
        except FileNotFoundError:
            self.problem(path, f"file {file} does not exist")
        except PermissionError:
            self.problem(path, f"file {file} is not readable")
        except OSError as e:
            self.problem(path, f"cannot read file {file}: {e.strerror}")
        else:
            try:
                return file, data.decode("utf-8")
            except UnicodeDecodeError:
                pass
            self.problem(path, f"file {file} is not UTF-8 text")
        return file, None

    def secret_file(self, path: str, value: str) -> Path:
        """A password or token file: it must hold something besides white space."""
        file, text = self.file(path, value, SECRET_FILE_LIMIT)
        if text is not None and not text.strip():
            self.problem(path, f"file {file} is empty")
        return file

    def ca_file(self, path: str, value: str) -> Path:
        return self.file(path, value, _CA_FILE_LIMIT)[0]

    def docker_config(self, path: str, value: str) -> Path:
        return self.file(path, value, DOCKER_CONFIG_LIMIT)[0]

    def env_var(self, path: str, name: str) -> str:
        value = self.env.get(name)
        if not value and not self.offline:
            state = "is not set" if value is None else "is empty"
            self.problem(path, f"variable {name} {state}" if _SHOWN_ENV_NAME.fullmatch(name) else
                         f"the variable it names {state} (the name is not shown: with "
                         "lower-case letters it may be a password put here by mistake)")
        return name

    def duration(self, path: str, value: str | float) -> float:
        """Seconds, at least the key's ``Floor`` (``controller.settings``)."""
        try:
            return parse_duration(value, _floor(path))
        except ValueError as e:
            self.problem(path, str(e))
        raise _Invalid

    def url(self, path: str, url: str, *,
            schemes: tuple[str, ...] = ("http", "https")) -> SplitResult | None:
        """The parts of an http(s) URL (any scheme if ``schemes`` is empty), or ``None``.

        A URL with an ``@`` is never quoted: it may carry a password.
        """
        if "@" in url:
            self.problem(path, "secrets must not be written in the config file: put no user "
                         "or password in the URL")
            return None
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            self.problem(path, f"{_shown(url)} is not a valid URL (check the port, and the "
                         "[ ] around an IPv6 address)")
            return None
        if schemes and (parts.scheme not in schemes or not parts.hostname):
            self.problem(path, f"{_shown(url)} is not an http(s) URL")
        elif not parts.scheme:
            self.problem(path, f"{_shown(url)} has no scheme (e.g. file://, https://)")
        elif parts.port == 0:
            self.problem(path, f"{_shown(url)}: port 0 is not a number from 1 to 65535")
        else:
            return parts
        return None

    def endpoint_url(self, path: str, url: str) -> str:
        self.url(path, url)
        return url

    # -- sections ---------------------------------------------------------------------------

    def marathon(self, path: str, data: dict[str, Any]) -> MarathonSettings:
        return MarathonSettings(**self.given(path, data, {
            "urls": self.marathon_urls, "auth": self.marathon_auth, "ca_file": self.ca_file,
            "timeout_seconds": self.duration}))

    def marathon_urls(self, path: str, urls: list[str]) -> tuple[str, ...]:
        for i, url in enumerate(urls):
            parts = self.url(f"{path}[{i}]", url)
            if parts is not None and "/v2" in parts.path:
                base = urlunsplit(parts._replace(path=parts.path[:parts.path.index("/v2")],
                                                 query="", fragment=""))
                self.problem(f"{path}[{i}]", f"{_shown(url)} includes the API path: use the "
                             f"base URL, e.g. {base}")
            elif parts is not None and (parts.query or parts.fragment):
                self.problem(f"{path}[{i}]", f"{_shown(url)} has a query or fragment: use the "
                             "base URL alone, as every API path is added after it")
        return tuple(url.rstrip("/") for url in urls)

    def marathon_auth(self, path: str, data: dict[str, Any]) -> MarathonAuthSettings:
        password_keys = [k for k in ("password_file", "password_env") if k in data]
        token_keys = [k for k in ("token_file", "token_env") if k in data]
        if len(password_keys) + len(token_keys) != 1:
            self.problem(path, "set exactly one of password_file, password_env, token_file, "
                         "token_env")
        if password_keys and "username" not in data:
            self.problem(f"{path}.username", "missing required key (basic auth needs a username)")
        self.basic_auth_username(path, data)
        if token_keys and "username" in data:
            self.problem(f"{path}.username", "a DC/OS token is used without a username")
        return MarathonAuthSettings(**self.given(path, data, {
            "password_file": self.secret_file, "password_env": self.env_var,
            "token_file": self.secret_file, "token_env": self.env_var}))

    def registries(self, path: str, items: list[dict[str, Any]]) -> tuple[RegistrySettings, ...]:
        seen: dict[str, int] = {}
        out = []
        for i, data in enumerate(items):
            item = f"{path}[{i}]"
            try:
                registry = normalize_registry_host(data["host"])
            except InvalidReferenceError as e:
                self.problem(f"{item}.host", str(e))
                registry = data["host"]
            else:
                self.registry_port(f"{item}.host", registry)
            if registry in seen:
                self.problem(f"{item}.host", f"{data['host']} is already configured in "
                             f"{path}[{seen[registry]}]")
            seen.setdefault(registry, i)
            out.append(RegistrySettings(registry=registry, **self.given(item, data, {
                "credentials": self.credentials, "apps": lambda _, apps: tuple(apps),
                "max_age": self.duration, "min_validity": self.duration,
                "verify_timeout": self.duration, "ca_file": self.ca_file,
                "refused_login_interval": self.duration,
                "verify_repository": functools.partial(self.verify_repository, registry)})))
        return tuple(out)

    def registry_port(self, path: str, registry: str) -> None:
        """The port of a ``host[:port]`` that docker's grammar accepts must still be one TCP
        has, or every login and pull fails once running."""
        match = _HOST_PORT.fullmatch(registry)
        port = match["port"] if match else None
        if port is not None and _port(port) is None:
            self.problem(path, f"port {_shown(port)} is not a number from 1 to 65535")

    def verify_repository(self, registry: str, path: str, repository: str) -> str:
        """A repository name docker would pull from ``registry`` (no tag, no digest)."""
        try:
            repository_path(registry, repository)
        except InvalidReferenceError as e:
            self.problem(path, str(e))
            raise _Invalid from None
        return repository

    def credentials(self, path: str, data: dict[str, Any]) -> CredentialSettings:
        kinds: list[CredentialKind] = [k for k in ("password_env", "password_file",
                                                   "docker_config", "helper", "ecr") if k in data]
        if len(kinds) != 1:
            self.problem(path, "set exactly one credential source: username with password_env "
                         "or password_file, docker_config, helper, or ecr")
            kind: CredentialKind = kinds[0] if kinds else "password_env"
        else:
            kind = kinds[0]
        needs_username = kind in ("password_env", "password_file")
        if needs_username and "username" not in data:
            self.problem(f"{path}.username", "missing required key (a password needs a username)")
        if not needs_username and "username" in data:
            self.problem(f"{path}.username", f"not used with {kind}")
        self.basic_auth_username(path, data)
        return CredentialSettings(kind=kind, **self.given(path, data, {
            "ecr": self.ecr, "password_env": self.env_var, "password_file": self.secret_file,
            "docker_config": self.docker_config}))

    def basic_auth_username(self, path: str, data: Mapping[str, Any]) -> None:
        """Basic auth sends ``username:password``, so a ':' in the name would move the rest
        into the password (RFC 7617); docker reads its config.json's ``auth`` the same way."""
        if ":" in data.get("username", ""):
            self.problem(f"{path}.username", "must not contain ':' (basic auth cannot carry it)")

    def ecr(self, path: str, data: dict[str, Any]) -> EcrSettings:
        return EcrSettings(**self.given(path, data, {"endpoint_url": self.endpoint_url}))

    def storage(self, path: str, data: dict[str, Any]) -> StorageSettings:
        if len([k for k in ("filesystem", "s3") if k in data]) != 1:
            self.problem(path, "set exactly one backend: filesystem or s3")
        return StorageSettings(**self.given(path, data, {
            "filesystem": self.filesystem, "s3": self.s3,
            "previous_locations": self.previous_locations}))

    def previous_locations(self, path: str, values: list[str]) -> tuple[str, ...]:
        for i, value in enumerate(values):
            self.url(f"{path}[{i}]", value.rstrip("/"), schemes=())
        return tuple(value.rstrip("/") for value in values)

    def filesystem(self, path: str, data: dict[str, Any]) -> FilesystemStorageSettings:
        """Files under ``path``; ``uri_prefix`` is derived from it when the file leaves it out.
        The directory must be there (never created: see ``controller.mounts``)."""
        derived = {"uri_prefix": f"file://{Path(data['path'])}"}
        settings = FilesystemStorageSettings(**self.given(path, derived | data, {
            "path": self.absolute_path, "group": self.group,
            **({"uri_prefix": self.uri_prefix} if "uri_prefix" in data else {})}))
        if self.check_storage and settings.path.is_absolute():
            problem = directory_problem(settings.path, require_mount=settings.require_mount)
            if problem is not None:
                self.problem(f"{path}.path", problem)
        return settings

    def absolute_path(self, path: str, value: str) -> Path:
        if not Path(value).is_absolute():
            self.problem(path, "must be an absolute path")
        return Path(value)

    def uri_prefix(self, path: str, value: str) -> str:
        """Each bundle's URI is ``<prefix>/<name>``: a query or fragment would end up before
        the name, and ``file://host/…`` is read by the Mesos fetcher as the relative path
        ``host/…``."""
        prefix = value.rstrip("/")
        parts = self.url(path, prefix, schemes=())
        if parts is not None and (parts.query or parts.fragment):
            self.problem(path, f"{_shown(value)} has a query or fragment: the bundle's name is "
                         "added at the end")
        elif parts is not None and parts.scheme == "file" and parts.netloc:
            self.problem(path, f"{_shown(value)} names a host: write file:///<absolute path> "
                         f"(three slashes), e.g. file:///{parts.netloc}{parts.path}")
        return prefix

    def group(self, path: str, group: str | int) -> str | int:
        if isinstance(group, str) and not self.offline:
            try:
                grp.getgrnam(group)
            except KeyError:
                self.problem(path, f"no group named {group}")
        return group

    def s3(self, path: str, data: dict[str, Any]) -> S3StorageSettings:
        settings = S3StorageSettings(**self.given(path, data, {
            "endpoint_url": self.endpoint_url, "prefix": lambda _, prefix: prefix.strip("/"),
            "presign_ttl": self.duration}))
        if settings.presign_ttl > 7 * 24 * _HOUR:
            self.problem(f"{path}.presign_ttl", "S3 presigned URLs last at most 7 days")
        if data.get("uri_style") == "https" and "kms_key_id" in data:
            self.problem(f"{path}.kms_key_id", "uri_style https fetches anonymously, which S3 "
                         "refuses for SSE-KMS objects; use s3a or presigned, or drop kms_key_id "
                         "(SSE-S3)")
        return settings

    def reconcile(self, path: str, data: dict[str, Any]) -> ReconcileSettings:
        return ReconcileSettings(**self.given(path, data, dict.fromkeys(
            ("resync_seconds", "timeout_seconds", "shutdown_timeout_seconds", "fight_window"),
            self.duration)))

    def server(self, path: str, data: dict[str, Any]) -> ServerSettings:
        return ServerSettings(**self.given(path, data, {"listen": self.listen}))

    def listen(self, path: str, listen: str) -> str:
        host, sep, port_text = listen.rpartition(":")
        if sep and host and _port(port_text) is not None:
            return listen
        if not sep or not host:
            self.problem(path, f"{_shown(listen)} is not host:port (e.g. 127.0.0.1:9102, or "
                         "0.0.0.0:9102 for every interface)")
        else:
            self.problem(path, f"port {_shown(port_text)} is not a number from 1 to 65535")
        raise _Invalid

    def leader_election(self, path: str, data: dict[str, Any]) -> LeaderElectionSettings:
        hosts, slash, chroot = data["zookeeper"].partition("/")
        for i, hostport in enumerate(hosts.split(",")):
            host, _, port = hostport.rpartition(":")
            if not host or _port(port) is None:
                self.problem(f"{path}.zookeeper",
                             f"server {i + 1} ({_shown(hostport)}) is not host:port")
        if slash and {".", ".."} & set(chroot.split("/")):
            self.problem(f"{path}.zookeeper", "the chroot must not have . or .. in it "
                         "(ZooKeeper paths are absolute)")
        return LeaderElectionSettings(**self.given(path, data, {
            "session_timeout_seconds": self.duration}))
