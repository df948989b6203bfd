"""`pullsecret-controller demo` runs verbatim and tells the story it promises."""

from __future__ import annotations

import socket
import subprocess
import sys


def test_demo_runs_and_rotation_restarts_nothing():
    """The demo converges, rotates without app writes, opts out, and exits 0 on --duration."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "controller", "demo", "--duration", "8",
         "--listen", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60, check=False)
    out = result.stdout
    assert result.returncode == 0, result.stderr[-3000:] + out[-3000:]
    assert f"metrics: http://127.0.0.1:{port}/metrics" in out
    assert "initial sync done" in out
    assert "/team-a/new got its bundle" in out
    assert "Marathon writes during the rotation: 0" in out
    assert "its bundle entry was removed" in out
    assert "demo step failed" not in out
