"""Docker image references, parsed the way ``docker pull`` parses them.

Follows ``distribution/reference`` (``regexp.go``, ``reference.go``, ``normalize.go``:
``ParseNormalizedNamed`` and ``splitDockerDomain``, as on its main branch) so that the registry we
derive from ``container.docker.image`` is the one the Docker daemon will contact, and the
``auths`` key we write is the one the docker CLI will look up:

* the first path component is a registry only if it is ``localhost``, contains ``.`` or ``:``,
  or has an uppercase letter (repository paths must be lowercase, so such a component can
  only be a host; this rule is newer than the ``.``/``:``/``localhost`` one in older docker);
* otherwise the image is on Docker Hub (``docker.io``) and a one-component path gets
  ``library/``; ``index.docker.io`` is the Hub's legacy name.

Registry hosts are compared case-insensitively (DNS is), so ``registry`` is lowercase.
``registry-1.docker.io`` in an image stays its own registry: docker looks its credentials up
under that name, not under the Hub's ``https://index.docker.io/v1/``.

As in docker, ``host:5000`` without a path is the Hub image ``library/host`` with tag ``5000``.
Unlike docker, a first component that looks like a host but is not a valid one (``a_b.com/x``)
is an error; docker would yield a reference without a registry.
"""

from __future__ import annotations

import re

import msgspec

__all__ = [
    "HUB_AUTH_KEY",
    "HUB_REGISTRY",
    "ImageReference",
    "InvalidReferenceError",
    "auth_key",
    "normalize_registry_host",
    "parse_image",
    "repository_path",
]

HUB_REGISTRY = "docker.io"
"""The canonical name of Docker Hub, as ``distribution/reference`` normalises it."""

HUB_AUTH_KEY = "https://index.docker.io/v1/"
"""The ``auths`` key docker uses for Docker Hub (``registry.IndexServer`` in docker)."""

_LEGACY_HUB = "index.docker.io"
_HUB_ALIASES = frozenset({HUB_REGISTRY, _LEGACY_HUB, "registry-1.docker.io"})
_OFFICIAL_PREFIX = "library/"
_PATH_MAX = 255
_IMAGE_MAX = 1024
"""Longer than any valid reference (a 253-character host, a port, a 255-character path, a tag
and a sha512 digest); refused before any regex runs, so a huge image costs no time."""
_SHOWN_MAX = 100

# The grammar of distribution/reference regexp.go, with explicit ASCII classes: Python's \w
# would also accept non-ASCII letters, Go's does not.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
_REMAINDER_RE = re.compile(rf"(?P<path>{_PATH})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")

# go-digest's registered algorithms (docker links crypto/sha256 and crypto/sha512) and the
# number of lowercase hex digits each needs.
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+")


class InvalidReferenceError(ValueError):
    """An image reference or registry host that docker would reject."""


class ImageReference(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed, normalised image reference; ``str()`` gives the canonical full form.

    ``str()`` and ``familiar`` parse back to an equal reference, except for a registry that only
    an uppercase spelling marks as one (``Myhost/app``): lowercased, it reads as a Hub path.
    """

    registry: str
    """Lowercase ``host[:port]``; ``docker.io`` for Docker Hub."""
    path: str
    """The repository path, e.g. ``library/ubuntu``."""
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/path``, e.g. ``docker.io/library/ubuntu``."""
        return f"{self.registry}/{self.path}"

    @property
    def familiar(self) -> str:
        """The short form docker prints (``ubuntu:22.04``); it parses back to this reference.

        Unlike docker's ``FamiliarString`` it keeps ``docker.io/`` when dropping it would make
        the first path component look like a registry (``docker.io/a.b/c``), and ``library/``
        when dropping it would leave 64 hex digits, which docker reads as an image id.
        """
        name = self.name
        if self.registry == HUB_REGISTRY:
            short = self.path.removeprefix(_OFFICIAL_PREFIX)
            if "/" in short:
                short = self.path
            first, slash, _ = short.partition("/")
            if not (slash and _looks_like_domain(first)):
                name = short
        familiar = name + self._suffix()
        return self.path if _IDENTIFIER_RE.fullmatch(familiar) else familiar

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def _looks_like_domain(component: str) -> bool:
    """``splitDockerDomain``'s test for "the first component is a registry"."""
    return (component == "localhost" or "." in component or ":" in component
            or component.lower() != component)


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut short: an image may be megabytes long, and
    escapes (``\\U0001f600``) make its quoted form longer still."""
    quoted = repr(text[:_SHOWN_MAX])
    if len(quoted) > _SHOWN_MAX + 2:  # escapes: cut the quoted form itself
        quoted = quoted[:_SHOWN_MAX]
    elif len(text) <= _SHOWN_MAX:
        return quoted
    return f"{quoted}… ({len(text)} characters)"


def _normalize_domain(domain: str) -> str:
    lowered = domain.lower()
    return HUB_REGISTRY if lowered == _LEGACY_HUB else lowered


def _check_digest(digest: str) -> str | None:
    """Why go-digest would reject ``digest``, or ``None`` when it is valid."""
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_LENGTHS.get(algorithm)
    if length is None:
        return f"unsupported digest algorithm {_shown(algorithm)}"
    if len(encoded) != length or not _LOWER_HEX_RE.fullmatch(encoded):
        return f"a {algorithm} digest is {length} lowercase hex digits"
    return None


def parse_image(image: str) -> ImageReference:
    """Parse ``image`` as ``docker pull`` would (``ParseNormalizedNamed``).

    Raises ``InvalidReferenceError`` naming the image and the reason.
    """

    def invalid(reason: str) -> InvalidReferenceError:
        return InvalidReferenceError(f"invalid image reference {_shown(image)}: {reason}")

    if not image:
        raise invalid("it is empty")
    if len(image) > _IMAGE_MAX:
        raise invalid(f"it is longer than {_IMAGE_MAX} characters")
    if _IDENTIFIER_RE.fullmatch(image):
        raise invalid("a 64-character hexadecimal string is an image id, not a name")
    first, slash, rest = image.partition("/")
    if slash and _looks_like_domain(first):
        domain, remainder = first, rest
        if not _DOMAIN_RE.fullmatch(domain):
            raise invalid(f"{_shown(domain)} is not a valid registry host[:port]")
        registry = _normalize_domain(domain)
    else:
        registry, remainder = HUB_REGISTRY, image
    if registry == HUB_REGISTRY and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    repository = remainder.partition(":")[0]
    if repository.lower() != repository:
        raise invalid(f"repository name {_shown(repository)} must be lowercase")
    match = _REMAINDER_RE.fullmatch(remainder)
    if match is None:
        raise invalid("invalid reference format")
    path, tag, digest = match["path"], match["tag"], match["digest"]
    if len(path) > _PATH_MAX:
        raise invalid(f"repository name must not be more than {_PATH_MAX} characters")
    if digest is not None and (problem := _check_digest(digest)) is not None:
        raise invalid(problem)
    return ImageReference(registry=registry, path=path, tag=tag, digest=digest)


def normalize_registry_host(host: str) -> str:
    """A configured registry ``host[:port]`` in the form ``ImageReference.registry`` uses.

    Lowercase; every Docker Hub alias (``index.docker.io``, ``registry-1.docker.io``) becomes
    ``docker.io``, because someone configuring one of them means the Hub.
    """
    if not _DOMAIN_RE.fullmatch(host):
        raise InvalidReferenceError(
            f"invalid registry host {_shown(host)}: expected host[:port] such as "
            "registry.example.com:5000, without a scheme or path")
    lowered = host.lower()
    return HUB_REGISTRY if lowered in _HUB_ALIASES else lowered


def auth_key(registry: str) -> str:
    """The ``auths`` key (config.json and .dockercfg) docker looks ``registry`` up by.

    Docker Hub uses ``https://index.docker.io/v1/``; every other registry its ``host[:port]``.
    """
    normalized = normalize_registry_host(registry)
    return HUB_AUTH_KEY if normalized == HUB_REGISTRY else normalized


def repository_path(registry: str, repository: str) -> str:
    """The path docker pulls for ``repository`` on ``registry`` (``ubuntu`` on the Hub is
    ``library/ubuntu``); ``InvalidReferenceError`` also for a name with a tag or digest."""
    ref = parse_image(f"{registry}/{repository}")
    if ref.tag or ref.digest:
        raise InvalidReferenceError(f"{_shown(repository)}: name a repository, without a tag or "
                                    "digest")
    return ref.path
