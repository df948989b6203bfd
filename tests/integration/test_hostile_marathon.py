"""A Marathon that is wrong or hostile, through the real CLI: credentials stay home, odd answers
are per-app errors, and nothing is reported as converged or gone when it is not."""

from __future__ import annotations

import base64
from pathlib import Path

from aiohttp import web

from tests.factories import LABEL, config_doc, docker_app, write_config
from tests.integration.runner import cli

PASSWORD = "Marathon-pw-7c1e"


async def serve(aiohttp_server, handler) -> tuple[str, list[web.Request]]:
    """A one-route server answering every path with ``handler``; returns (url, requests)."""
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), seen


def config(tmp_path, url: str) -> Path:
    (tmp_path / "marathon-password").write_text(PASSWORD)
    auth = {"username": "ops", "password_file": "marathon-password"}
    return write_config(tmp_path, config_doc(url, tmp_path / "bundles", marathon={"auth": auth}))


async def test_an_unconfigured_leader_never_gets_the_credentials(aiohttp_server, tmp_path):
    """Marathon names a leader nobody configured: it receives no request (so no password), and
    the pass still runs through the configured URL."""
    async def rogue(request: web.Request) -> web.Response:
        return web.json_response({"apps": []})

    rogue_url, rogue_seen = await serve(aiohttp_server, rogue)

    async def marathon(request: web.Request) -> web.Response:
        return web.json_response({"apps": []}, headers={"X-Marathon-Leader": rogue_url})

    url, seen = await serve(aiohttp_server, marathon)
    code, out, err = await cli("plan", "-c", config(tmp_path, url), env={"REG_PW": "x"})
    assert code == 0, err
    assert rogue_seen == []
    assert seen
    expected = "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
    assert all(r.headers.get("Authorization") == expected for r in seen)
    assert PASSWORD not in out + err


async def test_a_proxy_answering_404_is_not_every_app_gone(aiohttp_server, tmp_path):
    """Something that is not Marathon answers 404 to every app: the pass fails (exit 1) and
    says so, instead of reporting the apps as deleted."""
    async def proxy(request: web.Request) -> web.Response:
        if request.path == "/v2/apps":
            return web.json_response({"apps": [docker_app("/a/one"), docker_app("/a/two")]})
        return web.Response(status=404, text="<html>Not Found</html>", content_type="text/html")

    url, _ = await serve(aiohttp_server, proxy)
    code, out, err = await cli("reconcile", "--once", "-c", config(tmp_path, url),
                               env={"REG_PW": "x"})
    assert code == 1
    assert "/a/one: FAILED" in out
    assert "is not Marathon" in out
    assert "Traceback" not in out + err


async def test_odd_app_shapes_are_per_app_errors(aiohttp_server, tmp_path):
    """Apps with odd fields are reported one by one as invalid, with the field named; the good
    one converges; no traceback; exit 0 (a broken app is its owner's to fix, not a failure of
    the pass)."""
    apps = [
        docker_app("/odd/labels", labels={LABEL: True}),
        docker_app("/odd/container", container="DOCKER"),
        docker_app("/odd/fetch", fetch=[{"extract": True}]),
        docker_app("/odd/string-fetch", fetch=["https://example.com/a.tgz"]),
        {"labels": {LABEL: "true"}},  # no id: dropped by the client, with a log line
        docker_app("/odd/good"),
    ]
    writes: list[str] = []

    async def marathon(request: web.Request) -> web.Response:
        if request.path == "/v2/apps":
            return web.json_response({"apps": apps})
        if request.path == "/v2/info":
            return web.json_response({"version": "1.10.26"})
        app_id = request.path.removeprefix("/v2/apps")
        app = next((a for a in apps if a.get("id") == app_id), None)
        if request.method == "PATCH":
            writes.append(app_id)
            return web.json_response({"deploymentId": "d-1", "version": "v"})
        return web.json_response({"app": app})

    url, _ = await serve(aiohttp_server, marathon)
    code, out, err = await cli("reconcile", "--once", "-c", config(tmp_path, url),
                               env={"REG_PW": "x"})
    assert code == 0, out + err
    for line in ("/odd/labels: INVALID: label pullsecret.enabled is not text",
                 "/odd/container: INVALID: container is not an object",
                 "/odd/fetch: INVALID: fetch[0] is not an object with a uri",
                 "/odd/string-fetch: INVALID: fetch[0] is not an object with a uri",
                 "/odd/good: add"):
        assert line in out, out
    assert out.splitlines()[-1] == "summary: 5 apps: 1 updated, 4 invalid, 0 failed"
    assert writes == ["/odd/good"]
    assert "Traceback" not in out + err


async def test_an_apps_list_that_is_not_a_list_fails_the_pass(aiohttp_server, tmp_path):
    async def marathon(request: web.Request) -> web.Response:
        return web.json_response({"apps": None})

    url, _ = await serve(aiohttp_server, marathon)
    code, out, err = await cli("plan", "-c", config(tmp_path, url), env={"REG_PW": "x"})
    assert code == 1
    assert "apps is null, not a list" in err
    assert "Traceback" not in out + err
