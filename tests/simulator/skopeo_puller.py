"""A ``Puller`` for the simulated agent that asks a real registry: ``skopeo inspect`` with
``HOME=<sandbox>``, so the sandbox's ``.docker/config.json`` (or ``.dockercfg``) is the only
credential it has, as for ``docker pull`` on a Mesos agent (see ``tests.services.skopeo_inspect``).

skopeo speaks for containers/image, not for the Docker daemon, so its logrus line is turned into
the daemon's shape (``Error response from daemon: <cause>``); the cause is the registry's own
answer, e.g. ``unauthorized: authentication required``.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from controller.simulator import FailedPull
from tests.services import skopeo_inspect

_LOGRUS_MESSAGE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_SKOPEO_PREFIX = re.compile(r'^Error parsing image name "[^"]*": ')


def daemon_stderr(skopeo_stderr: str) -> str:
    """``Error response from daemon: CAUSE`` from skopeo's ``level=fatal msg="…: CAUSE"``."""
    found = _LOGRUS_MESSAGE.search(skopeo_stderr)
    text = found.group(1).encode().decode("unicode_escape") if found else skopeo_stderr.strip()
    return f"Error response from daemon: {_SKOPEO_PREFIX.sub('', text)}\n"


class SkopeoPuller:
    """Pulls (inspects) over plain HTTP with ``--tls-verify=false``: the test registry is local."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.pulls: list[str] = []

    async def pull(self, image: str, home: Path) -> FailedPull | None:
        self.pulls.append(image)
        result = await asyncio.to_thread(skopeo_inspect, image, home, timeout=self.timeout)
        return None if result.returncode == 0 else FailedPull(daemon_stderr(result.stderr))
