"""The settings tree: frozen dataclasses, the one place for each setting's default and meaning.

Each field's docstring is the description an operator reads in the config's JSON Schema,
``config_schema.json``, which ``python -m controller.settings_schema`` generates from this module.
``Annotated`` metadata says what a Python type cannot: a ``Pattern`` (with the words messages use
instead of its regex), a ``ValueKind`` shared by several keys, or ``Limits``. A field with
``COMPUTED`` metadata is filled in by the loader and has no key in the file; one with
``DERIVED_DEFAULT`` may be left out of the file, and the loader then derives it. The loader
(``controller.config``) passes a dataclass only the keys the file gives, so a key left out keeps
the default written here.

A section that holds exactly one of several keys, one per adapter behind a port
(``CredentialSettings``, ``StorageSettings``), has its shared keys here; each of its keys is an
entry of the port's registration table (``controller.credentials.kinds``,
``controller.storage.backends``; see ``controller.settingtables``), whose settings subclass it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Final, Literal

from controller.model import BundleFormat
from controller.settingtables import shown

__all__ = [
    "ControllerSettings",
    "CredentialSettings",
    "Floor",
    "LeaderElectionSettings",
    "Limits",
    "LoggingSettings",
    "MarathonAuthSettings",
    "MarathonSettings",
    "Pattern",
    "ReconcileSettings",
    "RegistrySettings",
    "RemediationSettings",
    "SelectorSettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "UpdateMethod",
    "ValueKind",
    "VerifyMode",
    "duration_text",
    "parse_duration",
    "too_short",
]

FILE_KEY: Final = "config_file"
"""The ``dataclasses.field`` metadata key that says how a field relates to the config file."""
COMPUTED: Final = MappingProxyType({FILE_KEY: "computed"})
"""Metadata of a field the loader computes from other keys: the file has no key for it."""
DERIVED_DEFAULT: Final = MappingProxyType({FILE_KEY: "derived_default"})
"""Metadata of a field the file may leave out: the loader then derives it from other keys."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pattern:
    """A JSON Schema ``pattern`` for text, and the words messages use instead of the regex."""

    regex: str
    noun: str
    """What a matching value is, e.g. "a duration"."""
    rule: str
    """How to write one."""
    echo: bool = True
    """Whether a message may quote a value that does not match (never for secret-ish keys)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds of a number, of the length of a text or of a list (JSON Schema keywords)."""

    minimum: int | None = None
    maximum: int | None = None
    exclusive_minimum: int | None = None
    min_length: int | None = None
    min_items: int | None = None

    def keywords(self) -> dict[str, int]:
        """The bounds set, under their JSON Schema names."""
        names = {"minimum": "minimum", "maximum": "maximum", "exclusive_minimum":
                 "exclusiveMinimum", "min_length": "minLength", "min_items": "minItems"}
        return {json: value for name, json in names.items()
                if (value := getattr(self, name)) is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class Floor:
    """The shortest a duration key may be, and why: a shorter one passes for a duration but
    floods Marathon, a registry or storage, or cannot work at all."""

    seconds: float
    why: str
    """Said in the message that refuses a shorter value, e.g. "each resync lists every app"."""


def duration_text(seconds: float) -> str:
    """``seconds`` as the file would write it, in the largest unit that divides it (6h, 90s,
    100ms); a value no unit divides is written in seconds."""
    millis = round(seconds * 1000)
    if abs(millis - seconds * 1000) < 1e-6 and millis > 0:
        for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                           ("ms", 1)):
            if millis % size == 0:
                return f"{millis // size}{unit}"
    return f"{seconds:g}s"


def parse_duration(value: str | float, floor: Floor | None = None) -> float:
    """Seconds in ``90s``, ``30m``, ``6h``, ``1d``, ``1h30m`` or a plain number of seconds;
    at least ``floor`` when given."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(f"{shown(value)} is not a duration: {DURATION_RULE}")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if floor is not None and not seconds >= floor.seconds:  # also NaN
        raise ValueError(too_short(floor))
    if not seconds > 0:  # also NaN
        raise ValueError("must be more than 0 seconds")
    if seconds > _MAX_DURATION:
        raise ValueError("must be at most 365d")
    return seconds


def too_short(floor: Floor) -> str:
    """The problem of a duration shorter than ``floor``, and why that is refused."""
    return f"must be at least {duration_text(floor.seconds)} ({floor.why})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueKind:
    """A kind of value that several keys share: one entry in the schema's ``$defs``."""

    name: str
    description: str
    types: tuple[str, ...]
    """JSON types the file may write it as."""
    pattern: Pattern
    """What text of this kind looks like (numbers are taken as they are)."""


DURATION_RULE: Final = "use a number of seconds or e.g. 30s, 5m, 6h"
_HOUR: Final = 3600.0
_MAX_DURATION: Final = 365 * 24 * _HOUR  # longer is a mistake, and overflows date arithmetic
_DURATION_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": _HOUR, "d": 24 * _HOUR}
DURATION: Final = ValueKind(
    name="duration",
    description="A duration such as 90s, 30m, 6h, 1d or 1h30m, or a number of seconds; more than "
                "0 and at most 365d.",
    types=("string", "number"),
    pattern=Pattern(regex="^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d))+$", noun="a duration",
                    rule=DURATION_RULE))
ENV_NAME: Final = ValueKind(
    name="env_name",
    description="The name of an environment variable that holds the secret (never the secret).",
    types=("string",),
    pattern=Pattern(regex="^[A-Za-z_][A-Za-z0-9_]*$", noun="the name of an environment variable",
                    rule="must name an environment variable (letters, digits, underscore)",
                    echo=False))
APP_GLOB: Final = Pattern(regex="^/", noun="an app glob",
                          rule="app globs start with / (e.g. /team-a/*)")
LABEL_NAME: Final = Pattern(regex="^[-A-Za-z0-9_.]+$", noun="a label name",
                            rule="use letters, digits, '-', '_' and '.'")
AWS_REGION: Final = Pattern(  # ECR's and S3's
    regex="^[a-z0-9](-?[a-z0-9])*$", noun="an AWS region",
    rule="use lower-case letters, digits and '-', e.g. us-east-1")
CONTROLLER_NAME: Final = Pattern(
    regex="^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$", noun="a controller name",
    rule="use 1 to 40 lower-case letters, digits and '-', starting and ending with a letter or "
         "digit (e.g. prod-east)")

Text = Annotated[str, Limits(min_length=1)]
"""Text that is not empty."""
Duration = Annotated[float, DURATION]
"""Seconds; the file writes 90s, 30m, 6h, 1d, 1h30m or a plain number of seconds."""
EnvName = Annotated[str, ENV_NAME]
UpdateMethod = Literal["auto", "patch", "put"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]
VerifyMode = Literal["required", "best_effort", "off"]
"""How a new credential is tried against its registry before it is published."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MarathonAuthSettings:
    """Basic auth (username and a password source) or a DC/OS token source; exactly one source."""

    username: Text | None = None
    """Basic auth user (Marathon --http_credentials); needs password_file or password_env."""
    password_file: Path | None = None
    """File that holds the basic auth password (not empty, at most 64 KiB)."""
    password_env: EnvName | None = None
    """Environment variable that holds the basic auth password."""
    token_file: Path | None = None
    """File that holds a DC/OS token, sent as "Authorization: token=<t>"; no username."""
    token_env: EnvName | None = None
    """Environment variable that holds a DC/OS token; no username."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MarathonSettings:
    """The Marathon cluster whose apps get pull credentials."""

    urls: Annotated[tuple[Text, ...], Limits(min_items=1)]
    """Marathon base URLs (without /v2); requests go to the leader, and to the next URL when one
    is down."""
    auth: MarathonAuthSettings | None = None
    """Basic auth or a DC/OS token; none for a Marathon without authentication."""
    ca_file: Path | None = None
    """CA bundle for an https Marathon with a private CA (default: the system's CAs)."""
    timeout_seconds: Annotated[Duration, Floor(
        seconds=0.1, why="connecting to Marathon and each wait for its data")] = 10.0
    """Connect and per-read timeout; a whole request takes at most twice that."""
    update_method: UpdateMethod = "auto"
    """auto: PATCH on Marathon 1.4 and later (read from /v2/info), else PUT with a partial update;
    patch or put force one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerSettings:
    """This controller instance among others that may share a Marathon cluster."""

    name: Annotated[str, CONTROLLER_NAME] = "default"
    """Tells this controller's fetch entries from another's on the same cluster."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectorSettings:
    """Which apps opt in."""

    label: Annotated[str, LABEL_NAME] = "pullsecret.enabled"
    """Apps opt in by setting this label to "true"; any other value opts out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialSettings:
    """Where one registry's credentials come from: exactly one source."""

    username: Text | None = None
    """Registry user; needed with password_env or password_file, not used otherwise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrySettings:
    """One private registry and the credentials its images are pulled with."""

    host: Text
    """Registry host[:port] as images name it (docker.io and its aliases mean Docker Hub)."""
    registry: str = field(metadata=COMPUTED)
    """The host in normalised form, as image references are compared with it (the loader
    computes it; the file has no such key)."""
    credentials: CredentialSettings
    """Where the credentials come from: exactly one source."""
    format: BundleFormat = "config.json"
    """config.json writes .docker/config.json (Docker 1.6 and later); dockercfg writes the legacy
    .dockercfg."""
    apps: tuple[Annotated[str, APP_GLOB], ...] = ()
    """App id globs allowed to receive these credentials (e.g. /team-a/*); empty: every
    opted-in app."""
    max_age: Annotated[Duration, Floor(
        seconds=60, why="each refresh reads the source, and may log in to the registry and "
                        "publish")] = 6 * _HOUR
    """A bundle older than this is rebuilt."""
    min_validity: Annotated[Duration, Floor(
        seconds=60, why="tasks fetch the bundle when they start and pull with it after")] = (
        6 * _HOUR)
    """For expiring credentials (ecr, helper): never publish a bundle valid for less than this when
    the source can give more."""
    verify: VerifyMode = "best_effort"
    """Log in to the registry (Registry API V2) with a new credential before publishing it.
    best_effort: a credential the registry refuses (401/403) is not published and the last good
    bundle stays; a registry that cannot be reached does not stop publishing. required: only a
    credential the registry accepted is published. off: never log in."""
    check_images: bool | None = None
    """Ask the registry, ahead of any task, whether the credential may pull each opted-in app's
    image (a token for the repository and a HEAD of its manifest, once per image and credential):
    an app whose image it cannot pull is reported image_unpullable. Default: on unless verify is
    off."""
    verify_repository: Text | None = None
    """A repository (e.g. team-a/app) the credential must be allowed to pull: the login asks for
    its repository:<name>:pull scope and lists its tags; default: the login alone."""
    refused_login_interval: Annotated[Duration, Floor(
        seconds=5, why="a registry may lock an account after a few refusals")] = 300.0
    """A credential the registry refused is tried at the registry again only when the source
    gives another one, or this long after the refusal, whatever asks (failed pulls, resyncs,
    retries): so retries never lock the account."""
    verify_timeout: Annotated[Duration, Floor(
        seconds=0.1, why="a login is a TLS connection and a few requests")] = 10.0
    """Upper bound of one login, token request included; a login that takes longer counts as
    unreachable. Set, it must be less than reconcile.timeout_seconds; a login never takes more
    than half of that."""
    ca_file: Path | None = None
    """CA bundle (PEM) trusted for this registry's https besides the system's CAs (as docker's
    certs.d/<host>/ca.crt)."""
    insecure: bool = False
    """Allow plain http and unverified TLS for this registry's login, as docker's
    insecure-registries (the agents' docker needs the same setting to pull); loopback hosts are
    always allowed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageSettings:
    """Where bundles are published: exactly one backend."""

    previous_locations: tuple[Text, ...] = ()
    """Where this controller published its bundles before a storage move (URI prefixes as apps
    fetch them, e.g. file:///mnt/old/pullsecrets or s3a://old-bucket/prefix): entries there are
    replaced by the new location. An entry named like this controller's at any other location
    is not its own: the app is reported as a conflict and left alone."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileSettings:
    """How often and how fast apps are reconciled; every Marathon write starts a deployment."""

    resync_seconds: Annotated[Duration, Floor(
        seconds=1, why="each resync lists every opted-in app from Marathon")] = 300.0
    """Full relist period; ±10 % jitter."""
    workers: Annotated[int, Limits(minimum=1, maximum=64)] = 4
    """Concurrent reconciles."""
    max_writes_per_second: Annotated[float, Limits(exclusive_minimum=0, maximum=1000000)] = 5.0
    """Rate limit of Marathon writes (each one starts a rolling restart)."""
    write_burst: Annotated[int, Limits(minimum=1, maximum=1000000)] = 20
    """Writes allowed in a burst before the rate limit applies."""
    max_concurrent_deployments: Annotated[int, Limits(minimum=1, maximum=1000000)] = 10
    """At most this many controller-started deployments run at once."""
    dry_run: bool = False
    """Log the changes, write nothing (neither Marathon nor storage)."""
    timeout_seconds: Annotated[Duration, Floor(
        seconds=0.1, why="it bounds a whole reconcile: reading and writing an app, or a "
                         "registry's refresh with its login")] = 60.0
    """Upper bound of one reconcile, and of waiting for a locking deployment."""
    shutdown_timeout_seconds: Annotated[Duration, Floor(
        seconds=1, why="reconciles in flight need the time to finish their writes")] = 30.0
    """On SIGTERM, how long to drain the queue before exiting anyway."""
    fight_limit: Annotated[int, Limits(minimum=1, maximum=1000)] = 3
    """When another writer removes the entry this controller wrote this many times within
    fight_window, the app is reported as a conflict and not written again until fight_window has
    passed since the last removal."""
    fight_window: Annotated[Duration, Floor(
        seconds=1, why="removals are counted within it")] = 3600.0
    """The window of fight_limit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RemediationSettings:
    """What the controller does for apps whose tasks failed to pull their image; it never kills
    or restarts a running task."""

    reset_launch_delay: bool = True
    """Once an app that failed to pull for want of credentials is fixed by a new bundle published
    for its registry, reset its launch delay (DELETE /v2/queue/{app}/delay, once per fix, within
    the write rate limit), so that it need not wait out Marathon's backoff. A write of its fetch
    entry needs no reset: Marathon launches the new config version without the old one's
    delay."""
    rescue_stuck_deployments: bool = True
    """A deployment that rolls out a definition without this controller's entry, and whose tasks
    fail to pull, never ends (Marathon waits for its tasks to run): force one write (?force=true)
    that adds the entry to exactly that definition, once per deployment, and only when the
    deployment changes this app alone. The only case in which the controller forces. Off: the app
    is reported stuck and left alone."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """The HTTP server of /metrics, /healthz, /readyz and /status."""

    listen: Text = "127.0.0.1:9102"
    """host:port to listen on (port 1 to 65535; [ ] around an IPv6 address); 0.0.0.0 for every
    interface."""

    @property
    def host(self) -> str:
        """The host part of ``listen``, without the brackets of an IPv6 address."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port part of ``listen`` (the loader has checked it)."""
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderElectionSettings:
    """Replicas elect one leader through ZooKeeper; without it the controller runs alone."""

    zookeeper: Text
    """ZooKeeper servers and an optional chroot, e.g. zk-1:2181,zk-2:2181,zk-3:2181/pullsecret."""
    session_timeout_seconds: Annotated[Duration, Floor(
        seconds=2, why="ZooKeeper's shortest session")] = 10.0
    """ZooKeeper session timeout: how soon another replica takes over."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingSettings:
    """Logs on stderr."""

    level: LogLevel = "info"
    """Least severe level logged."""
    format: LogFormat = "auto"
    """auto: JSON unless stderr is a terminal; json or console force one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The config file: one field a section."""

    marathon: MarathonSettings
    """The Marathon cluster whose apps get pull credentials."""
    controller: ControllerSettings = ControllerSettings()
    """This controller among others on the cluster."""
    selector: SelectorSettings = SelectorSettings()
    """Which apps opt in."""
    registries: tuple[RegistrySettings, ...]
    """May be empty: the controller then removes every fetch entry it added."""
    storage: StorageSettings
    """Where bundles are published: exactly one backend."""
    reconcile: ReconcileSettings = ReconcileSettings()
    """Reconcile pace and limits."""
    remediation: RemediationSettings = RemediationSettings()
    """What is done for apps whose tasks failed to pull their image."""
    server: ServerSettings = ServerSettings()
    """The HTTP server of /metrics, /healthz, /readyz and /status."""
    leader_election: LeaderElectionSettings | None = None
    """Run two or more replicas with one leader; without it, a single instance."""
    logging: LoggingSettings = LoggingSettings()
    """Log level and format."""
