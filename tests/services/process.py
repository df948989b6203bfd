"""Server processes for the tests: free loopback ports, spawning, readiness and polling.

Nothing here imports pytest: a missing binary raises ``ServiceUnavailable`` and the fixtures in
``tests/conftest.py`` turn that into a skip (or a failure when ``CI`` is set).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"

STOP_GRACE_S = 5.0
_live: list[subprocess.Popen[bytes]] = []


class ServiceUnavailable(RuntimeError):
    """A binary or file a service needs is not installed on this machine."""


class ServiceStartError(RuntimeError):
    """A service was installed but did not become ready; the message carries its log tail."""


def free_port() -> int:
    """Ask the kernel for a free loopback port (bind to 0), so parallel runs never collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A loopback port something listens on while the block runs, for a test of what a
    program says when its port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield sock.getsockname()[1]


def find_binary(name: str, hint: str) -> str:
    """Return the absolute path of ``name`` on PATH or raise ``ServiceUnavailable``."""
    path = shutil.which(name)
    if path is None:
        raise ServiceUnavailable(f"{name!r} not found on PATH (install {hint})")
    return path


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment so no ambient variable (REGISTRY_*, DOCKER_CONFIG, proxies...)
    changes how a service or tool behaves."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": tempfile.gettempdir(),
    }
    env.update(extra)
    return env


def scrub_secrets(text: str, *secrets_: str) -> str:
    """Replace each given secret with ``***`` in text that may end up in a test report."""
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass
class ServiceProcess:
    """A started server process and its log file; ``stop`` is idempotent."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 30) -> str:
        """The end of the log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate, then kill after a grace period; always reap the process."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_GRACE_S)
        with contextlib.suppress(ValueError):
            _live.remove(self.popen)


def spawn(
    name: str, port: int, argv: list[str], log_path: Path, env: dict[str, str]
) -> ServiceProcess:
    """Start a server listening on ``port`` with stdout+stderr going to ``log_path``."""
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    _live.append(popen)
    return ServiceProcess(name=name, port=port, popen=popen, log_path=log_path)


@atexit.register
def _kill_leftovers() -> None:
    """Backstop for interrupted sessions: no server outlives the interpreter."""
    for popen in list(_live):
        if popen.poll() is None:
            popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=STOP_GRACE_S)


def wait_until(
    ready: Callable[[], bool], proc: ServiceProcess, *, timeout: float, what: str
) -> float:
    """Poll ``ready`` until it is true; fail fast if the process exits; returns seconds taken."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if ready():
            return time.monotonic() - start
        if proc.popen.poll() is not None:
            raise ServiceStartError(
                f"{proc.name} exited with {proc.popen.returncode} before {what}; "
                f"log {proc.log_path}:\n{proc.tail()}"
            )
        if time.monotonic() >= deadline:
            raise ServiceStartError(
                f"{proc.name} not ready ({what}) after {timeout:.0f}s; "
                f"log {proc.log_path}:\n{proc.tail()}"
            )
        time.sleep(0.05)


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """HTTP status of GET ``url`` (errors included), or None if nothing answers yet."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as err:
        err.close()
        return err.code
    except OSError:  # includes URLError: nothing listening yet
        return None


def start_with_port_retry(
    start: Callable[[int], ServiceProcess], attempts: int = 3
) -> ServiceProcess:
    """Retry on a fresh port if another process grabbed ours between probe and bind."""
    last: ServiceStartError | None = None
    for _ in range(attempts):
        try:
            return start(free_port())
        except ServiceStartError as err:
            if "address already in use" not in str(err).lower():
                raise
            last = err
    assert last is not None
    raise last


def spawn_ready(
    name: str,
    port: int,
    argv: list[str],
    log_path: Path,
    env: dict[str, str],
    *,
    ready: Callable[[], bool],
    timeout: float,
    what: str,
) -> ServiceProcess:
    """``spawn``, then ``wait_until`` ``ready``; the process is stopped if it never gets ready."""
    proc = spawn(name, port, argv, log_path, env)
    try:
        wait_until(ready, proc, timeout=timeout, what=what)
    except BaseException:
        proc.stop()
        raise
    return proc


async def eventually(
    check: Callable[[], Any], timeout: float = 10.0, what: str = "the condition"
) -> float:
    """Poll a sync or async ``check`` every 50 ms until it is true; returns the seconds it took.

    Raises ``AssertionError`` naming ``what`` after ``timeout`` seconds.
    """
    started = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(0.05)
