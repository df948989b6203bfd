"""``pullsecret-controller demo``: the whole daemon against the built-in Marathon simulator.

It seeds a small cluster, generates registry credentials, keeps bundles in a temporary
directory, and then walks through what operators care about: apps converge, a new app gets its
bundle within moments, a credential rotation publishes new content without restarting any app,
and an app that opts out loses its entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.config import settings_from_mapping
from controller.errors import ConfigError
from controller.logs import configure
from controller.manager import DaemonHandle, run
from controller.model import AppId
from controller.plan import is_managed_uri
from controller.simulator import MarathonSimulator, MarathonState
from controller.statusbook import StatusBook

__all__ = ["demo", "run_demo"]

REGISTRY = "registry.demo.local:5000"
LABEL = "pullsecret.enabled"
_STEP_TIMEOUT = 30.0


def _say(text: str = "") -> None:
    print(f"demo | {text}", flush=True)


def _app(app_id: str, image: str, *, opted_in: bool, **extra: Any) -> dict[str, Any]:
    return {"id": app_id, "cmd": "sleep 3600", "instances": 1, "cpus": 0.1, "mem": 64,
            "labels": {LABEL: "true"} if opted_in else {},
            "container": {"type": "DOCKER", "docker": {"image": image}}, **extra}


SEED = [
    _app("/team-a/web", f"{REGISTRY}/team-a/web:1.4", opted_in=True,
         fetch=[{"uri": "https://files.example.com/web-assets.tgz", "cache": True}]),
    _app("/team-a/worker", f"{REGISTRY}/team-a/worker:2.0", opted_in=True),
    _app("/team-b/api", f"{REGISTRY}/team-b/api:7", opted_in=True),
    _app("/public/nginx", "nginx:1.25", opted_in=True),
    _app("/team-a/batch", f"{REGISTRY}/team-a/batch:1", opted_in=False),
]


def _bundle_uri(app: dict[str, Any]) -> str | None:
    return next((e["uri"] for e in app.get("fetch", []) if is_managed_uri(e["uri"])), None)


def _table(state: MarathonState, book: StatusBook) -> None:
    """One line per app: whether it has its bundle, and why (the controller's own reason)."""
    _say(f"  {'app':<16} {'bundle':<7} why")
    for app in sorted(state.list_apps(), key=lambda a: a["id"]):
        status = book.apps.get(AppId(app["id"]))
        why = (f'not opted in (label {LABEL} is not "true")' if status is None
               else f"has the bundle of {status.registry}" if status.state == "converged"
               else status.detail)
        has = "yes" if _bundle_uri(app) else "no"
        _say(f"  {app['id']:<16} {has:<7} {why}")


async def _until(what: str, check: Callable[[], bool]) -> float:
    """Poll ``check`` until true (bounded by ``_STEP_TIMEOUT``); return the seconds it took."""
    started = time.perf_counter()
    async with asyncio.timeout(_STEP_TIMEOUT):
        while not check():  # noqa: ASYNC110 - the demo polls the simulator's state
            await asyncio.sleep(0.02)
    return time.perf_counter() - started


async def _script(handle: DaemonHandle, state: MarathonState, env: dict[str, str],
                  bundles: Path, listen: str) -> None:
    book = handle.status
    _say(f"metrics: http://{listen}/metrics   status: http://{listen}/status")
    _say(f"bundles: {bundles}")
    await _until("initial sync", handle.source.synced.is_set)
    await _until("deployments", lambda: not state.list_deployments())
    _say("initial sync done:")
    _table(state, book)

    _say()
    _say("creating /team-a/new (opted in) ...")
    state.add_app(_app("/team-a/new", f"{REGISTRY}/team-a/new:1", opted_in=True))
    took = await _until("new app", lambda: _bundle_uri(state.get_app("/team-a/new")) is not None)
    _say(f"/team-a/new got its bundle {took * 1000:.0f} ms after it was created")
    _say("  (its creation deployment locked it meanwhile: the controller waited, never forced)")

    _say()
    bundle_states = handle.parts.bundles.states
    registry_state = bundle_states[REGISTRY]
    def digest() -> str:
        return registry_state.manifest.sha256 if registry_state.manifest else "-"

    before = digest()
    writes_before = len(state.writes)
    _say("rotating the registry password ...")
    env["DEMO_REGISTRY_PASSWORD"] = secrets.token_urlsafe(18)
    handle.registries.queue.add(REGISTRY)
    await _until("rotation", lambda: digest() != before)
    after = digest()
    _say(f"bundle content {before[:12]} -> {after[:12]}")
    _say(f"Marathon writes during the rotation: {len(state.writes) - writes_before} "
         "(no app restarted: the URI stayed the same)")

    _say()
    _say("opting /team-a/worker out (label set to false) ...")
    state.update_app("/team-a/worker", {"labels": {LABEL: "false"}}, allow_creation=False)
    await _until("opt-out", lambda: _bundle_uri(state.get_app("/team-a/worker")) is None)
    _say("its bundle entry was removed; its other fetch entries were kept")
    _say()
    _table(state, book)
    _say()
    _say("try next, while it runs:")
    _say(f"  curl -s http://{listen}/status        # what the controller knows, as JSON")
    _say(f"  curl -s http://{listen}/metrics       # Prometheus metrics")
    _say("  then on your cluster: README.md, 'First real run' (check-config, plan, ...)")
    _say("the controller keeps running: press Ctrl-C to stop")


def run_demo(*, duration: float | None, listen: str, verbose: bool = False) -> int:
    """Run the demo until Ctrl-C or ``duration`` seconds; returns the daemon's exit code.

    The daemon's log lines go to a file unless ``verbose``, so the story stays readable.
    """
    with contextlib.ExitStack() as cleanup:
        if verbose:
            configure("info", "auto")
        else:
            fd, log_path = tempfile.mkstemp(prefix="pullsecret-demo-", suffix=".log")
            configure("info", "json", stream=cleanup.enter_context(open(fd, "w")))
            _say(f"log lines: {log_path} (--verbose prints them here)")
        try:
            return asyncio.run(demo(duration=duration, listen=listen))
        except ConfigError as e:
            if any(p.startswith("server.listen") for p in e.problems):
                raise ConfigError([f"--listen {listen}: that port is busy; pick another, "
                                   "e.g. --listen 127.0.0.1:9103 (with make: make demo "
                                   "DEMO_ARGS='--listen 127.0.0.1:9103')"]) from None
            raise


async def demo(*, duration: float | None, listen: str) -> int:
    """The demo itself, on a running loop (``run_demo`` sets up its logging)."""
    with tempfile.TemporaryDirectory(prefix="pullsecret-demo-") as tmp:
        bundles = Path(tmp) / "bundles"
        env = {"DEMO_REGISTRY_PASSWORD": secrets.token_urlsafe(18)}
        state = MarathonState(deployment_seconds=0.5)
        state.load_apps(SEED)
        async with MarathonSimulator(state, heartbeat_seconds=2.0) as sim:
            settings = settings_from_mapping({
                "marathon": {"urls": [sim.url]},
                "registries": [{"host": REGISTRY, "credentials": {
                    "username": "demo-robot", "password_env": "DEMO_REGISTRY_PASSWORD"},
                    "apps": ["/team-a/*", "/team-b/*"],
                    "verify": "off"}],  # the demo's registry is only a name: no login
                "storage": {"filesystem": {"path": str(bundles)}},
                "reconcile": {"resync_seconds": 60},
                "server": {"listen": listen},
            }, env)
            stop = asyncio.Event()
            script: list[asyncio.Task[None]] = []

            def started(handle: DaemonHandle) -> None:
                task = asyncio.create_task(_script(handle, state, env, bundles, listen),
                                           name="demo-script")
                task.add_done_callback(stop_on_failure)
                script.append(task)

            def stop_on_failure(task: asyncio.Task[None]) -> None:
                if not task.cancelled() and task.exception() is not None:
                    stop.set()

            daemon = asyncio.create_task(run(settings, env, stop=stop, started=started))
            try:
                async with asyncio.timeout(duration):
                    await asyncio.shield(daemon)
            except TimeoutError:
                _say(f"{duration:g} s are up: stopping")
                stop.set()
            code = await daemon
            for task in script:
                task.cancel()
            for result in await asyncio.gather(*script, return_exceptions=True):
                if isinstance(result, Exception):
                    _say(f"demo step failed: {type(result).__name__}: {result}")
                    code = code or 1
            return code
