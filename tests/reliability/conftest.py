"""The ``scenario`` fixture, the ``fault`` marker, and the results written for the report.

With ``RELIABILITY_RESULTS`` naming a file, every test appends one JSON line (its fault,
outcome, seconds to converge, writes made, forced writes, delay resets and a short note);
``tests/reliability/report.py`` turns them into ``docs/reliability.md``. Without it nothing is
written.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from controller.simulator import Agent, MarathonSimulator, MarathonState
from tests.reliability.harness import Measurement, Scenario, make_workdir, remove_workdir

_MEASUREMENT = pytest.StashKey[Measurement]()
_OUTCOME = pytest.StashKey[tuple[str, str]]()
_NOTE_CHARS = 200


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(name): the fault a reliability scenario injects")


def _fault_name(item: pytest.Item) -> str:
    marker = item.get_closest_marker("fault")
    return str(marker.args[0]) if marker else item.name


@pytest.fixture
async def scenario(request: pytest.FixtureRequest) -> AsyncIterator[Scenario]:
    """A fresh world: one simulator with its agent, a bundle directory, and a directory for
    secrets. The agent's sandboxes are apart from the workdir: like a Mesos agent's, they hold
    the credential of the bundle they fetched (the leak check searches the workdir). Every
    fetch stays on this machine."""
    measurement = Measurement(fault=_fault_name(request.node))
    request.node.stash[_MEASUREMENT] = measurement
    workdir, secrets_dir, sandboxes = make_workdir(), make_workdir(), make_workdir()
    storage = workdir / "bundles"
    storage.mkdir(mode=0o755)
    agent = Agent(sandboxes, allow_host=lambda host: host == "127.0.0.1")
    state = MarathonState(agent=agent)
    simulator = MarathonSimulator(state, heartbeat_seconds=1.0)
    await simulator.start()
    world = Scenario(workdir=workdir, storage=storage, secrets_dir=secrets_dir, state=state,
                     measurement=measurement, simulators=[simulator])
    try:
        yield world
    finally:
        if measurement.writes is None:
            world.measure_writes()
        await world.close()
        await agent.close()
        remove_workdir(workdir)
        remove_workdir(secrets_dir)
        remove_workdir(sandboxes)


def _note(report: pytest.TestReport) -> str:
    """The failure's first line or the skip reason (the suite's messages quote no secret)."""
    if report.passed:
        return ""
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (file, line, reason)
        text = str(longrepr[2]).removeprefix("Skipped: ")
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(longrepr)
    return text.strip().splitlines()[0][:_NOTE_CHARS] if text.strip() else ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" or (report.when == "setup" and not report.passed):
        item.stash[_OUTCOME] = (report.outcome, _note(report))
    path = os.environ.get("RELIABILITY_RESULTS")
    if (report.when != "teardown" or not path or _OUTCOME not in item.stash
            or _MEASUREMENT not in item.stash):  # only scenarios are reported
        return
    result, note = item.stash[_OUTCOME]
    measurement = item.stash[_MEASUREMENT]
    line = {"test": item.nodeid, "fault": measurement.fault, "outcome": result,
            "seconds": measurement.seconds, "writes": measurement.writes,
            "forced": measurement.forced, "delay_resets": measurement.delay_resets,
            "note": note or measurement.note}
    with open(path, "a", encoding="utf-8") as results:
        results.write(json.dumps(line) + "\n")
