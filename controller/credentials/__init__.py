"""Where registry credentials come from: the ``CredentialSource`` port and its factory."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from controller.config import RegistrySettings
from controller.model import RegistryCredential

__all__ = ["TOKEN_USERNAME", "CredentialSource", "from_settings", "json_object"]

TOKEN_USERNAME = "<token>"  # noqa: S105 - Docker's marker for an identity token


def json_object(raw: str | bytes) -> dict[str, object] | None:
    """The JSON object in ``raw``, or ``None``.

    The decoding error is dropped here rather than chained (even ``from None`` keeps it as
    ``__context__``): ``JSONDecodeError.doc`` holds the whole input, secrets included.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class CredentialSource(Protocol):
    """Yields the current credential of one registry.

    ``expiring`` sources (tokens) are asked only when the bundle is due; the others are cheap
    to read, so they are read on every resync and a changed password shows up within one.
    """

    expiring: bool

    async def fetch(self) -> RegistryCredential: ...


def from_settings(registry: RegistrySettings, env: Mapping[str, str]) -> CredentialSource:
    """The configured source of ``registry``'s credentials."""
    creds = registry.credentials
    if creds.kind == "ecr":
        from controller.credentials.ecr import EcrSource

        assert creds.ecr is not None
        return EcrSource(creds.ecr, registry=registry.registry)
    if creds.kind == "helper":
        from controller.credentials.helper import HelperSource

        assert creds.helper is not None
        return HelperSource(creds.helper, registry=registry.registry, env=env)
    from controller.credentials.static import DockerConfigSource, PasswordSource

    if creds.kind == "docker_config":
        assert creds.docker_config is not None
        return DockerConfigSource(creds.docker_config, registry=registry.registry)
    assert creds.username is not None
    return PasswordSource(creds.username, env_var=creds.password_env, file=creds.password_file,
                          env=env)
