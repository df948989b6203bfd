"""``DELETE /v2/queue/{id}/delay``: what Marathon answers, and what the client makes of it."""

from __future__ import annotations

import pytest
from aiohttp import web

from controller.errors import MarathonRejected, MarathonUnavailable
from controller.model import AppId
from tests.adapters.marathon_helpers import Recorder, client

NOT_QUEUED = {"message": "Application /team/web not found in tasks queue."}


async def reset(aiohttp_server, session, answer: web.Response) -> tuple[bool, Recorder]:
    rec = Recorder()
    server = await aiohttp_server(rec.app(lambda request: answer))
    return await client(session, str(server.make_url(""))).reset_launch_delay(
        AppId("/team/web")), rec


async def test_204_is_a_reset(aiohttp_server, session):
    """One DELETE of the app's delay, nothing else: no force, no body, no app write."""
    done, rec = await reset(aiohttp_server, session, web.Response(status=204))
    assert done is True
    assert [(r.method, r.path, dict(r.query)) for r in rec.requests] == [
        ("DELETE", "/v2/queue/team/web/delay", {})]
    assert rec.bodies == [None]


async def test_not_queued_is_no_error(aiohttp_server, session):
    """Marathon's 404 for an app with nothing to launch: nothing to reset."""
    done, _ = await reset(aiohttp_server, session, web.json_response(NOT_QUEUED, status=404))
    assert done is False


@pytest.mark.parametrize(("answer", "error", "words"), [
    (web.Response(status=404, text="<html>Not Found</html>"), MarathonUnavailable,
     "not Marathon"),
    (web.json_response({"message": "App '/team/web' does not exist"}, status=404),
     MarathonRejected, "does not exist"),
    (web.json_response({"message": "busy"}, status=503), MarathonUnavailable, "503"),
    (web.json_response({"message": "Access denied"}, status=403), MarathonRejected, "403"),
], ids=["proxy-404", "app-404", "503", "403"])
async def test_other_answers_are_errors(aiohttp_server, session, answer, error, words):
    """A 404 in other words than Marathon's queue answer is no "not queued"; other statuses
    are errors as for any request, and a write is not retried."""
    rec = Recorder()
    server = await aiohttp_server(rec.app(lambda request: answer))
    with pytest.raises(error, match=words):
        await client(session, str(server.make_url(""))).reset_launch_delay(AppId("/team/web"))
    assert len(rec.requests) == 1
