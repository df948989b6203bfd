"""``make bench``: the controller at cluster scale, every ratio measured side by side in one run.

Prints one JSON document and writes ``bench/RESULTS.md`` (``--results``). Figures:

- **start-up**: ``reconcile --once`` against an empty Marathon, next to ``python -c "import
  aiohttp"`` (the controller's bytecode compiled first, as an installed package has it);
- **no-op passes** at each size (1k, 10k, 50k apps) and label mix (``MIXES``: the opt-in label
  on every app, so that the server-side ``label`` filter keeps them all, with 0 %, 10 % or
  100 % of the apps opted in; and the label on one app in ten, which opts in): the cost of
  ``reconcile --once`` above the empty-Marathon run, divided by the floor, a bare
  ``GET /v2/apps`` of every app plus ``json.loads`` with aiohttp against the same server; and
  how both grow from 10k to 50k;
- **daemon peak RSS** after its first sync (``VmHWM`` from ``/proc``), the label on every app,
  10 % and 100 % opted in;
- **compressed lists**: ``list_apps`` with and without ``Accept-Encoding: gzip``, on loopback
  and through a 1 Gbit/s token-bucket proxy;
- **memory holders**: ``tracemalloc`` top lines once the list is decoded and after the relist;
- **the ops port under load**: 32 clients looping ``/status`` and ``/`` on the daemon at 50k
  apps, ``/healthz`` probed every 50 ms meanwhile: its latency, and the daemon's RSS growth;
- **first full sync** (10k apps, 1k writes) and **event → write latency** (50k apps) of the
  daemon against the project's simulator, write limits lifted so that the controller is
  measured, not the rate limiter (5 writes/s would take 200 s for 1,000 apps, by design);
- **SSE ingest**: the decoder alone and the whole watcher on a stream of running tasks' status
  updates and app updates, and the same with failed tasks in the mix (5 % failed pulls, 2.5 %
  other failures).

The list benchmarks use ``bench.stub`` (precomputed bytes: the server costs next to nothing,
so the floor is tight); passes and daemons run as their own processes, as in production.
Every time is the best of ``--repeat`` runs: the machine is shared, and the best run is the one
least disturbed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from bench.render import render
from controller.config import settings_from_mapping
from controller.events import EventWatcher
from controller.logs import configure
from controller.manager import Term, run
from controller.marathon.client import MarathonClient
from controller.model import AppId
from controller.plan import bundle_name
from controller.settings import MarathonSettings
from controller.sse import SSEDecoder

REGISTRY = "registry.example.com:5000"
ROOT = Path(__file__).resolve().parents[1]
MIXES = (("all", 10), ("all", 0), ("all", 100), ("tenth", 10))
"""Label mixes of the no-op passes: which apps carry the opt-in label (every app, or one in
ten), and what percent of all apps opt in. The first is the goals' (the worst realistic one:
the filter keeps every app, and nine in ten are planned only to be found not opted in)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _process(*argv: str, ready: bytes = b"listening") -> AsyncIterator[tuple[int, str]]:
    """A helper process that prints one ``listening on URL …`` line; yields (pid, that line)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(180):
            line = (await proc.stdout.readline()).decode()
        if ready not in line.encode():
            raise RuntimeError(f"{argv[:2]} did not start: {line!r}")
        yield proc.pid, line
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await proc.wait()


def _url(line: str) -> str:
    match = re.search(r"http://\S+", line)
    assert match is not None, line
    return match.group(0)


@contextlib.asynccontextmanager
async def _stub(apps: int, bundle_uri: str, mix: tuple[str, int] = MIXES[0], *,
                gzip: bool = False) -> AsyncIterator[tuple[str, dict[str, int]]]:
    labelled, opted_in = mix
    argv = ["-m", "bench.stub", "--apps", str(apps), "--labelled", labelled,
            "--opted-in", str(opted_in), "--bundle-uri", bundle_uri,
            *(["--gzip"] if gzip else [])]
    async with _process(*argv) as (_, line):
        sizes = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        yield _url(line), sizes


async def _best(repeat: int, measure: Callable[[], Awaitable[float]]) -> float:
    return min([await measure() for _ in range(repeat)])


async def _wall(*argv: str, env: dict[str, str] | None = None) -> float:
    """Wall time of a command from spawn to exit; it must succeed."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {err.decode()[-2000:]}")
    return seconds


async def _floor(url: str) -> float:
    """The floor: one unfiltered GET /v2/apps plus json.loads, on a new connection."""
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session, session.get(f"{url}/v2/apps") as response:
        json.loads(await response.read())
    return time.perf_counter() - started


class Config:
    """A controller config file for one Marathon URL (and its bundle directory)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bundles = tmp / "bundles"
        self.bundles.mkdir(exist_ok=True)  # the controller never creates its directory
        self.bundle_uri = f"file://{self.bundles}/{bundle_name(REGISTRY)}"
        self.env = {**os.environ, "BENCH_PW": "bench-password"}

    def write(self, url: str, *, listen: str | None = None) -> Path:
        path = self.tmp / f"config-{_free_port()}.yaml"
        path.write_text(yaml.safe_dump({
            "marathon": {"urls": [url], "timeout_seconds": 60},
            "registries": [{"host": REGISTRY, "check_images": False, "credentials": {
                "username": "bench", "password_env": "BENCH_PW"}}],
            "storage": {"filesystem": {"path": str(self.bundles)}},
            "server": {"listen": listen or f"127.0.0.1:{_free_port()}"},
        }))
        return path

    async def once(self, url: str) -> float:
        return await _wall(sys.executable, "-m", "controller", "reconcile", "--once",
                           "-c", str(self.write(url)), env=self.env)


_WITHOUT_RICH = ("import sys; sys.modules['rich'] = None; from controller.cli import main; "
                 "sys.argv = ['pullsecret-controller', *sys.argv[1:]]; main()")
"""The same command as the runtime image runs it: without ``rich``, which only the test
virtualenv has (import-linter needs it) and which ``structlog`` imports when it is there."""


def _compiled() -> None:
    """The controller's bytecode, written as ``pip install`` writes it for an installed package:
    the test virtualenv's editable install, under ``PYTHONDONTWRITEBYTECODE``, would otherwise
    compile every module at every start (``import aiohttp`` loads compiled site-packages)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "controller")],
                   check=True)


async def bench_startup(config: Config, repeat: int) -> dict[str, Any]:
    """``reconcile --once`` on an empty Marathon, with and without ``rich``, and ``import
    aiohttp``, run in turn ``repeat`` times."""
    _compiled()
    async with _stub(0, config.bundle_uri) as (url, _):
        path = str(config.write(url))
        runs = [(await config.once(url),
                 await _wall(sys.executable, "-c", _WITHOUT_RICH, "reconcile", "--once", "-c",
                             path, env=config.env),
                 await _wall(sys.executable, "-c", "import aiohttp"))
                for _ in range(repeat)]
    empty, bare, aiohttp_import = (min(r[i] for r in runs) for i in range(3))
    return {"runs": repeat, "reconcile_once_empty_s": round(empty, 3),
            "import_aiohttp_s": round(aiohttp_import, 3),
            "ratio": round(empty / aiohttp_import, 2),
            "without_rich_s": round(bare, 3), "without_rich_ratio": round(bare / aiohttp_import, 2)}


async def bench_noop(config: Config, sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    """Each case's floor, pass and empty-Marathon pass, run in turn ``repeat`` times: the three
    figures of one ratio see the same load."""
    _compiled()
    rows = []
    async with _stub(0, config.bundle_uri) as (empty_url, _):
        for mix in MIXES:
            for apps in sizes:
                async with _stub(apps, config.bundle_uri, mix) as (url, body):
                    await config.once(url)  # warm the page cache and the bundle
                    runs = [(await _floor(url), await config.once(url),
                             await config.once(empty_url)) for _ in range(repeat)]
                floor, noop, empty = (min(r[i] for r in runs) for i in range(3))
                rows.append({"apps": apps, "labelled": mix[0], "opted_in": mix[1],
                             "list_mb": round(body["bytes"] / 1e6, 1),
                             "floor_s": round(floor, 3), "pass_s": round(noop, 3),
                             "empty_s": round(empty, 3), "above_empty_s": round(noop - empty, 3),
                             "ratio": round((noop - empty) / floor, 2)})
    return rows


def _empty_spread(rows: list[dict[str, Any]]) -> float:
    """How far the empty-Marathon figure (each the best of its runs) moves between the cases
    of one run: a pass that costs less than this above it cannot be told from nothing."""
    empties = [r["empty_s"] for r in rows]
    return round(max(empties) - min(empties), 3)


def _growth(rows: list[dict[str, Any]], low: int, high: int) -> list[dict[str, Any]]:
    """Cost growth from ``low`` to ``high`` apps, per label mix, and the pass's ratio to the
    floor at both sizes; the growth is ``None`` where the smaller cost is below the noise
    (``_empty_spread``): the quotient of two noises says nothing."""
    noise, out = _empty_spread(rows), []
    for labelled, opted_in in MIXES:
        by = {r["apps"]: r for r in rows
              if (r["labelled"], r["opted_in"]) == (labelled, opted_in)}
        if low in by and high in by:
            small = by[low]["above_empty_s"]
            out.append({"labelled": labelled, "opted_in": opted_in,
                        "pass_growth": _ratio(by[high]["above_empty_s"], small)
                        if small > noise else None,
                        "floor_growth": _ratio(by[high]["floor_s"], by[low]["floor_s"]),
                        "to_floor": [by[low]["ratio"], by[high]["ratio"]]})
    return out


def _ratio(high: float, low: float) -> float | None:
    return round(high / low, 2) if low > 0 else None


def _vm_mb(pid: int, field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (the peak) of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"{field}:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


@contextlib.asynccontextmanager
async def _daemon_process(config: Config, url: str) -> AsyncIterator[tuple[int, str, float]]:
    """``pullsecret-controller run`` as its own process against Marathon at ``url``; yields
    its pid, its ops address and the seconds until ``/readyz`` answered 200."""
    listen = f"127.0.0.1:{_free_port()}"
    path = config.write(url, listen=listen)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", "run", "-c", str(path), "--log-level",
        "warning", cwd=ROOT, env=config.env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(300):
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://{listen}/readyz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.05)  # polling another process: nothing to wait on
        yield proc.pid, listen, time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def bench_daemon_rss(config: Config, apps: int, opted_in: int) -> dict[str, Any]:
    """Peak RSS of the daemon process once its first sync is done (the label on every app,
    ``opted_in`` percent opted in)."""
    async with _stub(apps, config.bundle_uri, ("all", opted_in)) as (url, _), \
            _daemon_process(config, url) as (pid, _, synced):
        rss = _vm_mb(pid, "VmHWM")
    return {"apps": apps, "opted_in": opted_in, "peak_rss_mb": round(rss, 1),
            "ready_after_s": round(synced, 2)}


async def _quiet(base: str) -> None:
    """Wait until the daemon's loop is quiet: ten ``/healthz`` answers in a row under 50 ms.

    Right after its first sync the daemon relists once more (its event stream attached),
    which holds the loop for a while at 50k apps: the load must not be measured over that.
    """
    async with aiohttp.ClientSession() as session, asyncio.timeout(120):
        quick = 0
        while quick < 10:
            asked = time.perf_counter()
            async with session.get(f"{base}/healthz") as response:
                await response.read()
            quick = quick + 1 if time.perf_counter() - asked < 0.05 else 0
            await asyncio.sleep(0.05)  # polling another process: nothing to wait on


async def _probe_healthz(base: str, until: float) -> list[float]:
    """``/healthz`` on a new connection every 50 ms until ``until`` (as a liveness probe
    asks); the seconds each answer took."""
    seconds = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        while time.perf_counter() < until:
            asked = time.perf_counter()
            async with session.get(f"{base}/healthz",
                                   timeout=aiohttp.ClientTimeout(total=120)) as response:
                await response.read()
                assert response.status == 200, response.status
            seconds.append(time.perf_counter() - asked)
            await asyncio.sleep(0.05)  # the probe's pace, not a synchronisation
    return seconds


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def bench_ops_load(config: Config, apps: int, clients: int, seconds: float
                         ) -> dict[str, Any]:
    """``clients`` looping ``/status`` and ``/`` (``bench.opsload``, its own process) on the
    daemon (its own process) at ``apps`` apps, every one opted in (so all are in its status
    book), while ``/healthz`` is probed every 50 ms: the probe's latency, and how far the
    daemon's RSS rose above what it held before the load."""
    async with _stub(apps, config.bundle_uri, ("all", 100)) as (url, _), \
            _daemon_process(config, url) as (pid, listen, _):
        base = f"http://{listen}"
        await _quiet(base)
        async with aiohttp.ClientSession() as session:
            for path in ("/status", "/"):  # the first answers come before the baseline
                async with session.get(base + path) as response:
                    await response.read()
        rss = [_vm_mb(pid, "VmRSS")]
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.opsload", "--url", base, "--clients", str(clients),
            "--seconds", str(seconds), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        probe = asyncio.create_task(_probe_healthz(base, time.perf_counter() + seconds))
        answered = asyncio.create_task(load.communicate())
        async with asyncio.timeout(seconds + 300):
            while not answered.done():  # RSS every 0.25 s while the clients run
                rss.append(_vm_mb(pid, "VmRSS"))
                await asyncio.wait([answered], timeout=0.25)
        out, err = answered.result()
        if load.returncode != 0:
            raise RuntimeError(f"bench.opsload failed: {err.decode()[-2000:]}")
        latencies = await probe
    report = json.loads(out)
    answers = report["answers"]
    return {"apps": apps, "clients": clients, "seconds": report["seconds"],
            "answers": answers, "answers_per_second": round(
                sum(answers.values()) / report["seconds"], 1),
            "mb_read": round(report["bytes"] / 1e6, 1),
            "healthz_ms": {"probes": len(latencies),
                           "p50": round(statistics.median(latencies) * 1000, 1),
                           "p99": round(_percentile(latencies, 0.99) * 1000, 1),
                           "max": round(max(latencies) * 1000, 1)},
            "rss_before_mb": round(rss[0], 1), "rss_growth_mb": round(max(rss) - rss[0], 1)}


async def _list_seconds(url: str) -> float:
    async with aiohttp.ClientSession() as session:
        client = MarathonClient(MarathonSettings(urls=(url,)), session,
                                planned_label="pullsecret.enabled")
        started = time.perf_counter()
        await client.list_apps("pullsecret.enabled")
        return time.perf_counter() - started


async def bench_gzip(config: Config, apps: int, repeat: int) -> dict[str, Any]:
    """``list_apps`` (all labelled; the client asks for gzip) from a server that sends the list
    as it is and from one that gzips it, on loopback and on a 1 Gbit/s link."""
    out: dict[str, Any] = {"apps": apps}
    for encoding in ("identity", "gzip"):
        async with _stub(apps, config.bundle_uri, gzip=encoding == "gzip") as (url, body):
            out["list_mb"] = round(body["bytes"] / 1e6, 1)
            if encoding == "gzip":
                out["gzipped_mb"] = round(body["gzipped"] / 1e6, 2)
            upstream = url.removeprefix("http://")
            async with _process("-m", "bench.proxy", "--upstream", upstream,
                                "--bits-per-second", "1e9") as (_, line):
                for where, target in (("loopback", url), ("1gbit", _url(line))):
                    seconds = await _best(repeat, lambda t=target: _list_seconds(t))  # type: ignore[misc]
                    out[f"{where}_{encoding}_s"] = round(seconds, 3)
    return out


async def bench_holders(config: Config, apps: int) -> dict[str, Any]:
    async with _stub(apps, config.bundle_uri) as (url, _):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.holders", "--config", str(config.write(url)),
            cwd=ROOT, env=config.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.holders failed: {err.decode()[-2000:]}")
    return {"apps": apps, **json.loads(out)}


# -- the daemon against the simulator: writes and events ------------------------------------

async def _start_simulator(apps: int) -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", "simulator", "--listen", f"127.0.0.1:{port}",
        "--apps", str(apps), "--deployment-seconds", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    async with asyncio.timeout(300):
        line = await proc.stdout.readline()
    if b"listening" not in line:
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def _writes(registry: CollectorRegistry) -> float:
    return sum(registry.get_sample_value("marathon_pullsecret_marathon_requests_total",
                                         {"method": m, "status": "200"}) or 0
               for m in ("PATCH", "PUT"))


async def _idle(handle: Term) -> None:
    while handle.apps.queue.depth or handle.apps.queue.processing:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


_LATENCY_ROUNDS = 3
"""Rounds of app creations: the latency is the best round's, as every figure here is the best
of its runs (one hiccup of a shared machine moves a p99 of 200 by several times)."""


async def bench_daemon(apps: int, creations: int) -> dict[str, Any]:
    """The daemon in this process against the simulator (its own process): first full sync,
    a no-op resync, then event-to-write latency over ``creations`` app creations, in
    ``_LATENCY_ROUNDS`` rounds one after the other."""
    sim, url = await _start_simulator(apps)
    registry = CollectorRegistry()
    stop = asyncio.Event()
    started = asyncio.Event()
    handles: list[Term] = []
    write_times: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"BENCH_PW": "bench-password"}
            (Path(tmp) / "bundles").mkdir()  # the controller never creates it
            settings = settings_from_mapping({
                "marathon": {"urls": [url], "timeout_seconds": 60},
                "registries": [{"host": REGISTRY, "check_images": False, "credentials": {
                    "username": "bench", "password_env": "BENCH_PW"}}],
                "storage": {"filesystem": {"path": str(Path(tmp) / "bundles")}},
                "reconcile": {"max_writes_per_second": 100000, "write_burst": 100000,
                              "max_concurrent_deployments": 100000, "workers": 4},
                "server": {"listen": f"127.0.0.1:{_free_port()}"},
            }, env)

            def on_started(handle: Term) -> None:
                client = handle.parts.marathon
                original = client.update_app

                async def timed_update(app_id: AppId, body: Any, *, force: bool = False
                                       ) -> str | None:
                    result = await original(app_id, body, force=force)
                    write_times[app_id] = time.perf_counter()
                    return result

                client.update_app = timed_update  # type: ignore[method-assign]
                handles.append(handle)
                started.set()

            t0 = time.perf_counter()
            daemon = asyncio.create_task(run(settings, env, stop=stop, collectors=registry,
                                             started=on_started))
            await started.wait()
            handle = handles[0]
            await handle.source.synced.wait()
            await _idle(handle)
            first_sync = time.perf_counter() - t0
            converged_writes = _writes(registry)

            before = _writes(registry)
            t1 = time.perf_counter()
            await handle.source.relist()
            await _idle(handle)
            resync = time.perf_counter() - t1
            resync_writes = _writes(registry) - before

            rounds: list[list[float]] = []
            async with aiohttp.ClientSession() as session:
                for i in range(creations * _LATENCY_ROUNDS):
                    if i % creations == 0:
                        rounds.append([])
                    app_id = f"/bench/new-{i:04d}"
                    body = {"id": app_id, "cmd": "sleep 1", "labels": {"pullsecret.enabled":
                                                                       "true"},
                            "container": {"type": "DOCKER", "docker": {
                                "image": f"{REGISTRY}/bench/new:{i}"}}}
                    async with session.post(f"{url}/v2/apps", json=body) as response:
                        response.raise_for_status()
                    created = time.perf_counter()
                    async with asyncio.timeout(30):
                        while app_id not in write_times:  # noqa: ASYNC110 - bench polling
                            await asyncio.sleep(0.0005)
                    rounds[-1].append(write_times[app_id] - created)
            stop.set()
            await daemon
    finally:
        sim.terminate()
        await sim.wait()
    out: dict[str, Any] = {
        "apps": apps,
        "first_sync": {"seconds": round(first_sync, 3), "writes": int(converged_writes)},
        "noop_resync": {"seconds": round(resync, 3), "writes": int(resync_writes)},
    }
    if rounds:
        figures = [{"p50": round(statistics.median(r) * 1000, 2),
                    "p99": round(_percentile(r, 0.99) * 1000, 2)} for r in rounds]
        out["event_to_write_ms"] = {"creations": creations,
                                    **min(figures, key=lambda f: f["p99"]),
                                    "rounds_p99": [f["p99"] for f in figures]}
    return out


_FAILED_PULL = ("Failed to launch container: Failed to run 'docker -H "
                "unix:///var/run/docker.sock pull registry.example.com:5000/team/app:1': exited "
                "with status 1; stderr='Error response from daemon: Get "
                "https://registry.example.com:5000/v2/team/app/manifests/1: unauthorized: "
                "authentication required\n'")


def _status(state: str, message: str = "") -> str:
    return json.dumps({"eventType": "status_update_event", "slaveId": "s1", "taskId": "t.1",
                       "taskStatus": state, "message": message, "appId": "/team/app",
                       "host": "agent-1", "ports": [31000], "version": "2026-01-01T00:00:00Z",
                       "timestamp": "2026-01-01T00:00:00Z"}, separators=(",", ":"))


def _event_stream(count: int, *, failures: bool) -> tuple[bytes, int, int]:
    """Marathon-framed events: every 20th an api_post_event, the rest status updates of running
    tasks; with ``failures``, every 20th (offset by 10) a task that failed to pull its image
    and every 40th (offset by 5) one that failed otherwise, the rest running or staging.
    Returns the bytes, the api_post_events and the failed pulls."""
    running = f"event: status_update_event\r\ndata: {_status('TASK_RUNNING')}\r\n\r\n"
    staging = f"event: status_update_event\r\ndata: {_status('TASK_STAGING')}\r\n\r\n"
    pulled = f"event: status_update_event\r\ndata: {_status('TASK_FAILED', _FAILED_PULL)}\r\n\r\n"
    exited = ("event: status_update_event\r\ndata: "
              f"{_status('TASK_FAILED', 'Command exited with status 1')}\r\n\r\n")
    frames = []
    posts = failed_pulls = 0
    for i in range(count):
        if i % 20 == 0:
            posts += 1
            payload = json.dumps({"eventType": "api_post_event", "clientIp": "10.0.0.1",
                                  "uri": f"/v2/apps/team/app-{i}",
                                  "appDefinition": {"id": f"/team/app-{i}", "cmd": "x"},
                                  "timestamp": "2026-01-01T00:00:00Z"}, separators=(",", ":"))
            frames.append(f"event: api_post_event\r\ndata: {payload}\r\n\r\n")
        elif failures and i % 20 == 10:
            failed_pulls += 1
            frames.append(pulled)
        elif failures and i % 40 == 5:
            frames.append(exited)
        else:
            frames.append(staging if failures and i % 3 == 0 else running)
    return "".join(frames).encode(), posts, failed_pulls


async def bench_sse(events: int, *, failures: bool = False) -> dict[str, Any]:
    data, posts, failed_pulls = _event_stream(events, failures=failures)
    chunk = 64 * 1024
    started = time.perf_counter()
    decoder = SSEDecoder()
    decoded = sum(len(decoder.feed_bytes(data[i:i + chunk])) for i in range(0, len(data), chunk))
    decoder_rate = decoded / (time.perf_counter() - started)

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(0, len(data), chunk):
            await response.write(data[i:i + chunk])
        return response

    app = web.Application()
    app.router.add_get("/v2/events", stream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    seen = pulls = 0
    finished = asyncio.Event()

    def check_finished() -> None:
        if seen == posts and pulls == failed_pulls:
            finished.set()

    def on_effect(effect: object) -> None:
        nonlocal seen
        seen += 1
        check_finished()

    def on_failed_pull(failed: object) -> None:
        nonlocal pulls
        pulls += 1
        check_finished()

    try:
        async with aiohttp.ClientSession() as session:
            client = MarathonClient(MarathonSettings(urls=(f"http://127.0.0.1:{port}",)),
                                    session)
            watcher = EventWatcher(client, on_effect=on_effect, on_attached=lambda: None,
                                   on_failed_pull=on_failed_pull)
            started = time.perf_counter()
            task = asyncio.create_task(watcher.run(_iterations=1))
            async with asyncio.timeout(120):
                await finished.wait()
            watcher_rate = events / (time.perf_counter() - started)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await runner.cleanup()
    result = {"events": events, "decoder_events_per_second": round(decoder_rate),
              "watcher_events_per_second": round(watcher_rate), "watcher_dispatched": seen}
    return result | ({"failed_pulls_seen": pulls} if failures else {})


# -- the whole run ------------------------------------------------------------------------------

def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = found.group(1).strip() if found else ""
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return {"cpu": model, "cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2),
            "memory_gb": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
            "python": platform.python_version(), "kernel": platform.release()}


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    report: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "machine": _machine(), "repeat": args.repeat}
    sizes = _sizes(args.sizes)
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(Path(tmp))
        report["startup"] = await bench_startup(config, args.startup_repeat)
        report["noop"] = await bench_noop(config, sizes, args.repeat)
        low, high = (sizes[-2], sizes[-1]) if len(sizes) > 1 else (sizes[0], sizes[0])
        report["growth"] = {"from": low, "to": high, "noise_s": _empty_spread(report["noop"]),
                            "mixes": _growth(report["noop"], low, high)}
        report["daemon_rss"] = [await bench_daemon_rss(config, n, opted_in)
                                for opted_in in (10, 100) for n in _sizes(args.rss_sizes)
                                if n or opted_in == 10]
        report["gzip"] = [await bench_gzip(config, n, args.repeat)
                          for n in _sizes(args.gzip_sizes)]
        report["holders"] = await bench_holders(config, sizes[-1])
        report["ops_load"] = await bench_ops_load(config, args.ops_apps, args.ops_clients,
                                                  args.ops_seconds)
    report["first_sync"] = await bench_daemon(args.first_sync_apps, 0)
    report["latency"] = await bench_daemon(args.latency_apps, args.creations)
    report["sse_ingest"] = await bench_sse(args.events)
    report["sse_ingest_with_failures"] = await bench_sse(args.events, failures=True)
    report["machine"]["load_1m_after"] = round(os.getloadavg()[0], 2)
    report["bench_seconds"] = round(time.perf_counter() - began, 1)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000",
                        help="app counts of the no-op passes (the last two give the growth)")
    parser.add_argument("--rss-sizes", default="0,10000,50000")
    parser.add_argument("--gzip-sizes", default="10000,50000")
    parser.add_argument("--ops-apps", type=int, default=50_000,
                        help="apps of the daemon whose /status and / are loaded")
    parser.add_argument("--ops-clients", type=int, default=32)
    parser.add_argument("--ops-seconds", type=float, default=20.0)
    parser.add_argument("--first-sync-apps", type=int, default=10_000)
    parser.add_argument("--latency-apps", type=int, default=50_000)
    parser.add_argument("--creations", type=int, default=200)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--startup-repeat", type=int, default=25,
                        help="runs of the start-up figures (each well under a second, and "
                             "the ratio of two fractions of a second needs more of them)")
    parser.add_argument("--results", type=Path, default=None,
                        help="write the Markdown report here (make bench: bench/RESULTS.md)")
    configure("warning", "json")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    if arguments.results is not None:
        arguments.results.write_text(render(result))
    print(json.dumps(result, indent=2))
