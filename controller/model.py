"""Value types shared by every layer: wire dicts (``Raw*``), ids, secrets, manifests, results."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, NewType, NotRequired, Required, TypedDict
from urllib.parse import urlsplit

import msgspec

__all__ = [
    "AppId",
    "AppState",
    "BundleFormat",
    "BundleLocation",
    "BundleManifest",
    "DelayResetOutcome",
    "ErrorKind",
    "RawApp",
    "RawAppUpdate",
    "RawContainer",
    "RawDeployment",
    "RawDocker",
    "RawFetch",
    "ReconcileOutcome",
    "RefreshOutcome",
    "RegistryCredential",
    "RescueOutcome",
    "Secret",
    "version_tuple",
]

AppId = NewType("AppId", str)
"""A Marathon app id such as ``/team-a/web`` (always with the leading slash)."""

BundleFormat = Literal["config.json", "dockercfg"]

RefreshOutcome = Literal["published", "repaired", "unchanged", "not_due", "failed", "dry_run"]
"""What one bundle refresh did (the ``result`` label of ``bundle_publishes_total``)."""

ReconcileOutcome = Literal["success", "error", "requeue_after"]
"""How one reconcile ended (the ``result`` label of ``controller_reconcile_total``)."""

ErrorKind = Literal["terminal", "timeout", "transient"]
"""Why a reconcile failed (``reconcile_errors_total``'s ``kind``): a terminal error (not
retried), the reconcile's time limit, or anything retried with backoff."""

DelayResetOutcome = Literal["ok", "not_queued", "error"]
"""What one launch delay reset did (the ``result`` label of ``delay_resets_total``): reset,
nothing to reset (the app was not waiting to launch), or Marathon's error."""

AppState = Literal["converged", "pending", "failed", "skipped", "locked", "stuck", "conflict",
                   "image_unpullable"]
"""Where an app stands, for ``/status`` and the ``apps`` gauge (a contract: dashboards use it)."""

RescueOutcome = Literal["ok", "error", "not_alone"]
"""What one rescue of a stuck deployment did (the ``result`` label of
``deployments_rescued_total``): the forced write landed, Marathon refused it, or it was not
tried because the deployment changes other apps too (a forced write would cancel them)."""


class RawFetch(TypedDict, total=False):
    """One ``fetch[]`` item, as Marathon's ``artifact.raml`` defines it."""

    uri: Required[str]
    extract: bool
    executable: bool
    cache: bool
    destPath: str


class RawDocker(TypedDict, total=False):
    image: str
    forcePullImage: bool
    pullConfig: dict[str, Any]


class RawContainer(TypedDict, total=False):
    type: str
    docker: RawDocker


class RawApp(TypedDict, total=False):
    """An app as ``GET /v2/apps`` returns it; only the fields we read are typed."""

    id: Required[str]
    labels: dict[str, str]
    container: RawContainer | None
    fetch: list[RawFetch]
    uris: list[str]
    executorResources: dict[str, Any]
    resourceLimits: dict[str, Any]
    version: str
    deployments: list[dict[str, str]]
    lastTaskFailure: dict[str, Any]
    """``GET /v2/apps/{id}`` embeds it: the app's last failed task (state, message, version)."""


class RawAppUpdate(TypedDict, total=False):
    """The minimal body we PATCH/PUT: never ``version``, never ``uris`` with ``fetch``."""

    fetch: list[RawFetch]
    uris: list[str]
    executorResources: dict[str, Any]
    resourceLimits: dict[str, Any]


class RawDeployment(TypedDict, total=False):
    id: Required[str]
    affectedApps: list[str]
    affectedPods: list[str]
    version: str
    currentStep: NotRequired[int]
    totalSteps: NotRequired[int]


class Secret:
    """A secret value that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plain value: call only where it leaves the process (a bundle, a header)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class RegistryCredential(msgspec.Struct, frozen=True, kw_only=True):
    """What a credential source yields for one registry.

    ``identity_token`` marks an OAuth identity token (Docker's ``<token>`` username), written
    to ``identitytoken`` instead of ``auth``.
    """

    username: str
    password: Secret
    """Shows itself masked in ``repr`` (a ``Secret``), so the record's ``repr`` holds no secret."""
    identity_token: bool = False
    expires_at: datetime | None = None


class BundleManifest(msgspec.Struct, frozen=True, kw_only=True):
    """The metadata record stored beside a bundle; staleness is judged from it alone."""

    registry: str
    sha256: str
    format: BundleFormat
    created_at: datetime
    refresh_at: datetime
    expires_at: datetime | None = None
    leader_epoch: int | None = None


class BundleLocation(msgspec.Struct, frozen=True, kw_only=True):
    """Where tasks fetch a registry's bundle from."""

    uri: str
    accepts: Callable[[str], bool] | None = None
    """Other URIs that are still good (e.g. a presigned URL that is not near expiry)."""
    renew_in: float | None = None
    """Seconds until apps must be looked at again because ``uri`` expires (presigned URLs)."""

    @property
    def dest_path(self) -> str | None:
        """Mesos extracts by local file name, so a URI with a query string needs ``destPath``."""
        if "?" not in self.uri:  # no query at all (as a rule): no need to split
            return None
        return "docker.tar.gz" if urlsplit(self.uri).query else None

    def matches(self, uri: str) -> bool:
        return uri == self.uri or (self.accepts is not None and self.accepts(uri))


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.10.26"`` → ``(1, 10, 26)``, tolerant of suffixes (``"1.4.0-RC1"``): Marathon's
    behaviour changed at known versions (``docs/marathon.md``)."""
    return tuple(int("0" + "".join(c for c in part if c.isdigit()))
                 for part in version.split(".")[:3])
