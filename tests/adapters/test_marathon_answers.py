"""MarathonClient reads Marathon's answers defensively: shapes, sizes, limits and Retry-After."""

from __future__ import annotations

import email.utils
import time

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from controller.errors import (
    MarathonDeploymentLimit,
    MarathonRejected,
    MarathonUnavailable,
)
from controller.model import AppId
from tests.adapters.marathon_helpers import Recorder, client, ids

MIB = 1024 * 1024
# mesosphere/marathon src/main/scala/mesosphere/marathon/Exception.scala:39-44 (90619da7),
# verbatim, the missing space before "using" included.
DEPLOYMENT_LIMIT = (
    "Max number (100) of running deployments is achieved. Wait for existing deployments to "
    "complete or cancel oneusing force=true parameter. You can increase max deployment number "
    "by using --max_running_deployments parameter but be advised that this can have negative "
    "effects on the performance.")


def url_of(server) -> str:
    return str(server.make_url("")).rstrip("/")


async def answering(aiohttp_server, handler) -> tuple[Recorder, str]:
    rec = Recorder()
    return rec, url_of(await aiohttp_server(rec.app(handler)))


class TestAppListShape:
    @pytest.mark.parametrize(("body", "problem"), [
        ({}, "the answer has no apps"),
        ({"apps": None}, "apps is null, not a list"),
        ({"apps": {"id": "/a"}}, "apps is an object, not a list"),
        ({"apps": "/a"}, "apps is a string, not a list"),
        ([{"id": "/a"}], "the answer is a list, not an object"),
    ], ids=["missing", "null", "object", "string", "bare-list"])
    async def test_malformed_envelope_is_unavailable(self, aiohttp_server, session, body,
                                                     problem):
        """An /v2/apps answer without an apps list is refused, naming what is wrong."""
        _, url = await answering(aiohttp_server, lambda r: web.json_response(body))
        with pytest.raises(MarathonUnavailable, match=problem):
            await client(session, url).list_apps()

    async def test_entries_that_are_no_app_are_dropped_and_logged(self, aiohttp_server,
                                                                  session):
        """Each unusable entry is skipped with its index and reason, never its content."""
        apps = [{"id": "/ok"}, 5, "/x", None, {"cmd": "hunter2"}, {"id": 7},
                {"id": "relative"}, {"id": "/ok2"}]
        _, url = await answering(aiohttp_server, lambda r: web.json_response({"apps": apps}))
        with capture_logs() as logs:
            assert ids(await client(session, url).list_apps()) == ["/ok", "/ok2"]
        skipped = [(e["index"], e["reason"]) for e in logs
                   if e["event"] == "marathon_app_skipped"]
        assert skipped == [
            (1, "it is a number, not an object"),
            (2, "it is a string, not an object"),
            (3, "it is null, not an object"),
            (4, "it has no id"),
            (5, "its id is a number, not a string"),
            (6, "its id does not start with /"),
        ]
        assert "hunter2" not in repr(logs)

    async def test_many_bad_entries_are_counted_not_each_logged(self, aiohttp_server, session):
        """Past 20 skipped entries the rest are counted in one line."""
        apps = [{"id": "/ok"}] + [None] * 1000
        _, url = await answering(aiohttp_server, lambda r: web.json_response({"apps": apps}))
        with capture_logs() as logs:
            assert ids(await client(session, url).list_apps()) == ["/ok"]
        skipped = [e for e in logs if e["event"] == "marathon_app_skipped"]
        assert [e["index"] for e in skipped[:-1]] == list(range(1, 21))
        assert skipped[-1]["not_logged"] == 980


class TestAppShape:
    @pytest.mark.parametrize(("body", "problem"), [
        ({}, "the answer has no app"),
        ({"app": None}, "app is null, not an object"),
        ({"app": [{"id": "/x"}]}, "app is a list, not an object"),
        ({"app": {"cmd": "sleep"}}, "it has no id"),
        ({"app": {"id": "/y"}}, "it is another app, '/y'"),
    ], ids=["missing", "null", "list", "no-id", "other-app"])
    async def test_malformed_app_is_unavailable(self, aiohttp_server, session, body, problem):
        """GET /v2/apps/{id} must answer that very app."""
        _, url = await answering(aiohttp_server, lambda r: web.json_response(body))
        with pytest.raises(MarathonUnavailable, match=problem):
            await client(session, url).get_app(AppId("/x"))


class TestInfoShape:
    async def test_info_that_is_no_object_stops_the_write(self, aiohttp_server, session):
        """A /v2/info answer that is not an object fails the write before anything is sent."""
        rec, url = await answering(aiohttp_server, lambda r: web.json_response(["1.10.26"]))
        with pytest.raises(MarathonUnavailable, match="the answer is a list, not an object"):
            await client(session, url).update_app(AppId("/x"), {"fetch": []})
        assert [r.path for r in rec.requests] == ["/v2/info"]


class TestDeploymentListShape:
    async def test_not_a_list_is_unavailable(self, aiohttp_server, session):
        """/v2/deployments must answer a list."""
        _, url = await answering(aiohttp_server,
                                 lambda r: web.json_response({"deployments": []}))
        with pytest.raises(MarathonUnavailable, match="the answer is an object, not a list"):
            await client(session, url).list_deployments()

    async def test_entries_without_string_ids_are_dropped(self, aiohttp_server, session):
        """A deployment without a string id is skipped and logged."""
        body = [{"id": "d1"}, {"id": 2}, [], {"affectedApps": ["/a"]}]
        _, url = await answering(aiohttp_server, lambda r: web.json_response(body))
        with capture_logs() as logs:
            assert ids(await client(session, url).list_deployments()) == ["d1"]
        assert [e["index"] for e in logs if e["event"] == "marathon_deployment_skipped"] == [
            1, 2, 3]


class TestBodySize:
    async def test_declared_oversize_body_is_refused_unread(self, aiohttp_server, session):
        """A Content-Length over the app limit (16 MiB) is refused before reading the body."""
        _, url = await answering(aiohttp_server,
                                 lambda r: web.Response(body=b" " * (16 * MIB + 1)))
        with pytest.raises(MarathonUnavailable, match="more than 16 MiB"):
            await client(session, url).get_app(AppId("/x"))

    async def test_endless_body_is_cut_at_the_limit(self, aiohttp_server, session):
        """A body without a length is refused once past the limit, not read to its end: each
        attempt (the client retries) stops soon after 16 MiB, whatever the socket buffers held."""
        sent: list[int] = []

        async def endless(request):
            sent.append(0)
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for _ in range(64 * 1024):  # at most 1 GiB, far past the 16 MiB limit
                await response.write(b" " * 16384)
                sent[-1] += 16384
            return response

        _, url = await answering(aiohttp_server, endless)
        with pytest.raises(MarathonUnavailable, match="more than 16 MiB"):
            await client(session, url, timeout_seconds=10).get_app(AppId("/x"))
        assert sent
        assert max(sent) < 32 * MIB

    async def test_list_limit_is_far_above_the_app_limit(self, aiohttp_server, session):
        """An app list over the 16 MiB app limit is read: lists may reach 256 MiB."""
        apps = [{"id": f"/app-{i}", "cmd": "x" * 2000} for i in range(10_000)]
        _, url = await answering(aiohttp_server, lambda r: web.json_response({"apps": apps}))
        assert len(await client(session, url).list_apps()) == 10_000

    async def test_declared_oversize_list_is_refused(self, aiohttp_server, session):
        """A list that announces more than 256 MiB is refused at its headers."""
        async def huge(request):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = 256 * MIB + 1
            await response.prepare(request)
            await response.write(b'{"apps": [')
            return response

        _, url = await answering(aiohttp_server, huge)
        with pytest.raises(MarathonUnavailable, match="more than 256 MiB"):
            await client(session, url).list_apps()


class TestDeploymentLimit:
    @pytest.mark.parametrize("message", [
        DEPLOYMENT_LIMIT,
        "max  number (5) of RUNNING deployments is achieved.",
        "Raise --max_running_deployments or wait.",
    ], ids=["marathon-1.10", "spacing-and-case", "flag-only"])
    async def test_running_deployment_limit_is_transient(self, aiohttp_server, session,
                                                         message):
        """Marathon's 403 for too many running deployments is a transient error."""
        rec, url = await answering(
            aiohttp_server, lambda r: web.json_response({"message": message}, status=403))
        c = client(session, url, update_method="patch")
        with pytest.raises(MarathonDeploymentLimit) as info:
            await c.update_app(AppId("/x"), {"fetch": []})
        assert isinstance(info.value, MarathonUnavailable)
        assert info.value.status == 403
        assert len(rec.requests) == 1

    @pytest.mark.parametrize("body", [
        {"message": "Not Authorized to perform this action!"},
        {"deployments": "Max number (100) of running deployments is achieved."},
    ], ids=["not-authorized", "text-outside-message"])
    async def test_other_403_is_rejected(self, aiohttp_server, session, body):
        """Any other 403 stays a terminal rejection."""
        _, url = await answering(aiohttp_server, lambda r: web.json_response(body, status=403))
        c = client(session, url, update_method="patch")
        with pytest.raises(MarathonRejected) as info:
            await c.update_app(AppId("/x"), {"fetch": []})
        assert not isinstance(info.value, MarathonUnavailable)


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


class TestRetryAfter:
    async def test_wait_within_budget_is_slept_then_retried(self, aiohttp_server, session):
        """A 429 asking for 3 s (budget 4 s) is waited out through the injected sleep."""
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        rec = Recorder()

        def throttled(request):
            if len(rec.requests) == 1:
                return web.json_response({"message": "slow down"}, status=429,
                                         headers={"Retry-After": "3"})
            return web.json_response({"apps": []})

        url = url_of(await aiohttp_server(rec.app(throttled)))
        assert await client(session, url, retry_sleep=sleep, timeout_seconds=2).list_apps() == []
        assert (slept, len(rec.requests)) == ([3.0], 2)

    async def test_wait_beyond_budget_goes_to_the_caller(self, aiohttp_server, session):
        """A wait longer than the retry budget is not slept: the error carries it instead."""
        rec, url = await answering(aiohttp_server, lambda r: web.json_response(
            {"message": "busy"}, status=503, headers={"Retry-After": "120"}))
        with pytest.raises(MarathonUnavailable) as info:
            await client(session, url, timeout_seconds=2).list_apps()
        assert (info.value.retry_after, info.value.status, len(rec.requests)) == (120.0, 503, 1)

    @pytest.mark.parametrize(("header", "low", "high"), [
        (lambda: "86400", 300.0, 300.0),
        (lambda: http_date(60), 50.0, 60.0),
        (lambda: http_date(-60), 0.0, 0.0),
        (lambda: "0", 0.0, 0.0),
    ], ids=["seconds-bounded", "http-date", "date-in-the-past", "zero"])
    async def test_retry_after_forms(self, aiohttp_server, session, header, low, high):
        """Seconds and HTTP-dates are read, and bounded to 0..300 s."""
        header = header()  # a date is made when the test runs, not when it is collected
        _, url = await answering(aiohttp_server, lambda r: web.json_response(
            {"message": "throttled"}, status=429, headers={"Retry-After": header}))
        c = client(session, url, update_method="patch")
        with pytest.raises(MarathonUnavailable) as info:
            await c.update_app(AppId("/x"), {"fetch": []})
        assert info.value.retry_after is not None
        assert low <= info.value.retry_after <= high

    @pytest.mark.parametrize(("status", "header"), [
        (429, "soon"), (429, None), (503, None), (500, "30")],
        ids=["429-unreadable", "429-absent", "503-absent", "500-ignored"])
    async def test_no_usable_retry_after_is_none(self, aiohttp_server, session, status, header):
        """Without a readable Retry-After on a 429 or 503, retry_after stays None."""
        headers = {"Retry-After": header} if header else {}
        _, url = await answering(aiohttp_server, lambda r: web.json_response(
            {"message": "x"}, status=status, headers=headers))
        c = client(session, url, update_method="patch")
        with pytest.raises(MarathonUnavailable) as info:
            await c.update_app(AppId("/x"), {"fetch": []})
        assert info.value.retry_after is None
