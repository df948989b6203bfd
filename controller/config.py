"""Configuration: YAML → validated, frozen ``Settings`` tree (defined in ``controller.settings``).

The file is read with a size bound and parsed by a strict YAML loader (``controller.configfile``).
The structure is then checked against ``config_schema.json`` (generated from the settings
dataclasses), then the meaning (files exist and hold something, env vars set, one credential
kind …). Every problem is collected and reported at once with its path, in words
(``controller.configproblems``), e.g. ``registries[1].credentials.password_env: variable REG_PW
is not set``. Secrets never live in the file: it names where they are (a file or an environment
variable), and no message quotes a value that may be a secret put in the wrong place. Relative
file paths are relative to the config file's directory, as in Prometheus. A key the file leaves
out is not passed to its dataclass, so the default written there applies. A section with a
registration table (the credential kinds, the storage backends) is built by its table, with the
conversions here.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from controller.configfile import CONFIG_FILE_LIMIT, read_document
from controller.configproblems import (
    config_error,
    config_schema,
    join_path,
    kind_words,
    load_schema,
    schema_problems,
    value_problems,
)
from controller.credentials.kinds import CREDENTIAL_KINDS
from controller.errors import ConfigError
from controller.files import (
    DOCKER_CONFIG_LIMIT,
    SECRET_FILE_LIMIT,
    FileTooLargeError,
    read_limited,
)
from controller.reference import InvalidReferenceError, normalize_registry_host, repository_path
from controller.schemacheck import conforms
from controller.settings import (
    ControllerSettings,
    LeaderElectionSettings,
    LoggingSettings,
    MarathonAuthSettings,
    MarathonSettings,
    ReconcileSettings,
    RegistrySettings,
    RemediationSettings,
    SelectorSettings,
    ServerSettings,
    Settings,
    parse_duration,
)
from controller.settingtables import Convert, shown
from controller.settingtree import floor_at
from controller.storage.backends import STORAGE_BACKENDS

__all__ = [
    "CONFIG_FILE_LIMIT",
    "DOCKER_CONFIG_LIMIT",
    "SECRET_FILE_LIMIT",
    "FileTooLargeError",
    "load_schema",
    "load_settings",
    "parse_duration",
    "read_limited",
    "settings_from_mapping",
]

_CA_FILE_LIMIT = 1 << 20  # bytes; Mozilla's whole CA bundle is about 220 kB
_PORT = re.compile(r"[0-9]{1,5}")
_HOST_PORT = re.compile(r"(?P<host>\[[^]]*\]|[^:]*)(?::(?P<port>[0-9]+))?")
"""A registry's ``host[:port]`` (an IPv6 address in brackets), as far as the port goes."""
_SHOWN_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
"""An env var name echoed in messages; a name with lower-case letters may be a misplaced
password, so it is not shown."""


def load_settings(path: Path, env: Mapping[str, str], *, offline: bool = False,
                  storage: bool = True) -> Settings:
    """Read, validate and convert the YAML at ``path``; ``ConfigError`` lists all problems.

    Relative paths in the file are relative to the file's own directory. ``offline`` checks
    the file's syntax and values only: whether the files it names exist, its variables are
    set, its group exists and its storage directory is there is not asked (a config checked
    off its target host). ``storage=False`` leaves out the storage directory alone (a command
    that never touches storage).
    """
    return settings_from_mapping(read_document(path), env, base_dir=path.absolute().parent,
                                 offline=offline, storage=storage)


def settings_from_mapping(data: object, env: Mapping[str, str], *,
                          base_dir: Path | None = None, offline: bool = False,
                          storage: bool = True) -> Settings:
    """Validate an already-parsed config document and build ``Settings``.

    Relative file paths are resolved against ``base_dir`` (default: the working directory);
    ``offline`` and ``storage`` as in ``load_settings``.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping of sections, got {kind_words(data)}"])
    schema = config_schema()
    problems = value_problems(data) or ([] if conforms(data, schema) else
                                        schema_problems(data, schema))
    if problems:
        raise config_error(problems)
    builder = _Builder(env, base_dir or Path.cwd(), offline=offline, storage=storage)
    settings = builder.settings(data)
    if builder.problems:
        raise config_error(builder.problems)
    return settings


def _port(text: str) -> int | None:
    """``text`` as a TCP port (1 to 65535, ASCII digits only), else ``None``."""
    return int(text) if _PORT.fullmatch(text) and 0 < int(text) < 65536 else None


class _Invalid(Exception):
    """A value has a problem (already recorded): its key is left out, so its default applies."""


class _Builder:
    """Converts a schema-valid document into ``Settings``, collecting semantic problems; the
    registration tables build their sections with its conversions (``ConfigChecks``)."""

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
              converters: Mapping[str, Convert]) -> dict[str, Any]:
        """The keys ``data`` gives, each converted by its converter (if it has one).

        Keys left out of ``data`` are left out here too, so the dataclass default applies; so is
        a key whose converter raised ``_Invalid``. Converters run in their mapping's order.
        """
        out = {key: value for key, value in data.items() if key not in converters}
        for key, convert in converters.items():
            if key in data:
                with contextlib.suppress(_Invalid):
                    out[key] = convert(join_path(path, key), data[key])
        return out

    def settings(self, data: dict[str, Any]) -> Settings:
        settings = Settings(**self.given("(top level)", data, {
            "marathon": self.marathon,
            "controller": lambda _, section: ControllerSettings(**section),
            "selector": lambda _, section: SelectorSettings(**section),
            "registries": self.registries,
            "storage": functools.partial(STORAGE_BACKENDS.settings, self),
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
            return parse_duration(value, floor_at(path))
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
            self.problem(path, f"{shown(url)} is not a valid URL (check the port, and the "
                         "[ ] around an IPv6 address)")
            return None
        if schemes and (parts.scheme not in schemes or not parts.hostname):
            self.problem(path, f"{shown(url)} is not an http(s) URL")
        elif not parts.scheme:
            self.problem(path, f"{shown(url)} has no scheme (e.g. file://, https://)")
        elif parts.port == 0:
            self.problem(path, f"{shown(url)}: port 0 is not a number from 1 to 65535")
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
                self.problem(f"{path}[{i}]", f"{shown(url)} includes the API path: use the "
                             f"base URL, e.g. {base}")
            elif parts is not None and (parts.query or parts.fragment):
                self.problem(f"{path}[{i}]", f"{shown(url)} has a query or fragment: use the "
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
                "credentials": functools.partial(CREDENTIAL_KINDS.settings, self),
                "apps": lambda _, apps: tuple(apps),
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
            self.problem(path, f"port {shown(port)} is not a number from 1 to 65535")

    def verify_repository(self, registry: str, path: str, repository: str) -> str:
        """A repository name docker would pull from ``registry`` (no tag, no digest)."""
        try:
            repository_path(registry, repository)
        except InvalidReferenceError as e:
            self.problem(path, str(e))
            raise _Invalid from None
        return repository

    def basic_auth_username(self, path: str, data: Mapping[str, Any]) -> None:
        """Basic auth sends ``username:password``, so a ':' in the name would move the rest
        into the password (RFC 7617); docker reads its config.json's ``auth`` the same way."""
        if ":" in data.get("username", ""):
            self.problem(f"{path}.username", "must not contain ':' (basic auth cannot carry it)")

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
            self.problem(path, f"{shown(listen)} is not host:port (e.g. 127.0.0.1:9102, or "
                         "0.0.0.0:9102 for every interface)")
        else:
            self.problem(path, f"port {shown(port_text)} is not a number from 1 to 65535")
        raise _Invalid

    def leader_election(self, path: str, data: dict[str, Any]) -> LeaderElectionSettings:
        hosts, slash, chroot = data["zookeeper"].partition("/")
        for i, hostport in enumerate(hosts.split(",")):
            host, _, port = hostport.rpartition(":")
            if not host or _port(port) is None:
                self.problem(f"{path}.zookeeper",
                             f"server {i + 1} ({shown(hostport)}) is not host:port")
        if slash and {".", ".."} & set(chroot.split("/")):
            self.problem(f"{path}.zookeeper", "the chroot must not have . or .. in it "
                         "(ZooKeeper paths are absolute)")
        return LeaderElectionSettings(**self.given(path, data, {
            "session_timeout_seconds": self.duration}))
