"""The status page as a real browser (headless Chromium) renders it: a running daemon's, one
with every kind of problem, and a standby's, each checked by axe-core (WCAG 2 A and AA, no
violation), at 375 px without sideways scrolling, and under the ops port's own
Content-Security-Policy. Screenshots are kept in test-artifacts/.

Chromium is driven over its DevTools protocol (a WebSocket, with aiohttp). axe-core comes from
the npm registry, installed once with npm into the virtualenv (``AXE``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from controller.appindex import AppIndex, AppStatus, PullFailureNote
from controller.bundles import LoginCheck, RegistryState
from controller.config import settings_from_mapping
from controller.model import AppId, BundleManifest
from controller.opsserver import make_app, serve
from controller.plan import bundle_name
from controller.simulator import MarathonSimulator, MarathonState
from controller.statusbook import StatusBook
from tests.factories import REGISTRY, docker_app
from tests.integration.runner import Daemon, daemon_config
from tests.services.process import eventually

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SECRET = "Pw-for-the-status-page-9f3a"
AXE_VERSION = "4.14.1"
AXE = Path(sys.prefix) / "axe-core" / AXE_VERSION
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
NARROW = 375


def missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} -- CI is set, so this is an error")
    pytest.skip(reason)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium is not installed (make test installs Debian's chromium)")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, installed from the npm registry on first use (npm checks its
    integrity against the registry's)."""
    script = AXE / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            missing("npm is not installed (make test installs Debian's npm)")
        assert npm is not None
        result = subprocess.run(
            [npm, "install", "--prefix", str(AXE), "--no-audit", "--no-fund",
             "--no-package-lock", f"axe-core@{AXE_VERSION}"],
            capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
    return script.read_text()


class Browser:
    """One headless Chromium page, driven over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = iter(range(1, 1_000_000))
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._loaded = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data:
                self._answers.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)
                if data["method"] == "Page.loadEventFired":
                    self._loaded.set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        answer = self._answers[number] = asyncio.get_running_loop().create_future()
        await self._ws.send_json({"id": number, "method": method, "params": params})
        data = await asyncio.wait_for(answer, 60)
        assert "error" not in data, data["error"]
        result: dict[str, Any] = data["result"]
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                                 returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def open(self, url: str, width: int, height: int = 900) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=width < 600)
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._loaded.wait(), 30)

    async def screenshot(self, name: str) -> Path:
        """The whole page as a PNG in test-artifacts/."""
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return await asyncio.to_thread(_keep, name, base64.b64decode(shot["data"]))

    def console_errors(self) -> list[str]:
        """What the page logged as errors or warnings (a style the CSP refused, say)."""
        return [e["params"]["entry"]["text"] for e in self.events
                if e["method"] == "Log.entryAdded"
                and e["params"]["entry"]["level"] in ("error", "warning")]


def _keep(name: str, png: bytes) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(png)
    return path


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-quic",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        try:
            port = await asyncio.wait_for(_devtools_port(proc.stderr), 60)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    pages = [t for t in await response.json() if t["type"] == "page"]
                async with session.ws_connect(pages[0]["webSocketDebuggerUrl"],
                                              max_msg_size=0) as ws:
                    page = Browser(ws)
                    for domain in ("Page", "Runtime", "Log"):
                        await page.send(f"{domain}.enable")
                    yield page
        finally:
            proc.terminate()
            await proc.wait()


async def _devtools_port(stderr: asyncio.StreamReader) -> int:
    """The port from Chromium's ``DevTools listening on ws://127.0.0.1:PORT/...`` line."""
    while line := await stderr.readline():
        found = re.search(rb"DevTools listening on ws://[^:]+:(\d+)/", line)
        if found:
            return int(found.group(1))
    raise AssertionError("chromium exited without a DevTools address")


async def check_page(page: Browser, url: str, name: str, axe: str) -> str:
    """Open ``url`` at 375 px: no sideways scroll, the page's style applied under its CSP,
    nothing logged, no axe violation at WCAG 2 A and AA; keep a screenshot. Returns the
    page's text."""
    await page.open(url, NARROW)
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths == [NARROW, NARROW], f"{name}: the page scrolls sideways at {NARROW} px"
    border = await page.evaluate(
        "getComputedStyle(document.querySelector('.headline')).borderTopWidth")
    assert border == "2px", f"{name}: the page's style did not apply"
    await page.screenshot(f"status-page-{name}-{NARROW}.png")
    await page.evaluate(axe)
    report = await page.evaluate(
        f"axe.run(document, {{runOnly: {{type: 'tag', values: {json.dumps(WCAG)}}}}})"
        ".then(r => r.violations.map(v => ({id: v.id, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' '))})))")
    assert report == [], f"{name}: " + json.dumps(report, indent=2)
    assert page.console_errors() == [], name
    text: str = await page.evaluate("document.body.innerText")
    return text


async def test_a_running_daemons_page(tmp_path, axe_source):
    """The page of a daemon with a failed app: the leader, the bundle and each app with its
    state and reason, the failure named as a problem, no secret; accessible and 375 px wide;
    screenshots kept in test-artifacts/."""
    state = MarathonState(deployment_seconds=0)
    state.load_apps([docker_app("/page/web"), docker_app("/page/pub", image="nginx:1"),
                     docker_app("/page/bad", image=f"{REGISTRY}/Not Valid:1")])
    env = {"REG_PW": SECRET}
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
        settings = settings_from_mapping(daemon_config(sim.url, tmp_path), env)
        async with Daemon(settings, env):
            url = f"http://{settings.server.host}:{settings.server.port}/"
            async with browser() as page:
                text = await check_page(page, url, "daemon", axe_source)
                await page.open(url, 1280)
                wide = await page.screenshot("status-page.png")
    for words in ("marathon-pullsecret-controller", "Needs attention", "leader", REGISTRY,
                  "/page/web", "converged", "/page/pub",
                  "image registry docker.io is not configured", "/page/bad",
                  "1 app failed", "Recent writes and failures", "add the bundle entry"):
        assert words in text, words
    assert SECRET not in text
    assert wide.stat().st_size > 10_000


def troubled_document(now: datetime) -> dict[str, Any]:
    """A leader's ``/status`` with every kind of problem, and long words that must wrap."""
    index = AppIndex(now=lambda: now)
    long_id = "/a-team-with-a-rather-long-group-name/and-an-even-longer-service-name-v2"
    states = {"/t/failed": "failed", "/t/locked": "locked", "/t/conflict": "conflict",
              "/t/stuck": "stuck", "/t/unpullable": "image_unpullable",
              "/t/mystery": "a_state_added_later", "/t/pending": "pending", long_id: "converged"}
    for app_id, app_state in states.items():
        index.set_status(AppId(app_id), AppStatus(
            state=app_state, registry=REGISTRY, detail="add",  # type: ignore[arg-type]
            last_reconcile=now))
    index.fail(AppId("/t/failed"), "cannot write <storage.filesystem.path>/" + "x" * 120)
    index.note_pull_failure(AppId(long_id), PullFailureNote(
        reason="auth", at=now, task_id="t.1", message="unauthorized: authentication required"))
    manifest = BundleManifest(registry=REGISTRY, sha256="ab" * 32, format="config.json",
                              created_at=now, refresh_at=now + timedelta(hours=6),
                              expires_at=None, leader_epoch=4)
    registries = {
        REGISTRY: RegistryState(manifest=manifest, verify="best_effort",
                                credentials_rejected=True, failures=2,
                                login=LoginCheck(result="rejected", at=now, sha256="cd" * 32,
                                                 detail="the registry refused it (401)")),
        "ecr.example.com": RegistryState(failures=3, last_error="GetAuthorizationToken "
                                         "failed: ExpiredToken: the security token expired"),
    }
    return StatusBook(index).snapshot(registries, now, role="leader", leader=True,
                         ready={"synced": True, "marathon": True, "events": False},
                         event_stream={"connected": False}, queue={"depth": 3, "processing": 1},
                         dry_run=False)


STANDBY = {"role": "standby", "leader": False, "ready": {"standby": True},
           "event_stream": {"connected": False}, "queue": None, "dry_run": False,
           "registries": {REGISTRY: {"fingerprint": None, "failures": 0}}, "counts": {},
           "problems": {"total": 0, "apps": []}, "apps": {}, "recent": [],
           "page": {"limit": 500, "after": None, "next": None, "total": 0}}


@contextlib.asynccontextmanager
async def ops_server(documents: dict[str, dict[str, Any]]) -> AsyncIterator[str]:
    """The real ops server, its ``/status`` the document named by ``?after=`` (a test seam:
    the page's links carry it)."""
    app = make_app(collectors=CollectorRegistry(), health=lambda: {"loop": True},
                   ready=lambda: {"ok": True},
                   status=lambda page: documents[page.after or "/"])
    runner = await serve(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_problems_and_a_standby_read_as_such(axe_source):
    """Every kind of problem is named in words under a red headline; a standby says it is
    one, without red; both pass axe and fit 375 px."""
    now = datetime.now(UTC)
    documents = {"/": troubled_document(now), "/standby": STANDBY}
    async with ops_server(documents) as base, browser() as page:
        troubled = await check_page(page, f"{base}/", "problems", axe_source)
        standby = await check_page(page, f"{base}/?after=/standby", "standby", axe_source)
    for words in ("Needs attention: 10 problems.",
                  "The Marathon event stream is disconnected",
                  f"Registry {REGISTRY}: credentials rejected",
                  "Registry ecr.example.com: refresh failing (3x)",
                  "1 app failed", "1 app cannot pull their image", "1 app stuck",
                  "1 app in conflict", "1 app locked", "1 app in state a_state_added_later",
                  "Neither the event stream nor a relist has worked"):
        assert words in troubled, words
    assert "Standby: this replica waits to take over" in standby
    for broken in ("Problem:", "disconnected", "no bundle published"):
        assert broken not in standby, broken


async def test_errors_shown_name_no_local_path(tmp_path):
    """A storage error names the bundle's path (controller/storage/fs.py, here a directory
    stands where the bundle goes); /status and the page show the config key in its place, for
    the registry and for the app that failed for want of a bundle."""
    (tmp_path / "bundles" / bundle_name(REGISTRY)).mkdir(parents=True)
    env = {"REG_PW": SECRET}
    state = MarathonState(deployment_seconds=0)
    state.load_apps([docker_app("/page/web")])
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
        settings = settings_from_mapping(daemon_config(sim.url, tmp_path), env)
        base = f"http://{settings.server.listen}"
        async with Daemon(settings, env), aiohttp.ClientSession() as session:
            async def read(path: str) -> str:
                async with session.get(base + path) as response:
                    return await response.text()

            async def failed() -> bool:
                status = json.loads(await read("/status"))
                return bool(status["registries"][REGISTRY]["failures"]
                            and status["apps"]["/page/web"]["last_error"])

            await eventually(failed, 15, "the storage error to show")
            shown = {path: await read(path) for path in ("/status", "/")}
    assert str(tmp_path) not in shown["/status"] + shown["/"]
    assert "<storage.filesystem.path>" in shown["/status"]
    assert "&lt;storage.filesystem.path&gt;" in shown["/"]
