"""The watcher and ``status_update_event``: failed pulls reach their callback, and events that
need no decoding are never decoded, however broken their bodies."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import structlog.testing
from aiohttp import web

from controller.events import EVENT_TYPES, EventEffect, EventWatcher
from controller.marathon.client import MarathonClient
from controller.pullfailure import FailedPull
from controller.settings import MarathonSettings

ATTACHED = b'event: event_stream_attached\r\ndata: {"remoteAddress":"127.0.0.1"}\r\n\r\n'
AUTH_FAILURE = ("Failed to launch container: Failed to run 'docker -H unix:///var/run/docker.sock"
                " pull registry.example.com/team/web:1': exited with status 1; stderr='Error "
                "response from daemon: unauthorized: authentication required\n'")


def frame(event_type: str, data: str) -> bytes:
    return f"event: {event_type}\r\ndata: {data}\r\n\r\n".encode()


def status(state: str, message: str = "", task: str = "team_web.1") -> bytes:
    return frame("status_update_event", json.dumps({
        "eventType": "status_update_event", "slaveId": "s1", "taskId": task,
        "taskStatus": state, "message": message, "appId": "/team/web", "host": "agent-1"}))


def post(app_id: str) -> bytes:
    return frame("api_post_event", json.dumps({"appDefinition": {"id": app_id}}))


class Watched:
    """What one connection to a scripted stream gave each callback."""

    def __init__(self) -> None:
        self.effects: list[EventEffect] = []
        self.failed: list[FailedPull] = []
        self.kinds: list[str] = []
        self.logs: list[dict[str, object]] = []
        self.event_types: list[str] = []

    # -- the watcher's EventObserver -------------------------------------------------------
    def on_stream_connected(self, connected: bool) -> None:
        pass

    def on_event(self, event_type: str) -> None:
        self.kinds.append(event_type)

    def on_reconnect(self) -> None:
        pass


async def watch(aiohttp_server, body: bytes) -> Watched:
    watched = Watched()

    async def events(request: web.Request) -> web.StreamResponse:
        watched.event_types = request.query.getall("event_type")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        return response

    app = web.Application()
    app.router.add_get("/v2/events", events)
    url = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        watcher = EventWatcher(
            MarathonClient(MarathonSettings(urls=(url,)), session),
            on_effect=watched.effects.append, on_attached=lambda: None,
            observer=watched, on_failed_pull=watched.failed.append)
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(watcher.run(_iterations=1), 10)
    watched.logs = logs
    return watched


async def test_status_updates_are_asked_for_by_type(aiohttp_server):
    """The stream is filtered by Marathon (``event_type``) to the types the watcher reads."""
    watched = await watch(aiohttp_server, ATTACHED)
    assert watched.event_types == list(EVENT_TYPES)
    assert "status_update_event" in watched.event_types


async def test_failed_pull_reaches_its_callback_and_running_tasks_do_not(aiohttp_server):
    body = (ATTACHED + status("TASK_STAGING") + status("TASK_RUNNING")
            + status("TASK_FAILED", AUTH_FAILURE, task="team_web.2")
            + status("TASK_FAILED", "Command exited with status 1") + post("/team/other"))
    watched = await watch(aiohttp_server, body)
    assert [(f.app_id, f.task_id, f.failure.reason) for f in watched.failed] == [
        ("/team/web", "team_web.2", "auth")]
    assert [e.app_ids for e in watched.effects] == [("/team/other",)]
    assert watched.kinds.count("status_update_event") == 4  # counted, decoded or not


async def test_events_that_need_no_decoding_are_not_decoded(aiohttp_server):
    """Broken JSON in an unwanted type's event, or in a status update that names no failed state,
    is dropped unread: no decode, so no ``event_undecodable``; the same broken JSON in an
    event that may report a failure is decoded, fails, and says so. The stream goes on."""
    broken = '{"taskStatus": "TASK_RUNNING", "message": '
    body = (ATTACHED + frame("instance_changed_event", "{not json")
            + frame("status_update_event", broken)
            + frame("status_update_event", broken.replace("RUNNING", "FAILED"))
            + post("/after"))
    watched = await watch(aiohttp_server, body)
    undecodable = [e["event_type"] for e in watched.logs if e["event"] == "event_undecodable"]
    assert undecodable == ["status_update_event"]
    assert [e.app_ids for e in watched.effects] == [("/after",)]
    assert "instance_changed_event" not in watched.kinds
