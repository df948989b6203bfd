"""The simulated registry: ``GET /v2/``, the login the controller verifies with, and the
manifests and tags an image check asks about, over the book that the agent's built-in puller
reads too."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from controller.model import RegistryCredential, Secret
from controller.reference import InvalidReferenceError
from controller.registryapi.login import MANIFEST_MEDIA_TYPES, RegistryLogin
from controller.simulator import Manifest, MarathonState, RegistryBook, RegistrySimulator

USER = "robot"
PASSWORD = "s3cret-one"
OCI = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}


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


async def test_no_blobs_uploads_or_writes_are_served(registry, session):
    async with session.get(f"http://{registry.host}/v2/team/web/blobs/sha256:"
                           + "ab" * 32) as response:
        assert response.status == 404
    async with session.post(f"http://{registry.host}/v2/") as response:
        assert response.status == 405
    async with session.put(f"http://{registry.host}/v2/team/web/manifests/1") as response:
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


# -- the book's images, accounts' scopes, and the registry's answers ---------------------------

HOST = "registry.example.com:5000"


class TestBook:
    def test_a_registry_told_of_no_images_holds_every_image_without_tags(self):
        book = RegistryBook()
        found = book.find(HOST, "team/web", "1", None)
        assert isinstance(found, Manifest)
        assert found.digest == "sha256:" + hashlib.sha256(found.body).hexdigest()
        digest = "sha256:" + "ab" * 32
        assert book.find(HOST, "team/web", digest, None).digest == digest
        assert book.tags(HOST, "team/web", None) == []

    def test_once_told_of_one_image_it_holds_only_what_was_pushed(self):
        book = RegistryBook()
        digest = book.push(HOST, "team/web", "1")
        found = book.find(HOST, "team/web", "1", None)
        assert isinstance(found, Manifest)
        assert (found.digest, found.media_type) == (digest, OCI)
        assert found.digest == "sha256:" + hashlib.sha256(found.body).hexdigest()
        assert json.loads(found.body)["mediaType"] == OCI
        assert book.find(HOST, "team/web", digest, None) == found
        assert book.find(HOST, "team/web", "2", None) == "manifest_unknown"
        assert book.find(HOST, "team/web", "sha256:" + "ab" * 32, None) == "manifest_unknown"
        assert book.find(HOST, "team/api", "1", None) == "name_unknown"
        assert book.tags(HOST, "team/api", None) == "name_unknown"
        assert book.find("other.example.com", "team/api", "1", None) != "name_unknown"

    def test_a_digest_is_the_same_on_every_run_and_differs_per_image(self):
        first, second = RegistryBook(), RegistryBook()
        assert first.push(HOST, "team/web", "1") == second.push(HOST, "team/web", "1")
        assert first.push(HOST, "team/web", "2") != first.push(HOST, "team/web", "1")
        assert first.tags(HOST, "team/web", None) == ["1", "2"]

    def test_names_are_those_docker_pulls(self):
        book = RegistryBook()
        book.push("index.docker.io", "ubuntu", "22.04")
        assert isinstance(book.find("docker.io", "library/ubuntu", "22.04", None), Manifest)
        assert book.tags("docker.io", "ubuntu", None) == ["22.04"]
        book.push(HOST, "a/b-c/d__e/f.g", "v1.0_rc-1")
        assert isinstance(book.find(HOST.upper(), "a/b-c/d__e/f.g", "v1.0_rc-1", None), Manifest)

    @pytest.mark.parametrize(("repository", "reference"), [
        ("Team/web", "1"), ("team//web", "1"), ("team/web:1", "2"), ("team/web", "bad$tag"),
        ("team/web", "sha256:abc"), ("team/web", ".dot"), ("x" * 256, "1")])
    def test_what_is_no_image_is_refused(self, repository, reference):
        book = RegistryBook()
        with pytest.raises(InvalidReferenceError):
            book.push(HOST, repository, reference)
        with pytest.raises(InvalidReferenceError):
            book.find(HOST, repository, reference, None)

    def test_a_restricted_account_is_denied_outside_its_scope_whether_or_not_it_exists(self):
        book = RegistryBook()
        book.push(HOST, "team/web", "1")
        book.push(HOST, "team/api", "1")
        book.accept_credentials(HOST, USER, PASSWORD)
        book.restrict(HOST, USER, ["team/web"])
        assert isinstance(book.find(HOST, "team/web", "1", USER), Manifest)
        assert book.find(HOST, "team/web", "2", USER) == "manifest_unknown"
        assert book.find(HOST, "team/api", "1", USER) == "denied"
        assert book.find(HOST, "team/gone", "1", USER) == "denied"
        assert book.tags(HOST, "team/api", USER) == "denied"
        assert isinstance(book.find(HOST, "team/api", "1", "another"), Manifest)
        book.accept_credentials(HOST, USER, "rotated")  # a rotation keeps the scope
        assert book.find(HOST, "team/api", "1", USER) == "denied"
        book.unrestrict(HOST, USER)
        assert isinstance(book.find(HOST, "team/api", "1", USER), Manifest)
        book.restrict(HOST, USER, [])
        book.make_public(HOST)  # forgets the scopes with the credentials
        assert isinstance(book.find(HOST, "team/api", "1", USER), Manifest)


async def fetch(session: aiohttp.ClientSession, method: str, url: str,
                headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    async with session.request(method, url, headers=headers) as response:
        return response.status, response.headers, await response.read()


def error(code: str, message: str, detail: object) -> dict[str, object]:
    return {"errors": [{"code": code, "message": message, "detail": detail}]}


class TestManifests:
    async def test_a_pushed_image_is_served_with_its_digest_and_media_type(self, registry,
                                                                           session):
        digest = registry.book.push(registry.host, "team/web", "1")
        url = f"http://{registry.host}/v2/team/web/manifests/1"
        status, headers, body = await fetch(session, "GET", url, ACCEPT)
        assert status == 200
        assert headers["Content-Type"] == OCI
        assert headers["Docker-Content-Digest"] == digest
        assert headers["Etag"] == f'"{digest}"'
        assert headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
        status, head_headers, head_body = await fetch(session, "HEAD", url, ACCEPT)
        assert (status, head_body) == (200, b"")
        assert head_headers["Docker-Content-Digest"] == digest
        assert head_headers["Content-Length"] == str(len(body))
        by_digest = f"http://{registry.host}/v2/team/web/manifests/{digest}"
        assert (await fetch(session, "GET", by_digest, ACCEPT))[2] == body

    async def test_a_missing_tag_or_repository_is_404_with_the_registrys_error(self, registry,
                                                                              session):
        registry.book.push(registry.host, "team/web", "1")
        base = f"http://{registry.host}/v2"
        missing_digest = "sha256:" + "ab" * 32
        for path, expected in [
            ("team/web/manifests/2", error("MANIFEST_UNKNOWN", "manifest unknown",
                                           {"Tag": "2"})),
            (f"team/web/manifests/{missing_digest}", error(
                "MANIFEST_UNKNOWN", "manifest unknown",
                {"Name": "team/web", "Revision": missing_digest})),
            ("team/api/manifests/1", error(
                "NAME_UNKNOWN", "repository name not known to registry", {"name": "team/api"})),
        ]:
            status, headers, body = await fetch(session, "GET", f"{base}/{path}", ACCEPT)
            assert (status, json.loads(body)) == (404, expected), path
            assert headers["Content-Type"] == "application/json; charset=utf-8"
            status, _, body = await fetch(session, "HEAD", f"{base}/{path}", ACCEPT)
            assert (status, body) == (404, b"")

    async def test_without_the_oci_type_in_accept_the_manifest_is_unknown(self, registry,
                                                                          session):
        registry.book.push(registry.host, "team/web", "1")
        url = f"http://{registry.host}/v2/team/web/manifests/1"
        schema2 = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        for headers in (None, schema2):
            status, _, body = await fetch(session, "GET", url, headers)
            assert status == 404
            assert json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        oci_with_quality = {"Accept": f"text/plain, {OCI.upper()};q=0.5"}
        assert (await fetch(session, "GET", url, oci_with_quality))[0] == 200

    async def test_a_private_registry_challenges_then_denies_outside_the_scope(self, registry,
                                                                              session):
        registry.book.push(registry.host, "team/web", "1")
        registry.book.push(registry.host, "team/api", "1")
        registry.book.accept_credentials(registry.host, USER, PASSWORD)
        url = f"http://{registry.host}/v2/team/api/manifests/1"
        access = [{"Type": "repository", "Class": "", "Name": "team/api", "Action": "pull"}]
        status, headers, body = await fetch(session, "GET", url, ACCEPT)
        assert (status, headers["WWW-Authenticate"]) == (401, 'Basic realm="Registry Realm"')
        assert json.loads(body) == error("UNAUTHORIZED", "authentication required", access)
        status, headers, body = await fetch(session, "HEAD", url, ACCEPT)
        assert (status, headers["WWW-Authenticate"], body) == (
            401, 'Basic realm="Registry Realm"', b"")
        assert (await fetch(session, "GET", url, {**ACCEPT, **basic(USER, PASSWORD)}))[0] == 200
        registry.book.restrict(registry.host, USER, ["team/web"])
        for repository in ("team/api", "team/gone"):
            status, headers, body = await fetch(
                session, "GET", f"http://{registry.host}/v2/{repository}/manifests/1",
                {**ACCEPT, **basic(USER, PASSWORD)})
            assert (status, "WWW-Authenticate" in headers) == (403, False)
            assert json.loads(body) == error(
                "DENIED", "requested access to the resource is denied",
                [{**access[0], "Name": repository}])
        web = f"http://{registry.host}/v2/team/web/manifests/1"
        assert (await fetch(session, "GET", web, {**ACCEPT, **basic(USER, PASSWORD)}))[0] == 200

    @pytest.mark.parametrize("path", [
        "Team/web/manifests/1", "team/web/manifests/bad$tag", "team/web/manifests/sha256:abc",
        "team/web/manifests/.1", "team//web/manifests/1", "-team/web/tags/list"])
    async def test_a_name_or_reference_outside_the_grammar_is_404(self, registry, session,
                                                                  path):
        assert (await fetch(session, "GET", f"http://{registry.host}/v2/{path}", ACCEPT))[0] \
            == 404

    async def test_nested_repository_paths_are_served(self, registry, session):
        digest = registry.book.push(registry.host, "a/b/c/d-e", "1")
        status, headers, _ = await fetch(
            session, "HEAD", f"http://{registry.host}/v2/a/b/c/d-e/manifests/1", ACCEPT)
        assert (status, headers["Docker-Content-Digest"]) == (200, digest)


class TestTags:
    async def test_tags_are_listed_in_lexical_order_and_paginated(self, registry, session):
        for tag in ("2", "10", "1", "latest"):
            registry.book.push(registry.host, "team/web", tag)
        url = f"http://{registry.host}/v2/team/web/tags/list"
        status, headers, body = await fetch(session, "GET", url)
        assert (status, json.loads(body)) == (200, {"name": "team/web",
                                                    "tags": ["1", "10", "2", "latest"]})
        assert "Link" not in headers
        status, headers, body = await fetch(session, "GET", f"{url}?n=2")
        assert json.loads(body)["tags"] == ["1", "10"]
        assert headers["Link"] == '</v2/team/web/tags/list?last=10&n=2>; rel="next"'
        status, headers, body = await fetch(session, "GET", f"{url}?last=10&n=2")
        assert (json.loads(body)["tags"], "Link" in headers) == (["2", "latest"], False)
        status, _, body = await fetch(session, "GET", f"{url}?n=x")
        assert (status, json.loads(body)) == (400, error(
            "PAGINATION_NUMBER_INVALID", "invalid number of results requested", {"n": "x"}))

    async def test_an_unknown_or_denied_repository_has_no_tags(self, registry, session):
        registry.book.push(registry.host, "team/web", "1")
        url = f"http://{registry.host}/v2/team/api/tags/list"
        status, _, body = await fetch(session, "GET", url)
        assert (status, json.loads(body)["errors"][0]["code"]) == (404, "NAME_UNKNOWN")
        registry.book.accept_credentials(registry.host, USER, PASSWORD)
        registry.book.restrict(registry.host, USER, [])
        status, _, body = await fetch(session, "GET", url, basic(USER, PASSWORD))
        assert (status, json.loads(body)["errors"][0]["code"]) == (403, "DENIED")
        assert (await fetch(session, "HEAD", url))[0] == 405

    async def test_a_registry_told_of_no_images_lists_no_tags(self, registry, session):
        status, _, body = await fetch(
            session, "GET", f"http://{registry.host}/v2/team/web/tags/list?n=1")
        assert (status, json.loads(body)) == (200, {"name": "team/web", "tags": []})


class TestImageCheck:
    """``RegistryLogin.check_image``, the controller's own client, against the simulator."""

    @pytest.fixture
    def book(self, registry: RegistrySimulator) -> RegistryBook:
        registry.book.push(registry.host, "team/web", "1")
        registry.book.push(registry.host, "team/secret", "1")
        registry.book.accept_credentials(registry.host, USER, PASSWORD)
        registry.book.restrict(registry.host, USER, ["team/web", "team/gone"])
        return registry.book

    async def check(self, session: aiohttp.ClientSession, registry: RegistrySimulator,
                    repository: str, reference: str, password: str = PASSWORD) -> str:
        result = await RegistryLogin(session, registry.host, timeout_seconds=5).check_image(
            RegistryCredential(username=USER, password=Secret(password)), repository,
            reference)
        return result.result

    @pytest.mark.parametrize(("repository", "reference", "expected"), [
        ("team/web", "1", "ok"),
        ("team/web", "2", "manifest_unknown"),
        ("team/gone", "1", "name_unknown"),
        ("team/secret", "1", "denied"),
        ("team/elsewhere", "1", "denied"),
    ])
    async def test_answers_as_configured(self, book, registry, session, repository, reference,
                                         expected):
        assert await self.check(session, registry, repository, reference) == expected

    async def test_a_digest_is_checked_too(self, book, registry, session):
        digest = book.push(registry.host, "team/web", "2")
        assert await self.check(session, registry, "team/web", digest) == "ok"
        assert await self.check(session, registry, "team/web", "sha256:" + "ab" * 32) \
            == "manifest_unknown"

    async def test_a_wrong_password_is_denied(self, book, registry, session):
        assert await self.check(session, registry, "team/web", "1", "wrong") == "denied"

    @pytest.mark.parametrize("private", [False, True])
    async def test_a_registry_told_of_no_images_says_every_image_exists(
            self, registry, session, private):
        if private:
            registry.book.accept_credentials(registry.host, USER, PASSWORD)
        for repository, reference in [("team/web", "1"), ("a/b/c", "latest"),
                                      ("team/web", "sha256:" + "cd" * 32)]:
            assert await self.check(session, registry, repository, reference) == "ok"

    async def test_a_login_that_names_a_repository_follows_the_scope(self, book, registry,
                                                                      session):
        async def verify(repository: str) -> str:
            login = RegistryLogin(session, registry.host, repository=repository)
            credential = RegistryCredential(username=USER, password=Secret(PASSWORD))
            return (await login.verify(credential)).result

        assert await verify("team/web") == "accepted"
        assert await verify("team/secret") == "rejected"
