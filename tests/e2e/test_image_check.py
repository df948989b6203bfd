"""``RegistryLogin.check_image`` against the real ``docker-registry``, with skopeo as the referee.

In token mode the robot (``username``) may not pull anything under ``private/``, although
``private/hello:1`` is there (pushed by another account); in htpasswd mode every authenticated
account may pull everything. Each check also counts the requests the registry logged for it, and
the token service's answers, which is the cost the README states for one check.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import aiohttp
import pytest

from controller.config import settings_from_mapping
from controller.model import RegistryCredential, Secret
from controller.registryapi.login import RegistryLogin
from controller.registryapi.results import ImageCheck
from controller.simulator import MarathonSimulator, MarathonState
from tests import services
from tests.factories import docker_app, filesystem_storage
from tests.integration.runner import Daemon, Ops
from tests.services.token_auth import TokenRegistry

pytestmark = pytest.mark.e2e


def robot(registry: services.Registry, password: str | None = None) -> RegistryCredential:
    return RegistryCredential(username=registry.username,
                              password=Secret(registry.password if password is None else password))


def pushed_digest(registry: services.Registry) -> str:
    """The digest of the pushed test image's manifest (skopeo copies it unchanged)."""
    index = json.loads((registry.layout / "index.json").read_text())
    digest: str = index["manifests"][0]["digest"]
    return digest


def repository_and_reference(image: str) -> tuple[str, str]:
    repository, _, tag = image.rpartition(":")
    return repository, tag


class Counted:
    """One image check, and the requests it cost: those the registry logged with this check's
    own User-Agent, and the token service's answers."""

    def __init__(self, registry: services.Registry) -> None:
        self.registry = registry
        self.agent = f"image-check-{secrets.token_hex(4)}"
        self.mark = registry.log_mark()
        self.issuer = registry.issuer if isinstance(registry, TokenRegistry) else None
        self.grants_before = len(self.issuer.grants) if self.issuer else 0

    async def check(self, credential: RegistryCredential, repository: str,
                    reference: str) -> ImageCheck:
        async with aiohttp.ClientSession() as session:
            checker = RegistryLogin(
                session, self.registry.host, user_agent=self.agent, timeout_seconds=10,
                ca_file=self.issuer.tls_cert if self.issuer else None)
            return await checker.check_image(credential, repository, reference)

    def registry_requests(self) -> list[str]:
        pattern = re.compile(r'"(\w+) (/v2/\S*) HTTP/1\.1" (\d+) .*"' + self.agent + '"')
        return [f"{m[1]} {m[2].partition('?')[0]} {m[3]}"
                for m in pattern.finditer(self.registry.log_since(self.mark))]

    async def cost(self, expected: int) -> tuple[list[str], int]:
        """The registry's log lines for this check, once ``expected`` of them are written (the
        registry logs a request after answering it), and the number of token answers."""
        await services.eventually(lambda: len(self.registry_requests()) >= expected,
                                  timeout=5, what=f"{expected} registry log lines")
        tokens = len(self.issuer.grants) - self.grants_before if self.issuer else 0
        return self.registry_requests(), tokens


def skopeo_pulls(registry: services.Registry, image: str, tmp_path: Path) -> bool:
    """Whether ``skopeo inspect`` (docker pull's way of authenticating, from a sandbox HOME
    holding the robot's credential) gets the image's manifest."""
    home = tmp_path / f"home-{secrets.token_hex(4)}"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(json.dumps(registry.docker_config()))
    return services.skopeo_inspect(registry.ref(image), home).returncode == 0


class TestTokenRegistry:
    async def test_pullable_image_is_ok(self, token_registry, tmp_path):
        """The robot's token may pull the pushed image: ok, for 2 registry requests and 1
        token request; skopeo agrees."""
        counted = Counted(token_registry)
        check = await counted.check(robot(token_registry),
                                    *repository_and_reference(token_registry.image))
        assert check.result == "ok", check.detail
        assert check.detail.startswith("ok (token from https://127.0.0.1:")
        requests, tokens = await counted.cost(2)
        assert requests == ["GET /v2/ 401", "HEAD /v2/team-a/hello/manifests/1 200"]
        assert tokens == 1
        assert skopeo_pulls(token_registry, token_registry.image, tmp_path)

    async def test_digest_reference_is_ok(self, token_registry):
        digest = pushed_digest(token_registry)
        check = await Counted(token_registry).check(robot(token_registry), "team-a/hello", digest)
        assert check.result == "ok", check.detail
        assert check.detail.endswith(f"may pull team-a/hello@{digest}")

    async def test_image_the_robot_may_not_pull_is_denied(self, token_registry, tmp_path):
        """``private/hello:1`` exists, but the token service grants the robot nothing there: the
        registry answers 401, denied; skopeo cannot pull it either."""
        counted = Counted(token_registry)
        check = await counted.check(robot(token_registry),
                                    *repository_and_reference(token_registry.private_image))
        assert check.result == "denied"
        assert check.detail.endswith("may not pull private/hello:1 (401)")
        requests, _ = await counted.cost(2)
        assert requests == ["GET /v2/ 401", "HEAD /v2/private/hello/manifests/1 401"]
        assert not skopeo_pulls(token_registry, token_registry.private_image, tmp_path)

    async def test_typo_in_the_tag_is_manifest_unknown(self, token_registry, tmp_path):
        """A tag that is not there: the repository lists its tags, so the tag is wrong. 3
        registry requests and 1 token request."""
        counted = Counted(token_registry)
        check = await counted.check(robot(token_registry), "team-a/hello", "l")
        assert (check.result, check.detail) == (
            "manifest_unknown", "team-a/hello:l is not on the registry; team-a/hello is")
        requests, tokens = await counted.cost(3)
        assert requests == ["GET /v2/ 401", "HEAD /v2/team-a/hello/manifests/l 404",
                            "GET /v2/team-a/hello/tags/list 200"]
        assert tokens == 1
        assert not skopeo_pulls(token_registry, "team-a/hello:l", tmp_path)

    async def test_missing_repository_is_name_unknown(self, token_registry):
        counted = Counted(token_registry)
        check = await counted.check(robot(token_registry), "team-a/missing", "1")
        assert (check.result, check.detail) == (
            "name_unknown", "repository team-a/missing is not on the registry")
        requests, _ = await counted.cost(3)
        assert requests[-1] == "GET /v2/team-a/missing/tags/list 404"

    async def test_wrong_password_is_denied(self, token_registry):
        """The token service refuses the password: nothing may be pulled with it."""
        check = await Counted(token_registry).check(
            robot(token_registry, "wrong"), *repository_and_reference(token_registry.image))
        assert (check.result, check.detail) == (
            "denied", "the token service refused the credential (401)")

    async def test_identity_token_is_ok(self, token_registry):
        credential = RegistryCredential(username="<token>", identity_token=True,
                                        password=Secret(token_registry.issuer.identity_token))
        check = await Counted(token_registry).check(
            credential, *repository_and_reference(token_registry.image))
        assert check.result == "ok", check.detail
        assert token_registry.issuer.grants[-1] == "POST 200"


class TestHtpasswdRegistry:
    async def test_pullable_image_is_ok(self, registry):
        """Basic auth: 2 registry requests, no token service."""
        counted = Counted(registry)
        check = await counted.check(robot(registry), *repository_and_reference(registry.image))
        assert (check.result, check.detail) == ("ok", "ok (basic auth); may pull team-a/hello:1")
        requests, _ = await counted.cost(2)
        assert requests == ["GET /v2/ 401", "HEAD /v2/team-a/hello/manifests/1 200"]

    async def test_digest_reference_is_ok(self, registry):
        check = await Counted(registry).check(robot(registry), "team-a/hello",
                                              pushed_digest(registry))
        assert check.result == "ok", check.detail

    async def test_typo_in_the_tag_is_manifest_unknown(self, registry):
        counted = Counted(registry)
        check = await counted.check(robot(registry), "team-a/hello", "2")
        assert check.result == "manifest_unknown"
        requests, _ = await counted.cost(3)
        assert requests == ["GET /v2/ 401", "HEAD /v2/team-a/hello/manifests/2 404",
                            "GET /v2/team-a/hello/tags/list 200"]

    async def test_unknown_digest_is_manifest_unknown(self, registry):
        check = await Counted(registry).check(robot(registry), "team-a/hello",
                                              "sha256:" + "0" * 64)
        assert check.result == "manifest_unknown"

    async def test_missing_repository_is_name_unknown(self, registry):
        check = await Counted(registry).check(robot(registry), "team-z/nothing", "1")
        assert check.result == "name_unknown"

    async def test_wrong_password_is_denied(self, registry):
        counted = Counted(registry)
        check = await counted.check(robot(registry, "wrong"),
                                    *repository_and_reference(registry.image))
        assert (check.result, check.detail) == (
            "denied", "the basic auth may not pull team-a/hello:1 (401)")
        requests, _ = await counted.cost(2)
        assert requests == ["GET /v2/ 401", "HEAD /v2/team-a/hello/manifests/1 401"]


async def test_unreachable_registry_is_unreachable():
    """Nothing listening where the registry should be: unreachable, not an answer."""
    host = f"{services.HOST}:{services.free_port()}"
    async with aiohttp.ClientSession() as session:
        check = await RegistryLogin(session, host, timeout_seconds=5).check_image(
            RegistryCredential(username="robot", password=Secret("x")), "team-a/hello", "1")
    assert (check.result, check.answered) == ("unreachable", False)
    assert check.detail == f"http://{host}: connection refused"


class TestTheDaemonFindsUnpullableImages:
    """The daemon asks about each opted-in app's image, with the credential it publishes, before
    any task launches (this simulator runs no tasks at all)."""

    async def test_denied_and_unknown_images_are_image_unpullable_until_fixed(
            self, token_registry, tmp_path):
        apps = {"/img/ok": token_registry.image, "/img/private": token_registry.private_image,
                "/img/typo": "team-a/hello:l"}
        state = MarathonState(deployment_seconds=0.05)
        state.load_apps([docker_app(a, token_registry.ref(image)) for a, image in apps.items()])
        async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim, \
                aiohttp.ClientSession() as session:
            settings = settings_from_mapping({
                "marathon": {"urls": [sim.url]},
                "registries": [{"host": token_registry.host, "verify": "required",
                                "ca_file": str(token_registry.issuer.tls_cert),
                                "credentials": {"username": token_registry.username,
                                                "password_env": "PW"}}],
                "storage": filesystem_storage(tmp_path / "bundles"),
                "reconcile": {"max_writes_per_second": 1000, "write_burst": 1000},
                "server": {"listen": f"127.0.0.1:{services.free_port()}"},
            }, {"PW": token_registry.password})
            async with Daemon(settings, {"PW": token_registry.password}):
                ops = Ops(session, settings.server.listen, token_registry.host)

                async def states() -> dict[str, tuple[str, str | None]]:
                    found = (await ops.document())["apps"]
                    return {a: (found[a]["state"], (found[a]["image_check"] or {}).get("result"))
                            for a in apps if a in found}

                async def judged() -> bool:
                    return all(check is not None for _, check in (await states()).values()) \
                        and len(await states()) == len(apps)

                await services.eventually(judged, 15, "every image is asked about")
                assert await states() == {
                    "/img/ok": ("converged", "ok"),
                    "/img/private": ("image_unpullable", "denied"),
                    "/img/typo": ("image_unpullable", "manifest_unknown")}
                assert await ops.metric("image_checks_total", result="denied") == 1
                await services.eventually(lambda: not state.list_deployments(), 10,
                                          "the controller's own deployments end (a user's "
                                          "edit meanwhile would meet the lock's 409)")
                state.update_app("/img/typo", {"container": {"type": "DOCKER", "docker": {
                    "image": token_registry.ref(token_registry.image)}}})

                async def fixed() -> bool:
                    return (await states())["/img/typo"] == ("converged", "ok")

                await services.eventually(fixed, 15, "the fixed tag clears the state")
