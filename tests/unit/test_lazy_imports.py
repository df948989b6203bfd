"""A backend's library is loaded only when the config names that backend."""

from __future__ import annotations

import subprocess
import sys


def test_wiring_loads_no_optional_backend():
    """Importing the CLI and the wiring loads neither kazoo nor the AWS libraries."""
    code = ("import sys, controller.cli, controller.wiring; "
            "print(sorted(m for m in ('kazoo', 'aiobotocore', 'botocore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_one_shot_pass_loads_no_web_server_nor_jsonschema():
    """What `reconcile --once` imports holds neither the web server (the daemon's alone) nor
    jsonschema (only a config the fast check doubts needs it)."""
    code = ("import sys, controller.cli, controller.wiring, controller.manager; "
            "print(sorted(m for m in ('aiohttp.web', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
