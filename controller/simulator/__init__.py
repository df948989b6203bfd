"""A Marathon API simulator (1.10 by default): an in-memory model (``MarathonState``) and its HTTP
facade.

It is product code, not a test double: the ``demo`` command and operators' own integration tests
run on it, as moto serves AWS users. It follows Marathon's code, quirks included: a partial update
that omits ``executorResources`` drops it, ``version`` in an update means "roll back", a 409
names the deployments that lock the app, and ``/v2/events`` is Jetty's SSE (exact ``Accept``,
CRLF framing, blank-line heartbeats, no ids, no resumption). What changes from one Marathon
version to the next is in its own table (``versions``), read from Marathon's source.

**Deployments.** Every write is a deployment plan, as in Marathon: a new app is started (a step
done at once) and then scaled, a changed app restarted or scaled, a removed app stopped; a group
update (``PUT``/``POST /v2/groups``) or a batch ``PUT``/``PATCH /v2/apps`` is one plan for every
app it touches. A plan locks its apps (409 on any write that is not forced) until it ends; a
forced write cancels every plan it conflicts with, whole (``deployment_failed``, reason "The
upgrade has been cancelled" from 1.7): their other apps are left where they were.

- **With an agent** (``MarathonState(agent=Agent(work_dir))``) a deployment ends only when its
  tasks say so, as Marathon's deployment actors decide: a scale when its new instances of the
  plan's version run, a restart when ``instances`` of the new version run and no older task is
  left (a rolling replacement within the app's ``upgradeStrategy``), a stop once its tasks are
  killed. An app whose new tasks cannot pull stays locked for ever, its old tasks still running,
  while the agent relaunches with Marathon's backoff and sends the ``status_update_event``s,
  until a forced write or ``DELETE /v2/deployments/{id}`` replaces the deployment. The agent
  launches every instance: it fetches the app's ``fetch`` list into a sandbox by the Mesos
  fetcher's rules, pulls the image through a ``Puller`` (by default one that checks the
  sandbox's docker config against the credentials given to ``accept_credentials``, then the
  image against what ``registries`` holds and lets that account pull), and reports
  ``TASK_RUNNING``/``TASK_FAILED``; ``/v2/tasks``, ``/v2/apps/{id}/tasks`` and ``/v2/queue``
  show it. ``deployment_seconds`` is not used.
- **Without an agent** (the default) no task runs and nothing is fetched, so thousands of apps
  cost nothing: the counts say every instance runs, and a deployment ends
  ``deployment_seconds`` after it began, as if every task had run at once (``None``: only when a
  test calls ``finish_deployment``).

Deployment events carry the light plan (``id``, ``steps``, ``version``) as 1.8+ always writes
it; on older versions a stream gets ``plan.original`` and ``plan.target`` (the root groups)
where that version wrote them by default or the stream's ``plan-format`` asked for them
(``versions.MarathonVersion.light_plans``).

Run it alone with ``python -m controller.simulator --listen 127.0.0.1:8080 --apps 1000``.

Modules: ``wire`` (shared encoding, errors), ``versions`` (what each Marathon version does),
``apps`` (definitions), ``groups`` (the group tree, group updates), ``selectors`` (label
selectors), ``deployments`` (plans and steps), ``deployer`` (running them: locks, steps, end and
cancellation), ``events`` (the bus), ``faults`` (planned failures, the write log), ``state``
(``MarathonState``: apps, versions and groups; it mixes in the deployer, the bus and the
faults), ``http`` (``MarathonSimulator``), ``agent`` (``Agent``: launches, rolling restarts, task
states), ``launchqueue`` (Marathon's launch queue and backoff, mixed into ``Agent``), ``tasks``
(what the agent keeps: tasks, each app's entry, ``AgentHost``), ``fetcher`` (the Mesos fetcher's
rules), ``pullers`` (the puller port, ``RegistryBook``: credentials, account scopes and images),
``registry`` (``RegistrySimulator``: a registry's ``GET /v2/`` login, manifests and tags over
the same book), ``seed`` and ``cli``.
"""

from controller.simulator.agent import Agent, Task
from controller.simulator.cli import main
from controller.simulator.deployments import DeploymentResult
from controller.simulator.events import Event, Subscriber
from controller.simulator.faults import Fault, FaultKind, WriteRecord
from controller.simulator.fetcher import FetchError, FetchLimits, fetch_into_sandbox
from controller.simulator.http import STATE_KEY, MarathonSimulator
from controller.simulator.pullers import (
    CredentialPuller,
    FailedPull,
    Manifest,
    Puller,
    PullRefusal,
    RegistryBook,
)
from controller.simulator.registry import RegistrySimulator
from controller.simulator.seed import seed_apps
from controller.simulator.state import MarathonState
from controller.simulator.versions import MarathonVersion
from controller.simulator.wire import DEFAULT_VERSION, ApiError, Scheduler

__all__ = [
    "DEFAULT_VERSION",
    "STATE_KEY",
    "Agent",
    "ApiError",
    "CredentialPuller",
    "DeploymentResult",
    "Event",
    "FailedPull",
    "Fault",
    "FaultKind",
    "FetchError",
    "FetchLimits",
    "Manifest",
    "MarathonSimulator",
    "MarathonState",
    "MarathonVersion",
    "PullRefusal",
    "Puller",
    "RegistryBook",
    "RegistrySimulator",
    "Scheduler",
    "Subscriber",
    "Task",
    "WriteRecord",
    "fetch_into_sandbox",
    "main",
    "seed_apps",
]
