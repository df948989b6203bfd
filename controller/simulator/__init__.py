"""A Marathon 1.10 API simulator: an in-memory model (``MarathonState``) and its HTTP facade.

It is product code, not a test double: the ``demo`` command and operators' own integration tests
run on it, as moto serves AWS users. It follows ``marathon-facts.md`` (read from Marathon's code),
quirks included: a partial update that omits ``executorResources`` drops it, ``version`` in an
update means "roll back", a 409 names the deployments that lock the app, and ``/v2/events`` is
Jetty's SSE (exact ``Accept``, CRLF framing, blank-line heartbeats, no ids, no resumption).

It schedules nothing: there are no tasks (the counts say every instance runs), and a deployment
is a timer of ``deployment_seconds`` that tests may also end by hand.

Run it alone with ``python -m controller.simulator --listen 127.0.0.1:8080 --apps 1000``.

Modules: ``wire`` (shared encoding, errors, version features), ``apps`` (definitions),
``selectors`` (label selectors), ``deployments``, ``events`` (the bus), ``faults`` (planned
failures, the write log), ``state`` (``MarathonState``), ``http`` (``MarathonSimulator``),
``seed`` and ``cli``.
"""

from controller.simulator.cli import main
from controller.simulator.deployments import DeploymentResult
from controller.simulator.events import Event, Subscriber
from controller.simulator.faults import Fault, FaultKind, WriteRecord
from controller.simulator.http import STATE_KEY, MarathonSimulator
from controller.simulator.seed import seed_apps
from controller.simulator.state import MarathonState, Scheduler
from controller.simulator.wire import DEFAULT_VERSION, ApiError

__all__ = [
    "DEFAULT_VERSION",
    "STATE_KEY",
    "ApiError",
    "DeploymentResult",
    "Event",
    "Fault",
    "FaultKind",
    "MarathonSimulator",
    "MarathonState",
    "Scheduler",
    "Subscriber",
    "WriteRecord",
    "main",
    "seed_apps",
]
