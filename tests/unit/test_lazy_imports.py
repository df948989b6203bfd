"""A library is loaded only where it is needed: a backend's only when the config names that
backend, PyYAML only by the config loader."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import controller.credentials
import controller.marathon
import controller.registryapi
import controller.storage

ADAPTERS = [module.name for package in (controller.marathon, controller.registryapi,
                                        controller.credentials, controller.storage)
            for module in pkgutil.iter_modules(package.__path__, package.__name__ + ".")]


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


@pytest.mark.parametrize("module", ADAPTERS)
def test_adapter_loads_no_yaml(module):
    """The Marathon client and each credential and storage module load no PyYAML: a secret
    file is read with ``controller.files``, not with the config loader's help."""
    code = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'yaml'))")
    out = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
