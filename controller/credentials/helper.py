"""Docker credential helpers (``docker-credential-NAME get``): ecr-login, gcr, acr-env, pass …

The protocol: the server URL on stdin, ``{"ServerURL", "Username", "Secret"}`` on stdout.
Helpers say nothing about expiry, so a helper credential has ``expires_at=None`` and is
re-asked when ``max_age`` is up; the source is still ``expiring`` because helpers mint
short-lived tokens, and asking them on every resync would be slow and noisy.

The helper's output may hold the secret even when it fails, so no error here ever repeats
stdout or stderr: at most the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping

from controller.credentials.base import TOKEN_USERNAME, json_object
from controller.credentials.kinds import HelperCredentials
from controller.errors import CredentialError
from controller.model import RegistryCredential, Secret
from controller.reference import auth_key
from controller.settings import RegistrySettings

__all__ = ["HelperSource", "source"]

class HelperSource:
    """Runs the helper with ``env`` (its PATH finds it; AWS_*, HOME … reach it unchanged)."""

    expiring = True

    def __init__(self, name: str, *, registry: str, env: Mapping[str, str],
                 timeout: float = 10.0) -> None:
        self._command = f"docker-credential-{name}"
        self._registry = registry
        self._env = dict(env)
        self._timeout = timeout

    def _error(self, what: str) -> CredentialError:
        return CredentialError(f"{self._registry}: credential helper {self._command} {what}")

    async def fetch(self) -> RegistryCredential:
        path = await asyncio.to_thread(shutil.which, self._command,
                                      path=self._env.get("PATH", os.defpath))
        if path is None:
            raise self._error("was not found on PATH")
        answer = json_object(await self._run(path))
        if answer is None:
            raise self._error("printed output that is not a JSON object")
        username, secret = answer.get("Username"), answer.get("Secret")
        if not isinstance(username, str) or not username:
            raise self._error("returned no Username")
        if not isinstance(secret, str) or not secret:
            raise self._error("returned no Secret")
        return RegistryCredential(username=username, password=Secret(secret),
                                  identity_token=username == TOKEN_USERNAME)

    async def _run(self, path: str) -> bytes:
        """stdout of ``helper get``; the helper and its children are killed on timeout.

        It runs in its own session so that killing the group also ends a shell script's
        children, which would otherwise keep the pipes open.
        """
        try:
            proc = await asyncio.create_subprocess_exec(
                path, "get", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, env=self._env, start_new_session=True)
        except OSError as e:
            raise self._error(f"could not be started: {e.strerror}") from None
        try:
            async with asyncio.timeout(self._timeout):
                stdout, _ = await proc.communicate(auth_key(self._registry).encode())
        except TimeoutError:
            raise self._error(f"did not answer within {self._timeout:g}s") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if proc.returncode != 0:
            raise self._error(f"exited with status {proc.returncode}")
        return stdout


def source(registry: RegistrySettings, env: Mapping[str, str]) -> HelperSource:
    """The source of ``helper`` credentials (``controller.credentials.kinds``)."""
    creds = registry.credentials
    assert isinstance(creds, HelperCredentials)
    return HelperSource(creds.helper, registry=registry.registry, env=env)
