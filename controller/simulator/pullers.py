"""How the simulated agent "pulls" an image: a small port, and the built-in puller behind it.

The built-in ``CredentialPuller`` does what ``docker pull`` with ``HOME=<sandbox>`` decides about
credentials (docs/marathon.md §4.1): it reads ``.docker/config.json`` (else ``.dockercfg``) in
the sandbox, looks the image's registry up the way the docker CLI does, and checks what it finds
against the credentials the simulator was told that registry accepts (``RegistryBook``). A
registry never told about is public. Refusals carry the Docker daemon's own wording
(docs/pull-failure-messages.md). Another puller, such as one running real ``skopeo`` against a
real registry, plugs in instead.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Final, Protocol

from controller.reference import (
    HUB_REGISTRY,
    ImageReference,
    InvalidReferenceError,
    normalize_registry_host,
    parse_image,
)

__all__ = ["CredentialPuller", "FailedPull", "Puller", "RegistryBook"]

_CONFIG_MAX: Final = 1024 * 1024
"""A docker config larger than this is not read (the CLI would choke on it too)."""


@dataclass(frozen=True, slots=True)
class FailedPull:
    """Why a pull failed, as the Docker daemon's stderr would say it."""

    stderr: str


class Puller(Protocol):
    """Pulls ``image`` as ``docker pull`` run with ``HOME=home`` would."""

    async def pull(self, image: str, home: Path) -> FailedPull | None:
        """``None`` when the pull worked; never raises for a refused pull."""
        ...


class RegistryBook:
    """Which credentials each registry accepts (htpasswd-like: one password per username).

    A registry with no entry is public: every pull from it works.
    """

    def __init__(self) -> None:
        self._accepted: dict[str, dict[str, str]] = {}

    @staticmethod
    def _key(registry: str) -> str:
        return normalize_registry_host(registry)

    def accept_credentials(self, registry: str, username: str, password: str) -> None:
        """From now on ``registry`` requires credentials and accepts these (a new password for
        ``username`` replaces its old one: a rotation)."""
        self._accepted.setdefault(self._key(registry), {})[username] = password

    def revoke_credentials(self, registry: str, username: str) -> None:
        """``username`` no longer gets in; the registry stays private."""
        self._accepted.get(self._key(registry), {}).pop(username, None)

    def make_public(self, registry: str) -> None:
        """Forget every credential of ``registry``: anyone may pull."""
        self._accepted.pop(self._key(registry), None)

    def is_private(self, registry: str) -> bool:
        return self._key(registry) in self._accepted

    def accepts(self, registry: str, username: str, password: str) -> bool:
        expected = self._accepted.get(self._key(registry), {}).get(username)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())


def _load_json(path: Path) -> Any:
    try:
        with path.open("rb") as file:
            data = file.read(_CONFIG_MAX + 1)
    except OSError:
        return None
    if len(data) > _CONFIG_MAX:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None  # the CLI warns "Error loading config file" and pulls anonymously


def _docker_config(home: Path) -> dict[str, Any] | None:
    """The sandbox's docker config in ``config.json`` form, or ``None`` when it has none."""
    modern = home / ".docker" / "config.json"
    if modern.is_file():
        config = _load_json(modern)
        return config if isinstance(config, dict) else {}
    legacy = home / ".dockercfg"
    if legacy.is_file():
        auths = _load_json(legacy)
        return {"auths": auths if isinstance(auths, dict) else {}}
    return None


def _hostname(key: str) -> str | None:
    """docker's ``ConvertToHostname``: drop the scheme and any path, then normalise."""
    host = key.removeprefix("http://").removeprefix("https://").split("/", 1)[0]
    try:
        return normalize_registry_host(host)
    except InvalidReferenceError:
        return None


def _credentials(entry: Any) -> tuple[str, str] | None:
    """``username``/``password`` of an ``auths`` entry (``auth`` is base64 ``user:password``)."""
    if not isinstance(entry, dict):
        return None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, colon, password = decoded.partition(":")
        return (username, password) if colon else None
    given_username, given_password = entry.get("username"), entry.get("password")
    if isinstance(given_username, str) and isinstance(given_password, str):
        return given_username, given_password
    return None


def _manifest_url(reference: ImageReference) -> str:
    host = "registry-1.docker.io" if reference.registry == HUB_REGISTRY else reference.registry
    try:
        plain = ip_address(host.rsplit(":", 1)[0].strip("[]")).is_loopback
    except ValueError:
        plain = False
    scheme = "http" if plain else "https"
    return f"{scheme}://{host}/v2/{reference.path}/manifests/{reference.digest or reference.tag}"


class CredentialPuller:
    """The built-in puller: the sandbox's docker config against a ``RegistryBook``."""

    def __init__(self, registries: RegistryBook) -> None:
        self.registries = registries

    async def pull(self, image: str, home: Path) -> FailedPull | None:
        try:
            reference = parse_image(image)
        except InvalidReferenceError:
            return FailedPull(f'Error parsing reference: "{image}" is not a valid '
                               "repository/tag: invalid reference format\n")
        if not self.registries.is_private(reference.registry):
            return None
        config = _docker_config(home) or {}
        helper = (config.get("credHelpers") or {}).get(reference.registry) if isinstance(
            config.get("credHelpers"), dict) else None
        store = helper or config.get("credsStore")
        if isinstance(store, str) and store:
            return FailedPull(f'error getting credentials - err: exec: "docker-credential-{store}"'
                               ": executable file not found in $PATH, out: ``\n")
        auths = config.get("auths")
        found = None
        if isinstance(auths, dict):
            for key, entry in auths.items():
                if isinstance(key, str) and _hostname(key) == reference.registry:
                    found = _credentials(entry)
                    break
        if found is None:
            return FailedPull(f'Error response from daemon: Head "{_manifest_url(reference)}": '
                               "no basic auth credentials\n")
        if not self.registries.accepts(reference.registry, *found):
            return FailedPull("Error response from daemon: unauthorized: authentication "
                               "required\n")
        return None
