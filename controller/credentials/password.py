"""A username with a password read from an environment variable or a file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from controller.credentials.base import TOKEN_USERNAME, read_secret_text
from controller.credentials.kinds import PasswordEnvCredentials, PasswordFileCredentials
from controller.errors import CredentialError
from controller.files import SECRET_FILE_LIMIT
from controller.model import RegistryCredential, Secret
from controller.settings import RegistrySettings

__all__ = ["PasswordSource", "env_source", "file_source"]


class PasswordSource:
    """``username`` plus ``password_env`` or ``password_file``, re-read on every call."""

    expiring = False

    def __init__(self, username: str, *, env_var: str | None, file: Path | None,
                 env: Mapping[str, str]) -> None:
        self._username = username
        self._env_var = env_var
        self._file = file
        self._env = env

    async def fetch(self) -> RegistryCredential:
        if self._file is not None:
            text = await read_secret_text(self._file, "password file", SECRET_FILE_LIMIT)
            password = text.strip()
            where = f"password file {self._file}"
        else:
            password = self._env.get(self._env_var or "", "")
            where = f"variable {self._env_var}"
        if not password:
            raise CredentialError(f"{where} is empty")
        return RegistryCredential(username=self._username, password=Secret(password),
                                  identity_token=self._username == TOKEN_USERNAME)


def env_source(registry: RegistrySettings, env: Mapping[str, str]) -> PasswordSource:
    """The source of ``password_env`` credentials (``controller.credentials.kinds``)."""
    creds = registry.credentials
    assert isinstance(creds, PasswordEnvCredentials)
    assert creds.username is not None
    return PasswordSource(creds.username, env_var=creds.password_env, file=None, env=env)


def file_source(registry: RegistrySettings, env: Mapping[str, str]) -> PasswordSource:
    """The source of ``password_file`` credentials (``controller.credentials.kinds``)."""
    creds = registry.credentials
    assert isinstance(creds, PasswordFileCredentials)
    assert creds.username is not None
    return PasswordSource(creds.username, env_var=None, file=creds.password_file, env=env)
