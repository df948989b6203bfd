"""One simulated Mesos agent with Marathon's launch queue in front of it (issue 11, item 4).

For each app it keeps ``instances`` tasks alive: a launch stages a task, runs the Mesos fetcher
over the app's ``fetch`` list into the task's own sandbox, "pulls" the Docker image through a
``Puller`` with ``HOME`` set to that sandbox, and the task is then ``TASK_RUNNING`` or
``TASK_FAILED`` with the message Mesos would send (``status_update_event`` and
``instance_changed_event`` go out either way). A failure delays the app's next launch by
Marathon's backoff: ``backoffSeconds * backoffFactor^(n-1)`` after the n-th failure, capped at
``maxLaunchDelaySeconds``; a task that runs, a new app version or ``reset_delay`` clears it.

Deployments drive the tasks as Marathon's deployment actors do (``core/deployment/impl/`` at
v1.10.26): a scale (``TaskStartActor``) kills the excess by ``killSelection`` or launches the
missing instances; a restart (``TaskReplaceActor``) is a rolling replacement within the app's
``upgradeStrategy``: it kills ``running - ceil(instances * minimumHealthCapacity)`` old tasks at
once, keeps at most ``instances * (1 + maximumOverCapacity)`` old and new instances, and kills
the next old task each time a new one runs. So with the default strategy (1, 1) the old tasks
keep running until new ones run, for ever if the new version cannot pull; with
``minimumHealthCapacity: 0`` they are killed first. Nothing else kills a running task.

The agent is opt-in (``MarathonState(agent=Agent(...))``): without it the simulator starts
no task and fetches nothing, however many apps it holds. It needs a running event loop; timers
go through ``schedule`` (default: the loop's ``call_later``), so tests can drive backoffs without
waiting for them.

Marathon's launch queue is in ``launchqueue`` (``Agent`` mixes it in), the records the agent
keeps (tasks, each app's entry) and ``AgentHost`` in ``tasks``.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from controller.reference import InvalidReferenceError, parse_image
from controller.simulator.fetcher import FetchError, FetchLimits, fetch_into_sandbox
from controller.simulator.launchqueue import LaunchQueue
from controller.simulator.pullers import CredentialPuller, FailedPull, Puller
from controller.simulator.tasks import (
    FAILED,
    KILLED,
    RUNNING,
    STAGING,
    AgentHost,
    AppTasks,
    Rollout,
    Task,
)
from controller.simulator.versions import MarathonVersion
from controller.simulator.wire import Json, Scheduler, iso

__all__ = ["Agent", "AgentHost", "Task", "fetch_failure_message", "pull_failure_message"]

_CONDITIONS: Final = {RUNNING: "Running", FAILED: "Failed", KILLED: "Killed"}
"""``instance_changed_event`` conditions (Marathon's ``Condition`` names)."""
_DOCKER_SOCKET: Final = "unix:///var/run/docker.sock"
_FIRST_PORT: Final = 31000


def pull_failure_message(image: str, failure: FailedPull) -> str:
    """What Mesos ≥ 1.0 reports when ``docker pull`` fails (wrapper W1 of
    docs/pull-failure-messages.md: ``src/docker/docker.cpp`` and ``src/slave/slave.cpp``)."""
    stderr = failure.stderr if failure.stderr.endswith("\n") else failure.stderr + "\n"
    return (f"Failed to launch container: Failed to run 'docker -H {_DOCKER_SOCKET} pull "
            f"{image}': exited with status 1; stderr='{stderr}'")


def fetch_failure_message(container_id: str) -> str:
    """What Mesos reports when a URI could not be fetched (Marathon's ``events.txt``)."""
    return (f"Failed to launch container: Failed to fetch all URIs for container "
            f"'{container_id}' with exit status: 256")


def _pulled_image(app: Mapping[str, Any]) -> str | None:
    """The image ``docker pull`` is run on: Mesos adds ``:latest`` to an untagged image unless
    ``forcePullImage`` is set (apache/mesos ``src/docker/docker.cpp``); ``None``: no pull."""
    container = app.get("container") or {}
    docker = container.get("docker") if container.get("type", "DOCKER") == "DOCKER" else None
    if not isinstance(docker, dict):
        return None
    image = docker.get("image")
    if not isinstance(image, str) or not image:
        return None
    if docker.get("forcePullImage"):
        return image
    try:
        reference = parse_image(image)
    except InvalidReferenceError:
        return image  # the puller reports it as Docker would
    return image if reference.tag or reference.digest else f"{image}:latest"


def _number(app: Mapping[str, Any], name: str, default: float) -> float:
    """A backoff field as a number ≥ 0; the RAML default when the simulator was given junk
    (Marathon's validation would have refused it)."""
    value = app.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return default
    return float(value)


class Agent(LaunchQueue):
    """One agent: ``host`` (a hostname) with ``agent_id``, sandboxes under ``work_dir``.

    ``puller`` defaults to the built-in ``CredentialPuller`` over the state's ``registries``.
    ``allow_host`` may refuse http(s) fetch hosts (tests keep every fetch on this machine).
    At most ``max_concurrent_launches`` launches fetch and pull at once.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        puller: Puller | None = None,
        schedule: Scheduler | None = None,
        hostname: str = "agent-1.simulator",
        agent_id: str = "00000000-0000-0000-0000-000000000000-S0",
        ip_address: str = "127.0.0.1",
        fetch_limits: FetchLimits | None = None,
        allow_host: Callable[[str | None], bool] | None = None,
        max_concurrent_launches: int = 8,
    ) -> None:
        self.work_dir = work_dir
        self.hostname = hostname
        self.agent_id = agent_id
        self.ip_address = ip_address
        self.fetch_limits = fetch_limits or FetchLimits()
        self.allow_host = allow_host
        self._puller = puller
        self._schedule = schedule
        self._host: AgentHost | None = None
        self._apps: dict[str, AppTasks] = {}
        self._slots = asyncio.Semaphore(max_concurrent_launches)
        self._launches: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._next_port = _FIRST_PORT

    # -- wiring --------------------------------------------------------------------------------

    def bind(self, host: AgentHost) -> None:
        """Serve ``host`` (``MarathonState`` calls this; one agent serves one state)."""
        if self._host is not None and self._host is not host:
            raise RuntimeError("this agent already serves another MarathonState")
        self._host = host
        if self._puller is None:
            self._puller = CredentialPuller(host.registries)

    @property
    def host(self) -> AgentHost:
        if self._host is None:
            raise RuntimeError("the agent is not bound to a MarathonState")
        return self._host

    @property
    def puller(self) -> Puller:
        assert self._puller is not None  # set in bind
        return self._puller

    async def idle(self) -> None:
        """Return once no launch is fetching or pulling (tests wait on this, not on sleeps)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Cancel every launch in flight and every backoff timer; running tasks stay listed."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        launches = list(self._launches)
        for launch in launches:
            launch.cancel()
        await asyncio.gather(*launches, return_exceptions=True)

    # -- what Marathon asks --------------------------------------------------------------------

    def scale(self, app_id: str) -> None:
        """A scale (or a new app): keep the app's ``instances`` alive, killing the excess by
        ``killSelection`` (``ScalingProposition``) and launching what is missing."""
        entry, app = self._follow(app_id)
        if app is None:
            return
        entry.rollout = None
        entry.wanted = app["instances"]
        excess = len(entry.tasks) - entry.wanted
        if excess > 0:
            youngest_first = app.get("killSelection", "YOUNGEST_FIRST") != "OLDEST_FIRST"
            by_age = sorted(entry.tasks, key=lambda t: t.staged_at, reverse=youngest_first)
            for task in by_age[:excess]:
                self._kill(task)
        self._converge(app_id)

    def replace(self, app_id: str) -> None:
        """A restart: replace the tasks of other versions by the app's current version, within
        its ``upgradeStrategy`` (``TaskReplaceActor.computeRestartStrategy@v1.10.26``)."""
        entry, app = self._follow(app_id)
        if app is None:
            return
        version, instances = app["version"], app["instances"]
        strategy = app.get("upgradeStrategy") or {}
        minimum = _number(strategy, "minimumHealthCapacity", 1.0)
        over = _number(strategy, "maximumOverCapacity", 1.0)
        checked = bool(app.get("healthChecks"))
        healthy = sum(1 for t in entry.tasks if not checked or t.state == RUNNING)
        min_healthy = math.ceil(instances * minimum)
        max_capacity = int(instances * (1 + over))
        kill_now = max(0, healthy - min_healthy)
        if min_healthy == max_capacity <= healthy:
            max_capacity += 1  # a temporary over-capacity of one, so that a restart can start
        if instances < len(entry.tasks):
            kill_now = max(len(entry.tasks) - instances, kill_now)
        old = [t for t in entry.tasks if t.version != version]
        # "we always prefer to kill unhealthy tasks first": not yet running ones here
        old.sort(key=lambda t: t.state == RUNNING)
        entry.wanted = instances
        entry.rollout = Rollout(version=version, instances=instances, max_capacity=max_capacity,
                                to_kill=deque(old), started=len(entry.tasks) - len(old))
        for _ in range(kill_now):
            self._kill_next_old(entry)
        self._converge(app_id)

    def stop(self, app_id: str) -> None:
        """A stop: kill every task of the app and forget it."""
        entry = self._apps.pop(app_id, None)
        if entry is None:
            return
        entry.rollout = None
        for task in list(entry.tasks):
            self._kill(task, entry)

    def cancel(self, app_id: str) -> None:
        """The deployment driving the app was cancelled: its tasks stay where they are, new and
        old (a forced deployment that follows decides what happens next)."""
        entry = self._apps.get(app_id)
        if entry is not None and entry.rollout is not None:
            entry.rollout = None
            entry.wanted = max(entry.wanted, len(entry.tasks))

    def active_or_scheduled(self, app_id: str) -> int:
        """Instances launched or waiting to launch (what ``TaskStartActor`` subtracts)."""
        entry = self._apps.get(app_id)
        return max(len(entry.tasks), entry.wanted) if entry else 0

    def running(self, app_id: str, version: str) -> int:
        """How many tasks of this app version run."""
        entry = self._apps.get(app_id)
        return sum(1 for t in entry.tasks if t.version == version and t.state == RUNNING
                   ) if entry else 0

    def others(self, app_id: str, version: str) -> int:
        """How many tasks of the app are of another version (a restart waits for none)."""
        entry = self._apps.get(app_id)
        return sum(1 for t in entry.tasks if t.version != version) if entry else 0

    def tasks(self, app_id: str) -> list[Json]:
        """``GET /v2/apps/{id}/tasks``' items: the staged and running tasks."""
        entry = self._apps.get(app_id)
        return [self._task_json(task) for task in entry.tasks] if entry else []

    def counts(self, app_id: str) -> tuple[int, int]:
        """``(tasksStaged, tasksRunning)``."""
        entry = self._apps.get(app_id)
        if entry is None:
            return 0, 0
        running = sum(1 for task in entry.tasks if task.state == RUNNING)
        return len(entry.tasks) - running, running

    def last_failure(self, app_id: str) -> Json | None:
        """The app's ``lastTaskFailure``, if a task of it failed."""
        entry = self._apps.get(app_id)
        return entry.last_failure if entry else None

    def fail_tasks(self, app_id: str, message: str = "Command exited with status 1") -> int:
        """Make the app's running tasks exit with ``TASK_FAILED`` (a crash, an OOM kill …), so
        Marathon launches them again, after the backoff; returns how many failed."""
        entry = self._apps.get(app_id)
        running = [task for task in entry.tasks if task.state == RUNNING] if entry else []
        for task in running:
            shutil.rmtree(task.sandbox, ignore_errors=True)
            self._failed(task, message)
        return len(running)

    # -- launches ------------------------------------------------------------------------------

    def _ids(self, app_id: str) -> tuple[str, str]:
        """Marathon's instance and task ids: ``app.instance-<uuid>._app.1`` since 1.8, the
        instance id ``path_to_app.<uuid>`` before (``events.txt``)."""
        safe = app_id.strip("/").replace("/", "_")
        unique = uuid.uuid1()
        if MarathonVersion.of(self.host.version).instance_ids:
            instance_id = f"{safe}.instance-{unique}"
            return instance_id, f"{instance_id}._app.1"
        return f"{safe}.{unique}", f"{safe}.{unique}"

    def _launch(self, app: Json) -> None:
        app_id = app["id"]
        instance_id, task_id = self._ids(app_id)
        definitions = app.get("portDefinitions") or []
        ports = list(range(self._next_port, self._next_port + len(definitions)))
        self._next_port += len(definitions)
        task = Task(id=task_id, instance_id=instance_id, app_id=app_id, version=app["version"],
                    state=STAGING, staged_at=self.host.now(), sandbox=self.work_dir / task_id,
                    ports=ports, service_ports=[d.get("port", 0) for d in definitions])
        self._apps[app_id].tasks.append(task)
        self.host.tasks_changed(app_id)
        launch = asyncio.get_running_loop().create_task(self._run(task, app))
        self._launches.add(launch)
        self._idle.clear()
        launch.add_done_callback(self._launch_done)

    def _launch_done(self, launch: asyncio.Task[None]) -> None:
        self._launches.discard(launch)
        if not self._launches:
            self._idle.set()

    async def _run(self, task: Task, app: Json) -> None:
        """Fetch, pull, and report; a task killed meanwhile reports nothing more."""
        async with self._slots:
            failure = await self._fetch(task, app)
            image = _pulled_image(app)
            if failure is None and image is not None:
                pulled = await self._pull(image, task.sandbox)
                if pulled is not None:
                    failure = pull_failure_message(image, pulled)
        if task.state != STAGING or failure is not None:
            await asyncio.to_thread(shutil.rmtree, task.sandbox, ignore_errors=True)
        if task.state != STAGING:
            return  # killed while it launched
        if failure is not None:
            self._failed(task, failure)
        else:
            self._running(task)

    async def _pull(self, image: str, home: Path) -> FailedPull | None:
        """The puller's answer; a puller that breaks fails the pull instead of the agent."""
        try:
            return await self.puller.pull(image, home)
        except Exception as e:  # noqa: BLE001 - a plug-in's bug must not leave a task staging
            return FailedPull(f"the simulator's puller failed: {type(e).__name__}: {e}")

    async def _fetch(self, task: Task, app: Json) -> str | None:
        """Run the fetcher over every URI; the first failure fails the whole fetch."""
        artifacts = app.get("fetch") or []

        def fetch_all() -> None:
            task.sandbox.mkdir(parents=True, exist_ok=True)
            for artifact in artifacts:
                fetch_into_sandbox(artifact["uri"], task.sandbox, artifact.get("destPath"),
                                   extract=artifact.get("extract", True),
                                   executable=artifact.get("executable", False),
                                   limits=self.fetch_limits, allow_host=self.allow_host)

        try:
            await asyncio.to_thread(fetch_all)
        except (FetchError, OSError):
            return fetch_failure_message(str(uuid.uuid4()))
        return None

    # -- task state changes --------------------------------------------------------------------

    def _running(self, task: Task) -> None:
        task.state = RUNNING
        task.started_at = self.host.now()
        self._report(task, "")
        entry = self._apps.get(task.app_id)
        rollout = entry.rollout if entry is not None else None
        if entry is not None and rollout is not None and task.version == rollout.version:
            self._kill_next_old(entry)  # "Killing old … because … became reachable"
        if entry is not None and entry.launcher is not None:
            entry.launcher.delay = entry.launcher.backoff_until = None
            self._converge(task.app_id)

    def _failed(self, task: Task, message: str) -> None:
        task.state = FAILED
        entry = self._apps[task.app_id]
        entry.tasks.remove(task)
        now = self.host.now()
        entry.last_failure = {
            "appId": task.app_id, "host": self.hostname, "message": message, "state": FAILED,
            "taskId": task.id, "timestamp": iso(now), "version": task.version,
            "slaveId": self.agent_id}
        self._report(task, message)
        app = self.host.app(task.app_id)
        launcher = entry.launcher
        if app is not None and launcher is not None:
            launcher.delay = min(
                _number(app, "maxLaunchDelaySeconds", 300.0),
                _number(app, "backoffSeconds", 1.0) if launcher.delay is None
                else launcher.delay * max(1.0, _number(app, "backoffFactor", 1.15)))
            launcher.backoff_until = now + timedelta(seconds=launcher.delay)
        self._converge(task.app_id)

    def _kill(self, task: Task, entry: AppTasks | None = None) -> None:
        """Kill a staged or running task (a new version replaced it, or a scale-down); the
        caller converges the app afterwards."""
        entry = entry or self._apps[task.app_id]
        entry.tasks.remove(task)
        was_running = task.state == RUNNING
        task.state = KILLED  # a launch in flight sees it and cleans up after itself
        if was_running:
            shutil.rmtree(task.sandbox, ignore_errors=True)
        self._report(task, "")

    def _kill_next_old(self, entry: AppTasks) -> None:
        """Kill the next old task of a restart that is still there."""
        rollout = entry.rollout
        while rollout is not None and rollout.to_kill:
            task = rollout.to_kill.popleft()
            if task in entry.tasks:
                self._kill(task, entry)
                return

    def _report(self, task: Task, message: str) -> None:
        """``status_update_event`` and ``instance_changed_event``, as Marathon 1.10 writes them."""
        host = self.host
        addresses = ([{"ipAddress": self.ip_address, "protocol": "IPv4"}]
                     if task.state == RUNNING else [])
        host.publish("status_update_event", {
            "slaveId": self.agent_id, "taskId": task.id, "taskStatus": task.state,
            "message": message, "appId": task.app_id, "host": self.hostname,
            "ipAddresses": addresses, "ports": task.ports, "version": task.version})
        host.publish("instance_changed_event", {
            "instanceId": task.instance_id, "condition": _CONDITIONS[task.state],
            "runSpecId": task.app_id, "agentId": self.agent_id, "host": self.hostname,
            "runSpecVersion": task.version})
        host.tasks_changed(task.app_id)

    def _task_json(self, task: Task) -> Json:
        """One task as ``GET /v2/apps/{id}/tasks`` shows it (RAML ``Task``)."""
        shown: Json = {
            "appId": task.app_id, "healthCheckResults": [], "host": self.hostname,
            "id": task.id, "ipAddresses": [{"ipAddress": self.ip_address, "protocol": "IPv4"}],
            "ports": task.ports, "servicePorts": task.service_ports, "slaveId": self.agent_id,
            "state": task.state, "stagedAt": iso(task.staged_at), "version": task.version,
            "localVolumes": []}
        if task.started_at is not None:
            shown["startedAt"] = iso(task.started_at)
        return shown
