"""Real external services for the tests, started on 127.0.0.1 with free ports.

Fakes cannot prove that a credential bundle really makes ``docker pull`` authenticate, so
these helpers run the real things, one module per service: a docker registry with htpasswd auth
(``registry``) or token auth (``token_auth``) with an image pushed into it, built offline as an
OCI layout (``oci``); ZooKeeper (``zookeeper``) and the moto server (``moto``).
``fetch_into_sandbox`` (``sandbox``) and ``skopeo_inspect`` (``skopeo``) stand in for the Mesos
fetcher and for ``docker pull`` in a sandbox; ``process`` spawns them and finds free (or busy)
ports.

Nothing here imports pytest: a missing binary raises ``ServiceUnavailable`` and the fixtures in
``tests/conftest.py`` turn that into a skip (or a failure when ``CI`` is set).
"""

from tests.services.moto import MotoServer, aws_env, start_moto
from tests.services.oci import build_oci_layout
from tests.services.process import (
    HOST,
    ServiceProcess,
    ServiceStartError,
    ServiceUnavailable,
    busy_port,
    eventually,
    find_binary,
    free_port,
    wait_until,
)
from tests.services.reference import REFERENCE
from tests.services.registry import Registry, make_htpasswd, start_registry
from tests.services.sandbox import ARCHIVE_SUFFIXES, fetch_into_sandbox
from tests.services.skopeo import basic_auth, skopeo_inspect, skopeo_push
from tests.services.token_auth import (
    TokenIssuer,
    TokenRegistry,
    start_token_issuer,
    start_token_registry,
)
from tests.services.zookeeper import ZooKeeper, restart_zookeeper, start_zookeeper, zk_four_letter

__all__ = [
    "ARCHIVE_SUFFIXES",
    "HOST",
    "REFERENCE",
    "MotoServer",
    "Registry",
    "ServiceProcess",
    "ServiceStartError",
    "ServiceUnavailable",
    "TokenIssuer",
    "TokenRegistry",
    "ZooKeeper",
    "aws_env",
    "basic_auth",
    "build_oci_layout",
    "busy_port",
    "eventually",
    "fetch_into_sandbox",
    "find_binary",
    "free_port",
    "make_htpasswd",
    "restart_zookeeper",
    "skopeo_inspect",
    "skopeo_push",
    "start_moto",
    "start_registry",
    "start_token_issuer",
    "start_token_registry",
    "start_zookeeper",
    "wait_until",
    "zk_four_letter",
]
