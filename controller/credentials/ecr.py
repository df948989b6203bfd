"""AWS ECR: a 12-hour token from ``GetAuthorizationToken``, optionally as an assumed role.

AWS credentials come from botocore's default chain (environment, shared config, container or
instance role), so no key is ever written in our config. The token's expiry is taken from the
response, which is what lets the bundle refresh at half its life instead of on a fixed timer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from controller.credentials.kinds import EcrCredentials, EcrSettings
from controller.errors import CredentialError
from controller.model import RegistryCredential, Secret
from controller.settings import RegistrySettings

__all__ = ["EcrSource", "source"]

_TIMEOUT_SECONDS = 30.0
_ROLE_SESSION_NAME = "marathon-pullsecret-controller"
_ROLE_SESSION_SECONDS = 900  # the minimum: the role is only needed for one call
_CLIENT_CONFIG = AioConfig(connect_timeout=5, read_timeout=10,
                           retries={"max_attempts": 3, "mode": "standard"})


def _aws_failure(action: str, error: Exception) -> str:
    """A short, secret-free reason: AWS's error code and message, or botocore's text."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        reason = f"{details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
    elif isinstance(error, TimeoutError):
        reason = f"no answer within {_TIMEOUT_SECONDS:.0f}s"
    else:
        reason = str(error) or type(error).__name__
    return f"{action} failed: {reason[:200]}"


class EcrSource:
    """Asks ECR for a fresh token each time the bundle is due (never caches it)."""

    expiring = True

    def __init__(self, settings: EcrSettings, *, registry: str) -> None:
        self._settings = settings
        self._registry = registry
        self._session: AioSession | None = None

    def _client(self, service: str, **credentials: str) -> Any:
        if self._session is None:
            self._session = get_session()
        return self._session.create_client(
            service, region_name=self._settings.region, endpoint_url=self._settings.endpoint_url,
            config=_CLIENT_CONFIG, **credentials)

    async def fetch(self) -> RegistryCredential:
        action = "sts:AssumeRole"
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS):
                credentials = await self._assume_role() if self._settings.role_arn else {}
                action = "ecr:GetAuthorizationToken"
                async with self._client("ecr", **credentials) as ecr:
                    request = ({"registryIds": [self._settings.registry_id]}
                               if self._settings.registry_id else {})
                    response = await ecr.get_authorization_token(**request)
        except (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError) as e:
            raise CredentialError(f"{self._registry}: {_aws_failure(action, e)}") from e
        return self._credential(response)

    async def _assume_role(self) -> dict[str, str]:
        async with self._client("sts") as sts:
            response = await sts.assume_role(RoleArn=self._settings.role_arn,
                                             RoleSessionName=_ROLE_SESSION_NAME,
                                             DurationSeconds=_ROLE_SESSION_SECONDS)
        creds = response["Credentials"]
        return {"aws_access_key_id": creds["AccessKeyId"],
                "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"]}

    def _credential(self, response: dict[str, Any]) -> RegistryCredential:
        data = response.get("authorizationData") or []
        if not data or not data[0].get("authorizationToken"):
            raise CredentialError(f"{self._registry}: ECR returned no authorization token")
        endpoint = urlsplit(str(data[0].get("proxyEndpoint", ""))).netloc.lower()
        if endpoint and endpoint != self._registry:
            raise CredentialError(f"{self._registry}: ECR issued the token for {endpoint}; "
                                  "check credentials.ecr.region and registry_id")
        try:
            decoded = base64.b64decode(data[0]["authorizationToken"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        username, sep, password = decoded.partition(":")
        if not sep or not username or not password:
            raise CredentialError(f"{self._registry}: the ECR authorization token is not "
                                  "base64 of user:password")
        expires_at = data[0].get("expiresAt")
        return RegistryCredential(
            username=username, password=Secret(password),
            expires_at=expires_at.astimezone(UTC) if isinstance(expires_at, datetime) else None,
        )


def source(registry: RegistrySettings, env: Mapping[str, str]) -> EcrSource:
    """The source of ``ecr`` credentials (``controller.credentials.kinds``); the AWS
    credentials come from botocore's chain, not from ``env``."""
    creds = registry.credentials
    assert isinstance(creds, EcrCredentials)
    return EcrSource(creds.ecr, registry=registry.registry)
