"""MarathonClient against real local aiohttp servers: error mapping, retries, auth, fail-over."""

from __future__ import annotations

import base64
import inspect
import json
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from controller.config import MarathonAuthSettings, MarathonSettings
from controller.errors import (
    MarathonConflict,
    MarathonNotFound,
    MarathonRejected,
    MarathonUnavailable,
)
from controller.marathon import MarathonClient
from controller.model import AppId

LOCK_BODY = {
    "message": "App is locked by one or more deployments. Override with the option "
    "'?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
    "deployments": [{"id": "97c136bf-5a28-4821-9d94-480d9fbb01c8"}],
}


async def no_sleep(_: float) -> None:
    return None


class Recorder:
    """A tiny Marathon stand-in that records every request."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.bodies: list[object] = []

    def app(self, handler) -> web.Application:
        async def record(request: web.Request) -> web.StreamResponse:
            self.requests.append(request)
            raw = await request.read()
            self.bodies.append(json.loads(raw) if raw else None)
            response = handler(request)
            return await response if inspect.isawaitable(response) else response

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        return app


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def client(session, *urls: str, **settings) -> MarathonClient:
    return MarathonClient(MarathonSettings(urls=urls, timeout_seconds=2, **settings), session,
                          env={"MPW": "s3cret"}, retry_sleep=no_sleep)


class TestErrorMapping:
    @pytest.mark.parametrize(("status", "body", "error", "text"), [
        (404, {"message": "App '/x' does not exist"}, MarathonNotFound, "does not exist"),
        (401, {"message": "Invalid username or password."}, MarathonRejected, "Invalid username"),
        (403, {"message": "Not Authorized to perform this action!"}, MarathonRejected,
         "Not Authorized"),
        (422, {"message": "Object is not valid", "details": [
            {"path": "/fetch(0)/uri", "errors": ["must not be empty"]}]}, MarathonRejected,
         r"/fetch\(0\)/uri: must not be empty"),
    ], ids=["404", "401", "403", "422"])
    async def test_client_errors_carry_marathons_message(self, aiohttp_server, session, status,
                                                         body, error, text):
        """4xx answers become clear errors with Marathon's own message."""
        rec = Recorder()
        server = await aiohttp_server(rec.app(
            lambda r: web.json_response(body, status=status)))
        with pytest.raises(error, match=text):
            await client(session, str(server.make_url(""))).get_app(AppId("/x"))
        assert len(rec.requests) == 1

    async def test_conflict_names_the_locking_deployments(self, aiohttp_server, session):
        """409 is a retryable conflict that carries the deployment ids."""
        rec = Recorder()
        server = await aiohttp_server(rec.app(
            lambda r: web.json_response(LOCK_BODY, status=409)))
        with pytest.raises(MarathonConflict) as info:
            await client(session, str(server.make_url(""))).update_app(
                AppId("/x"), {"fetch": []})
        assert info.value.deployment_ids == ("97c136bf-5a28-4821-9d94-480d9fbb01c8",)

    async def test_reads_retry_on_5xx(self, aiohttp_server, session):
        """A GET that gets 503 is retried, then succeeds."""
        rec = Recorder()

        async def flaky(request):
            if len(rec.requests) < 3:
                return web.json_response({"message": "busy"}, status=503)
            return web.json_response({"app": {"id": "/x"}})

        server = await aiohttp_server(rec.app(flaky))
        app = await client(session, str(server.make_url(""))).get_app(AppId("/x"))
        assert app["id"] == "/x"
        assert len(rec.requests) == 3

    async def test_reads_give_up_after_three_attempts(self, aiohttp_server, session):
        """Persistent 500s surface as MarathonUnavailable after the retry budget."""
        rec = Recorder()
        server = await aiohttp_server(rec.app(
            lambda r: web.json_response({"message": "boom"}, status=500)))
        with pytest.raises(MarathonUnavailable, match="500"):
            await client(session, str(server.make_url(""))).list_apps()
        assert len(rec.requests) == 3

    async def test_writes_are_not_retried(self, aiohttp_server, session):
        """A failing write is left to the work queue, not retried in the adapter."""
        rec = Recorder()
        server = await aiohttp_server(rec.app(
            lambda r: web.json_response({"message": "boom"}, status=500)))
        c = client(session, str(server.make_url("")), update_method="patch")
        with pytest.raises(MarathonUnavailable):
            await c.update_app(AppId("/x"), {"fetch": []})
        assert len(rec.requests) == 1

    async def test_error_text_is_cut_short(self, aiohttp_server, session):
        """A huge message is cut, so a body never floods logs."""
        server = await aiohttp_server(Recorder().app(
            lambda r: web.json_response({"message": "x" * 10_000}, status=400)))
        with pytest.raises(MarathonRejected) as info:
            await client(session, str(server.make_url(""))).list_apps()
        assert len(str(info.value)) < 400


class TestWrites:
    async def test_patch_with_minimal_body(self, aiohttp_server, session):
        """Marathon >= 1.4 gets a PATCH with exactly the body given; no force, no version."""
        rec = Recorder()

        async def handler(request):
            if request.path == "/v2/info":
                return web.json_response({"version": "1.10.26"})
            return web.json_response({"deploymentId": "d1", "version": "v"},
                                     headers={"Marathon-Deployment-Id": "d1"})

        server = await aiohttp_server(rec.app(handler))
        body = {"fetch": [{"uri": "file:///b/pullsecret-r.tar.gz", "extract": True}]}
        deployment = await client(session, str(server.make_url(""))).update_app(
            AppId("/team/app"), body)
        write = rec.requests[-1]
        assert (write.method, write.path, deployment) == ("PATCH", "/v2/apps/team/app", "d1")
        assert "force" not in write.query
        assert rec.bodies[-1] == body

    async def test_old_marathon_gets_partial_put(self, aiohttp_server, session):
        """Marathon < 1.4 has no PATCH: a PUT (partial) is sent instead."""
        rec = Recorder()

        async def handler(request):
            if request.path == "/v2/info":
                return web.json_response({"version": "1.3.14"})
            return web.json_response({"deploymentId": "d2", "version": "v"})

        server = await aiohttp_server(rec.app(handler))
        assert await client(session, str(server.make_url(""))).update_app(
            AppId("/a"), {"fetch": []}) == "d2"
        assert rec.requests[-1].method == "PUT"
        assert "force" not in rec.requests[-1].query

    async def test_patch_405_falls_back_to_put(self, aiohttp_server, session):
        """A 405 to PATCH switches to partial PUT for good."""
        rec = Recorder()

        async def handler(request):
            if request.method == "PATCH":
                return web.Response(status=405)
            return web.json_response({"deploymentId": "d3", "version": "v"})

        server = await aiohttp_server(rec.app(handler))
        c = client(session, str(server.make_url("")), update_method="patch")
        assert await c.update_app(AppId("/a"), {"fetch": []}) == "d3"
        await c.update_app(AppId("/a"), {"fetch": []})
        assert [r.method for r in rec.requests] == ["PATCH", "PUT", "PUT"]


class TestAuthAndLeaders:
    async def test_basic_auth_from_env(self, aiohttp_server, session):
        """Basic auth credentials are read from the named variable."""
        rec = Recorder()
        server = await aiohttp_server(rec.app(lambda r: web.json_response({"apps": []})))
        c = client(session, str(server.make_url("")),
                   auth=MarathonAuthSettings(username="ops", password_env="MPW"))
        await c.list_apps()
        expected = "Basic " + base64.b64encode(b"ops:s3cret").decode()
        assert rec.requests[0].headers["Authorization"] == expected

    async def test_dcos_token_from_file(self, aiohttp_server, session, tmp_path: Path):
        """A DC/OS token is sent as 'token=<t>' and re-read on each request."""
        token = tmp_path / "token"
        token.write_text("abc\n")
        rec = Recorder()
        server = await aiohttp_server(rec.app(lambda r: web.json_response({"apps": []})))
        c = client(session, str(server.make_url("")),
                   auth=MarathonAuthSettings(token_file=token))
        await c.list_apps()
        token.write_text("def")
        await c.list_apps()
        assert [r.headers["Authorization"] for r in rec.requests] == ["token=abc", "token=def"]

    async def test_label_selector_is_sent(self, aiohttp_server, session):
        """Listing asks Marathon to filter by label."""
        rec = Recorder()
        server = await aiohttp_server(rec.app(lambda r: web.json_response({"apps": []})))
        await client(session, str(server.make_url(""))).list_apps("pullsecret.enabled")
        assert rec.requests[0].query["label"] == "pullsecret.enabled"

    async def test_fails_over_to_the_next_url(self, aiohttp_server, session):
        """A down URL is skipped for the next one."""
        rec = Recorder()
        server = await aiohttp_server(rec.app(lambda r: web.json_response({"apps": [1]})))
        apps = await client(session, free_url(), str(server.make_url(""))).list_apps()
        assert apps == [1]

    async def test_all_down_is_unavailable(self, session):
        """No reachable URL is a transient error naming each URL tried."""
        with pytest.raises(MarathonUnavailable, match="no Marathon reachable"):
            await client(session, free_url(), free_url()).list_apps()

    async def test_redirect_is_followed_with_auth(self, aiohttp_server, session):
        """A standby's redirect leads to the leader, credentials included."""
        leader_rec = Recorder()
        leader = await aiohttp_server(leader_rec.app(
            lambda r: web.json_response({"apps": ["from-leader"]})))

        async def redirect(request):
            raise web.HTTPFound(str(leader.make_url(request.path_qs)))

        standby = await aiohttp_server(Recorder().app(redirect))
        c = client(session, str(standby.make_url("")),
                   auth=MarathonAuthSettings(username="ops", password_env="MPW"))
        assert await c.list_apps() == ["from-leader"]
        assert leader_rec.requests[0].headers["Authorization"].startswith("Basic ")

    async def test_follows_x_marathon_leader(self, aiohttp_server, session):
        """Once a response names the leader, later requests go straight to it."""
        leader_rec = Recorder()
        leader = await aiohttp_server(leader_rec.app(
            lambda r: web.json_response({"apps": []})))
        proxy_rec = Recorder()
        proxy = await aiohttp_server(proxy_rec.app(lambda r: web.json_response(
            {"apps": []}, headers={"X-Marathon-Leader": str(leader.make_url("")).rstrip("/")})))
        c = client(session, str(proxy.make_url("")))
        await c.list_apps()
        await c.list_apps()
        assert (len(proxy_rec.requests), len(leader_rec.requests)) == (1, 1)

    async def test_leader_header_ignored_behind_a_path_proxy(self, aiohttp_server, session):
        """Behind DC/OS Admin Router (a URL with a path) requests keep going through it."""
        leader_rec = Recorder()
        leader = await aiohttp_server(leader_rec.app(
            lambda r: web.json_response({"apps": []})))
        proxy_rec = Recorder()
        proxy = await aiohttp_server(proxy_rec.app(lambda r: web.json_response(
            {"apps": []}, headers={"X-Marathon-Leader": str(leader.make_url("")).rstrip("/")})))
        c = client(session, str(proxy.make_url("/service/marathon")).rstrip("/"))
        await c.list_apps()
        await c.list_apps()
        assert (len(proxy_rec.requests), len(leader_rec.requests)) == (2, 0)
        assert proxy_rec.requests[0].path == "/service/marathon/v2/apps"
