"""RegistryLogin against the real docker-registry with token auth, and skopeo as the referee.

The registry trusts JWTs from a token service written for these tests (``TokenIssuer``); a
real ``skopeo inspect`` passing with the same credential proves the token setup is genuine,
so an ``accepted`` here means what it would mean against a production registry.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from controller.model import RegistryCredential, Secret
from controller.registryapi.login import RegistryLogin
from tests import services

pytestmark = pytest.mark.e2e


def password(registry: services.TokenRegistry, value: str | None = None) -> RegistryCredential:
    return RegistryCredential(username=registry.username,
                              password=Secret(registry.password if value is None else value))


def identity(value: str) -> RegistryCredential:
    return RegistryCredential(username="<token>", password=Secret(value), identity_token=True)


async def verify(registry: services.TokenRegistry, credential: RegistryCredential,
                 repository: str | None = None):
    async with aiohttp.ClientSession() as session:
        login = RegistryLogin(session, registry.host, repository=repository,
                              ca_file=registry.issuer.tls_cert)
        return await login.verify(credential)


def sandbox_with(registry: services.TokenRegistry, tmp_path: Path,
                 password_: str | None = None) -> Path:
    """A HOME whose ``.docker/config.json`` holds the registry's credential."""
    config = tmp_path / "home" / ".docker" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps(registry.docker_config(password_)))
    return tmp_path / "home"


class TestRealTokenRegistry:
    def test_skopeo_pulls_with_the_right_credential(self, token_registry, tmp_path):
        """skopeo, authenticating like docker pull, inspects the image through the token flow."""
        proc = services.skopeo_inspect(token_registry.ref(), sandbox_with(token_registry,
                                                                           tmp_path))
        assert proc.returncode == 0, token_registry.scrub(proc.stderr)
        assert json.loads(proc.stdout)["Name"] == f"{token_registry.host}/team-a/hello"

    def test_skopeo_fails_with_a_wrong_credential(self, token_registry, tmp_path):
        """The same inspect with a wrong password fails for authentication."""
        proc = services.skopeo_inspect(token_registry.ref(),
                                       sandbox_with(token_registry, tmp_path, "wrong"))
        assert proc.returncode != 0
        assert "unauthorized" in token_registry.scrub(proc.stderr).lower()

    async def test_right_password_is_accepted(self, token_registry):
        """The right password gets a token the real registry accepts."""
        outcome = await verify(token_registry, password(token_registry))
        assert outcome.result == "accepted"
        assert outcome.detail.startswith("ok (token from https://127.0.0.1:")

    async def test_wrong_password_is_rejected(self, token_registry):
        """A wrong password is refused at the token step: never publish it."""
        outcome = await verify(token_registry, password(token_registry, "wrong"))
        assert (outcome.result, outcome.detail) == (
            "rejected", "the token service refused the credential (401)")

    async def test_pullable_repository_is_accepted(self, token_registry):
        """A pull-scoped token for the pushed repository lists its tags."""
        outcome = await verify(token_registry, password(token_registry), "team-a/hello")
        assert outcome.result == "accepted"
        assert outcome.detail.endswith("; may pull team-a/hello")

    async def test_repository_without_access_is_rejected(self, token_registry):
        """A token without pull access on the repository is refused by the real registry."""
        outcome = await verify(token_registry, password(token_registry), "private/app")
        assert outcome.result == "rejected"
        assert outcome.detail.endswith("may not pull private/app (401)")

    async def test_missing_repository_is_a_config_problem(self, token_registry):
        """The real registry's 404 for an unknown repository points at verify_repository."""
        outcome = await verify(token_registry, password(token_registry), "team-a/missing")
        assert (outcome.result, outcome.detail) == (
            "error", "repository team-a/missing is not on the registry: check verify_repository")

    async def test_identity_token_is_accepted(self, token_registry):
        """An identity token is exchanged by OAuth2 POST for a token the registry accepts."""
        outcome = await verify(token_registry, identity(token_registry.issuer.identity_token),
                               "team-a/hello")
        assert outcome.result == "accepted"
        assert token_registry.issuer.grants[-1] == "POST 200"

    async def test_wrong_identity_token_is_rejected(self, token_registry):
        """A wrong identity token is refused with invalid_grant."""
        outcome = await verify(token_registry, identity("not-the-token"))
        assert outcome.result == "rejected"
