"""MarathonClient sends credentials only where the operator did, and trusts only Marathon's 404."""

from __future__ import annotations

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from controller.errors import MarathonNotFound, MarathonUnavailable
from controller.marathon.leaders import Leaders
from controller.model import AppId
from controller.settings import MarathonAuthSettings
from controller.simulator import MarathonSimulator
from tests.adapters.marathon_helpers import APPS, Recorder, Statuses, client, ids

AUTH = MarathonAuthSettings(username="ops", password_env="MPW")


def url_of(server) -> str:
    return str(server.make_url("")).rstrip("/")


async def naming_standby(aiohttp_server, leader_header: str):
    """A standby that answers itself and names ``leader_header`` as the leader."""
    rec = Recorder()
    server = await aiohttp_server(rec.app(lambda r: web.json_response(
        APPS, headers={"X-Marathon-Leader": leader_header})))
    return rec, url_of(server)


async def redirecting_standby(aiohttp_server, target):
    """A standby that redirects every request to the same path on ``target``."""
    rec = Recorder()

    async def redirect(request):
        raise web.HTTPFound(str(target.make_url(request.path_qs)))

    return rec, url_of(await aiohttp_server(rec.app(redirect)))


class TestLeaderHeader:
    async def test_unconfigured_leader_is_not_followed(self, aiohttp_server, session):
        """A leader outside marathon.urls gets nothing; the configured URL keeps every request."""
        leader_rec = Recorder()
        leader = await aiohttp_server(leader_rec.app(lambda r: web.json_response(APPS)))
        standby_rec, standby = await naming_standby(aiohttp_server, url_of(leader))
        c = client(session, standby, auth=AUTH)
        await c.list_apps()
        await c.list_apps()
        assert (len(standby_rec.requests), len(leader_rec.requests)) == (2, 0)

    async def test_unconfigured_leader_is_logged_once_by_origin(self, aiohttp_server, session):
        """An unconfigured leader is logged once, with its origin and nothing else."""
        _, standby = await naming_standby(aiohttp_server, "http://10.9.8.7:8080/some/path")
        c = client(session, standby)
        with capture_logs() as logs:
            for _ in range(3):
                await c.list_apps()
        ignored = [e for e in logs if e["event"] == "marathon_leader_ignored"]
        assert ignored == [{"event": "marathon_leader_ignored", "log_level": "info",
                            "component": "marathon", "origin": "http://10.9.8.7:8080"}]

    @pytest.mark.parametrize("spelling", ["https://{host}:{port}", "http://localhost:{port}"],
                             ids=["other-scheme", "other-host-name"])
    async def test_leader_must_match_scheme_host_and_port(self, aiohttp_server, session,
                                                          spelling):
        """A configured leader named with another scheme or host name is not the same origin."""
        leader_rec = Recorder()
        leader = await aiohttp_server(leader_rec.app(lambda r: web.json_response(APPS)))
        named = spelling.format(host=leader.host, port=leader.port)
        standby_rec, standby = await naming_standby(aiohttp_server, named)
        outcomes = Statuses()
        c = client(session, standby, url_of(leader), observer=outcomes)
        await c.list_apps()
        await c.list_apps()
        assert (len(standby_rec.requests), len(leader_rec.requests)) == (2, 0)
        assert outcomes == ["200", "200"], "the named address was tried"

    def test_default_port_and_case_do_not_make_another_origin(self):
        """``http://LEADER:80`` names the configured ``http://leader``."""
        urls = ("http://standby", "http://leader")
        leaders = Leaders(urls)
        leaders.note_leader("http://LEADER:80", "http://standby/v2/apps")
        assert leaders.candidates()[0] == "http://leader"


class TestRedirects:
    async def test_same_origin_redirect_keeps_the_credentials(self, aiohttp_server, session):
        """A redirect within one scheme, host and port is followed with Authorization."""
        rec = Recorder()

        def moved(request):
            if request.path == "/v2/apps":
                raise web.HTTPTemporaryRedirect("/moved/v2/apps")
            return web.json_response(APPS)

        server = await aiohttp_server(rec.app(moved))
        assert ids(await client(session, url_of(server), auth=AUTH).list_apps()) == ["/a"]
        assert [r.path for r in rec.requests] == ["/v2/apps", "/moved/v2/apps"]
        assert all(r.headers["Authorization"].startswith("Basic ") for r in rec.requests)

    async def test_cross_origin_redirect_with_credentials_is_refused(self, aiohttp_server,
                                                                     session):
        """Credentials never follow a redirect to an origin outside marathon.urls."""
        elsewhere_rec = Recorder()
        elsewhere = await aiohttp_server(elsewhere_rec.app(lambda r: web.json_response(APPS)))
        _, standby = await redirecting_standby(aiohttp_server, elsewhere)
        with pytest.raises(MarathonUnavailable, match=r"not in marathon\.urls"):
            await client(session, standby, auth=AUTH).list_apps()
        assert elsewhere_rec.requests == []

    async def test_refused_redirect_moves_on_to_the_next_url(self, aiohttp_server, session):
        """A standby whose redirect is refused is skipped for the next configured URL."""
        elsewhere_rec = Recorder()
        elsewhere = await aiohttp_server(elsewhere_rec.app(lambda r: web.json_response(APPS)))
        _, standby = await redirecting_standby(aiohttp_server, elsewhere)
        backup_rec = Recorder()
        backup = await aiohttp_server(backup_rec.app(lambda r: web.json_response(APPS)))
        c = client(session, standby, url_of(backup), auth=AUTH, update_method="patch")
        assert ids(await c.list_apps()) == ["/a"]
        await c.update_app(AppId("/a"), {"fetch": []})
        assert elsewhere_rec.requests == []
        assert [r.method for r in backup_rec.requests] == ["GET", "PATCH"]

    async def test_cross_origin_redirect_without_credentials_is_not_remembered(
            self, aiohttp_server, session):
        """With no credentials to leak the redirect is followed, but not taken for the leader."""
        elsewhere_rec = Recorder()
        elsewhere = await aiohttp_server(elsewhere_rec.app(lambda r: web.json_response(APPS)))
        standby_rec, standby = await redirecting_standby(aiohttp_server, elsewhere)
        c = client(session, standby)
        assert ids(await c.list_apps()) == ["/a"]
        assert ids(await c.list_apps()) == ["/a"]
        assert (len(standby_rec.requests), len(elsewhere_rec.requests)) == (2, 2)

    @pytest.mark.parametrize("location", ["http://a..b/v2/apps", "http://[::1/v2/apps",
                                          "ftp://127.0.0.1/v2/apps"],
                             ids=["bad-host-name", "bad-ipv6", "not-http"])
    async def test_unusable_redirect_is_unavailable(self, aiohttp_server, session, location):
        """A Location that is no usable http(s) address is a transient error, not a crash."""
        server = await aiohttp_server(Recorder().app(
            lambda r: web.Response(status=302, headers={"Location": location})))
        with pytest.raises(MarathonUnavailable, match="no Marathon reachable"):
            await client(session, url_of(server)).list_apps()


class TestNotFound:
    @pytest.mark.parametrize("message", [
        "App '/x' does not exist",
        "App '/x' does not exist in version 2021-07-27T14:40:33.000Z",
    ], ids=["current", "in-version"])
    async def test_marathons_own_404_means_gone(self, aiohttp_server, session, message):
        """Marathon's own not-found answer is MarathonNotFound."""
        server = await aiohttp_server(Recorder().app(
            lambda r: web.json_response({"message": message}, status=404)))
        with pytest.raises(MarathonNotFound, match="does not exist"):
            await client(session, url_of(server)).get_app(AppId("/x"))

    @pytest.mark.parametrize("response", [
        lambda: web.Response(status=404, text="<html><body>404 Not Found</body></html>",
                             content_type="text/html"),
        lambda: web.Response(status=404),
        lambda: web.json_response({"message": "no Route matched with those values"}, status=404),
        lambda: web.json_response(["App '/x' does not exist"], status=404),
    ], ids=["html", "empty", "gateway-json", "not-an-error-body"])
    async def test_404_that_is_not_marathons_is_unavailable(self, aiohttp_server, session,
                                                            response):
        """A proxy's or wrong host's 404 must not read as "the app is gone"."""
        server = await aiohttp_server(Recorder().app(lambda r: response()))
        with pytest.raises(MarathonUnavailable,
                           match="answered 404 but is not Marathon") as info:
            await client(session, url_of(server)).get_app(AppId("/x"))
        assert not isinstance(info.value, MarathonNotFound)

    async def test_404_to_a_write_that_is_not_marathons_is_unavailable(self, aiohttp_server,
                                                                       session):
        """A write answered by a foreign 404 is transient too."""
        server = await aiohttp_server(Recorder().app(lambda r: web.Response(status=404)))
        c = client(session, url_of(server), update_method="patch")
        with pytest.raises(MarathonUnavailable, match="not Marathon"):
            await c.update_app(AppId("/x"), {"fetch": []})

    async def test_simulator_answers_marathons_404(self, session):
        """The shipped simulator's 404 is Marathon's, so the client reads it as gone."""
        async with MarathonSimulator() as simulator:
            with pytest.raises(MarathonNotFound):
                await client(session, simulator.url).get_app(AppId("/nope"))
