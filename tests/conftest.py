"""Shared fixtures: real services (see tests/services/), each started lazily once per session,
and a guard that fails an async test which leaves tasks running.

A missing binary skips the tests that need it, except under ``CI`` where it fails them: CI
installs the packages, so a skip there would hide a broken setup.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import NoReturn, Protocol, TypeVar

import pytest
import structlog
from hypothesis import settings
from pytest_asyncio import is_async_test

from tests import leaks, services

# Properties assert what holds, never how fast: a shared or loaded machine must not fail them.
settings.register_profile("project", deadline=None)
settings.load_profile("project")


class _Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Stoppable)


def _unavailable(reason: str) -> NoReturn:
    """Skip locally, fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} -- CI is set, so a missing service is an error", pytrace=False)
    pytest.skip(reason)


def _start(start: Callable[[Path], S], workdir: Path) -> S:
    try:
        return start(workdir)
    except services.ServiceUnavailable as err:
        reason = str(err)
    _unavailable(reason)  # outside the except block: no chained traceback in the report


def _serve(start: Callable[[Path], S], factory: pytest.TempPathFactory, name: str) -> Iterator[S]:
    """Start a service in a fresh directory for the fixture's scope, stop it afterwards."""
    service = _start(start, factory.mktemp(name))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Registry]:
    """docker-registry with htpasswd auth; ``image``/``other_image`` are already pushed."""
    yield from _serve(services.start_registry, tmp_path_factory, "registry")


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.TokenRegistry]:
    """docker-registry with ``auth: token`` and its token service; two images pushed."""
    yield from _serve(services.start_token_registry, tmp_path_factory, "token-registry")


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.ZooKeeper]:
    """A standalone ZooKeeper; connect with ``KazooClient(hosts=zookeeper.hosts)``."""
    yield from _serve(services.start_zookeeper, tmp_path_factory, "zookeeper")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.MotoServer]:
    """moto in server mode; sets no AWS env -- use ``moto_server.aws_env()``/``client_kwargs()``."""
    yield from _serve(services.start_moto, tmp_path_factory, "moto")


@pytest.fixture
def aws(moto_server: services.MotoServer, monkeypatch: pytest.MonkeyPatch) -> services.MotoServer:
    """moto, with this test's environment pointing the AWS SDKs at it."""
    for name, value in moto_server.aws_env().items():
        monkeypatch.setenv(name, value)
    return moto_server


# --------------------------------------------------------------------------- leaked tasks


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For a test that configures the process's logging (the commands do): undo it after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


@pytest.fixture(autouse=True)
def _no_leaked_tasks(request: pytest.FixtureRequest) -> None:
    """Every async test runs under ``leaked_task_guard``; sync tests get no event loop."""
    if is_async_test(request.node):
        request.getfixturevalue("leaked_task_guard")


@pytest.fixture
async def leaked_task_guard() -> AsyncIterator[None]:
    """Fail the test if tasks it started are still pending once its fixtures are torn down
    (see ``tests/leaks.py``). Set up before the test's other fixtures, so torn down after."""
    before = asyncio.all_tasks()
    yield
    leaked = await leaks.pending_since(before)
    if not leaked:
        return
    names = "\n  ".join(sorted(leaks.describe(t) for t in leaked))
    await leaks.cancel_all(leaked)
    pytest.fail(f"{len(leaked)} task(s) left pending by the test:\n  {names}", pytrace=False)
