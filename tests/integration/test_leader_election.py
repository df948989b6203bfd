"""Two controller processes, one real ZooKeeper, one simulator: exactly one of them writes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from controller.plan import is_managed_uri
from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import config_doc, docker_app, write_config
from tests.services import HOST, eventually, free_port

pytestmark = pytest.mark.zookeeper

SESSION_TIMEOUT = 2.0
"""The controller's floor, which the tests' ZooKeeper grants (2 ticks of 1 s)."""


def converged(state: MarathonState, app_id: str) -> bool:
    return any(is_managed_uri(e["uri"]) for e in state.get_app(app_id).get("fetch", []))


def writer_pid(client: str) -> int:
    match = re.search(r"/(\d+)\)$", client)
    assert match, client
    return int(match.group(1))


class Controller:
    """One `pullsecret-controller run` process with leader election."""

    def __init__(self, tmp_path: Path, name: str, marathon: str, zookeeper: str) -> None:
        self.port = free_port()
        self.config = write_config(tmp_path, config_doc(
            marathon, tmp_path / "bundles", marathon={"timeout_seconds": 3},
            reconcile={"shutdown_timeout_seconds": 5, "max_writes_per_second": 100},
            server={"listen": f"{HOST}:{self.port}"},
            leader_election={"zookeeper": f"{zookeeper}/pullsecret",
                             "session_timeout_seconds": SESSION_TIMEOUT},
            logging={"format": "json"},
        ), f"{name}.yaml")
        self.log = tmp_path / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "controller", "run", "--config", str(self.config),
                env={**os.environ, "REG_PW": "pw"}, stdout=log, stderr=log)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def leader_gauge(self) -> float | None:
        try:
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{self.port}/metrics",
                    timeout=aiohttp.ClientTimeout(total=1)) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None
        match = re.search(r"^marathon_pullsecret_leader (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def cluster(zookeeper, tmp_path):
    state = MarathonState(deployment_seconds=0)
    async with MarathonSimulator(state, heartbeat_seconds=1) as sim:
        controllers = [Controller(tmp_path, n, sim.url, zookeeper.hosts) for n in ("a", "b")]
        try:
            yield state, controllers
        finally:
            for c in controllers:
                await c.stop()


async def elect(controllers: list[Controller]) -> tuple[Controller, Controller]:
    """Start both; return (leader, standby) once one leads and the other stands by."""
    first, second = controllers
    await first.start()
    await eventually(lambda: _is(first, 1.0), 30, "first controller leads")
    await second.start()
    await eventually(lambda: _is(second, 0.0), 30, "second controller stands by")
    return first, second


async def _is(controller: Controller, value: float) -> bool:
    return await controller.leader_gauge() == value


async def test_only_the_leader_writes(cluster):
    """With two replicas up, every write comes from the leader."""
    state, controllers = cluster
    leader, standby = await elect(controllers)
    ids = [f"/ha/app-{i}" for i in range(5)]
    for app_id in ids:
        state.add_app(docker_app(app_id))
    await eventually(lambda: all(converged(state, a) for a in ids), 20, "converged")
    patches = [w for w in state.writes if w.method in ("PATCH", "PUT")]
    assert patches
    assert {writer_pid(w.client) for w in patches} == {leader.pid}
    assert await standby.leader_gauge() == 0.0
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{standby.port}/readyz") as response:
        assert (response.status, (await response.json())["checks"]) == (200, {"standby": True})
    (record,) = (leader.config.parent / "bundles").glob("pullsecret*.json")
    assert isinstance(json.loads(record.read_text())["leader_epoch"], int)


async def test_failover_after_kill_9(cluster):
    """kill -9 the leader: the standby converges new apps within session timeout + 5 s."""
    state, controllers = cluster
    leader, standby = await elect(controllers)
    assert leader.proc is not None
    leader.proc.kill()
    await leader.proc.wait()
    state.add_app(docker_app("/ha/after-failover"))
    took = await eventually(lambda: converged(state, "/ha/after-failover"), SESSION_TIMEOUT + 5,
                       "standby took over")
    assert took <= SESSION_TIMEOUT + 5
    last = [w for w in state.writes if w.method == "PATCH"][-1]
    assert writer_pid(last.client) == standby.pid


async def test_no_split_brain_after_sigstop(cluster):
    """A leader frozen past its session never writes again once the standby took over."""
    state, controllers = cluster
    leader, standby = await elect(controllers)
    assert leader.proc is not None
    leader.proc.send_signal(signal.SIGSTOP)
    await eventually(lambda: _is(standby, 1.0), SESSION_TIMEOUT + 10, "standby takes over")
    takeover = len(state.writes)
    state.add_app(docker_app("/ha/during-freeze"))
    await eventually(lambda: converged(state, "/ha/during-freeze"), 10, "converged by new leader")
    leader.proc.send_signal(signal.SIGCONT)
    await eventually(lambda: _is(leader, 0.0), 15, "old leader steps down")
    thawed = len(state.writes)
    state.add_app(docker_app("/ha/after-thaw"))
    await eventually(lambda: converged(state, "/ha/after-thaw"), 10, "converged after thaw")

    def written(since: int) -> list[tuple[str, int]]:
        """(app path, writer pid) of the app writes since the ``since``-th write."""
        return [(w.path, writer_pid(w.client)) for w in state.writes[since:]
                if w.method in ("PATCH", "PUT")]

    assert ("/v2/apps/ha/during-freeze", standby.pid) in written(takeover)
    assert ("/v2/apps/ha/after-thaw", standby.pid) in written(thawed)  # a live, thawed rival
    assert {pid for _, pid in written(takeover)} == {standby.pid}


async def test_standby_while_zookeeper_is_unreachable(tmp_path):
    """With ZooKeeper down, a replica stands by: healthy, not leading, and not ready (it could
    not take over); SIGTERM still exits 0."""
    state = MarathonState()
    async with MarathonSimulator(state) as sim:
        c = Controller(tmp_path, "lonely", sim.url, f"127.0.0.1:{free_port()}")
        try:
            await c.start()
            await eventually(lambda: _is(c, 0.0), 20, "serves metrics as a standby")
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{c.port}/readyz") as response:
                    assert (response.status, (await response.json())["checks"]) == (
                        503, {"standby": False})
                async with session.get(f"http://127.0.0.1:{c.port}/healthz") as response:
                    assert response.status == 200
            assert c.proc is not None
            c.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(c.proc.wait(), 15) == 0
        finally:
            await c.stop()
    assert state.writes == []
