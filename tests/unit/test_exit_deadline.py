"""The hard bound of a shutdown: a thread stuck in the kernel cannot keep the process alive."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_stuck_thread_does_not_hold_the_process_past_the_deadline():
    """A non-daemon thread that never ends would keep the interpreter waiting for ever on its
    way out; the deadline ends the process with exit code 1 and says so."""
    program = textwrap.dedent("""
        import threading
        from controller.cli import exit_after
        stuck = threading.Thread(target=threading.Event().wait)  # never set: stuck for good
        stuck.start()
        exit_after(0.5)
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 1
    assert '"event": "shutdown_forced"' in result.stderr
