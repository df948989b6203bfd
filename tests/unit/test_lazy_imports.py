"""A backend's library is loaded only when the config names that backend."""

from __future__ import annotations

import subprocess
import sys


def test_wiring_loads_no_optional_backend():
    """Importing the CLI and the wiring loads neither kazoo nor the AWS libraries."""
    code = ("import sys, controller.cli, controller.app; "
            "print(sorted(m for m in ('kazoo', 'aiobotocore', 'botocore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
