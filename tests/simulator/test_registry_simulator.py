"""The simulated registry's ``GET /v2/``: the login the controller verifies with, over the book
that the agent's built-in puller reads too."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest

from controller.model import RegistryCredential, Secret
from controller.registry import RegistryLogin
from controller.simulator import MarathonState, RegistryBook, RegistrySimulator

USER = "robot"
PASSWORD = "s3cret-one"


@pytest.fixture
async def registry() -> AsyncIterator[RegistrySimulator]:
    async with RegistrySimulator(RegistryBook()) as registry:
        yield registry


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def basic(username: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


async def ping(session: aiohttp.ClientSession, registry: RegistrySimulator,
               headers: dict[str, str] | None = None) -> tuple[int, str | None, object]:
    async with session.get(f"http://{registry.host}/v2/", headers=headers) as response:
        return (response.status, response.headers.get("WWW-Authenticate"),
                await response.json())


async def test_serves_on_a_free_loopback_port_and_names_its_host():
    async with RegistrySimulator(RegistryBook()) as registry:
        host, _, port = registry.host.rpartition(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
    with pytest.raises(RuntimeError, match="not started"):
        _ = registry.host


async def test_a_registry_never_told_about_is_public(registry, session):
    assert await ping(session, registry) == (200, None, {})


async def test_a_private_registry_challenges_and_accepts_only_its_credentials(registry, session):
    registry.book.accept_credentials(registry.host, USER, PASSWORD)
    status, challenge, body = await ping(session, registry)
    assert (status, challenge) == (401, 'Basic realm="Registry Realm"')
    assert body == {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                "detail": None}]}
    assert (await ping(session, registry, basic(USER, "wrong")))[0] == 401
    assert (await ping(session, registry, basic("someone", PASSWORD)))[0] == 401
    assert await ping(session, registry, basic(USER, PASSWORD)) == (200, None, {})


@pytest.mark.parametrize("header", ["Bearer abc", "Basic !!!", "Basic " + base64.b64encode(
    b"no-colon").decode(), "Basic"])
async def test_a_malformed_authorization_is_no_credential(registry, session, header):
    registry.book.accept_credentials(registry.host, USER, PASSWORD)
    status, challenge, _ = await ping(session, registry, {"Authorization": header})
    assert (status, challenge) == (401, 'Basic realm="Registry Realm"')


async def test_only_the_ping_is_served(registry, session):
    async with session.get(f"http://{registry.host}/v2/team/web/tags/list") as response:
        assert response.status == 404
    async with session.post(f"http://{registry.host}/v2/") as response:
        assert response.status == 405


async def test_the_login_follows_a_rotation_and_a_revocation_at_the_registry(session):
    """One ``MarathonState`` book decides both the pulls and the logins."""
    state = MarathonState()
    async with RegistrySimulator(state.registries) as registry:
        login = RegistryLogin(session, registry.host)

        async def verify(password: str) -> tuple[str, str]:
            result = await login.verify(
                RegistryCredential(username=USER, password=Secret(password)))
            return result.result, result.detail

        assert await verify("anything") == ("accepted", "ok (no login needed)")
        state.accept_credentials(registry.host, USER, PASSWORD)
        assert await verify(PASSWORD) == ("accepted", "ok (basic auth)")
        assert await verify("wrong") == (
            "rejected", "the registry refused the basic auth (401)")
        state.accept_credentials(registry.host, USER, "s3cret-two")
        assert (await verify(PASSWORD))[0] == "rejected"
        assert await verify("s3cret-two") == ("accepted", "ok (basic auth)")
        state.revoke_credentials(registry.host, USER)
        assert (await verify("s3cret-two"))[0] == "rejected"
