"""The ops endpoints: ``/healthz``, ``/readyz``, ``/metrics`` and ``/status``.

Health checks are named (as controller-runtime's healthz): each answers true or false, and the
endpoint is 200 only when all are true. ``/status`` never carries a secret: it is built from
``StatusBook`` and bundle manifests, which hold none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from controller.errors import ConfigError

__all__ = ["Checks", "make_app", "serve"]

Checks = Callable[[], Mapping[str, bool]]


def _checks_handler(checks: Checks) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        results = dict(checks())
        ok = all(results.values())
        return web.json_response({"ok": ok, "checks": results}, status=200 if ok else 503)

    return handler


def make_app(*, registry: CollectorRegistry, health: Checks, ready: Checks,
             status: Callable[[], Mapping[str, Any]]) -> web.Application:
    async def status_handler(request: web.Request) -> web.Response:
        return web.json_response(status(), dumps=_dumps)

    app = web.Application()
    app.router.add_get("/healthz", _checks_handler(health))
    app.router.add_get("/readyz", _checks_handler(ready))
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    app.router.add_get("/status", status_handler)
    return app


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving; the caller stops it with ``runner.cleanup()`` (last, at shutdown)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError([f"server.listen: cannot listen on {host}:{port} ({e.strerror})"]
                          ) from None
    return runner
