"""``make bench``: the daemon against the simulator at cluster scale; prints one JSON document.

The simulator runs in its own process (as Marathon would); the controller runs in this one, so
this process's peak RSS is the controller's. Write limits are lifted so that (a) measures the
controller, not the rate limiter: with the defaults (5 writes/s) converging 1,000 apps takes
200 s by design.

    (a) first full sync: wall time and peak RSS
    (b) a no-op resync: wall time and Marathon writes, next to a bare GET /v2/apps + decode
    (c) event-to-write latency over N app creations: p50, p99
    (d) SSE ingest: the decoder alone, and the whole watcher, on a stream of running tasks'
        status updates and app updates
    (e) the same with failed tasks in the mix: 5 % failed pulls, 2.5 % other failures
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from controller.config import MarathonSettings, settings_from_mapping
from controller.events import EventWatcher
from controller.logs import configure
from controller.manager import DaemonHandle, run
from controller.marathon import MarathonClient
from controller.model import AppId
from controller.sse import SSEDecoder

REGISTRY = "registry.example.com:5000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _start_simulator(apps: int) -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", "simulator", "--listen", f"127.0.0.1:{port}",
        "--apps", str(apps), "--deployment-seconds", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    async with asyncio.timeout(120):
        line = await proc.stdout.readline()
    if b"listening" not in line:
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


async def _bare_list(url: str, repeat: int = 3) -> float:
    """The floor: one unfiltered GET /v2/apps plus JSON decode (best of ``repeat``)."""
    best = float("inf")
    async with aiohttp.ClientSession() as session:
        for _ in range(repeat):
            started = time.perf_counter()
            async with session.get(f"{url}/v2/apps") as response:
                json.loads(await response.read())
            best = min(best, time.perf_counter() - started)
    return best


def _writes(registry: CollectorRegistry) -> float:
    return sum(registry.get_sample_value("marathon_pullsecret_marathon_requests_total",
                                         {"method": m, "status": "200"}) or 0
               for m in ("PATCH", "PUT"))


async def _idle(handle: DaemonHandle) -> None:
    while handle.apps.queue.depth or handle.apps.queue.processing:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def bench_daemon(args: argparse.Namespace) -> dict[str, Any]:
    sim, url = await _start_simulator(args.apps)
    registry = CollectorRegistry()
    stop = asyncio.Event()
    started = asyncio.Event()
    handles: list[DaemonHandle] = []
    write_times: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"BENCH_PW": "bench-password"}
            settings = settings_from_mapping({
                "marathon": {"urls": [url], "timeout_seconds": 30},
                "registries": [{"host": REGISTRY, "credentials": {
                    "username": "bench", "password_env": "BENCH_PW"}}],
                "storage": {"filesystem": {"path": str(Path(tmp) / "bundles")}},
                "reconcile": {"max_writes_per_second": 100000, "write_burst": 100000,
                              "max_concurrent_deployments": 100000, "workers": 4},
                "server": {"listen": f"127.0.0.1:{_free_port()}"},
            }, env)

            def on_started(handle: DaemonHandle) -> None:
                client = handle.parts.marathon
                original = client.update_app

                async def timed_update(app_id: AppId, body: Any) -> str | None:
                    result = await original(app_id, body)
                    write_times[app_id] = time.perf_counter()
                    return result

                client.update_app = timed_update  # type: ignore[method-assign]
                handles.append(handle)
                started.set()

            t0 = time.perf_counter()
            daemon = asyncio.create_task(run(settings, env, stop=stop, registry=registry,
                                             started=on_started))
            await started.wait()
            handle = handles[0]
            await handle.source.synced.wait()
            await _idle(handle)
            first_sync = time.perf_counter() - t0
            converged_writes = _writes(registry)

            bare = await _bare_list(url)
            before = _writes(registry)
            t1 = time.perf_counter()
            await handle.source.relist()
            await _idle(handle)
            resync = time.perf_counter() - t1
            resync_writes = _writes(registry) - before

            latencies = []
            async with aiohttp.ClientSession() as session:
                for i in range(args.creations):
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
                    latencies.append(write_times[app_id] - created)
            rss = _peak_rss_mb()
            stop.set()
            await daemon
    finally:
        sim.terminate()
        await sim.wait()
    latencies.sort()
    return {
        "apps": args.apps,
        "opted_in": int(converged_writes),
        "a_first_sync": {"seconds": round(first_sync, 3), "writes": int(converged_writes)},
        "b_noop_resync": {"seconds": round(resync, 3), "writes": int(resync_writes),
                          "bare_get_all_apps_seconds": round(bare, 3),
                          "ratio_to_bare_get": round(resync / bare, 2)},
        "c_event_to_write_ms": {
            "creations": len(latencies),
            "p50": round(statistics.median(latencies) * 1000, 2),
            "p99": round(latencies[min(len(latencies) - 1,
                                       int(len(latencies) * 0.99))] * 1000, 2),
        },
        "peak_rss_mb": round(rss, 1),
    }


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


async def bench_sse(args: argparse.Namespace, *, failures: bool = False) -> dict[str, Any]:
    data, posts, failed_pulls = _event_stream(args.events, failures=failures)
    chunk = 64 * 1024
    started = time.perf_counter()
    decoder = SSEDecoder()
    decoded = sum(len(decoder.feed_bytes(data[i:i + chunk])) for i in range(0, len(data), chunk))
    decoder_rate = decoded / (time.perf_counter() - started)

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(0, len(data), chunk):
            await response.write(data[i:i + chunk])
        return response

    app = web.Application()
    app.router.add_get("/v2/events", events)
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
            watcher_rate = args.events / (time.perf_counter() - started)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await runner.cleanup()
    result = {"events": args.events, "decoder_events_per_second": round(decoder_rate),
              "watcher_events_per_second": round(watcher_rate), "watcher_dispatched": seen}
    return result | ({"failed_pulls_seen": pulls} if failures else {})


async def main(args: argparse.Namespace) -> dict[str, Any]:
    return {**await bench_daemon(args), "d_sse_ingest": await bench_sse(args),
            "e_sse_ingest_with_failures": await bench_sse(args, failures=True),
            "cpus": os.cpu_count()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=10_000)
    parser.add_argument("--creations", type=int, default=200)
    parser.add_argument("--events", type=int, default=200_000)
    configure("warning", "json")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
