"""Shared fixtures: real services (see tests/services.py), each started lazily once per session.

A missing binary skips the tests that need it, except under ``CI`` where it fails them: CI
installs the packages, so a skip there would hide a broken setup.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from tests import services

T = TypeVar("T")


def _unavailable(reason: str) -> NoReturn:
    """Skip locally, fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} -- CI is set, so a missing service is an error", pytrace=False)
    pytest.skip(reason)


def _start(start: Callable[[Path], T], workdir: Path) -> T:
    try:
        return start(workdir)
    except services.ServiceUnavailable as err:
        reason = str(err)
    _unavailable(reason)  # outside the except block: no chained traceback in the report


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Registry]:
    """docker-registry with htpasswd auth; ``image``/``other_image`` are already pushed."""
    reg = _start(services.start_registry, tmp_path_factory.mktemp("registry"))
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.ZooKeeper]:
    """A standalone ZooKeeper; connect with ``KazooClient(hosts=zookeeper.hosts)``."""
    zk = _start(services.start_zookeeper, tmp_path_factory.mktemp("zookeeper"))
    try:
        yield zk
    finally:
        zk.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.MotoServer]:
    """moto in server mode; sets no AWS env -- use ``moto_server.aws_env()``/``client_kwargs()``."""
    server = _start(services.start_moto, tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws(moto_server: services.MotoServer, monkeypatch: pytest.MonkeyPatch) -> services.MotoServer:
    """moto, with this test's environment pointing the AWS SDKs at it."""
    for name, value in moto_server.aws_env().items():
        monkeypatch.setenv(name, value)
    return moto_server
