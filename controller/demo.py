"""``pullsecret-controller demo``: the whole daemon against the built-in Marathon simulator.

It seeds a small cluster whose tasks really launch (the simulator's agent fetches each app's
``fetch`` list and pulls its image with what it fetched, and a deployment ends only once its tasks
run, as in Marathon), starts a small registry that checks logins (the controller verifies each
credential there before it publishes it), keeps bundles in a temporary directory, and then walks
through what operators care about: apps converge; a new app created without the entry, whose
first deployment cannot finish, is rescued by one forced write and runs within moments; a
credential rotation publishes new content without restarting any app; and an app that opts out
loses its entry. Then it closes the loop: the password rotates at the registry only, an app whose
task died fails to pull its relaunch, the controller sees the failures and finds the source's
credential rejected, the source is fixed, a verified bundle goes out, the app's launch delay is
reset and its task runs again, with the timings printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from controller.appindex import AppIndex
from controller.bundles import RegistryState
from controller.config import settings_from_mapping
from controller.errors import ConfigError
from controller.fingerprint import fingerprint
from controller.logs import configure
from controller.manager import Term, run
from controller.metrics import PREFIX
from controller.model import AppId
from controller.plan import is_managed_uri
from controller.settings import LogFormat, LogLevel, Settings
from controller.simulator import Agent, MarathonSimulator, MarathonState, RegistrySimulator

__all__ = ["demo", "run_demo"]

LABEL = "pullsecret.enabled"
USERNAME = "demo-robot"
LOOP_APP = "/team-b/api"
"""The app whose tasks fail to pull, and run again, when the loop is closed."""
_BACKOFF = {"backoffSeconds": 1, "backoffFactor": 2, "maxLaunchDelaySeconds": 60}
"""Marathon's launch backoff for every demo app: failures repeat within seconds, and without a
reset an app that failed long enough would wait up to a minute."""
_STEP_TIMEOUT = 30.0
_IMAGES = (("team-a/web", "1.4"), ("team-a/web", "1.6"), ("team-a/worker", "2.0"),
           ("team-b/api", "7"), ("team-a/new", "1"), ("team-a/batch", "1"))
"""What the demo's registry holds: every image the story deploys, but team-a/web:1.5."""


def _say(text: str = "") -> None:
    """One line of the story (stdout is line-buffered, see ``run_demo``)."""
    print(f"demo | {text}")


def _complain(text: str) -> None:
    """A failure, shown even with ``--quiet``."""
    print(f"demo | {text}", file=sys.stderr)


def _app(app_id: str, image: str, *, opted_in: bool, **extra: Any) -> dict[str, Any]:
    return {"id": app_id, "cmd": "sleep 3600", "instances": 1, "cpus": 0.1, "mem": 64,
            "labels": {LABEL: "true"} if opted_in else {},
            "container": {"type": "DOCKER", "docker": {"image": image}}, **_BACKOFF, **extra}


def _seed(registry: str, assets_uri: str) -> list[dict[str, Any]]:
    """The cluster: apps on the demo's registry (one not opted in) and one public image."""
    return [
        _app("/team-a/web", f"{registry}/team-a/web:1.4", opted_in=True,
             fetch=[{"uri": assets_uri, "cache": True}]),
        _app("/team-a/worker", f"{registry}/team-a/worker:2.0", opted_in=True),
        _app(LOOP_APP, f"{registry}/team-b/api:7", opted_in=True),
        _app("/public/nginx", "nginx:1.25", opted_in=True),
        _app("/team-a/batch", f"{registry}/team-a/batch:1", opted_in=False),
    ]


class _Scene(msgspec.Struct, frozen=True):
    """What the story's steps act on and read."""

    handle: Term
    state: MarathonState
    agent: Agent
    metrics: CollectorRegistry
    password_file: Path
    """The registry password's source, as an operator keeps it; the controller watches it."""
    registry: str
    bundles: Path
    listen: str


def _bundle_uri(app: dict[str, Any]) -> str | None:
    return next((e["uri"] for e in app.get("fetch", []) if is_managed_uri(e["uri"])), None)


def _table(state: MarathonState, index: AppIndex) -> None:
    """One line per app: whether it has its bundle, and why (the controller's own reason)."""
    _say(f"  {'app':<16} {'bundle':<7} why")
    for app in sorted(state.list_apps(), key=lambda a: a["id"]):
        status = index.statuses.get(AppId(app["id"]))
        why = (f'not opted in (label {LABEL} is not "true")' if status is None
               else f"has the bundle of {status.registry}" if status.state == "converged"
               else status.detail)
        has = "yes" if _bundle_uri(app) else "no"
        _say(f"  {app['id']:<16} {has:<7} {why}")


async def _until(what: str, check: Callable[[], bool]) -> float:
    """Poll ``check`` until true (bounded by ``_STEP_TIMEOUT``); return the seconds it took."""
    return (await _first_seen({what: check}))[what]


async def _first_seen(checks: Mapping[str, Callable[[], bool]]) -> dict[str, float]:
    """Poll every check until all were true once (bounded by ``_STEP_TIMEOUT``); return the
    seconds until each was first seen true, so that events that follow each other are timed
    each on its own."""
    started = time.perf_counter()
    seen: dict[str, float] = {}
    try:
        async with asyncio.timeout(_STEP_TIMEOUT):
            while True:
                for what, check in checks.items():
                    if what not in seen and check():
                        seen[what] = time.perf_counter() - started
                if len(seen) == len(checks):
                    return seen
                await asyncio.sleep(0.02)
    except TimeoutError:
        missing = ", ".join(what for what in checks if what not in seen)
        raise TimeoutError(f"not seen within {_STEP_TIMEOUT:g} s: {missing}") from None


def _app_status(scene: _Scene, app_id: str) -> dict[str, Any]:
    """The app's part of ``/status``, as the controller would serve it now."""
    snapshot = scene.handle.status.snapshot(scene.handle.parts.bundles.states,
                                            datetime.now(UTC))
    app: dict[str, Any] = snapshot["apps"].get(app_id, {})
    return app


async def _script(scene: _Scene) -> None:
    await _converge_and_rotate(scene)
    _say()
    await _catch_an_unpullable_image(scene)
    _say()
    await _close_the_loop(scene)
    _say()
    _say("try next, while it runs:")
    _say(f"  curl -s http://{scene.listen}/status        # what the controller knows, as JSON")
    _say(f"  curl -s http://{scene.listen}/metrics       # Prometheus metrics")
    _say("  then on your cluster: README.md, 'First real run' (check-config, plan, ...)")
    _say("the controller keeps running: press Ctrl-C to stop")


async def _converge_and_rotate(scene: _Scene) -> None:
    """Apps converge, a new app gets its bundle, a rotation restarts nothing, an app opts out."""
    handle, state, registry, listen = scene.handle, scene.state, scene.registry, scene.listen
    agent = scene.agent
    index = handle.index
    _say(f"metrics: http://{listen}/metrics   status: http://{listen}/status")
    _say(f"bundles: {scene.bundles}")
    _say(f"registry: {registry} (checks logins; the agent pulls with what the tasks fetched)")
    await _until("initial sync", handle.source.synced.is_set)
    await _until("deployments", lambda: not state.list_deployments())
    _say("initial sync done:")
    _table(state, index)

    _say()
    _say("creating /team-a/new (opted in), as a deploy pipeline would: without the entry ...")
    state.add_app(_app("/team-a/new", f"{registry}/team-a/new:1", opted_in=True))
    checks = {"new app": lambda: _bundle_uri(state.get_app("/team-a/new")) is not None,
              "running": lambda: agent.counts("/team-a/new") == (0, 1)}
    took = await _first_seen(checks)
    _say(f"/team-a/new got its bundle {took['new app'] * 1000:.0f} ms after it was created, and "
         f"its task runs {took['running'] * 1000:.0f} ms after")
    _say("  (its first deployment could not finish: its task failed to pull without credentials,")
    _say("  so the controller forced one write over it that added only the entry; the only case")
    _say("  in which it forces: remediation.rescue_stuck_deployments)")

    _say()
    registry_state = handle.parts.bundles.states[registry]

    def digest() -> str:
        return _bundle_fingerprint(registry_state)

    before = digest()
    writes_before = len(state.writes)
    _say("rotating the registry password: at the registry, then in the source ...")
    password = secrets.token_urlsafe(18)
    state.accept_credentials(registry, USERNAME, password)
    _replace(scene.password_file, password)
    noticed = await _until("rotation", lambda: digest() != before)
    after = digest()
    _say(f"bundle {before} -> {after}, {noticed:.1f} s after the file changed (the controller")
    _say("  watches it; the registry accepted the new password before it was published)")
    _say(f"Marathon writes during the rotation: {len(state.writes) - writes_before} "
         "(no app restarted: the URI stayed the same)")

    _say()
    _say("opting /team-a/worker out (label set to false) ...")
    state.update_app("/team-a/worker", {"labels": {LABEL: "false"}}, allow_creation=False)
    await _until("opt-out", lambda: _bundle_uri(state.get_app("/team-a/worker")) is None)
    _say("its bundle entry was removed; its other fetch entries were kept")
    _say()
    _table(state, index)


async def _catch_an_unpullable_image(scene: _Scene) -> None:
    """A deploy names a tag the registry does not have: the controller asks the registry with
    the credential it publishes, and reports the app before its tasks could tell."""
    state, agent, registry, app_id = scene.state, scene.agent, scene.registry, "/team-a/web"

    def image(tag: str) -> dict[str, Any]:
        return {"container": {"type": "DOCKER", "docker": {"image": f"{registry}{app_id}:{tag}"}}}

    def noted() -> dict[str, Any]:
        return _app_status(scene, app_id)

    _say(f"deploying {app_id} with tag 1.5, which was never pushed to the registry ...")
    deployed_at = datetime.now(UTC)
    state.update_app(app_id, image("1.5"))
    await _first_seen({
        "caught": lambda: noted().get("state") == "image_unpullable",
        "task failed": lambda: (agent.last_failure(app_id) or {}).get("timestamp", "")
        >= _marathon_time(deployed_at)})
    status, failure = noted(), agent.last_failure(app_id) or {}
    caught = _since(deployed_at, datetime.fromisoformat(status["last_reconcile"]))
    failed = _since(deployed_at, datetime.fromisoformat(failure["timestamp"]))
    _say(f"  the controller asked the registry with its credential: "
         f"{status['image_check']['result']}")
    _say(f"    {status['image_check']['detail']}")
    _say(f"  {app_id} is image_unpullable in /status {caught} after the deploy (its first task")
    _say(f"  failed to pull {failed} after it); the old task keeps serving meanwhile")
    _say("fixing the tag: the pipeline deploys 1.6, forced over the deploy that cannot end ...")
    state.update_app(app_id, image("1.6"), force=True)
    took = await _first_seen({"cleared": lambda: noted().get("state") == "converged",
                              "running": lambda: any(
                                  t["version"] == state.get_app(app_id)["version"]
                                  and t["state"] == "TASK_RUNNING"
                                  for t in state.list_tasks(app_id))})
    _say(f"  the state cleared {took['cleared'] * 1000:.0f} ms later; {app_id} runs 1.6 "
         f"({took['running'] * 1000:.0f} ms)")


def _marathon_time(moment: datetime) -> str:
    """``moment`` as Marathon writes times (``2026-12-01T06:00:00.000Z``), to compare with a
    task's timestamps."""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


async def _close_the_loop(scene: _Scene) -> None:
    """The password rotates at the registry only; an app whose task died fails to pull until the
    controller, once the source is fixed, publishes a verified bundle and resets its delay.

    Timings come from the controller's and the simulator's own timestamps (``/status``, the
    task's ``startedAt``), not from when the demo happened to look.
    """
    state, agent, registry, app_id = scene.state, scene.agent, scene.registry, LOOP_APP
    registry_state = scene.handle.parts.bundles.states[registry]
    instances = state.get_app(app_id)["instances"]
    await _until("running", lambda: agent.counts(app_id) == (0, instances))

    def pull_failures() -> float:
        return scene.metrics.get_sample_value(
            f"{PREFIX}image_pull_failures_total", {"registry": registry, "reason": "auth"}) or 0.0

    def digest() -> str:
        return _bundle_fingerprint(registry_state)

    def noted(field: str) -> Any:
        return _app_status(scene, app_id).get(field)

    _say("closing the loop: the password rotates at the registry only; "
         "the source keeps the old one")
    rotated = secrets.token_urlsafe(18)
    state.accept_credentials(registry, USERNAME, rotated)
    counted, failure_before, published = pull_failures(), noted("last_pull_failure"), digest()
    _say(f"{app_id}'s task dies (its agent is lost): Marathon launches it again ...")
    restarted_at = datetime.now(UTC)
    agent.fail_tasks(app_id, "Agent lost")
    await _first_seen({"failed pull": lambda: noted("last_pull_failure") != failure_before,
                       "rejection": lambda: registry_state.credentials_rejected})
    failure, login = noted("last_pull_failure"), registry_state.login
    failed_at = datetime.fromisoformat(failure["at"])
    _say(f"  the controller saw its new task fail to pull {_since(restarted_at, failed_at)} "
         f"later ({failure['reason']}):")
    _say(f"    {failure['message']}")
    _say(f"    {PREFIX}image_pull_failures_total{{reason=\"auth\"}}: "
         f"{counted:g} -> {pull_failures():g}")
    if login is None or digest() != published:
        raise RuntimeError("the rejected credential was published")
    _say(f"  it tried the source's password at the registry {_since(failed_at, login.at)} "
         "later: credentials rejected")
    _say(f"    {login.detail}; nothing published (bundle still {published})")
    await _until("backoff", lambda: (agent.backoff(app_id) or 0) >= 2)
    _say(f"  Marathon holds {app_id} back: launch delay {agent.backoff(app_id):g} s, doubling "
         f"up to {_BACKOFF['maxLaunchDelaySeconds']} s")

    _say("fixing the source: the operator sets the new password in it ...")
    reset_before = noted("last_delay_reset")
    fixed_at = datetime.now(UTC)
    _replace(scene.password_file, rotated)
    await _first_seen({
        "verified bundle": lambda: digest() != published and registry_state.published_verified,
        "delay reset": lambda: noted("last_delay_reset") != reset_before,
        "running task": lambda: agent.counts(app_id) == (0, instances)})
    login, reset = registry_state.login, noted("last_delay_reset")
    (task,) = state.list_tasks(app_id)
    running_at = datetime.fromisoformat(task["startedAt"])
    accepted_at = login.at if login else fixed_at
    _say(f"  verified bundle {digest()} out: login with the new password accepted "
         f"{_since(fixed_at, accepted_at)} after the fix")
    _say("    (the controller watches the file: no resync, no restart, no retry waited for)")
    _say(f"  launch delay reset {_since(fixed_at, datetime.fromisoformat(reset['at']))} after "
         f"the fix ({reset['result']}): the task launches now, not after its delay")
    _say(f"{app_id} is running again {_since(fixed_at, running_at)} after the fix; "
         f"{_since(restarted_at, running_at)} after its task died")


def _replace(path: Path, password: str) -> None:
    """Write the password file as operators' tools do: a new file renamed over the old one."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(password)
    fresh.chmod(0o600)
    fresh.rename(path)


def _bundle_fingerprint(state: RegistryState) -> str:
    """The served bundle as ``/status`` names it (a keyed fingerprint, never its hash)."""
    return fingerprint(state.manifest.sha256) if state.manifest else "-"


def _since(start: datetime, end: datetime) -> str:
    """The time between two moments, in ms below a second (the steps of one reaction)."""
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.3f} s"


def run_demo(*, duration: float | None, listen: str, verbose: bool = False, quiet: bool = False,
             log_level: LogLevel = "info", log_format: LogFormat | None = None) -> int:
    """Run the demo until Ctrl-C or ``duration`` seconds; returns the daemon's exit code.

    The story is printed a line at a time, also into a pipe; ``quiet`` prints only failures.
    The daemon's log lines (``log_level``, ``log_format``) go to a file unless ``verbose``, so
    the story stays readable.
    """
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    with contextlib.ExitStack() as cleanup:
        if quiet:
            cleanup.enter_context(contextlib.redirect_stdout(
                cleanup.enter_context(open(os.devnull, "w"))))
        if verbose:
            configure(log_level, log_format or "auto")
        else:
            fd, log_path = tempfile.mkstemp(prefix="pullsecret-demo-", suffix=".log")
            configure(log_level, log_format or "json",
                      stream=cleanup.enter_context(open(fd, "w", buffering=1)))
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
        bundles, files = Path(tmp) / "bundles", Path(tmp) / "files"
        bundles.mkdir()  # as an operator would: the controller never creates it
        files.mkdir()
        assets = files / "web-assets.css"
        assets.write_text("body { margin: 0 }\n")
        password = secrets.token_urlsafe(18)
        password_file = files / "registry-password"
        _replace(password_file, password)
        agent = Agent(Path(tmp) / "agent")
        state = MarathonState(deployment_seconds=0.5, agent=agent)
        try:
            async with (RegistrySimulator(state.registries) as registry,
                        MarathonSimulator(state, heartbeat_seconds=2.0) as sim):
                state.accept_credentials(registry.host, USERNAME, password)
                for repository, tag in _IMAGES:
                    state.registries.push(registry.host, repository, tag)
                state.load_apps(_seed(registry.host, assets.as_uri()))
                settings = settings_from_mapping({
                    "marathon": {"urls": [sim.url]},
                    "registries": [{"host": registry.host, "credentials": {
                        "username": USERNAME, "password_file": str(password_file)},
                        "apps": ["/team-a/*", "/team-b/*"]}],
                    "storage": {"filesystem": {"path": str(bundles)}},
                    "reconcile": {"resync_seconds": 60},
                    "server": {"listen": listen},
                }, {})
                return await _run_with_script(
                    settings, duration,
                    lambda handle, metrics: _Scene(
                        handle=handle, state=state, agent=agent, metrics=metrics,
                        password_file=password_file, registry=registry.host, bundles=bundles,
                        listen=listen))
        finally:
            await agent.close()


async def _run_with_script(settings: Settings, duration: float | None,
                           scene: Callable[[Term, CollectorRegistry], _Scene]) -> int:
    """Run the daemon with the story beside it, until ``duration`` is up; the exit code is 1
    when a step of the story failed."""
    stop = asyncio.Event()
    metrics = CollectorRegistry()
    script: list[asyncio.Task[None]] = []

    def started(handle: Term) -> None:
        task = asyncio.create_task(_script(scene(handle, metrics)), name="demo-script")
        task.add_done_callback(stop_on_failure)
        script.append(task)

    def stop_on_failure(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            stop.set()

    daemon = asyncio.create_task(run(settings, {}, stop=stop, collectors=metrics,
                                     started=started))
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
            _complain(f"demo step failed: {type(result).__name__}: {result}")
            code = code or 1
    return code
