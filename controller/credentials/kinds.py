"""The credential kinds: the registration table of ``registries[].credentials``, one entry per
key that names where a registry's credential comes from (see ``controller.settingtables``).

A kind is its source's module, with a factory ``(RegistrySettings, env) -> CredentialSource``,
and here its settings class and its entry; the loader, the schema (``python -m
controller.settings_schema`` writes it) and the wiring follow. A kind whose source reads a
password needs ``username``; the others refuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeAlias

from controller.files import DOCKER_CONFIG_LIMIT
from controller.settings import (
    AWS_REGION,
    CredentialSettings,
    EnvName,
    Pattern,
    RegistrySettings,
    Text,
)
from controller.settingtables import Choice, ChoiceTable, ConfigChecks

if TYPE_CHECKING:  # the loader reads the table: it need not load the sources' asyncio
    from controller.credentials.base import CredentialSource

__all__ = [
    "CREDENTIAL_KINDS",
    "CredentialKind",
    "CredentialKinds",
    "DockerConfigCredentials",
    "EcrCredentials",
    "EcrSettings",
    "HelperCredentials",
    "PasswordEnvCredentials",
    "PasswordFileCredentials",
    "SourceFactory",
]

SourceFactory: TypeAlias = "Callable[[RegistrySettings, Mapping[str, str]], CredentialSource]"
"""What an entry's ``factory`` names: the source of a registry whose credentials are of its
kind, given the environment."""

HELPER_NAME: Final = Pattern(
    regex="^[A-Za-z0-9._-]+$", noun="a credential helper name",
    rule="use the part after docker-credential- (letters, digits, '.', '_' and '-'), e.g. "
         "ecr-login")
AWS_ACCOUNT: Final = Pattern(regex="^[0-9]{12}$", noun="an AWS account id",
                             rule="write its 12 digits in quotes")
ROLE_ARN: Final = Pattern(regex="^arn:", noun="a role ARN",
                          rule="ARNs start with arn: (e.g. arn:aws:iam::123456789012:role/pull)")


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordEnvCredentials(CredentialSettings):
    """A username, and its password in an environment variable."""

    password_env: EnvName
    """Environment variable that holds the registry password."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordFileCredentials(CredentialSettings):
    """A username, and its password in a file."""

    password_file: Path
    """File that holds the registry password (not empty, at most 64 KiB)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerConfigCredentials(CredentialSettings):
    """The entry for the registry in a docker config.json."""

    docker_config: Path
    """A docker config.json (as docker login writes it); its entry for this host is used."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HelperCredentials(CredentialSettings):
    """What a Docker credential helper gives for the registry."""

    helper: Annotated[str, HELPER_NAME]
    """A Docker credential helper on PATH: runs docker-credential-<helper> get."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EcrSettings:
    """AWS ECR GetAuthorizationToken (12 h tokens) with the default AWS credential chain."""

    region: Annotated[str, AWS_REGION]
    """AWS region of the registry, e.g. us-east-1."""
    registry_id: Annotated[str, AWS_ACCOUNT] | None = None
    """AWS account id (12 digits) of the registry; default: the caller's account."""
    role_arn: Annotated[str, ROLE_ARN] | None = None
    """Role to assume before asking for the token."""
    endpoint_url: Text | None = None
    """ECR API endpoint, e.g. a VPC endpoint; default: the region's public endpoint."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EcrCredentials(CredentialSettings):
    """ECR tokens for the registry."""

    ecr: EcrSettings
    """AWS ECR tokens."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialKind(Choice[CredentialSettings]):
    """One credential kind."""

    username: bool
    """Whether the kind needs ``username`` (a password does); the others refuse it."""


class CredentialKinds(ChoiceTable[CredentialSettings, CredentialKind]):
    """The credential kinds, and the rules of ``username``."""

    def choices(self) -> list[str]:
        """The kinds that need a username together, as "username with a or b", then the rest."""
        with_username = [kind.key for kind in self.entries.values() if kind.username]
        return ([f"username with {' or '.join(with_username)}"] if with_username else []) + [
            kind.key for kind in self.entries.values() if not kind.username]

    def check_section(self, checks: ConfigChecks, path: str, data: Mapping[str, Any],
                      found: Sequence[CredentialKind]) -> None:
        """``username`` with a kind that needs it, and only then (the first kind found decides;
        the table's first when none is)."""
        kind = found[0] if found else next(iter(self.entries.values()))
        if kind.username and "username" not in data:
            checks.problem(f"{path}.username", "missing required key (a password needs a "
                           "username)")
        if not kind.username and "username" in data:
            checks.problem(f"{path}.username", f"not used with {kind.key}")
        checks.basic_auth_username(path, data)


def _ecr(checks: ConfigChecks, path: str, data: dict[str, Any]) -> EcrSettings:
    return EcrSettings(**checks.given(path, data, {"endpoint_url": checks.endpoint_url}))


CREDENTIAL_KINDS: Final = CredentialKinds(CredentialSettings, (
    CredentialKind(key="password_env", settings=PasswordEnvCredentials, username=True,
                   check=lambda checks, path, name: checks.env_var(path, name),
                   factory="controller.credentials.password:env_source"),
    CredentialKind(key="password_file", settings=PasswordFileCredentials, username=True,
                   check=lambda checks, path, file: checks.secret_file(path, file),
                   factory="controller.credentials.password:file_source"),
    CredentialKind(key="docker_config", settings=DockerConfigCredentials, username=False,
                   check=lambda checks, path, file: checks.file(path, file,
                                                                DOCKER_CONFIG_LIMIT)[0],
                   factory="controller.credentials.dockerconfig:source"),
    CredentialKind(key="helper", settings=HelperCredentials, username=False,
                   factory="controller.credentials.helper:source"),
    CredentialKind(key="ecr", settings=EcrCredentials, username=False, check=_ecr,
                   factory="controller.credentials.ecr:source"),
), noun="credential source")
"""Every credential kind, in the order the schema and the messages list them."""
