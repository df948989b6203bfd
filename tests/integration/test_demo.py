"""`pullsecret-controller demo` runs verbatim and tells the story it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.services import free_port


def test_demo_runs_and_rotation_restarts_nothing():
    """The demo converges, rotates without app writes, opts out, closes the loop after a
    rotation at the registry only, and exits 0 on --duration."""
    port = free_port()
    result = subprocess.run(  # the story takes about 6 s; the rest of --duration is idle
        [sys.executable, "-m", "controller", "demo", "--duration", "12",
         "--listen", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=90, check=False)
    out = result.stdout
    assert result.returncode == 0, result.stderr[-3000:] + out[-3000:]
    assert f"metrics: http://127.0.0.1:{port}/metrics" in out
    assert "initial sync done" in out
    assert "/team-a/new got its bundle" in out
    assert "forced one write over it that added only the entry" in out
    assert "Marathon writes during the rotation: 0" in out
    assert "/team-a/web is image_unpullable in /status" in out  # a typo'd tag, caught
    assert "the state cleared" in out
    assert "its bundle entry was removed" in out
    # The loop closed: failed pulls seen and counted, the old password rejected at the registry,
    # the fixed source verified and published, the delay reset, the task running again.
    assert "the controller saw its new task fail to pull" in out
    counted = re.search(r'image_pull_failures_total\{reason="auth"\}: (\d+) -> (\d+)', out)
    assert counted is not None, out[-3000:]
    assert int(counted[2]) > int(counted[1])
    assert "credentials rejected" in out
    assert "nothing published" in out
    assert "login with the new password accepted" in out
    assert "launch delay reset" in out
    assert "(ok)" in out
    assert "/team-b/api is running again" in out
    assert "demo step failed" not in out
    # A reason for every app, short lines, what to try next, and the logs kept apart.
    assert "image registry docker.io is not configured" in out
    assert 'not opted in (label pullsecret.enabled is not "true")' in out
    assert "try next" in out
    assert all(len(line) <= 110 for line in out.splitlines()), "lines fit a terminal"
    assert '"event":' not in out
    log_line = next(line for line in out.splitlines() if "log lines:" in line)
    log_file = Path(log_line.split("log lines: ", 1)[1].split(" ", 1)[0])
    assert '"event": "controller_started"' in log_file.read_text()
    log_file.unlink()
