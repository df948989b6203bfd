"""``plan`` is a pure preview: it contacts no registry, and says what ``reconcile --once`` then
does on the same state."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import docker_app, filesystem_storage, write_config
from tests.integration.runner import cli
from tests.services import HOST, free_port


async def counting_registry() -> tuple[web.AppRunner, str, list[str]]:
    """A registry that answers every request 401 (Basic) and counts them."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, HOST, port).start()
    return runner, f"{HOST}:{port}", seen


async def test_plan_contacts_no_registry_and_agrees_with_reconcile_once(tmp_path):
    runner, host, seen = await counting_registry()
    state = MarathonState(deployment_seconds=0)
    state.load_apps([docker_app("/shop/web", f"{host}/shop/web:1")])
    try:
        async with MarathonSimulator(state) as sim:
            doc: dict[str, Any] = {
                "marathon": {"urls": [sim.url]},
                "registries": [{"host": host, "verify": "best_effort", "check_images": True,
                                "credentials": {"username": "u", "password_env": "PW"}}],
                "storage": filesystem_storage(tmp_path / "bundles"),
            }
            config = write_config(tmp_path, doc)
            code, out, _ = await cli("plan", "-c", config, env={"PW": "secret"})
            assert (code, seen) == (0, [])
            assert f"registry {host}: would verify, then publish a new bundle" in out
            assert "/shop/web: would add" in out
            assert not state.writes

            code, out, _ = await cli("reconcile", "--once", "-c", config, env={"PW": "secret"})
            assert code == 1  # the registry refuses the login: nothing is published
            assert f"registry {host}: FAILED" in out
            assert seen  # reconcile --once logs in, as plan said it would

            seen.clear()
            doc["registries"][0]["verify"] = "off"
            doc["registries"][0]["check_images"] = False
            config = write_config(tmp_path, doc)
            code, out, _ = await cli("reconcile", "--once", "-c", config, env={"PW": "secret"})
            assert code == 0
            assert "/shop/web: add" in out
            code, out, _ = await cli("plan", "-v", "-c", config, env={"PW": "secret"})
            assert code == 0
            assert f"registry {host}: unchanged" in out
            assert "would add" not in out
            assert seen == []
    finally:
        await runner.cleanup()
