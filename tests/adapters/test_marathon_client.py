"""MarathonClient against real local aiohttp servers: error mapping, retries, auth, fail-over."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import pytest
from aiohttp import web

from controller.errors import (
    MarathonConflict,
    MarathonNotFound,
    MarathonRejected,
    MarathonUnavailable,
)
from controller.marathon.leaders import Leaders
from controller.model import AppId
from controller.settings import MarathonAuthSettings
from tests.adapters.marathon_helpers import APPS, Recorder, client, free_url, ids, server_tls

LOCK_BODY = {
    "message": "App is locked by one or more deployments. Override with the option "
    "'?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
    "deployments": [{"id": "97c136bf-5a28-4821-9d94-480d9fbb01c8"}],
}


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

    async def test_writes_at_once_read_the_version_once(self, aiohttp_server, session):
        """Several writes that start together share one ``/v2/info`` read."""
        rec = Recorder()

        async def handler(request):
            if request.path == "/v2/info":
                return web.json_response({"version": "1.10.26"})
            return web.json_response({"deploymentId": "d", "version": "v"})

        server = await aiohttp_server(rec.app(handler))
        c = client(session, str(server.make_url("")))
        await asyncio.gather(*(c.update_app(AppId(f"/a{i}"), {"fetch": []}) for i in range(4)))
        assert sorted(r.path for r in rec.requests) == [
            "/v2/apps/a0", "/v2/apps/a1", "/v2/apps/a2", "/v2/apps/a3", "/v2/info"]

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


async def leader_behind_proxy(aiohttp_server):
    """A leader, and a standby that names it in ``X-Marathon-Leader`` (and answers itself)."""
    leader_rec = Recorder()
    leader = await aiohttp_server(leader_rec.app(lambda r: web.json_response({"apps": []})))
    leader_url = str(leader.make_url("")).rstrip("/")
    proxy_rec = Recorder()
    proxy = await aiohttp_server(proxy_rec.app(lambda r: web.json_response(
        {"apps": []}, headers={"X-Marathon-Leader": leader_url})))
    return leader_rec, proxy_rec, proxy, leader_url


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
        server = await aiohttp_server(rec.app(lambda r: web.json_response(APPS)))
        apps = await client(session, free_url(), str(server.make_url(""))).list_apps()
        assert ids(apps) == ["/a"]

    async def test_all_down_is_unavailable(self, session):
        """No reachable URL is a transient error naming each URL tried."""
        with pytest.raises(MarathonUnavailable, match="no Marathon reachable"):
            await client(session, free_url(), free_url()).list_apps()

    async def test_redirect_is_followed_with_auth(self, aiohttp_server, session):
        """A standby's redirect to a configured leader carries the credentials."""
        leader_rec = Recorder()
        leader = await aiohttp_server(leader_rec.app(lambda r: web.json_response(APPS)))

        async def redirect(request):
            raise web.HTTPFound(str(leader.make_url(request.path_qs)))

        standby = await aiohttp_server(Recorder().app(redirect))
        c = client(session, str(standby.make_url("")), str(leader.make_url("")),
                   auth=MarathonAuthSettings(username="ops", password_env="MPW"))
        assert ids(await c.list_apps()) == ["/a"]
        assert leader_rec.requests[0].headers["Authorization"].startswith("Basic ")

    async def test_follows_x_marathon_leader(self, aiohttp_server, session):
        """Once a response names a configured leader, later requests go straight to it."""
        leader_rec, proxy_rec, proxy, leader_url = await leader_behind_proxy(aiohttp_server)
        c = client(session, str(proxy.make_url("")), leader_url)
        await c.list_apps()
        await c.list_apps()
        assert (len(proxy_rec.requests), len(leader_rec.requests)) == (1, 1)

    async def test_leader_header_ignored_behind_a_path_proxy(self, aiohttp_server, session):
        """Behind DC/OS Admin Router (a URL with a path) requests keep going through it."""
        leader_rec, proxy_rec, proxy, leader_url = await leader_behind_proxy(aiohttp_server)
        c = client(session, str(proxy.make_url("/service/marathon")).rstrip("/"), leader_url)
        await c.list_apps()
        await c.list_apps()
        assert (len(proxy_rec.requests), len(leader_rec.requests)) == (2, 0)
        assert proxy_rec.requests[0].path == "/service/marathon/v2/apps"

    async def test_redirect_behind_a_path_proxy_keeps_the_base_path(self, aiohttp_server,
                                                                    session):
        """A redirect (e.g. to https) is followed, but later requests keep the proxy's path."""
        target_rec = Recorder()

        def under_prefix(request):
            if not request.path.startswith("/service/marathon/"):
                return web.json_response({"message": "not found"}, status=404)
            return web.json_response(APPS)

        target = await aiohttp_server(target_rec.app(under_prefix))
        front_rec = Recorder()

        async def redirect(request):
            raise web.HTTPMovedPermanently(str(target.make_url(request.path_qs)))

        front = await aiohttp_server(front_rec.app(redirect))
        c = client(session, str(front.make_url("/service/marathon")).rstrip("/"))
        assert ids(await c.list_apps()) == ["/a"]
        assert ids(await c.list_apps()) == ["/a"]
        assert [r.path for r in target_rec.requests] == ["/service/marathon/v2/apps"] * 2
        assert len(front_rec.requests) == 2

    async def test_redirect_target_is_remembered_without_a_proxy(self, aiohttp_server, session):
        """Straight to Marathon, a configured redirect target is the leader for later requests."""
        leader_rec = Recorder()
        leader = await aiohttp_server(leader_rec.app(lambda r: web.json_response({"apps": []})))
        standby_rec = Recorder()

        async def redirect(request):
            raise web.HTTPFound(str(leader.make_url(request.path_qs)))

        standby = await aiohttp_server(standby_rec.app(redirect))
        c = client(session, str(standby.make_url("")), str(leader.make_url("")))
        await c.list_apps("pullsecret.enabled")
        await c.list_apps("pullsecret.enabled")
        assert (len(standby_rec.requests), len(leader_rec.requests)) == (1, 2)
        assert [r.query.getall("label") for r in leader_rec.requests] == [
            ["pullsecret.enabled"]] * 2

    async def test_redirect_from_https_to_http_is_refused(self, aiohttp_server, session,
                                                         tls_files):
        """Credentials never follow a redirect into cleartext."""
        cert, key = tls_files
        plain_rec = Recorder()
        plain = await aiohttp_server(plain_rec.app(lambda r: web.json_response({"apps": []})))

        async def downgrade(request):
            raise web.HTTPFound(str(plain.make_url(request.path_qs)))

        secure = await aiohttp_server(Recorder().app(downgrade), ssl=server_tls(cert, key))
        c = client(session, str(secure.make_url("")), ca_file=cert,
                   auth=MarathonAuthSettings(username="ops", password_env="MPW"))
        with pytest.raises(MarathonUnavailable, match="https to http"):
            await c.list_apps()
        assert plain_rec.requests == []

    @pytest.mark.parametrize(("base", "leader", "adopted"), [
        ("https://marathon.example", "http://10.0.0.7:8080", False),
        ("https://marathon.example", "https://10.0.0.7:8443", True),
        ("http://marathon.example", "https://10.0.0.7:8443", True),
    ], ids=["https-to-http", "https-to-https", "http-to-https"])
    def test_leader_header_never_downgrades_to_http(self, base, leader, adopted):
        """An https base ignores an http leader: credentials would travel in clear."""
        leaders = Leaders((base, leader))
        leaders.note_leader(leader, f"{base}/v2/apps")
        assert leaders.candidates()[0] == (leader if adopted else base)


class TestTimeouts:
    async def test_hung_url_is_skipped_by_reads(self, aiohttp_server, session, silent_url):
        """A URL that accepts but never answers does not stop a GET reaching the next one."""
        server = await aiohttp_server(Recorder().app(lambda r: web.json_response(APPS)))
        started = time.perf_counter()
        c = client(session, silent_url, str(server.make_url("")), timeout_seconds=0.3)
        assert ids(await c.list_apps()) == ["/a"]
        assert time.perf_counter() - started < 1.5

    async def test_unconnectable_url_is_skipped_by_writes(self, aiohttp_server, session,
                                                        black_hole_url):
        """A connect timeout sent nothing, so even a write moves on to the next URL."""
        rec = Recorder()
        server = await aiohttp_server(rec.app(
            lambda r: web.json_response({"deploymentId": "d1", "version": "v"})))
        c = client(session, black_hole_url, str(server.make_url("")), timeout_seconds=0.3,
                   update_method="patch")
        assert await c.update_app(AppId("/x"), {"fetch": []}) == "d1"
        assert [r.method for r in rec.requests] == ["PATCH"]

    async def test_write_that_may_have_been_sent_is_not_resent(self, aiohttp_server, session,
                                                                silent_url):
        """A write that timed out waiting for the answer may have been applied: no resend."""
        rec = Recorder()
        server = await aiohttp_server(rec.app(lambda r: web.json_response({})))
        c = client(session, silent_url, str(server.make_url("")), timeout_seconds=0.3,
                   update_method="patch")
        with pytest.raises(MarathonUnavailable, match="timed out waiting for the answer"):
            await c.update_app(AppId("/x"), {"fetch": []})
        assert rec.requests == []

    @pytest.mark.parametrize("hung", ["silent", "black_hole"])
    async def test_unreachable_leader_is_forgotten(self, aiohttp_server, session, silent_url,
                                                   black_hole_url, hung):
        """A configured leader that is named but cannot be reached gives way to the others."""
        leader = silent_url if hung == "silent" else black_hole_url
        rec = Recorder()
        server = await aiohttp_server(rec.app(lambda r: web.json_response(
            {"apps": []}, headers={"X-Marathon-Leader": leader})))
        c = client(session, str(server.make_url("")), leader, timeout_seconds=0.3)
        for _ in range(4):
            await c.list_apps()
        assert len(rec.requests) == 4
        started = time.perf_counter()
        await c.list_apps()
        assert time.perf_counter() - started < 0.25, "the failed leader was adopted again"

    def test_failed_leader_is_adopted_again_once_another_was_named(self):
        """A leader that failed comes back into favour after a leadership change."""
        urls = ("http://m", "http://a:8080", "http://b:8080")
        leaders = Leaders(urls)
        leaders.note_leader("http://a:8080", "http://m/v2/apps")
        leaders.forget_leader("http://a:8080/v2/apps")
        leaders.note_leader("http://a:8080", "http://m/v2/apps")
        assert leaders.candidates()[0] == "http://m"
        leaders.note_leader("http://b:8080", "http://m/v2/apps")
        leaders.note_leader("http://a:8080", "http://b:8080/v2/apps")
        assert leaders.candidates()[0] == "http://a:8080"


def assert_chains_nothing(error: BaseException) -> None:
    """No cause or context: a chained error could quote the secret in a traceback."""
    assert error.__cause__ is None
    assert error.__context__ is None


class TestAuthSources:
    @pytest.mark.parametrize("kind", ["password_file", "token_file"])
    async def test_missing_secret_file_is_unavailable(self, session, tmp_path, kind):
        """An unreadable secret file is a transient error naming the file."""
        missing = tmp_path / "gone"
        auth = (MarathonAuthSettings(username="ops", password_file=missing)
                if kind == "password_file" else MarathonAuthSettings(token_file=missing))
        with pytest.raises(MarathonUnavailable) as info:
            await client(session, free_url(), auth=auth).list_apps()
        assert str(info.value) == f"cannot read marathon.auth.{kind} {missing}: " \
            "No such file or directory"
        assert_chains_nothing(info.value)

    async def test_undecodable_secret_file_is_not_quoted(self, session, tmp_path):
        """A secret file that is not text fails without its bytes in the error chain."""
        token = tmp_path / "token"
        token.write_bytes(b"s3cr\xffet")
        with pytest.raises(MarathonUnavailable, match="not UTF-8") as info:
            await client(session, free_url(),
                         auth=MarathonAuthSettings(token_file=token)).list_apps()
        assert "s3cr" not in str(info.value)
        assert_chains_nothing(info.value)

    @pytest.mark.parametrize("source", ["file", "env"])
    async def test_token_with_control_characters_is_unavailable(self, aiohttp_server, session,
                                                                tmp_path, source):
        """A token no header can carry is a transient error that never quotes the token."""
        rec = Recorder()
        server = await aiohttp_server(rec.app(lambda r: web.json_response({"apps": []})))
        token = tmp_path / "token"
        token.write_text("abc\ndef\n")
        auth = (MarathonAuthSettings(token_file=token) if source == "file"
                else MarathonAuthSettings(token_env="BAD"))
        with pytest.raises(MarathonUnavailable, match="control characters") as info:
            await client(session, str(server.make_url("")), auth=auth).list_apps()
        assert "abc" not in str(info.value)
        assert "def" not in str(info.value)
        assert_chains_nothing(info.value)
        assert rec.requests == []

    @pytest.mark.parametrize(("username", "variable"), [("a:b", "MPW"), ("ops", "RAW")],
                             ids=["colon-in-username", "password-not-text"])
    async def test_unencodable_basic_auth_is_unavailable(self, session, username, variable):
        """Basic auth that cannot be encoded fails without quoting the password."""
        auth = MarathonAuthSettings(username=username, password_env=variable)
        with pytest.raises(MarathonUnavailable, match="basic auth") as info:
            await client(session, free_url(), auth=auth).list_apps()
        assert "s3cr" not in str(info.value)
        assert_chains_nothing(info.value)
