"""Configuration: YAML → validated, frozen ``Settings`` tree.

The structure is checked against ``config_schema.json`` (shipped as ``config/schema.json``),
then the meaning (files exist, env vars set, one credential kind …). Every problem is
collected and reported at once with its path, e.g.
``registries[1].credentials.password_env: variable REG_PW is not set``. Secrets never live in
the file: it names where they are (a file or an environment variable).
"""

from __future__ import annotations

import grp
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import jsonschema
import yaml

from controller.errors import ConfigError
from controller.model import BundleFormat
from controller.reference import InvalidReferenceError, normalize_registry_host

__all__ = [
    "CredentialSettings",
    "EcrSettings",
    "FilesystemStorageSettings",
    "LeaderElectionSettings",
    "LoggingSettings",
    "MarathonAuthSettings",
    "MarathonSettings",
    "ReconcileSettings",
    "RegistrySettings",
    "S3StorageSettings",
    "SelectorSettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "load_schema",
    "load_settings",
    "parse_duration",
    "settings_from_mapping",
]

UriStyle = Literal["s3a", "https", "presigned"]
UpdateMethod = Literal["auto", "patch", "put"]
CredentialKind = Literal["password_env", "password_file", "docker_config", "helper", "ecr"]

_HOUR = 3600.0
_SECRET_KEYS = frozenset({"password", "token", "secret", "auth", "identitytoken",
                          "aws_secret_access_key", "secret_access_key"})
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": _HOUR, "d": 24 * _HOUR}


@dataclass(frozen=True, slots=True, kw_only=True)
class MarathonAuthSettings:
    """Basic auth (``username`` + a password source) or a DC/OS token source."""

    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    token_file: Path | None = None
    token_env: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MarathonSettings:
    urls: tuple[str, ...]
    auth: MarathonAuthSettings | None = None
    ca_file: Path | None = None
    timeout_seconds: float = 10.0
    update_method: UpdateMethod = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectorSettings:
    label: str = "pullsecret.enabled"


@dataclass(frozen=True, slots=True, kw_only=True)
class EcrSettings:
    region: str
    registry_id: str | None = None
    role_arn: str | None = None
    endpoint_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialSettings:
    """Where one registry's credentials come from; exactly one ``kind`` is set."""

    kind: CredentialKind
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    docker_config: Path | None = None
    helper: str | None = None
    ecr: EcrSettings | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrySettings:
    host: str
    """The registry as written in the config; ``registry`` is its normalised form."""
    registry: str
    credentials: CredentialSettings
    format: BundleFormat = "config.json"
    apps: tuple[str, ...] = ()
    """App-id glob patterns allowed to receive these credentials; empty means every app."""
    max_age: float = 6 * _HOUR
    min_validity: float = 6 * _HOUR


@dataclass(frozen=True, slots=True, kw_only=True)
class FilesystemStorageSettings:
    path: Path
    uri_prefix: str
    group: str | int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class S3StorageSettings:
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    kms_key_id: str | None = None
    uri_style: UriStyle = "s3a"
    presign_ttl: float = 12 * _HOUR


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageSettings:
    """Exactly one backend is set."""

    filesystem: FilesystemStorageSettings | None = None
    s3: S3StorageSettings | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileSettings:
    resync_seconds: float = 300.0
    workers: int = 4
    max_writes_per_second: float = 5.0
    write_burst: int = 20
    max_concurrent_deployments: int = 10
    dry_run: bool = False
    timeout_seconds: float = 60.0
    shutdown_timeout_seconds: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 9102


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderElectionSettings:
    zookeeper: str
    session_timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    marathon: MarathonSettings
    registries: tuple[RegistrySettings, ...]
    storage: StorageSettings
    selector: SelectorSettings = SelectorSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    server: ServerSettings = ServerSettings()
    leader_election: LeaderElectionSettings | None = None
    logging: LoggingSettings = LoggingSettings()

    def with_overrides(self, **sections: Any) -> Settings:
        """A copy with whole sections replaced (CLI flags, tests)."""
        return replace(self, **sections)


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (the same file as ``config/schema.json``)."""
    text = resources.files("controller").joinpath("config_schema.json").read_text("utf-8")
    return cast(dict[str, Any], json.loads(text))


def load_settings(path: Path, env: Mapping[str, str]) -> Settings:
    """Read, validate and convert the YAML at ``path``; ``ConfigError`` lists all problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{path}: cannot read the config file ({e.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{path}: not valid YAML{where}"]) from None
    return settings_from_mapping(data, env)


def settings_from_mapping(data: object, env: Mapping[str, str]) -> Settings:
    """Validate an already-parsed config document and build ``Settings``."""
    if not isinstance(data, dict):
        raise ConfigError(["(top level): the config must be a mapping of sections"])
    problems = _schema_problems(data)
    if problems:
        raise ConfigError(problems)
    builder = _Builder(env)
    settings = builder.settings(data)
    if builder.problems:
        raise ConfigError(builder.problems)
    return settings


def parse_duration(value: str | float) -> float:
    """Seconds in ``90s``, ``30m``, ``6h``, ``1d``, ``1h30m`` or a plain number of seconds."""
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("must be positive")
        return float(value)
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"{value!r} is not a duration such as 90s, 30m, 6h or 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


def _format_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _join(path: str, key: str) -> str:
    return key if path == "(top level)" else f"{path}.{key}"


def _schema_problems(data: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(load_schema())
    problems: list[str] = []
    for error in validator.iter_errors(data):
        path = _format_path(error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = set(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - allowed):
                if key.lower() in _SECRET_KEYS:
                    problems.append(f"{_join(path, key)}: secrets must not be written in the "
                                    "config file; name a file or an environment variable instead "
                                    "(e.g. password_file, password_env)")
                else:
                    problems.append(f"{_join(path, key)}: unknown key "
                                    f"(allowed: {', '.join(sorted(allowed))})")
        elif error.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", error.message)
            problems.extend(f"{_join(path, key)}: missing required key" for key in missing)
        elif error.validator == "type":
            expected = error.validator_value
            expected_text = " or ".join(expected) if isinstance(expected, list) else expected
            problems.append(f"{path}: expected {expected_text}, got "
                            f"{type(error.instance).__name__}")
        elif error.validator == "enum":
            choices = ", ".join(str(v) for v in error.validator_value)
            problems.append(f"{path}: must be one of {choices}")
        else:
            problems.append(f"{path}: {error.message}")
    return sorted(set(problems), key=problems.index)


class _Builder:
    """Converts a schema-valid document into ``Settings``, collecting semantic problems."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def settings(self, data: dict[str, Any]) -> Settings:
        election = data.get("leader_election")
        return Settings(
            marathon=self.marathon(data["marathon"]),
            selector=SelectorSettings(**data.get("selector", {})),
            registries=self.registries(data["registries"]),
            storage=self.storage(data["storage"]),
            reconcile=ReconcileSettings(**data.get("reconcile", {})),
            server=self.server(data.get("server", {})),
            leader_election=self.leader_election(election) if election is not None else None,
            logging=LoggingSettings(**data.get("logging", {})),
        )

    # -- checks shared by several sections -------------------------------------------------

    def readable_file(self, path: str, value: str) -> Path:
        file = Path(value)
        if not file.is_file():
            self.problem(path, f"file {value} does not exist")
        elif not os.access(file, os.R_OK):
            self.problem(path, f"file {value} is not readable")
        return file

    def env_var(self, path: str, name: str) -> str:
        if not self.env.get(name):
            self.problem(path, f"variable {name} is not set")
        return name

    def duration(self, path: str, value: str | float | None, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as e:
            self.problem(path, str(e))
            return default

    # -- sections ---------------------------------------------------------------------------

    def marathon(self, data: dict[str, Any]) -> MarathonSettings:
        urls = []
        for i, url in enumerate(data["urls"]):
            parts = urlsplit(url)
            if parts.username or parts.password:
                self.problem(f"marathon.urls[{i}]", "secrets must not be written in the config "
                             "file: put no user or password in the URL; use marathon.auth")
            elif parts.scheme not in ("http", "https") or not parts.hostname:
                self.problem(f"marathon.urls[{i}]", f"{url!r} is not an http(s) URL")
            urls.append(url.rstrip("/"))
        auth = self.marathon_auth(data["auth"]) if "auth" in data else None
        ca_file = self.readable_file("marathon.ca_file", data["ca_file"]) if "ca_file" in data \
            else None
        return MarathonSettings(
            urls=tuple(urls), auth=auth, ca_file=ca_file,
            timeout_seconds=float(data.get("timeout_seconds", 10.0)),
            update_method=data.get("update_method", "auto"),
        )

    def marathon_auth(self, data: dict[str, Any]) -> MarathonAuthSettings:
        path = "marathon.auth"
        password_keys = [k for k in ("password_file", "password_env") if k in data]
        token_keys = [k for k in ("token_file", "token_env") if k in data]
        if len(password_keys) + len(token_keys) != 1:
            self.problem(path, "set exactly one of password_file, password_env, token_file, "
                         "token_env")
        if password_keys and "username" not in data:
            self.problem(f"{path}.username", "missing required key (basic auth needs a username)")
        if token_keys and "username" in data:
            self.problem(f"{path}.username", "a DC/OS token is used without a username")
        return MarathonAuthSettings(
            username=data.get("username"),
            password_file=self.readable_file(f"{path}.password_file", data["password_file"])
            if "password_file" in data else None,
            password_env=self.env_var(f"{path}.password_env", data["password_env"])
            if "password_env" in data else None,
            token_file=self.readable_file(f"{path}.token_file", data["token_file"])
            if "token_file" in data else None,
            token_env=self.env_var(f"{path}.token_env", data["token_env"])
            if "token_env" in data else None,
        )

    def registries(self, items: list[dict[str, Any]]) -> tuple[RegistrySettings, ...]:
        seen: dict[str, int] = {}
        out = []
        for i, data in enumerate(items):
            path = f"registries[{i}]"
            try:
                registry = normalize_registry_host(data["host"])
            except InvalidReferenceError as e:
                self.problem(f"{path}.host", str(e))
                registry = data["host"]
            if registry in seen:
                self.problem(f"{path}.host", f"{data['host']} is already configured in "
                             f"registries[{seen[registry]}]")
            seen.setdefault(registry, i)
            out.append(RegistrySettings(
                host=data["host"],
                registry=registry,
                credentials=self.credentials(f"{path}.credentials", data["credentials"]),
                format=data.get("format", "config.json"),
                apps=tuple(data.get("apps", ())),
                max_age=self.duration(f"{path}.max_age", data.get("max_age"), 6 * _HOUR),
                min_validity=self.duration(f"{path}.min_validity", data.get("min_validity"),
                                           6 * _HOUR),
            ))
        return tuple(out)

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
        ecr = data.get("ecr")
        return CredentialSettings(
            kind=kind,
            username=data.get("username"),
            password_env=self.env_var(f"{path}.password_env", data["password_env"])
            if "password_env" in data else None,
            password_file=self.readable_file(f"{path}.password_file", data["password_file"])
            if "password_file" in data else None,
            docker_config=self.readable_file(f"{path}.docker_config", data["docker_config"])
            if "docker_config" in data else None,
            helper=data.get("helper"),
            ecr=EcrSettings(**ecr) if ecr is not None else None,
        )

    def storage(self, data: dict[str, Any]) -> StorageSettings:
        backends = [k for k in ("filesystem", "s3") if k in data]
        if len(backends) != 1:
            self.problem("storage", "set exactly one backend: filesystem or s3")
        fs = data.get("filesystem")
        s3 = data.get("s3")
        return StorageSettings(
            filesystem=self.filesystem(fs) if fs is not None else None,
            s3=self.s3(s3) if s3 is not None else None,
        )

    def filesystem(self, data: dict[str, Any]) -> FilesystemStorageSettings:
        path = Path(data["path"])
        if not path.is_absolute():
            self.problem("storage.filesystem.path", "must be an absolute path")
        prefix = data.get("uri_prefix", f"file://{path}").rstrip("/")
        if not urlsplit(prefix).scheme:
            self.problem("storage.filesystem.uri_prefix",
                         f"{prefix!r} has no scheme (e.g. file://, https://)")
        group = data.get("group")
        if isinstance(group, str):
            try:
                grp.getgrnam(group)
            except KeyError:
                self.problem("storage.filesystem.group", f"no group named {group}")
        return FilesystemStorageSettings(path=path, uri_prefix=prefix, group=group)

    def s3(self, data: dict[str, Any]) -> S3StorageSettings:
        ttl = self.duration("storage.s3.presign_ttl", data.get("presign_ttl"), 12 * _HOUR)
        if ttl > 7 * 24 * _HOUR:
            self.problem("storage.s3.presign_ttl", "S3 presigned URLs last at most 7 days")
        if ttl < _HOUR:
            self.problem("storage.s3.presign_ttl", "at least 1h: every re-sign (at half the "
                         "TTL) rewrites, and so restarts, every opted-in app")
        if data.get("uri_style") == "https" and "kms_key_id" in data:
            self.problem("storage.s3.kms_key_id", "uri_style https fetches anonymously, which "
                         "S3 refuses for SSE-KMS objects; use s3a or presigned, or drop "
                         "kms_key_id (SSE-S3)")
        return S3StorageSettings(
            bucket=data["bucket"], prefix=data.get("prefix", "").strip("/"),
            region=data.get("region"), endpoint_url=data.get("endpoint_url"),
            kms_key_id=data.get("kms_key_id"), uri_style=data.get("uri_style", "s3a"),
            presign_ttl=ttl,
        )

    def server(self, data: dict[str, Any]) -> ServerSettings:
        listen = data.get("listen", "127.0.0.1:9102")
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            self.problem("server.listen", f"{listen!r} is not host:port")
            return ServerSettings()
        return ServerSettings(host=host.strip("[]"), port=int(port))

    def leader_election(self, data: dict[str, Any]) -> LeaderElectionSettings:
        hosts = data["zookeeper"].split("/", 1)[0]
        for i, hostport in enumerate(hosts.split(",")):
            host, _, port = hostport.rpartition(":")
            if not host or not port.isdigit():
                self.problem("leader_election.zookeeper",
                             f"server {i + 1} ({hostport!r}) is not host:port")
        return LeaderElectionSettings(
            zookeeper=data["zookeeper"],
            session_timeout_seconds=float(data.get("session_timeout_seconds", 10.0)),
        )
