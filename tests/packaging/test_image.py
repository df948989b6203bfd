"""What the container image runs, without a Docker engine: the HEALTHCHECK command against a
real HTTP server on the port a config names, and the build stage's cleanup over a real venv.

The commands are taken from the Dockerfile's text (tests/packaging/test_packaging.py parses it),
so a change to the Dockerfile is what gets tested.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import Distribution, distribution
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.packaging.test_packaging import (
    ROOT,
    copy_sources,
    dockerfile_instructions,
    run_commands,
    stage_instructions,
)
from tests.services import free_port

VENV = "/opt/venv"
HELPERS_DIR = "/opt/credential-helpers"


def runtime_env() -> dict[str, str]:
    """The runtime stage's ENV settings (``$PATH`` left as written)."""
    runtime = list(stage_instructions().values())[-1]
    return dict(word.split("=", 1) for keyword, args in runtime if keyword == "ENV"
                for word in shlex.split(args))


def healthcheck_command() -> list[str]:
    (check,) = [v for k, v in dockerfile_instructions() if k == "HEALTHCHECK"]
    argv: list[str] = json.loads(check.partition(" CMD ")[2])
    return argv


# -- HEALTHCHECK -----------------------------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output stays clean."""


@contextmanager
def health_server(status: int) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 whose /healthz answers ``status``; yields its port."""
    handler = type("Handler", (_Health,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run_healthcheck(config: Path) -> subprocess.CompletedProcess[str]:
    """The HEALTHCHECK command as the image runs it, with this venv's python."""
    program, *args = healthcheck_command()
    assert program == "python"
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=30,
                          check=False, env={"HEALTHCHECK_CONFIG": str(config)})


def write_config(tmp_path: Path, listen: str) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"server": {"listen": listen}, "marathon": {
        "urls": ["http://marathon.mesos:8080"]}}))
    return config


class TestHealthcheck:
    @pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
    def test_asks_the_configured_port(self, tmp_path: Path, host: str) -> None:
        """server.listen on another port than 9102: the check asks that port and passes."""
        with health_server(200) as port:
            assert port != 9102
            result = run_healthcheck(write_config(tmp_path, f"{host}:{port}"))
        assert result.returncode == 0, result.stderr

    def test_fails_when_healthz_says_unhealthy(self, tmp_path: Path) -> None:
        """/healthz answering 503 (a dead worker) fails the check."""
        with health_server(503) as port:
            result = run_healthcheck(write_config(tmp_path, f"0.0.0.0:{port}"))
        assert result.returncode != 0
        assert "503" in result.stderr

    def test_fails_when_nothing_listens_there(self, tmp_path: Path) -> None:
        """A port nobody listens on fails the check (the connection is refused)."""
        result = run_healthcheck(write_config(tmp_path, f"0.0.0.0:{free_port()}"))
        assert result.returncode != 0
        assert "refused" in result.stderr.lower()

    def test_reads_the_config_the_image_runs(self) -> None:
        """HEALTHCHECK_CONFIG is the file the default command runs with."""
        cmd = json.loads(dict(dockerfile_instructions())["CMD"])
        assert cmd[cmd.index("--config") + 1] == runtime_env()["HEALTHCHECK_CONFIG"]


# -- the build ------------------------------------------------------------------------------------


def test_build_context_builds_a_wheel_without_warnings(tmp_path: Path) -> None:
    """What the build stage copies is enough for setuptools: a wheel builds from those files
    alone (offline, with this venv's setuptools) and says nothing is missing or deprecated (a
    license file pyproject.toml names but the build lacks is a warning now, an error from
    2027-02-18)."""
    src = tmp_path / "src"
    for source in copy_sources():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, src / source,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (src / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, src / source)
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel",
                             "--outdir", str(tmp_path / "dist"), str(src)],
                            capture_output=True, text=True, timeout=300, check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "did not match" not in log
    assert "deprecated" not in log.lower(), log[-3000:]


# -- credential helpers ----------------------------------------------------------------------------


def test_helper_directory_is_on_path_after_the_venv() -> None:
    """The credential helper mount point is on PATH, after the venv's bin (so a mounted file
    cannot stand in for the controller or its Python)."""
    path = runtime_env()["PATH"].split(":")
    assert path.index(f"{VENV}/bin") < path.index(HELPERS_DIR)
    assert path[-1] == "$PATH"


# -- third-party test suites -----------------------------------------------------------------------


def cleanup_command() -> list[str]:
    """The build stage's command that deletes test suites from the venv."""
    (command,) = [c for c in run_commands(stage_instructions()["build"])
                  if c[0] == "find" and "tests" in c]
    return command


def runtime_distributions() -> list[Distribution]:
    """The controller's runtime dependencies (their closure, no extras), as installed here."""
    seen: dict[str, Distribution] = {}
    todo = ["marathon-pullsecret-controller"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen[name] = found = distribution(name)
        for text in found.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    del seen["marathon-pullsecret-controller"]  # installed editable here; imported from ROOT
    return list(seen.values())


@pytest.fixture(scope="module")
def stripped_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """A real venv holding the image's third-party packages, after the Dockerfile's cleanup ran
    over it as over /opt/venv; and the test directories it had before."""
    root = tmp_path_factory.mktemp("image") / "opt" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   timeout=120)
    (site,) = root.glob("lib/python*/site-packages")
    for dist in runtime_distributions():
        for file in dist.files or []:
            if file.parts[0] != "..":  # scripts in bin/ are not needed to import
                (site / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(str(dist.locate_file(file))), site / file)
    before = {str(p.relative_to(site)) for p in site.rglob("tests") if p.is_dir()}
    command = [word.replace(VENV, str(root)) for word in cleanup_command()]
    subprocess.run(command, check=True, timeout=120)
    return root, before


def test_cleanup_deletes_every_bundled_test_suite(stripped_venv: tuple[Path, set[str]]) -> None:
    """Packages that ship tests (kazoo, jsonschema, ...) had them; none is left after."""
    root, before = stripped_venv
    assert {"kazoo/tests", "jsonschema/tests"} <= before
    assert [str(p) for p in root.rglob("tests") if p.is_dir()] == []


def test_cleanup_keeps_what_the_controller_imports(stripped_venv: tuple[Path, set[str]]) -> None:
    """After the cleanup, every controller module and the libraries it loads on demand (kazoo,
    aiobotocore, jsonschema) still import with the venv's interpreter."""
    root, _ = stripped_venv
    script = ("import importlib, pkgutil, controller, kazoo.client, kazoo.recipe.lock, "
              "aiobotocore.session, jsonschema\n"
              "for module in pkgutil.walk_packages(controller.__path__, 'controller.'):\n"
              "    if module.name != 'controller.__main__':\n"
              "        importlib.import_module(module.name)\n")
    result = subprocess.run([str(root / "bin" / "python"), "-c", script], capture_output=True,
                            text=True, timeout=120, check=False,
                            env={"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
