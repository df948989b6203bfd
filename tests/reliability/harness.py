"""The reliability harness: the controller as a real process, the simulator in this process.

A ``Scenario`` owns one temporary world: a Marathon simulator (``MarathonState`` plus one or
more facades) with its agent, a bundle directory, marker secrets, the user's artifacts, and the
controller processes it starts. It knows what every app should look like (the user's definition
plus, for opted-in apps, exactly one managed entry) and checks the promises that hold under
every fault:

- each app is byte-identical (as JSON) to what its user wrote, except the managed entry;
- a served bundle is never half-written: ``BundleWatch`` polls the served bundles during the
  run (a directory by default; a scenario may serve them from elsewhere through a
  ``BundleShelf``);
- no secret leaks into stderr, ``/status``, ``/metrics`` or files, and no temp file is left;
- the controllers write only ``fetch`` and launch delay resets, at most ``MAX_WRITES_PER_APP``
  times per app, forced at most ``MAX_FORCED_WRITES_PER_APP`` times;
- it converges once the fault clears (``until_converged`` measures how long that took).

Marathon here is a faithful one: the simulator's agent launches every task, fetches its
``fetch`` list by the Mesos fetcher's rules and pulls its image with the sandbox's docker
config, and a deployment ends only when its new tasks run. Each registry a controller serves is
private (it accepts the controller's current password, and nothing else); any other registry is
public. So an app created or rewritten without its entry is locked by a deployment that never
ends until a controller rescues it with one forced write, as on a real cluster; the user's own
artifacts are small archives on this machine (``file://``), so a running task also proves that
every user entry was fetched as written.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

import aiohttp
import yaml

from controller.plan import bundle_name
from controller.simulator import MarathonSimulator, MarathonState, WriteRecord
from tests import factories
from tests.factories import LABEL
from tests.services import free_port

REG = "registry.example.com:5000"
OTHER_REG = "registry.other.example:5000"
THIRD_REG = "registry.third.example:5000"
USERNAME = "robot"
NOBODY = 65534

FAULT_SECONDS = float(os.environ.get("RELIABILITY_FAULT_SECONDS", "1.5"))
"""How long a timed fault lasts: short inside ``make test``, longer under ``make reliability``."""
CONVERGE_SECONDS = 30.0 + 2 * FAULT_SECONDS
"""The deadline for converging once a fault cleared (backoffs grow with the fault's length)."""
MAX_WRITES_PER_APP = 2
"""Successful Marathon writes allowed per app in one scenario, forced ones included: one, plus
one after a cut."""
MAX_FORCED_WRITES_PER_APP = 1
"""Successful forced writes allowed per app in one scenario: the rescue of the deployment that
created it, or that a user's edit started, without its entry (counted among the writes too)."""
LAUNCH_BACKOFF = {"backoffSeconds": 1, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 5}
"""Every app's launch backoff: Marathon's first delay and factor, capped at 5 s (Marathon: an
hour), so that a task that failed to pull while a fault lasted, and that no new version or delay
reset relaunches, is launched again within seconds of the fault clearing, however long it was."""
RECORD_CATCH_UP_SECONDS = 1.0
"""How long a served bundle may differ from its record (two renames are not one)."""

_MANAGED = re.compile(r"^pullsecret[-_][A-Za-z0-9._-]+\.tar\.gz$")
_STATUS_FIELDS = frozenset({"version", "versionInfo", "tasksStaged", "tasksRunning",
                            "tasksHealthy", "tasksUnhealthy", "deployments", "tasks",
                            "lastTaskFailure"})
_CONTROLLER_AGENT = "marathon-pullsecret-controller/"
_DELAY_RESET = re.compile(r"^/v2/queue/.+/delay$")


def is_managed(uri: str) -> bool:
    """Whether a fetch URI names a controller's bundle (any controller's, by file name)."""
    return bool(_MANAGED.match(uri.split("?", 1)[0].rsplit("/", 1)[-1]))


def user_part(app: dict[str, Any]) -> str:
    """The app as its user wrote it, as canonical JSON: no status fields, no managed entry."""
    kept = {k: v for k, v in app.items() if k not in _STATUS_FIELDS}
    kept["fetch"] = [e for e in app.get("fetch", []) if not is_managed(e["uri"])]
    return json.dumps(kept, sort_keys=True)


def docker_app(app_id: str, registry: str = REG, *, opted_in: bool = True,
               artifact: str | None = None) -> dict[str, Any]:
    """A Docker app pulling from ``registry``; ``artifact`` is the URI of a ``fetch`` entry of
    its own (``Scenario.artifact`` makes one its tasks can fetch)."""
    app = factories.docker_app(
        app_id, f"{registry}/rel{app_id}:1", instances=1, cpus=0.1, mem=32,
        labels={LABEL: "true" if opted_in else "false", "team": "rel"}, **LAUNCH_BACKOFF)
    if artifact is not None:
        app["fetch"] = [{"uri": artifact, "cache": True}]
    return app


def artifact_archive(text: str) -> bytes:
    """A small ``.tgz`` holding one file, ``user/artifact.txt`` (the fetcher extracts it)."""
    data = text.encode()
    member = tarfile.TarInfo("user/artifact.txt")
    member.size = len(data)
    member.mode = 0o644
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.addfile(member, io.BytesIO(data))
    return raw.getvalue()


def named_bundle(registry: str, controller: str | None) -> str:
    """A controller's bundle file name: ``pullsecret-<slug>.tar.gz`` for the default one,
    ``pullsecret_<name>_<slug>.tar.gz`` for a controller with a ``controller.name``."""
    default = bundle_name(registry)
    if controller is None:
        return default
    slug = default.removeprefix("pullsecret-").removesuffix(".tar.gz")
    return f"pullsecret_{controller}_{slug}.tar.gz"


def bundle_problem(data: bytes) -> str | None:
    """What is wrong with a served bundle, or ``None`` for a complete, valid gzip tar whose
    docker config parses (the words never quote the content)."""
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError):
        return "not a complete gzip stream"
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
            config = members.get(".docker/config.json")
            if config is None or not config.isfile():
                return "no .docker/config.json in the archive"
            extracted = tar.extractfile(config)
            assert extracted is not None
            document = json.loads(extracted.read())
    except (tarfile.TarError, ValueError):
        return "not a valid tar archive with a JSON docker config"
    if not isinstance(document, dict) or not isinstance(document.get("auths"), dict):
        return "the docker config has no auths"
    return None


def bundle_auth(data: bytes, registry: str) -> str | None:
    """The ``auth`` value a valid bundle holds for ``registry``."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
        extracted = tar.extractfile(".docker/config.json")
        assert extracted is not None
        auths = json.loads(extracted.read())["auths"]
    entry = auths.get(registry) or {}
    return entry.get("auth") if isinstance(entry, dict) else None


def basic_auth(password: str) -> str:
    return base64.b64encode(f"{USERNAME}:{password}".encode()).decode()


def marker_secret() -> str:
    """A password that is easy to search for and never appears by chance."""
    return f"Marker-{secrets.token_urlsafe(18)}"


class BundleShelf(Protocol):
    """Where a scenario's controllers serve bundles from, as the harness reads them."""

    def names(self) -> list[str]:
        """The bundle file names served now (empty when they cannot be listed)."""

    def read(self, name: str) -> bytes | None:
        """A bundle's bytes, ``None`` when absent; ``PermissionError`` when unreadable."""

    def recorded_sha256(self, name: str) -> str | None:
        """The sha256 the bundle's record holds, ``None`` when there is none."""

    def uri(self, name: str) -> str:
        """The fetch URI a controller puts into apps for the bundle."""

    def settings(self) -> dict[str, Any]:
        """The ``storage`` section of a controller config that serves bundles here."""


@dataclass
class DirectoryShelf:
    """Bundles in a directory, each with a ``<name>.json`` record (filesystem storage)."""

    directory: Path

    def names(self) -> list[str]:
        try:
            return sorted(p.name for p in self.directory.glob("*.tar.gz"))
        except OSError:
            return []

    def read(self, name: str) -> bytes | None:
        try:
            return (self.directory / name).read_bytes()
        except FileNotFoundError:
            return None

    def recorded_sha256(self, name: str) -> str | None:
        record = self.directory / f"{name.removesuffix('.tar.gz')}.json"
        try:
            recorded = json.loads(record.read_bytes()).get("sha256")
        except (OSError, ValueError, AttributeError):
            return None
        return recorded if isinstance(recorded, str) else None

    def uri(self, name: str) -> str:
        return f"file://{self.directory}/{name}"

    def settings(self) -> dict[str, Any]:
        return {"filesystem": {"path": str(self.directory)}}


class BundleWatch:
    """Polls the served bundles and remembers every bad one it sees.

    A bundle is bad when it is not a complete, valid gzip tar, or when its sha256 differs from
    its record for longer than ``RECORD_CATCH_UP_SECONDS``. ``pause`` stops the checks while a
    test damages a bundle on purpose.
    """

    def __init__(self, shelf: BundleShelf, interval: float = 0.02) -> None:
        self.shelf = shelf
        self.interval = interval
        self.problems: list[str] = []
        self.checks = 0
        self.paused = False
        self._mismatch_since: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            if not self.paused:
                await asyncio.to_thread(self.check_once)
            await asyncio.sleep(self.interval)

    def check_once(self) -> None:
        self.checks += 1
        for name in self.shelf.names():
            problem = self._problem(name)
            if problem is not None and problem not in self.problems:
                self.problems.append(problem)

    def _problem(self, name: str) -> str | None:
        try:
            data = self.shelf.read(name)
        except PermissionError:
            return f"{name}: unreadable"
        if data is None:
            return None
        problem = bundle_problem(data)
        if problem is not None:
            return f"{name}: {problem}"
        if self.shelf.recorded_sha256(name) == hashlib.sha256(data).hexdigest():
            self._mismatch_since.pop(name, None)
            return None
        since = self._mismatch_since.setdefault(name, time.monotonic())
        if time.monotonic() - since > RECORD_CATCH_UP_SECONDS:
            return f"{name}: served bytes differ from their record for over " \
                   f"{RECORD_CATCH_UP_SECONDS:g}s"
        return None


class ControllerProcess:
    """One ``python -m controller run`` process with its own config file and log."""

    def __init__(self, workdir: Path, name: str, config: dict[str, Any], env: dict[str, str],
                 *, uid: int | None = None) -> None:
        self.name = name
        self.port = free_port()
        config = {**config, "server": {"listen": f"127.0.0.1:{self.port}"}}
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.config_path.chmod(0o644)
        self.log_path = workdir / f"{name}.log"
        self.env = env
        self.uid = uid
        self.proc: asyncio.subprocess.Process | None = None
        self.pages: list[tuple[str, str]] = []
        """Every ``/status`` and ``/metrics`` body read (searched for leaks)."""

    async def start(self) -> None:
        # As another user, the process keeps CAP_DAC_READ_SEARCH: the checkout (and its venv)
        # may sit under a 0700 directory (mktemp -d, /root) that user cannot enter, while the
        # storage the test denies it stays unwritable (the capability grants no write).
        prefix = ([] if self.uid is None else
                  ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                   "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"])
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *prefix, sys.executable, "-m", "controller", "run",
                "--config", str(self.config_path),
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[str]:
        """The ``event`` names of the JSON log lines, for failure messages."""
        events = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                events.append(str(json.loads(line).get("event")))
        return events

    async def get(self, path: str) -> tuple[int, str] | None:
        try:
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{self.port}{path}",
                    timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def read_pages(self) -> None:
        """Keep the current ``/status`` and ``/metrics`` for the leak check."""
        for path in ("/status", "/metrics"):
            answer = await self.get(path)
            if answer is not None:
                self.pages.append((path, answer[1]))

    async def until_serving(self, timeout: float = 20.0) -> bool:
        """Whether ``/healthz`` answers 200 before the process exits."""
        async with asyncio.timeout(timeout):
            while (await self.get("/healthz") or (0, ""))[0] != 200:
                if not self.running:
                    return False
                await asyncio.sleep(0.05)
        return True

    async def leader_gauge(self) -> float | None:
        answer = await self.get("/metrics")
        if answer is None:
            return None
        match = re.search(r"^marathon_pullsecret_leader (\S+)$", answer[1], re.MULTILINE)
        return float(match.group(1)) if match else None

    async def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            await self.proc.wait()

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; the exit code (killed after ``timeout``: -9)."""
        assert self.proc is not None
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                await self.kill()
        assert self.proc.returncode is not None
        return self.proc.returncode


@dataclass
class Measurement:
    """What one scenario reports to ``docs/reliability.md``."""

    fault: str = ""
    seconds: float | None = None
    """Seconds from the fault clearing to convergence."""
    writes: int | None = None
    """App write requests the controllers sent to Marathon (refused ones included)."""
    forced: int | None = None
    """Of those, the forced ones (rescues of stuck deployments)."""
    delay_resets: int | None = None
    """Launch delay resets the controllers sent (``DELETE /v2/queue/{app}/delay``)."""
    note: str = ""


@dataclass
class Registry:
    """A registry as the scenario serves it: its controller's bundle name and its password."""

    host: str
    bundle: str
    password: str
    password_file: Path
    old_passwords: list[str] = field(default_factory=list)


@dataclass
class Scenario:
    """One temporary world; see the module docstring."""

    workdir: Path
    storage: Path
    secrets_dir: Path
    state: MarathonState
    measurement: Measurement
    simulators: list[MarathonSimulator] = field(default_factory=list)
    controllers: list[ControllerProcess] = field(default_factory=list)
    registries: dict[str, Registry] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    """Each app's user part (``user_part``), as its user last wrote it."""
    wants: dict[str, str | None] = field(default_factory=dict)
    """The registry whose bundle each app should fetch (``None``: no managed entry)."""
    pulls_from: dict[str, str] = field(default_factory=dict)
    """The registry each app's image is on."""
    watch: BundleWatch | None = None
    _watch_task: asyncio.Task[None] | None = None
    mounts: list[Path] = field(default_factory=list)
    shelf: BundleShelf = field(init=False)
    """Where the bundles are served: ``storage`` unless a scenario serves them elsewhere."""

    def __post_init__(self) -> None:
        self.shelf = DirectoryShelf(self.storage)

    # -- the world ----------------------------------------------------------------------------

    def registry(self, host: str, *, controller: str | None = None) -> Registry:
        """Serve ``host`` with a fresh marker password, kept in a file the controller reads;
        the registry is private from now on and accepts that password only."""
        password = marker_secret()
        path = self.secrets_dir / f"{host.replace(':', '_')}.password"
        path.write_text(password)
        path.chmod(0o644)
        registry = Registry(host=host, bundle=named_bundle(host, controller),
                            password=password, password_file=path)
        self.registries[host] = registry
        self.state.accept_credentials(host, USERNAME, password)
        return registry

    def rotate(self, host: str) -> None:
        """A new password for ``host``, as an operator rotates it: at the registry first (the
        old one stops working there), then in the file the controller reads. Until the
        controller publishes the new bundle, a task launched with the old one fails to pull."""
        registry = self.registries[host]
        registry.old_passwords.append(registry.password)
        registry.password = marker_secret()
        self.state.accept_credentials(host, USERNAME, registry.password)
        registry.password_file.write_text(registry.password)

    def artifact(self, path: str) -> str:
        """The ``file://`` URI of a small archive of a user's, made now at ``path`` under the
        scenario's artifacts (the agent fetches and extracts it as Mesos would)."""
        target = self.workdir / "artifacts" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(artifact_archive(path))
        return target.as_uri()

    def standard_apps(self, prefix: str) -> list[dict[str, Any]]:
        """One app of each kind: opted in (one with an artifact of its own), opted out with
        its own artifact (on ``REG``, where it cannot pull without credentials of its own),
        and opted in on a registry that no controller serves (public)."""
        return [docker_app(f"{prefix}/a"),
                docker_app(f"{prefix}/b", artifact=self.artifact(f"{prefix}/b/config.tgz")),
                docker_app(f"{prefix}/c"),
                docker_app(f"{prefix}/out", opted_in=False,
                           artifact=self.artifact(f"{prefix}/out/config.tgz")),
                docker_app(f"{prefix}/elsewhere", THIRD_REG)]

    @property
    def secret_forms(self) -> list[str]:
        """Every marker as it could leak: plain, and as the ``auth`` a bundle holds."""
        forms = []
        for registry in self.registries.values():
            for password in (registry.password, *registry.old_passwords):
                forms += [password, basic_auth(password)]
        return forms

    def config(self, *hosts: str, name: str | None = None, registries: Iterable[dict] = (),
               marathon_timeout: float = 2.0, **reconcile: Any) -> dict[str, Any]:
        """A controller config for ``hosts`` (password files) plus extra ``registries``."""
        config: dict[str, Any] = {
            "marathon": {"urls": [s.url for s in self.simulators],
                         "timeout_seconds": marathon_timeout},
            "registries": [
                {"host": h, "credentials": {"username": USERNAME,
                                            "password_file": str(self.registries[h].password_file)}}
                for h in hosts] + list(registries),
            "storage": self.shelf.settings(),
            "reconcile": {"resync_seconds": 300, "max_writes_per_second": 100,
                          "write_burst": 100, "shutdown_timeout_seconds": 5, **reconcile},
            "logging": {"format": "json"},
        }
        if name is not None:
            config["controller"] = {"name": name}
        return config

    def controller(self, config: dict[str, Any], *, name: str = "controller",
                   uid: int | None = None, env: dict[str, str] | None = None
                   ) -> ControllerProcess:
        process = ControllerProcess(self.workdir, f"{name}-{len(self.controllers)}", config,
                                    {**os.environ, **(env or {})}, uid=uid)
        self.controllers.append(process)
        return process

    async def start(self, config: dict[str, Any], **kwargs: Any) -> ControllerProcess:
        """Start a controller and wait until it serves its ops endpoints."""
        process = self.controller(config, **kwargs)
        await process.start()
        if not await process.until_serving():
            raise AssertionError(self.exited(process))
        return process

    def exited(self, process: ControllerProcess) -> str:
        """Why a controller ended: its exit code and last log lines, secrets blanked."""
        code = process.proc.returncode if process.proc else None
        tail = " / ".join(process.log().strip().splitlines()[-2:])
        for form in self.secret_forms:
            tail = tail.replace(form, "***")
        return f"controller {process.name} exited with {code}: {tail[-300:]}"

    def mount_storage(self, size: str = "256k") -> None:
        """Put the bundle directory on its own small tmpfs (for ENOSPC and read-only)."""
        mount_tmpfs(self.storage, size)
        self.mounts.append(self.storage)

    def watch_bundles(self) -> BundleWatch:
        self.watch = BundleWatch(self.shelf)
        self._watch_task = asyncio.create_task(self.watch.run(), name="bundle-watch")
        return self.watch

    async def hold(self, seconds: float = FAULT_SECONDS) -> None:
        """Let the fault last, reading /status and /metrics meanwhile (for the leak check)."""
        await asyncio.sleep(seconds)
        for process in self.controllers:
            await process.read_pages()

    async def converge_first(self, **settings: Any) -> ControllerProcess:
        """One controller for ``REG`` over ``standard_apps``, converged, bundles watched:
        where most faults start. ``settings`` go to ``config``."""
        if REG not in self.registries:
            self.registry(REG)
        self.add_apps(self.standard_apps("/rel/base"), deployed=True)
        process = await self.start(self.config(REG, **settings))
        self.watch_bundles()
        await self.until_converged(what="converged before the fault")
        return process

    # -- apps -----------------------------------------------------------------------------------

    def add_apps(self, apps: Iterable[dict[str, Any]], *, deployed: bool = False) -> list[str]:
        """Create apps as a user would (``deployed``: as if long ago, with no event or
        deployment; their tasks launch at once, and those that need a bundle fail to pull
        until a controller writes it, which restarts them)."""
        apps = list(apps)
        if deployed:
            self.state.load_apps(apps)
        else:
            for app in apps:
                self.state.add_app(app)
        ids = []
        for app in apps:
            app_id = app["id"]
            self.users[app_id] = user_part(self.state.get_app(app_id))
            registry = app["container"]["docker"]["image"].split("/", 1)[0]
            self.pulls_from[app_id] = registry
            opted_in = app["labels"].get(LABEL) == "true"
            self.wants[app_id] = registry if opted_in and registry in self.registries else None
            ids.append(app_id)
        return ids

    def user_adds_fetch(self, app_id: str, name: str) -> None:
        """The app's user appends an artifact of their own, ``name`` (keeping every entry they
        see), with a forced update: a new version, whose tasks replace the old ones."""
        uri = self.artifact(f"{app_id}/{name}")
        fetch = [*self.state.get_app(app_id)["fetch"], {"uri": uri}]
        self.state.update_app(app_id, {"fetch": fetch}, force=True)
        self.users[app_id] = user_part(self.state.get_app(app_id))

    def expected_uri(self, registry: str) -> str:
        return self.shelf.uri(self.registries[registry].bundle)

    # -- checks ---------------------------------------------------------------------------------

    def controller_writes(self, since: float = 0.0) -> list[WriteRecord]:
        """The write requests controllers sent, from ``since`` (a ``time.time()``) on."""
        return [w for w in self.state.writes if w.client.startswith(_CONTROLLER_AGENT)
                and w.at.timestamp() >= since]

    def app_writes(self) -> list[WriteRecord]:
        """The controllers' write requests but launch delay resets (which change no app)."""
        return [w for w in self.controller_writes() if not is_delay_reset(w)]

    def lost_user_parts(self) -> list[str]:
        """Apps whose user part differs from what their user last wrote."""
        return [app_id for app_id, wanted in self.users.items()
                if user_part(self.state.get_app(app_id)) != wanted]

    def unconverged(self) -> list[str]:
        """Why the world is not converged yet, in words (app ids and file names only).

        Converged: every app has exactly its managed entry, every bundle in use is served
        whole with the current password, and every app that can pull (a controller serves it,
        or its registry is public) runs its instances on its current version with no
        deployment left. An opted-out app on a private registry has no credentials: its tasks
        fail for ever, as on a real cluster, and it is left out.
        """
        reasons = []
        for app_id, registry in self.wants.items():
            app = self.state.get_app(app_id)
            entries = [e["uri"] for e in app.get("fetch", []) if is_managed(e["uri"])]
            wanted = [] if registry is None else [self.expected_uri(registry)]
            if entries != wanted:
                reasons.append(f"{app_id}: managed entries {entries}, want {wanted}")
            elif registry is not None or not self.state.registries.is_private(
                    self.pulls_from[app_id]):
                reasons += tasks_unconverged(app)
        for registry in {r for r in self.wants.values() if r is not None}:
            reasons += self._bundle_unconverged(self.registries[registry])
        return reasons

    def _bundle_unconverged(self, registry: Registry) -> list[str]:
        try:
            data = self.shelf.read(registry.bundle)
        except OSError:
            data = None
        if data is None:
            return [f"{registry.bundle}: not served"]
        if bundle_problem(data) is not None:
            return [f"{registry.bundle}: damaged"]
        if bundle_auth(data, registry.host) != basic_auth(registry.password):
            return [f"{registry.bundle}: not the current password"]
        return []

    async def until_converged(self, timeout: float = CONVERGE_SECONDS,
                              what: str = "converged") -> float:
        """Poll until converged; the seconds it took. Fails at once if a user entry is lost."""
        started = time.monotonic()
        while True:
            lost = self.lost_user_parts()
            if lost:
                raise AssertionError(f"user definitions changed by a controller: {lost}")
            reasons = self.unconverged()
            if not reasons:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not {what} after {timeout:g}s: {reasons[:4]}")
            for process in self.controllers:
                if process.proc is not None and process.proc.returncode not in (None, 0, -9):
                    raise AssertionError(self.exited(process))
            await asyncio.sleep(0.05)

    async def converged_after(self, started: float, what: str = "converged") -> float:
        """Converge, recording the seconds from ``started`` (a ``time.monotonic()``)."""
        await self.until_converged(what=what)
        self.measurement.seconds = round(time.monotonic() - started, 2)
        return self.measurement.seconds

    def leaks(self) -> list[str]:
        """Where a marker secret or a temp file was found (names only, never the secret)."""
        found = []
        forms = self.secret_forms
        for process in self.controllers:
            texts = [("stderr", process.log()), *process.pages]
            found += sorted({f"{where} of {process.name}" for where, text in texts
                             if any(form in text for form in forms)})
        for path in sorted(p for p in self.workdir.rglob("*") if p.is_file()):
            if ".tmp" in path.name:
                found.append(f"temp file {path.relative_to(self.workdir)}")
            elif path.parent == self.storage and path.name.endswith(".tar.gz"):
                continue  # a served bundle holds the credential by design
            elif any(form.encode() in path.read_bytes() for form in forms):
                found.append(f"file {path.relative_to(self.workdir)}")
        return found

    def write_counts(self, *, forced: bool = False) -> Counter[str]:
        """Successful controller app writes per app path (``forced``: the forced ones only)."""
        return Counter(w.path for w in self.app_writes() if 200 <= w.status < 300
                       and (is_forced(w) or not forced))

    async def finish(self) -> None:
        """Stop every controller (each must exit 0), then check what holds under every fault."""
        for process in self.controllers:
            if process.running:
                await process.read_pages()
        codes = {p.name: await p.stop() for p in self.controllers if p.running}
        writes = self.app_writes()
        self.measure_writes()
        problems = []
        if any(code != 0 for code in codes.values()):
            problems.append(f"exit codes {codes}")
        if self.watch is not None:
            if not self.watch.checks:
                problems.append("the bundle watch never ran")
            await asyncio.to_thread(self.watch.check_once)
            problems += [f"bad bundle served: {p}" for p in self.watch.problems]
        problems += [f"{w.method} {w.path} sends {_keys(w.body)}, not just fetch"
                     for w in writes if w.method not in ("PATCH", "PUT")
                     or not isinstance(w.body, dict) or set(w.body) != {"fetch"}]
        problems += [f"{path} written {n} times" for path, n in self.write_counts().items()
                     if n > MAX_WRITES_PER_APP]
        problems += [f"{path} written with force {n} times"
                     for path, n in self.write_counts(forced=True).items()
                     if n > MAX_FORCED_WRITES_PER_APP]
        problems += [f"{w.path} reset with force" for w in self.controller_writes()
                     if is_delay_reset(w) and is_forced(w)]
        lost = self.lost_user_parts()
        if lost:
            problems.append(f"user definitions changed: {lost}")
        problems += [f"leak: {where}" for where in self.leaks()]
        assert not problems, "; ".join(problems)

    def measure_writes(self) -> None:
        """Count the controllers' writes into the measurement."""
        writes = self.app_writes()
        self.measurement.writes = len(writes)
        self.measurement.forced = sum(1 for w in writes if is_forced(w))
        self.measurement.delay_resets = len(self.controller_writes()) - len(writes)

    async def close(self) -> None:
        """Tear down whatever is left (also after a failure)."""
        for process in self.controllers:
            await process.kill()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        self.state.clear_faults()
        for simulator in self.simulators:
            await simulator.stop()
        for mount in reversed(self.mounts):
            await asyncio.to_thread(subprocess.run, ["umount", "-l", str(mount)], check=False,
                                    capture_output=True)


def is_delay_reset(write: WriteRecord) -> bool:
    """Whether a write is a launch delay reset (``DELETE /v2/queue/{app}/delay``)."""
    return write.method == "DELETE" and bool(_DELAY_RESET.match(write.path))


def is_forced(write: WriteRecord) -> bool:
    return "true" in parse_qs(write.query).get("force", [])


def _keys(body: Any) -> str:
    return str(sorted(body)) if isinstance(body, dict) else type(body).__name__


def tasks_unconverged(app: dict[str, Any]) -> list[str]:
    """Why an app's tasks are not settled, as ``GET /v2/apps/{id}`` shows them: a deployment
    left, or fewer running tasks of its current version than ``instances``."""
    app_id = app["id"]
    deployments = [d["id"] for d in app.get("deployments", [])]
    if deployments:
        return [f"{app_id}: deployments {deployments} still run"]
    current = sum(1 for t in app.get("tasks", []) if t["version"] == app["version"]
                  and t["state"] == "TASK_RUNNING")
    others = len(app.get("tasks", [])) - current
    if app["tasksRunning"] < app["instances"] or others:
        return [f"{app_id}: {current} of {app['instances']} tasks run its version, "
                f"{others} more staged or of another version"]
    return []


def make_workdir() -> Path:
    """A temp dir that ``nobody`` can read (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="reliability-"))
    path.chmod(0o755)
    return path


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def mount_tmpfs(path: Path, size: str) -> None:
    """A small tmpfs at ``path`` (root only)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                   check=True, capture_output=True)


def remount(path: Path, mode: str) -> None:
    """``mode`` is ``ro`` or ``rw``."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True,
                   capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` until ENOSPC; the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    return filler
