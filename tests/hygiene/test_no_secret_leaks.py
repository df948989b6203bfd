"""No secret leaves the controller except inside a bundle: the whole product at debug level.

One scenario runs every command as an operator would (``check-config``, ``run``, ``plan -v``,
``reconcile --once``, ``bundle -o``) against the Marathon simulator with filesystem storage and
known, distinctive secrets: registry passwords from a file and from the environment, a docker
``config.json`` auth, a Marathon basic-auth password and a DC/OS token. The daemon converges,
has a credential rotated, and meets errors (Marathon 500s, a bad image, unreadable and
half-written credential files). Everything it leaves behind is then searched for each secret
in every form it could leak in (``matcher.py``): every log line, the ops endpoints, the
commands' output, the app definitions Marathon stores, and every file in the directories it
used. Only the bundles may hold the credential, and they must be mode 0600.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import os
import signal
import stat
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.plan import bundle_name, is_managed_uri
from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import LABEL, config_doc, docker_app, registry_entry, write_config
from tests.hygiene.matcher import KnownSecret, find_leaks
from tests.services import eventually, free_port

FILE_REG = "file.registry.test:5000"
ENV_REG = "env.registry.test:5000"
CFG_REG = "cfg.registry.test:5000"
REGISTRIES = (FILE_REG, ENV_REG, CFG_REG)

# Distinctive values with characters that make every encoding differ from the raw text.
FILE_PW = KnownSecret("FilePw~~~???+/: @one-Kq73", username="robot-file")
FILE_PW_ROTATED = KnownSecret("FileRot~~~???+/: @two-Lw19", username="robot-file")
ENV_PW = KnownSecret("EnvPw~~~???+/: @three-Mz55", username="robot-env")
CFG_PW = KnownSecret("CfgPw~~~???+/: @four-Nb08", username="robot-cfg")
CFG_PW_ROTATED = KnownSecret("CfgRot~~~???+/: @five-Pc44", username="robot-cfg")
MARATHON_PW = KnownSecret("MarathonPw~~~???+/: @six-Qd21", username="ops")
DCOS_TOKEN = KnownSecret("DcosToken~~~???+/: @seven-Rf90")
SECRETS = {
    "registry password from password_file": FILE_PW,
    "rotated registry password from password_file": FILE_PW_ROTATED,
    "registry password from password_env": ENV_PW,
    "docker config.json auth": CFG_PW,
    "rotated docker config.json auth": CFG_PW_ROTATED,
    "Marathon basic-auth password": MARATHON_PW,
    "DC/OS token": DCOS_TOKEN,
}
SECONDS = 30.0
ENDPOINTS = ("/", "/status", "/metrics", "/healthz", "/readyz")
"""Every path of the ops listener (``/`` is the status page, where the version has one)."""
MOMENTS = ("converged", "failing", "rotated")


@dataclass
class Captured:
    """Everything the scenario saw, by name; the files it left, by path."""

    outputs: dict[str, bytes] = field(default_factory=dict)
    """stdout and stderr of every command, by ``<command> stdout|stderr``."""
    endpoints: dict[str, bytes] = field(default_factory=dict)
    marathon: dict[str, bytes] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    """``/status`` as JSON, by the moment it was read."""
    bundles: dict[Path, str] = field(default_factory=dict)
    """Each bundle file and the registry whose credential it must hold."""
    files: dict[Path, bytes] = field(default_factory=dict)
    """Every other file left in the scenario's directories, unpacked when it is an archive."""

    def log_events(self, command: str) -> list[dict[str, Any]]:
        lines = self.outputs[f"{command} stderr"].decode(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def docker_config(registry: str, secret: KnownSecret) -> bytes:
    auth = base64.b64encode(f"{secret.username}:{secret.value}".encode()).decode()
    return json.dumps({"auths": {registry: {"auth": auth}}}).encode()


class Layout:
    """The scenario's directories: the secrets it plants, and where the controller works."""

    def __init__(self, root: Path) -> None:
        self.secrets = root / "secrets"
        self.work = root / "work"
        self.home, self.tmp, self.cwd = (self.work / n for n in ("home", "tmp", "cwd"))
        self.bundles, self.out = self.work / "bundles", self.work / "out"
        for directory in (self.secrets, self.home, self.tmp, self.cwd, self.out):
            directory.mkdir(parents=True)
        self.password_file = self.secrets / "registry-password"
        self.docker_config = self.secrets / "config.json"
        self.marathon_password = self.secrets / "marathon-password"
        self.password_file.write_text(FILE_PW.value + "\n")
        self.docker_config.write_bytes(docker_config(CFG_REG, CFG_PW))
        self.marathon_password.write_text(MARATHON_PW.value)
        self.port = free_port()
        self.env = {**os.environ, "REG_PW": ENV_PW.value, "DCOS_TOKEN": DCOS_TOKEN.value,
                    "HOME": str(self.home), "TMPDIR": str(self.tmp)}

    def config(self, url: str, auth: dict[str, str], name: str) -> str:
        document = config_doc(
            url, self.bundles, marathon={"timeout_seconds": 5, "auth": auth},
            registries=[
                {"host": FILE_REG, "credentials": {"username": FILE_PW.username,
                                                   "password_file": str(self.password_file)}},
                registry_entry(ENV_REG, username=ENV_PW.username),
                {"host": CFG_REG, "credentials": {"docker_config": str(self.docker_config)}},
            ],
            reconcile={"resync_seconds": 1, "max_writes_per_second": 1000,
                       "write_burst": 1000, "shutdown_timeout_seconds": 5},
            server={"listen": f"127.0.0.1:{self.port}"},
            logging={"level": "debug", "format": "json"},
        )
        # beside the secrets: not a file the controller writes
        return str(write_config(self.secrets, document, name))


class Command:
    """One controller command as operators run it, its output read as it comes."""

    def __init__(self, layout: Layout, captured: Captured, name: str, *args: str) -> None:
        self.layout, self.captured, self.name, self.args = layout, captured, name, args
        self.stdout, self.stderr = bytearray(), bytearray()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller", *self.args, env=self.layout.env,
            cwd=self.layout.cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.readers = [asyncio.create_task(self._read(self.proc.stdout, self.stdout)),
                        asyncio.create_task(self._read(self.proc.stderr, self.stderr))]

    @staticmethod
    async def _read(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into.extend(chunk)

    def logged(self, event: str) -> bool:
        return f'"event": "{event}"'.encode() in self.stderr

    async def wait(self) -> None:
        try:
            await asyncio.wait_for(self.proc.wait(), SECONDS)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            await asyncio.gather(*self.readers)
            self.captured.outputs[f"{self.name} stdout"] = bytes(self.stdout)
            self.captured.outputs[f"{self.name} stderr"] = bytes(self.stderr)
            self.captured.exit_codes[self.name] = self.proc.returncode

    async def run(self) -> None:
        await self.start()
        await self.wait()


class Endpoints:
    def __init__(self, session: aiohttp.ClientSession, port: int, captured: Captured) -> None:
        self.session, self.base, self.captured = session, f"http://127.0.0.1:{port}", captured
        self.status: dict[str, Any] = {}

    async def get(self, path: str) -> tuple[int, bytes]:
        try:
            async with self.session.get(self.base + path,
                                        timeout=aiohttp.ClientTimeout(total=5)) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError):
            return 0, b""

    async def capture(self, moment: str) -> None:
        for path in ENDPOINTS:
            _, body = await self.get(path)
            self.captured.endpoints[f"{path} ({moment})"] = body
        self.captured.status[moment] = json.loads(self.captured.endpoints[f"/status ({moment})"])

    async def poll_status(self, check: Callable[[dict[str, Any]], bool], what: str) -> None:
        async def fresh() -> bool:
            code, body = await self.get("/status")
            self.status = json.loads(body) if code == 200 else {}
            return bool(self.status) and check(self.status)

        try:
            async with asyncio.timeout(SECONDS):
                while not await fresh():
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


def registry_status(status: dict[str, Any], registry: str) -> dict[str, Any]:
    return dict(status.get("registries", {}).get(registry) or {})


async def scenario(layout: Layout, captured: Captured) -> None:
    state = MarathonState(deployment_seconds=0.05)
    opted_in = [docker_app(f"/hyg/{reg.split('.')[0]}-{i}", f"{reg}/team/app:{i}")
                for reg in REGISTRIES for i in range(2)]
    state.load_apps([*opted_in, docker_app("/hyg/public", "nginx:1"),
                     docker_app("/hyg/not-opted-in", f"{FILE_REG}/team/x:1", opted_in=False)])
    user = MARATHON_PW.username or ""
    async with MarathonSimulator(state, credentials=(user, MARATHON_PW.value),
                                 token=DCOS_TOKEN.value, heartbeat_seconds=0.5) as sim, \
            aiohttp.ClientSession() as session:
        basic = layout.config(sim.url, {"username": user,
                                        "password_file": str(layout.marathon_password)},
                              "config-basic.yaml")
        token = layout.config(sim.url, {"token_env": "DCOS_TOKEN"}, "config-token.yaml")
        for name, config in (("basic", basic), ("token", token)):
            await Command(layout, captured, f"check-config ({name})", "check-config",
                          "--config", config).run()

        daemon = Command(layout, captured, "run", "run", "--config", basic)
        endpoints = Endpoints(session, layout.port, captured)
        await daemon.start()
        try:
            await daemon_phase(state, daemon, endpoints, layout)
        finally:
            daemon.proc.send_signal(signal.SIGTERM)
            await daemon.wait()

        await Command(layout, captured, "plan -v", "plan", "-v", "--config", token).run()
        await Command(layout, captured, "reconcile --once", "reconcile", "--once",
                      "--config", token).run()
        await Command(layout, captured, "bundle -o", "bundle", "--registry", FILE_REG,
                      "-o", str(layout.out / "docker.tar.gz"), "--config", token).run()
        layout.password_file.write_bytes(b"\xff" + FILE_PW_ROTATED.value.encode())
        await Command(layout, captured, "bundle -o (unreadable password file)", "bundle",
                      "--registry", FILE_REG, "-o", str(layout.out / "broken.tar.gz"),
                      "--config", token).run()
        captured.marathon["app definitions"] = json.dumps(state.list_apps()).encode()
        captured.marathon["write log"] = json.dumps(
            [{"path": w.path, "query": w.query, "body": w.body} for w in state.writes]).encode()


async def daemon_phase(state: MarathonState, daemon: Command, endpoints: Endpoints,
                       layout: Layout) -> None:
    """Converge, rotate, fail in several ways, recover; capture the endpoints on the way."""
    labelled = [a["id"] for a in state.list_apps(label=LABEL)
                if a["labels"][LABEL] == "true" and a["id"] != "/hyg/public"]

    def converged() -> bool:
        return all(any(is_managed_uri(e["uri"]) for e in state.get_app(a).get("fetch", []))
                   for a in labelled) and not state.list_deployments()

    await eventually(converged, SECONDS, "the opted-in apps to get their bundles")
    await endpoints.poll_status(lambda s: all(registry_status(s, r).get("fingerprint")
                                              for r in REGISTRIES), "every bundle")
    await endpoints.capture("converged")
    before = {r: registry_status(endpoints.status, r)["fingerprint"] for r in REGISTRIES}

    state.fail_next("^/v2/apps$", 500, count=2, method="GET")
    state.add_app(docker_app("/hyg/bad-image", "Bad//Image:1"))
    layout.password_file.write_bytes(b"\xff" + FILE_PW.value.encode())  # not UTF-8
    layout.docker_config.write_bytes(docker_config(CFG_REG, CFG_PW)[:-12])  # half-written
    await eventually(lambda: daemon.logged("marathon_request_retrying"), SECONDS, "a retried 500")
    await endpoints.poll_status(
        lambda s: all(registry_status(s, r).get("failures") for r in (FILE_REG, CFG_REG))
        and (s["apps"].get("/hyg/bad-image") or {}).get("state") == "failed",
        "the credential files and the bad image to fail")
    await endpoints.capture("failing")

    layout.password_file.write_text(FILE_PW_ROTATED.value + "\n")
    layout.docker_config.write_bytes(docker_config(CFG_REG, CFG_PW_ROTATED))
    await endpoints.poll_status(
        lambda s: all(registry_status(s, r).get("fingerprint") not in (None, before[r])
                      and not registry_status(s, r).get("failures") for r in (FILE_REG, CFG_REG)),
        "the rotated credentials to be published")
    await endpoints.capture("rotated")


def unpacked(data: bytes) -> bytes:
    """``data``, plus the members of the archive it is (gzip, tar, or both)."""
    parts = [data]
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
        parts.append(data)
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            parts += [f.read() for m in tar.getmembers() if (f := tar.extractfile(m))]
    except tarfile.TarError:
        pass
    return b"\n".join(parts)


def collect_files(layout: Layout, captured: Captured) -> None:
    bundles = {layout.bundles / bundle_name(r): r for r in REGISTRIES}
    bundles[layout.out / "docker.tar.gz"] = FILE_REG
    for path in sorted(p for p in layout.work.rglob("*") if p.is_file()):
        if path in bundles:
            captured.bundles[path] = bundles[path]
        else:
            captured.files[path] = unpacked(path.read_bytes())


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Captured:
    layout = Layout(tmp_path_factory.mktemp("hygiene"))
    result = Captured()
    asyncio.run(scenario(layout, result))
    collect_files(layout, result)
    return result


def leaks(named: dict[str, bytes]) -> list[str]:
    return [leak for name, data in named.items() for leak in find_leaks(data, SECRETS, where=name)]


class TestScenario:
    def test_every_command_ran_and_every_path_was_taken(self, captured: Captured) -> None:
        """The scenario did what the leak checks rely on: converged, failed, rotated, exited."""
        codes = dict(captured.exit_codes)
        assert codes.pop("bundle -o (unreadable password file)") not in (0, None)
        assert codes == {
            "check-config (basic)": 0, "check-config (token)": 0, "run": 0,
            "plan -v": 0, "reconcile --once": 0,  # the bad image is listed as invalid
            "bundle -o": 0,
        }
        events = captured.log_events("run")
        assert {e["level"] for e in events} >= {"info", "warning"}
        names = {e["event"] for e in events}
        assert {"bundle_published", "marathon_request_retrying", "bundle_refresh_failed",
                "controller_stopped"} <= names
        assert any(e.get("app_id") == "/hyg/bad-image" and e.get("outcome") == "error"
                   for e in events)
        converged, rotated = captured.status["converged"], captured.status["rotated"]
        for registry in (FILE_REG, CFG_REG):
            assert (registry_status(converged, registry)["fingerprint"]
                    != registry_status(rotated, registry)["fingerprint"])


class TestNoSecretLeaks:
    def test_no_log_line_or_command_output_holds_a_secret(self, captured: Captured) -> None:
        """stderr and stdout of every command, tracebacks included, hold no secret."""
        assert captured.outputs
        assert leaks(captured.outputs) == []

    def test_no_ops_endpoint_holds_a_secret(self, captured: Captured) -> None:
        """/status, /metrics, /healthz and /readyz, read at every stage, hold no secret."""
        assert len(captured.endpoints) == len(ENDPOINTS) * len(MOMENTS)
        assert leaks(captured.endpoints) == []

    def test_marathon_stores_no_secret(self, captured: Captured) -> None:
        """The app definitions and every write body Marathon received hold no secret."""
        assert leaks(captured.marathon) == []

    def test_no_other_file_holds_a_secret(self, captured: Captured) -> None:
        """Manifests, temp files and anything else left behind hold no secret."""
        assert any(path.suffix == ".json" for path in captured.files)  # the manifests
        assert leaks({str(p): data for p, data in captured.files.items()}) == []


class TestBundles:
    def test_bundles_are_readable_by_the_owner_only(self, captured: Captured) -> None:
        """Every published bundle and the ``bundle -o`` output are mode 0600."""
        assert len(captured.bundles) == len(REGISTRIES) + 1
        modes = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in captured.bundles}
        assert set(modes.values()) == {"0o600"}, modes

    def test_bundles_hold_their_registry_credential(self, captured: Captured) -> None:
        """The matcher finds each bundle's credential in it (so it would find a leak too)."""
        current = {FILE_REG: "rotated registry password from password_file",
                   ENV_REG: "registry password from password_env",
                   CFG_REG: "rotated docker config.json auth"}
        for path, registry in captured.bundles.items():
            found = find_leaks(unpacked(path.read_bytes()), SECRETS, where="bundle")
            assert f"bundle: {current[registry]} appears base64(username:password)" in found
