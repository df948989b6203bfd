"""How the simulated agent "pulls" an image: a small port, and the built-in puller behind it.

The built-in ``CredentialPuller`` does what ``docker pull`` with ``HOME=<sandbox>`` decides
(docs/marathon.md §4.1): it reads ``.docker/config.json`` (else ``.dockercfg``) in the sandbox,
looks the image's registry up the way the docker CLI does, checks what it finds against the
credentials the simulator was told that registry accepts (``RegistryBook``), and then whether
that account may pull the image and whether the registry holds it. A registry never told about
credentials is public; one never told about images holds every image. Refusals carry the Docker
daemon's own wording (docs/pull-failure-messages.md). Another puller, such as one running real
``skopeo`` against a real registry, plugs in instead.

**What a registry holds.** Once ``RegistryBook.push`` has named one image of a registry, that
registry holds only the images pushed to it, each a small OCI image manifest (its config and
layer the empty descriptor of opencontainers/image-spec ``manifest.md``, an annotation naming
the image), so its digest is the same on every run. ``RegistryBook.restrict`` limits an account
to some repositories, as a robot account is; by default an account the registry accepts may pull
every repository. A refusal comes before the question whether the image exists, so an account
learns nothing about repositories outside its scope. The refusals are distribution's error codes
(distribution/distribution@0d6b721 ``registry/api/errcode/register.go``: ``DENIED`` 403,
``MANIFEST_UNKNOWN`` and ``NAME_UNKNOWN`` 404), and the daemon words them as moby's
``notFoundError`` does (moby/moby@0e90002 ``daemon/internal/distribution/errors.go``):
``pull access denied for NAME, repository does not exist or may require 'docker login': denied:
requested access to the resource is denied``, ``manifest for IMAGE not found: manifest unknown:
manifest unknown``, ``repository NAME not found: name unknown: repository name not known to
registry``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import msgspec

from controller.reference import (
    HUB_REGISTRY,
    ImageReference,
    InvalidReferenceError,
    normalize_registry_host,
    parse_image,
    repository_path,
)

__all__ = [
    "OCI_MANIFEST",
    "REFUSALS",
    "CredentialPuller",
    "ErrorCode",
    "FailedPull",
    "Manifest",
    "PullRefusal",
    "Puller",
    "RegistryBook",
]

_CONFIG_MAX: Final = 1024 * 1024
"""A docker config larger than this is not read (the CLI would choke on it too)."""

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"

PullRefusal = Literal["denied", "manifest_unknown", "name_unknown"]
"""Why a registry does not give an account an image (or a repository's tags)."""


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """A registry error code as distribution registers it (``registry/api/errcode``)."""

    value: str
    message: str
    status: int

    @property
    def daemon_words(self) -> str:
        """How docker prints it: ``errcode.Error.Error()``, the code lower-cased with spaces for
        underscores, then the registry's message."""
        return f"{self.value.lower().replace('_', ' ')}: {self.message}"


REFUSALS: Final[Mapping[PullRefusal, ErrorCode]] = {
    "denied": ErrorCode("DENIED", "requested access to the resource is denied", 403),
    "manifest_unknown": ErrorCode("MANIFEST_UNKNOWN", "manifest unknown", 404),
    "name_unknown": ErrorCode("NAME_UNKNOWN", "repository name not known to registry", 404),
}
"""Each refusal as the registry answers it."""

_DAEMON_REFUSALS: Final[Mapping[PullRefusal, str]] = {
    "denied": "pull access denied for {name}, repository does not exist or may require "
              "'docker login'",
    "manifest_unknown": "manifest for {image} not found",
    "name_unknown": "repository {name} not found",
}
"""moby's ``notFoundError``: what the daemon puts before the registry's error."""


def _digest(content: bytes) -> str:
    return f"sha256:{hashlib.sha256(content).hexdigest()}"


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


_EMPTY: Final = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": _digest(b"{}"),
                 "size": 2}


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest a registry serves: its bytes, their digest and media type."""

    body: bytes
    digest: str
    media_type: str = OCI_MANIFEST

    @classmethod
    def of(cls, image: str) -> Manifest:
        """The small manifest the book holds for ``image`` (``path:tag``)."""
        body = _canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _EMPTY,
                           "layers": [_EMPTY],
                           "annotations": {"org.opencontainers.image.title": image}})
        return cls(body, _digest(body))


def _image(registry: str, repository: str, reference: str) -> ImageReference:
    """``repository`` at one tag or digest of ``registry``, as docker names it (``ubuntu`` on
    the Hub is ``library/ubuntu``); ``InvalidReferenceError`` if they make no such image."""
    image = parse_image(f"{registry}/{repository}{'@' if ':' in reference else ':'}{reference}")
    if (image.registry != normalize_registry_host(registry) or (image.tag and image.digest)
            or (image.digest or image.tag) != reference):
        raise InvalidReferenceError(f"{repository!r} at {reference!r} is not one image of "
                                    f"{registry}")
    return image


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
    """Which credentials each registry accepts (htpasswd-like: one password per username),
    which repositories an account may pull, and which images a registry holds.

    A registry with no credentials is public: anyone may pull from it. A registry never told
    about images holds every image. Names are normalised as docker pulls them; a name that is
    not a valid repository, tag or digest raises ``InvalidReferenceError``.
    """

    def __init__(self) -> None:
        self._accepted: dict[str, dict[str, str]] = {}
        self._scopes: dict[str, dict[str, frozenset[str]]] = {}
        self._images: dict[str, dict[str, dict[str, Manifest]]] = {}

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
        """Forget every credential of ``registry``, and every account's scope: anyone may pull."""
        self._accepted.pop(self._key(registry), None)
        self._scopes.pop(self._key(registry), None)

    def is_private(self, registry: str) -> bool:
        return self._key(registry) in self._accepted

    def accepts(self, registry: str, username: str, password: str) -> bool:
        expected = self._accepted.get(self._key(registry), {}).get(username)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def restrict(self, registry: str, username: str, repositories: Iterable[str]) -> None:
        """``username`` may pull only ``repositories`` of ``registry`` (a robot account's
        scope; a new call replaces it); it still needs a password the registry accepts."""
        self._scopes.setdefault(self._key(registry), {})[username] = frozenset(
            repository_path(registry, repository) for repository in repositories)

    def unrestrict(self, registry: str, username: str) -> None:
        """``username`` may pull every repository of ``registry`` again."""
        self._scopes.get(self._key(registry), {}).pop(username, None)

    def push(self, registry: str, repository: str, tag: str) -> str:
        """``registry`` holds ``repository:tag`` from now on (and, from its first push, only
        what was pushed to it); returns the manifest's digest."""
        image = _image(registry, repository, tag)
        manifest = Manifest.of(f"{image.path}:{tag}")
        self._images.setdefault(image.registry, {}).setdefault(image.path, {})[tag] = manifest
        return manifest.digest

    def find(self, registry: str, repository: str, reference: str,
             username: str | None) -> Manifest | PullRefusal:
        """The manifest of ``repository`` at ``reference`` (a tag or a digest) that
        ``username`` (``None``: anonymous) gets from ``registry``, or why not. Credentials are
        not checked here (``accepts``). A registry never told about images answers any tag
        with its small manifest, and any digest with that digest over the same kind of
        manifest (which does not hash to it: that registry serves no blobs to pull anyway)."""
        image = _image(registry, repository, reference)
        repository_tags = self._repository(image.registry, image.path, username)
        if isinstance(repository_tags, str):
            return repository_tags
        if repository_tags is None:
            return Manifest.of(f"{image.path}:{reference}") if image.tag else replace(
                Manifest.of(f"{image.path}@{reference}"), digest=reference)
        if image.tag:
            return repository_tags.get(image.tag, "manifest_unknown")
        return next((manifest for manifest in repository_tags.values()
                     if manifest.digest == image.digest), "manifest_unknown")

    def tags(self, registry: str, repository: str,
             username: str | None) -> list[str] | PullRefusal:
        """The tags of ``repository`` in lexical order, or why ``username`` gets none; a
        registry never told about images holds the repository, without tags."""
        path = repository_path(registry, repository)
        repository_tags = self._repository(self._key(registry), path, username)
        return repository_tags if isinstance(repository_tags, str) else sorted(
            repository_tags or ())

    def _repository(self, key: str, path: str,
                    username: str | None) -> dict[str, Manifest] | PullRefusal | None:
        """The tags of ``path``, a refusal, or ``None`` for a registry told about no images."""
        scope = None if username is None else self._scopes.get(key, {}).get(username)
        if scope is not None and path not in scope:
            return "denied"
        held = self._images.get(key)
        if held is None:
            return None
        return held.get(path, "name_unknown")


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
    """The built-in puller: the sandbox's docker config, then the image, against a
    ``RegistryBook``."""

    def __init__(self, registries: RegistryBook) -> None:
        self.registries = registries

    async def pull(self, image: str, home: Path) -> FailedPull | None:
        try:
            reference = parse_image(image)
        except InvalidReferenceError:
            return FailedPull(f'Error parsing reference: "{image}" is not a valid '
                               "repository/tag: invalid reference format\n")
        if not (reference.tag or reference.digest):
            # what docker pull asks for
            reference = msgspec.structs.replace(reference, tag="latest")
        username = None
        if self.registries.is_private(reference.registry):
            account = self._account(reference, home)
            if isinstance(account, FailedPull):
                return account
            username = account
        found = self.registries.find(reference.registry, reference.path,
                                     reference.digest or reference.tag or "latest", username)
        if isinstance(found, Manifest):
            return None
        cause = _DAEMON_REFUSALS[found].format(
            name=msgspec.structs.replace(reference, tag=None, digest=None).familiar,
            image=reference.familiar)
        return FailedPull(f"Error response from daemon: {cause}: "
                          f"{REFUSALS[found].daemon_words}\n")

    def _account(self, reference: ImageReference, home: Path) -> str | FailedPull:
        """The username of the sandbox's credentials for the registry, once it accepts them."""
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
        return found[0]
