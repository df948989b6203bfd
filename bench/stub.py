"""A read-only Marathon for the list benchmarks: precomputed bytes, so the server costs ~nothing.

``python -m bench.stub --apps N --labelled all|tenth --opted-in PERCENT --bundle-uri URI``
prints one ``listening on URL`` line, then serves until SIGTERM:

- ``GET /v2/apps`` the whole list, or with ``?label=pullsecret.enabled`` only the apps that
  carry the label (Marathon's existence selector, done server-side);
- ``GET /v2/apps/{id}``, ``/v2/info``, ``/v2/deployments`` (empty) and ``/v2/events`` (a stream
  that only sends heartbeats), enough for a daemon to sync and stay up.

Apps are realistic (about 1.2 KB each, as the issue's stub: env, health checks, port
mappings, several labels). The opt-in label is on every app (``--labelled all``: the
server-side filter keeps them all, the worst case) or on every tenth (``tenth``).
``--opted-in`` percent of all apps (0, 10: every tenth, or 100; never more than carry the label)
say ``"true"`` and already fetch their bundle (``--bundle-uri``), so every pass is a no-op; the
other apps that carry the label say ``"false"``. With ``--gzip`` a client that accepts gzip gets
the body compressed (once, at start-up: the server's own cost is not what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import signal
from typing import Any

from aiohttp import web

LABEL = "pullsecret.enabled"
REGISTRY = "registry.example.com:5000"
_WRITE = 1024 * 1024
_PUBLIC = ("nginx:1.25", "python:3.12-slim", "redis:7.2", "busybox:1.36", "postgres:16")


def realistic_app(i: int, *, labelled: str, opted_in_percent: int, bundle_uri: str
                  ) -> dict[str, Any]:
    team = f"team-{i % 20:02d}"
    has_label = labelled == "all" or i % 10 == 0
    opted_in = opted_in_percent == 100 or (opted_in_percent == 10 and i % 10 == 0)
    if opted_in and not has_label:
        raise ValueError("more apps opted in than carry the label")
    image = (f"{REGISTRY}/{team}/service-{i:05d}:1.4.{i % 10}" if opted_in
             else _PUBLIC[i % len(_PUBLIC)])
    fetch = [{"uri": f"https://artifacts.example.com/{team}/config-{i}.tgz", "extract": True,
              "executable": False, "cache": False}] if i % 7 == 0 else []
    if opted_in:
        fetch.append({"uri": bundle_uri, "extract": True, "executable": False, "cache": False})
    app_labels = {"team": team, "HAPROXY_GROUP": "external",
                  "HAPROXY_0_VHOST": f"service-{i}.example.com"}
    if has_label:
        app_labels[LABEL] = "true" if opted_in else "false"
    return {
        "id": f"/{team}/service-{i:05d}", "cmd": None, "args": ["--port", "$PORT0"],
        "env": {"JAVA_OPTS": "-Xmx512m", "ENV": "production",
                "GIT_COMMIT": hashlib.sha1(b"%d" % i).hexdigest()},  # noqa: S324 - test data
        "instances": 1 + i % 3,
        "cpus": 0.5, "mem": 512, "disk": 0, "gpus": 0, "executor": "",
        "constraints": [["hostname", "UNIQUE"]], "fetch": fetch, "backoffSeconds": 1,
        "backoffFactor": 1.15, "maxLaunchDelaySeconds": 300,
        "container": {"type": "DOCKER", "volumes": [], "docker": {
            "image": image, "forcePullImage": False, "privileged": False, "parameters": []},
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp",
                              "servicePort": 10000 + i % 5000, "name": "http"}]},
        "healthChecks": [{"gracePeriodSeconds": 300, "intervalSeconds": 60,
                          "timeoutSeconds": 20, "maxConsecutiveFailures": 3, "portIndex": 0,
                          "path": "/health", "protocol": "MESOS_HTTP"}],
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
        "labels": app_labels, "version": _when(i),
        "versionInfo": {"lastScalingAt": _when(i), "lastConfigChangeAt": _when(i // 3)},
        "killSelection": "YOUNGEST_FIRST", "tasksStaged": 0, "tasksRunning": 1 + i % 3,
        "tasksHealthy": 1 + i % 3, "tasksUnhealthy": 0, "deployments": [],
    }


def _when(i: int) -> str:
    return (f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:"
            f"{i * 7 % 60:02d}.{i % 1000:03d}Z")


class Stub:
    def __init__(self, apps: list[dict[str, Any]], *, compress: bool) -> None:
        encode = json.JSONEncoder(separators=(",", ":")).encode
        self.apps = {a["id"]: encode({"app": a}).encode() for a in apps}
        self.everything = _Body(encode({"apps": apps}).encode(), compress)
        self.labelled = _Body(encode({"apps": [a for a in apps if LABEL in a["labels"]]})
                              .encode(), compress)

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/apps", self.list_apps)
        app.router.add_get("/v2/apps/{app_id:.+}", self.get_app)
        app.router.add_get("/v2/info", lambda r: web.json_response({"version": "1.10.26"}))
        app.router.add_get("/v2/deployments", lambda r: web.json_response([]))
        app.router.add_get("/v2/events", self.events)
        return app

    async def list_apps(self, request: web.Request) -> web.StreamResponse:
        label = request.query.get("label")
        if label not in (None, LABEL):
            return web.json_response({"message": "this stub knows one selector"}, status=422)
        return await (self.labelled if label else self.everything).response(request)

    async def get_app(self, request: web.Request) -> web.Response:
        body = self.apps.get("/" + request.match_info["app_id"])
        if body is None:
            return web.json_response({"message": "App '/x' does not exist"}, status=404)
        return web.Response(body=body, content_type="application/json")

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b"\r\n")
                await asyncio.sleep(5)
        except ConnectionError:
            pass
        return response


class _Body:
    """One list, encoded once, and gzipped once when asked."""

    def __init__(self, body: bytes, compress: bool) -> None:
        self.plain = body
        self.gzipped = gzip.compress(body, compresslevel=6) if compress else None

    async def response(self, request: web.Request) -> web.StreamResponse:
        """The body in 1 MiB writes, as a server streams a large answer: one write of 60 MB
        would first be copied whole into the transport's buffer."""
        body, headers = self.plain, {"Content-Type": "application/json"}
        if self.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
            body, headers["Content-Encoding"] = self.gzipped, "gzip"
        response = web.StreamResponse(headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        view = memoryview(body)
        for start in range(0, len(body), _WRITE):
            await response.write(view[start:start + _WRITE])
        await response.write_eof()
        return response


async def serve(args: argparse.Namespace) -> None:
    apps = [realistic_app(i, labelled=args.labelled, opted_in_percent=args.opted_in,
                          bundle_uri=args.bundle_uri) for i in range(args.apps)]
    stub = Stub(apps, compress=args.gzip)
    del apps
    runner = web.AppRunner(stub.application(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    port = runner.addresses[0][1]
    print(f"listening on http://127.0.0.1:{port} bytes={len(stub.everything.plain)} "
          f"gzipped={len(stub.everything.gzipped or b'')}", flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.stub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, required=True)
    parser.add_argument("--labelled", choices=("all", "tenth"), default="all",
                        help="which apps carry the opt-in label")
    parser.add_argument("--opted-in", type=int, choices=(0, 10, 100), default=10,
                        help='percent of all apps whose label says "true"')
    parser.add_argument("--bundle-uri", required=True)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args()))
