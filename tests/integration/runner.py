"""The controller as the integration tests run it: the daemon (``run``) as a task of the
test's loop with the config it runs with, or a command as its own process (``cli``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from controller.config import settings_from_mapping
from controller.manager import Term, run
from controller.plan import is_managed_uri
from controller.settings import Settings
from controller.simulator import MarathonState
from tests.factories import REGISTRY, config_doc, filesystem_storage
from tests.services import HOST, Registry, free_port


async def cli(*args: str | os.PathLike[str], env: dict[str, str] | None = None
              ) -> tuple[int, str, str]:
    """Run ``python -m controller *args`` with ``env`` added to ours; exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", *args, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def daemon_config(marathon_url: str, tmp_path: Path, *, hosts: Iterable[str] = (REGISTRY,),
                  **reconcile: Any) -> dict[str, Any]:
    """A config for the daemon: bundles in ``tmp_path/bundles``, a free ops port, resync only
    every five minutes (so a test sees events and relists it asks for), writes unthrottled;
    ``reconcile`` adds or replaces keys of that section."""
    return config_doc(
        marathon_url, tmp_path / "bundles", hosts=hosts, marathon={"timeout_seconds": 5},
        reconcile={"resync_seconds": 300, "max_writes_per_second": 1000, "write_burst": 1000,
                   **reconcile},
        server={"listen": f"{HOST}:{free_port()}"},
    )


def registry_daemon_settings(marathon_url: str, registry: Registry, password_file: Path,
                             tmp_path: Path, listen: str, *,
                             sections: Mapping[str, Any] | None = None,
                             **registry_keys: Any) -> Settings:
    """Settings for the daemon serving the real ``registry`` with the password in
    ``password_file``: bundles in ``tmp_path/bundles``, writes unthrottled; ``registry_keys``
    are added to the registry's entry (``verify="required"``), ``sections`` to the config
    (``{"remediation": {...}}``)."""
    return settings_from_mapping({
        "marathon": {"urls": [marathon_url], "timeout_seconds": 5},
        "registries": [{"host": registry.host, **registry_keys,
                        "credentials": {"username": registry.username,
                                        "password_file": str(password_file)}}],
        "storage": filesystem_storage(tmp_path / "bundles"),
        "reconcile": {"max_writes_per_second": 1000, "write_burst": 1000},
        "server": {"listen": listen},
        **(sections or {}),
    }, {})


def bundle_uris(state: MarathonState, app_id: str) -> list[str]:
    """The app's fetch URIs that name a bundle of ours."""
    return [e["uri"] for e in state.get_app(app_id).get("fetch", []) if is_managed_uri(e["uri"])]


class Daemon:
    """The daemon running as a task of this test's loop; entered once its first sync is done,
    left once it has stopped with exit code 0."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.settings = settings
        self.env = env
        self.stop = asyncio.Event()
        self.handle: Term | None = None
        self.task: asyncio.Task[int] | None = None

    async def __aenter__(self) -> Daemon:
        started = asyncio.Event()

        def on_started(handle: Term) -> None:
            self.handle = handle
            started.set()

        self.task = asyncio.create_task(run(self.settings, self.env, stop=self.stop,
                                            started=on_started))
        async with asyncio.timeout(10):
            await started.wait()
            assert self.handle is not None
            await self.handle.source.synced.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        assert await asyncio.wait_for(self.task, 15) == 0


class Ops:
    """The daemon's ops port, read as an operator would."""

    def __init__(self, session: aiohttp.ClientSession, listen: str, registry: str) -> None:
        """``registry`` is the one whose ``/status`` entry and metric series are read."""
        self.base = f"http://{listen}"
        self.session = session
        self.registry = registry

    async def text(self, path: str) -> str:
        async with self.session.get(self.base + path) as response:
            assert response.status == 200
            return await response.text()

    async def document(self) -> dict[str, Any]:
        """The whole ``/status`` document."""
        return dict(json.loads(await self.text("/status")))

    async def status(self) -> dict[str, Any]:
        """The registry's entry in ``/status``."""
        return dict((await self.document())["registries"][self.registry])

    async def metric(self, name: str, **labels: str) -> float | None:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(
            {"registry": self.registry, **labels}.items()))
        for line in (await self.text("/metrics")).splitlines():
            series, _, value = line.rpartition(" ")
            if series == f"marathon_pullsecret_{name}{{{wanted}}}":
                return float(value)
        return None
