"""The ``scenario`` fixture, the ``fault`` marker, and the results written for the report.

With ``RELIABILITY_RESULTS`` naming a file, every test appends one JSON line (its fault,
outcome, seconds to converge, writes made and a short note); ``tests/reliability/report.py``
turns them into ``docs/reliability.md``. Without it nothing is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from controller.simulator import MarathonSimulator, MarathonState
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
    """A fresh world: one simulator, a bundle directory, and a directory for secrets."""
    measurement = Measurement(fault=_fault_name(request.node))
    request.node.stash[_MEASUREMENT] = measurement
    workdir, secrets_dir = make_workdir(), make_workdir()
    storage = workdir / "bundles"
    storage.mkdir(mode=0o755)
    state = MarathonState(deployment_seconds=0.05)
    simulator = MarathonSimulator(state, heartbeat_seconds=1.0)
    await simulator.start()
    world = Scenario(workdir=workdir, storage=storage, secrets_dir=secrets_dir, state=state,
                     measurement=measurement, simulators=[simulator])
    try:
        yield world
    finally:
        if measurement.writes is None:
            measurement.writes = len(world.controller_writes())
        await world.close()
        remove_workdir(workdir)
        remove_workdir(secrets_dir)


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
            "note": note or measurement.note}
    with open(path, "a", encoding="utf-8") as results:
        results.write(json.dumps(line) + "\n")
