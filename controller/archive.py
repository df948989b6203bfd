"""Credential bundles: the archive a task fetches so that ``docker pull`` in its sandbox logs in.

The Mesos Docker containerizer runs ``docker pull`` with ``HOME`` set to the sandbox, and the
fetcher extracts ``docker.tar.gz`` into the sandbox root, so the archive holds exactly
``.docker/config.json`` (or the legacy ``.dockercfg``), as Marathon's private-registry recipe
(``tar -czf docker.tar.gz .docker``) produces it.

The tar inside (``bundle_content``) depends only on the input: fixed mtime (0, so ``tar -tv``
shows 1970-01-01), owner ``root/root`` (uid/gid 0, as the recipe's listing shows), GNU tar format
(GNU tar's default), sorted members; its hash tells whether a stored bundle holds the current
credential. The gzip around it (``pack``) carries a random comment, so the same credential never
gives the same bytes twice: a hash of the published bytes (S3 shows its MD5 as the ETag to
anyone who may list the bucket) cannot confirm a guessed password offline. Every gzip reader
(zlib, GNU tar, libarchive, which the Mesos fetcher uses) skips the comment.

Stored bundles are read back to verify them; ``inspect_bundle`` checks such bytes as hostile
input: bounded in size (compressed and unpacked), and holding exactly the members we write.

Pure: no I/O besides building bytes in memory. The secret is revealed only in ``_entry``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import struct
import tarfile
import zlib
from collections.abc import Mapping
from typing import assert_never

from controller.errors import CredentialError, InvalidBundleError
from controller.model import BundleFormat, RegistryCredential, Secret
from controller.reference import auth_key

__all__ = ["MAX_BUNDLE_BYTES", "build_bundle", "bundle_content", "config_json", "content_hash",
           "dockercfg_json", "inspect_bundle", "pack"]

MAX_BUNDLE_BYTES = 1 << 20
"""The most a stored bundle may take, compressed and unpacked alike (ours take a few KiB)."""

_MTIME = 0
_NONCE_BYTES = 16
"""Random bytes in each archive's gzip comment (written as hex)."""
_FCOMMENT = 0x10
_XFL_BEST = 2
_OS_UNKNOWN = 255
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
_DOCKER_DIR = ".docker"
_CONFIG_FILE: dict[BundleFormat, str] = {"config.json": ".docker/config.json",
                                         "dockercfg": ".dockercfg"}
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


def _tar(members: list[_Member]) -> bytes:
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
    return raw.getvalue()


def pack(content: bytes) -> bytes:
    """``content`` gzip'd (RFC 1952), with a random comment in the header (``FCOMMENT``): no
    name, no timestamp, the best compression."""
    comment = secrets.token_hex(_NONCE_BYTES).encode()
    header = (b"\x1f\x8b\x08" + bytes([_FCOMMENT]) + struct.pack("<I", _MTIME)
              + bytes([_XFL_BEST, _OS_UNKNOWN]) + comment + b"\x00")
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(content) + deflate.flush()
    return header + body + struct.pack("<II", zlib.crc32(content), len(content) & 0xFFFFFFFF)


def build_bundle(registry: str, credential: RegistryCredential, fmt: BundleFormat) -> bytes:
    """The ``.tar.gz`` for ``registry`` (``pack`` of ``bundle_content``)."""
    return pack(bundle_content(registry, credential, fmt))


def bundle_content(registry: str, credential: RegistryCredential, fmt: BundleFormat) -> bytes:
    """The tar for ``registry``: ``.docker/`` (0700) + ``.docker/config.json`` (0600), or
    ``.dockercfg`` (0600) at the root; byte-identical for equal input."""
    members: list[_Member]
    if fmt == "config.json":
        members = [(_DOCKER_DIR, 0o700, None),
                   (_CONFIG_FILE[fmt], 0o600, config_json(registry, credential))]
    elif fmt == "dockercfg":
        members = [(_CONFIG_FILE[fmt], 0o600, dockercfg_json(registry, credential))]
    else:
        assert_never(fmt)
    return _tar(members)


def content_hash(data: bytes) -> str:
    """The SHA-256 of a bundle as plain lowercase hex (``BundleManifest.sha256``)."""
    return hashlib.sha256(data).hexdigest()


def _gunzip(data: bytes, limit: int) -> bytes:
    """The one gzip member of ``data``, inflated in steps so that a bomb stops at ``limit``."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    try:
        while not inflater.eof:
            chunk = inflater.decompress(pending, limit + 1 - len(out))
            out += chunk
            if len(out) > limit:
                raise InvalidBundleError(f"the bundle unpacks to more than {limit} bytes")
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                raise InvalidBundleError("the bundle is cut short")
    except zlib.error:
        raise InvalidBundleError("the bundle is not gzip data") from None
    if inflater.unused_data:
        raise InvalidBundleError("the bundle has data after its gzip stream")
    return bytes(out)


def _members(raw: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """Every member of a tar stream with its content (``None`` unless a regular file)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            out = []
            for info in tar:
                content = tar.extractfile(info) if info.type in _FILE_TYPES else None
                out.append((info, content.read() if content else None))
            return out
    except (tarfile.TarError, ValueError, EOFError, OverflowError):
        raise InvalidBundleError("the bundle is not a tar archive") from None


def _check_member(info: tarfile.TarInfo, expected: dict[str, bool]) -> None:
    """Refuse what tar could turn against the sandbox; member names are never quoted."""
    if info.name.startswith("/"):
        raise InvalidBundleError("the bundle holds an absolute path")
    if ".." in info.name.split("/"):
        raise InvalidBundleError("the bundle holds a path with '..'")
    if info.issym() or info.islnk():
        raise InvalidBundleError("the bundle holds a link")
    if info.ischr() or info.isblk() or info.isfifo():
        raise InvalidBundleError("the bundle holds a device or a pipe")
    if info.type not in (*_FILE_TYPES, tarfile.DIRTYPE):
        raise InvalidBundleError("the bundle holds a member that is neither file nor directory")
    if expected.get(info.name) != info.isdir():
        raise InvalidBundleError("the bundle holds a member we never write")


def inspect_bundle(data: bytes, fmt: BundleFormat, *, limit: int = MAX_BUNDLE_BYTES) -> bytes:
    """Check stored bytes as hostile input: raise ``InvalidBundleError`` unless they are a
    gzip'd tar of at most ``limit`` bytes (packed and unpacked) holding exactly the members
    ``build_bundle`` writes for ``fmt``, the config file being a JSON object. Returns the tar
    (to compare with ``bundle_content``)."""
    if len(data) > limit:
        raise InvalidBundleError(f"the bundle is larger than {limit} bytes")
    config = _CONFIG_FILE[fmt]
    expected = {config: False, **({_DOCKER_DIR: True} if fmt == "config.json" else {})}
    seen: set[str] = set()
    content: bytes | None = None
    content_tar = _gunzip(data, limit)
    for info, body in _members(content_tar):
        _check_member(info, expected)
        if info.name in seen:
            raise InvalidBundleError(f"the bundle holds {info.name} twice")
        seen.add(info.name)
        if info.name == config:
            content = body
    missing = sorted(expected.keys() - seen)
    if missing:
        raise InvalidBundleError(f"the bundle lacks {missing[0]}")
    try:
        document = json.loads(content or b"")
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise InvalidBundleError(f"the {config} in the bundle is not a JSON object")
    return content_tar
