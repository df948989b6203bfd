"""A Marathon 1.10 API simulator: an in-memory model (``MarathonState``) and its HTTP facade.

It is product code, not a test double: the ``demo`` command and operators' own integration tests
run on it, as moto serves AWS users. It follows ``marathon-facts.md`` (read from Marathon's code),
quirks included: a partial update that omits ``executorResources`` drops it, ``version`` in an
update means "roll back", a 409 names the deployments that lock the app, and ``/v2/events`` is
Jetty's SSE (exact ``Accept``, CRLF framing, blank-line heartbeats, no ids, no resumption).

By default it runs no tasks (the counts say every instance runs), so thousands of apps cost
nothing; a deployment is a timer of ``deployment_seconds`` that tests may also end by hand.
With ``MarathonState(agent=Agent(work_dir))`` one simulated Mesos agent launches every instance:
it fetches the app's ``fetch`` list into a sandbox by the Mesos fetcher's rules, pulls the image
through a ``Puller`` (by default one that checks the sandbox's docker config against the
credentials given to ``accept_credentials``), reports ``TASK_RUNNING``/``TASK_FAILED``, and
backs off as Marathon does; ``/v2/apps/{id}/tasks`` and ``/v2/queue`` show it.

Run it alone with ``python -m controller.simulator --listen 127.0.0.1:8080 --apps 1000``.

Modules: ``wire`` (shared encoding, errors, version features), ``apps`` (definitions),
``selectors`` (label selectors), ``deployments``, ``events`` (the bus), ``faults`` (planned
failures, the write log), ``state`` (``MarathonState``), ``http`` (``MarathonSimulator``),
``agent`` (tasks and the launch queue), ``fetcher`` (the Mesos fetcher's rules), ``pullers``
(the puller port, ``RegistryBook``), ``registry`` (``RegistrySimulator``: a registry's
``GET /v2/`` login over the same book), ``seed`` and ``cli``.
"""

from controller.simulator.agent import Agent, Task
from controller.simulator.cli import main
from controller.simulator.deployments import DeploymentResult
from controller.simulator.events import Event, Subscriber
from controller.simulator.faults import Fault, FaultKind, WriteRecord
from controller.simulator.fetcher import FetchError, FetchLimits, fetch_into_sandbox
from controller.simulator.http import STATE_KEY, MarathonSimulator
from controller.simulator.pullers import CredentialPuller, FailedPull, Puller, RegistryBook
from controller.simulator.registry import RegistrySimulator
from controller.simulator.seed import seed_apps
from controller.simulator.state import MarathonState
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
    "MarathonSimulator",
    "MarathonState",
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
