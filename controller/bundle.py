"""Credential bundles: the archive a task fetches so that ``docker pull`` in its sandbox logs in.

The Mesos Docker containerizer runs ``docker pull`` with ``HOME`` set to the sandbox, and the
fetcher extracts ``docker.tar.gz`` into the sandbox root, so the archive holds exactly
``.docker/config.json`` (or the legacy ``.dockercfg``), as Marathon's private-registry recipe
(``tar -czf docker.tar.gz .docker``) produces it.

The bytes depend only on the input: fixed mtime (0, so ``tar -tv`` shows 1970-01-01), owner
``root/root`` (uid/gid 0, as the recipe's listing shows), GNU tar format (GNU tar's default),
sorted members, and a gzip header without name or timestamp. The content hash of the bundle
therefore tells whether a stored bundle is current; a different zlib build may compress
differently, which costs one extra publish and nothing else.

Pure: no I/O besides building bytes in memory. The secret is revealed only in ``_entry``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from typing import assert_never

from controller.errors import CredentialError
from controller.model import BundleFormat, RegistryCredential, Secret
from controller.reference import auth_key

__all__ = ["build_bundle", "config_json", "content_hash", "dockercfg_json"]

_MTIME = 0
_Member = tuple[str, int, bytes | None]
"""(name, mode, content); content ``None`` is a directory."""


def _is_utf8(secret: Secret) -> bool:
    """Whether the secret can be encoded; the failure is swallowed here so that no exception
    (and no traceback with locals) ever carries the plain value."""
    try:
        secret.reveal().encode()
    except UnicodeEncodeError:
        return False
    return True


def _entry(credential: RegistryCredential) -> dict[str, str]:
    """The value under the registry's ``auths`` key.

    An identity token is written as ``identitytoken`` alone: docker's credential-helper store
    (``<token>`` username) yields just that, and the daemon exchanges it as an OAuth refresh
    token without a username. ``auth`` is ``base64(user:password)``; docker rejects the whole
    file when the user part is empty, and splits at the first ``:``.
    """
    if not _is_utf8(credential.password):
        raise CredentialError("the registry secret is not valid UTF-8 text")
    if credential.identity_token:
        return {"identitytoken": credential.password.reveal()}
    username = credential.username
    if not username or ":" in username:
        raise CredentialError("the registry username must be non-empty and contain no ':'")
    pair = f"{username}:{credential.password.reveal()}".encode()
    return {"auth": base64.b64encode(pair).decode("ascii")}


def _dump(document: Mapping[str, object]) -> bytes:
    """Stable JSON: sorted keys, fixed indentation, ASCII only, trailing newline."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode()


def config_json(registry: str, credential: RegistryCredential) -> bytes:
    """``.docker/config.json`` with one entry: ``{"auths": {key: {"auth": …}}}``."""
    return _dump({"auths": {auth_key(registry): _entry(credential)}})


def dockercfg_json(registry: str, credential: RegistryCredential) -> bytes:
    """The legacy ``.dockercfg``: ``{key: {"auth": …, "email": ""}}``.

    For docker before 1.7, which reads only this file (docker 23 no longer reads it at all).
    ``email`` is kept because the ``docker login`` of those versions always wrote it.
    """
    return _dump({auth_key(registry): {**_entry(credential), "email": ""}})


def _tar_gz(members: list[_Member]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode, content in sorted(members, key=lambda m: m[0]):
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = _MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=_MTIME)


def build_bundle(registry: str, credential: RegistryCredential, fmt: BundleFormat) -> bytes:
    """The ``.tar.gz`` for ``registry``: ``.docker/`` (0700) + ``.docker/config.json`` (0600),
    or ``.dockercfg`` (0600) at the root; byte-identical for equal input."""
    members: list[_Member]
    if fmt == "config.json":
        members = [(".docker", 0o700, None),
                   (".docker/config.json", 0o600, config_json(registry, credential))]
    elif fmt == "dockercfg":
        members = [(".dockercfg", 0o600, dockercfg_json(registry, credential))]
    else:
        assert_never(fmt)
    return _tar_gz(members)


def content_hash(data: bytes) -> str:
    """The SHA-256 of a bundle as plain lowercase hex (``BundleManifest.sha256``)."""
    return hashlib.sha256(data).hexdigest()
