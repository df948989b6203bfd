"""Builders for what many tests need: a Docker app as Marathon holds it, a controller config,
a tarball.

One builder each, so a test says only what matters to it (``docker_app("/a", opted_in=False)``,
``config_doc(url, bundles, reconcile={...})``) and a change to the shape is made once.
Free ports come from ``tests.services.free_port``; polling from ``tests.services.eventually``.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REGISTRY = "registry.example.com:5000"
"""The registry the tests' apps pull from unless they say otherwise; nothing listens there."""
LABEL = "pullsecret.enabled"
"""The opt-in label (the controller's default ``label``)."""
PASSWORD_ENV = "REG_PW"
"""The variable ``registry_entry`` takes the registry password from."""


def docker_app(
    app_id: str,
    image: str | None = None,
    *,
    opted_in: bool = True,
    kind: str = "DOCKER",
    **fields: Any,
) -> dict[str, Any]:
    """A Marathon app running a Docker ``image``, by default one on ``REGISTRY`` named after
    the app; ``opted_in`` sets the label, ``kind`` the container type (``MESOS`` is UCR), and
    ``fields`` are added or replace the defaults (``fetch=[...]``, ``labels={...}``)."""
    return {
        "id": app_id,
        "cmd": "sleep 1000",
        "labels": {LABEL: "true"} if opted_in else {},
        "container": {"type": kind, "docker": {"image": image or f"{REGISTRY}{app_id}:1"}},
        **fields,
    }


def registry_entry(
    host: str = REGISTRY, *, username: str = "robot", password_env: str = PASSWORD_ENV,
    **fields: Any,
) -> dict[str, Any]:
    """One ``registries`` item: a username and a password from ``password_env``, plus
    ``fields`` (``format``, ``apps``...). Its images are not checked (nothing listens at the
    tests' registries) unless ``fields`` say ``check_images``."""
    return {"host": host, "credentials": {"username": username, "password_env": password_env},
            "check_images": False, **fields}


def filesystem_storage(bundles: Path) -> dict[str, Any]:
    """A ``storage`` section with the bundles in ``bundles``, which is created here: the
    controller refuses a storage directory that does not exist, and never creates one."""
    bundles.mkdir(parents=True, exist_ok=True)
    return {"filesystem": {"path": str(bundles)}}


def config_doc(
    marathon_url: str,
    bundles: Path | str | None = None,
    *,
    hosts: Iterable[str] = (REGISTRY,),
    marathon: Mapping[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A controller config document: Marathon at ``marathon_url`` (``marathon`` adds keys to
    its section), a ``registry_entry`` per host, filesystem storage in ``bundles`` (a ``Path``
    is created, as ``filesystem_storage`` does; text is written as it is, for tests of the
    config's own checks); each of
    ``sections`` (``reconcile={...}``, ``server={...}``, ``registries=[...]``, ``storage=...``)
    is added or replaces the section of that name."""
    doc: dict[str, Any] = {
        "marathon": {"urls": [marathon_url], **(marathon or {})},
        "registries": [registry_entry(host) for host in hosts],
    }
    if bundles is not None:
        doc["storage"] = (filesystem_storage(bundles) if isinstance(bundles, Path)
                          else {"filesystem": {"path": bundles}})
    return {**doc, **sections}


def write_config(directory: Path, doc: object, name: str = "config.yaml") -> Path:
    """``doc`` as a YAML file in ``directory``, for the CLI's ``--config``."""
    path = directory / name
    path.write_text(yaml.safe_dump(doc))
    return path



def tar_gz(path: Path, members: Mapping[str, bytes]) -> Path:
    """A gzipped tar of ``members`` (name: content, mode 0600) at ``path``, like
    ``tar -czf docker.tar.gz .docker``; names are written as given, ``../`` and all."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o600
            tar.addfile(info, io.BytesIO(content))
    return path
