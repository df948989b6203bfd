"""The entry for one registry in a docker ``config.json``, as ``docker login`` writes it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.credentials.base import TOKEN_USERNAME, json_object, read_secret_text
from controller.credentials.kinds import DockerConfigCredentials
from controller.errors import CredentialError
from controller.files import DOCKER_CONFIG_LIMIT
from controller.model import RegistryCredential, Secret
from controller.reference import InvalidReferenceError, normalize_registry_host
from controller.settings import RegistrySettings

__all__ = ["DockerConfigSource", "source"]


def _entry_registry(key: str) -> str | None:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``http://h:5000/v2/`` → ``h:5000``."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    try:
        return normalize_registry_host(host)
    except InvalidReferenceError:
        return None


class DockerConfigSource:
    """The entry for one registry in a docker ``config.json`` (as ``docker login`` writes it)."""

    expiring = False

    def __init__(self, path: Path, *, registry: str) -> None:
        self._path = path
        self._registry = registry

    async def fetch(self) -> RegistryCredential:
        text = await read_secret_text(self._path, "docker config", DOCKER_CONFIG_LIMIT)
        config = json_object(text)
        if config is None:
            raise CredentialError(f"docker config {self._path} is not a JSON object")
        entry = self._entry(config)
        return self._credential(entry)

    def _entry(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, entry in (config.get("auths") or {}).items():
            if _entry_registry(key) == self._registry and isinstance(entry, dict):
                return entry
        helpers = config.get("credHelpers") or {}
        if any(_entry_registry(k) == self._registry for k in helpers) or config.get("credsStore"):
            raise CredentialError(f"docker config {self._path} keeps {self._registry} in a "
                                  "credential helper; configure credentials.helper instead")
        raise CredentialError(f"docker config {self._path} has no entry for {self._registry}")

    def _credential(self, entry: dict[str, Any]) -> RegistryCredential:
        if entry.get("identitytoken"):
            return RegistryCredential(username=TOKEN_USERNAME,
                                      password=Secret(str(entry["identitytoken"])),
                                      identity_token=True)
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            username, sep, password = decoded.partition(":")
            if not sep:
                raise CredentialError(f"docker config {self._path}: the auth value for "
                                      f"{self._registry} is not base64 of user:password")
        else:
            username = str(entry.get("username", ""))
            password = str(entry.get("password", ""))
        if not username or not password:
            raise CredentialError(f"docker config {self._path}: the entry for {self._registry} "
                                  "has no username and password")
        return RegistryCredential(username=username, password=Secret(password))


def source(registry: RegistrySettings, env: Mapping[str, str]) -> DockerConfigSource:
    """The source of ``docker_config`` credentials (``controller.credentials.kinds``)."""
    creds = registry.credentials
    assert isinstance(creds, DockerConfigCredentials)
    return DockerConfigSource(creds.docker_config, registry=registry.registry)
