"""The Mesos fetcher, emulated: what a ``fetch`` entry leaves in a task's sandbox."""

from __future__ import annotations

import gzip
import ipaddress
import shutil
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

#: Suffixes the Mesos fetcher extracts into the sandbox root (src/launcher/fetcher.cpp).
ARCHIVE_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip")


def _mesos_basename(uri: str) -> str:
    """``Fetcher::basename``: treat the URI as a path, so a ``?query`` stays in the name."""
    rest = uri
    index = uri.find("://")
    if index > 1:
        slash = uri.find("/", index + 3)
        if slash == -1:
            raise ValueError(f"Malformed URI (missing path): {uri}")
        rest = uri[slash:]
    return rest.rstrip("/").rsplit("/", 1)[-1]


def _check_loopback(host: str | None) -> None:
    """Tests must never reach beyond this machine."""
    if host == "localhost":
        return
    try:
        if host is not None and ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"refusing to fetch from non-loopback host {host!r}")


def _extract(archive: Path, sandbox: Path) -> None:
    """Extract like mesos-fetcher (into the sandbox root), refusing unsafe members."""
    name = archive.name
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (sandbox / member).resolve()
                if not target.is_relative_to(sandbox.resolve()):
                    raise ValueError(f"unsafe zip member {member!r}")
            zf.extractall(sandbox)  # noqa: S202 - every member was checked above
        return
    with tarfile.open(archive, mode="r:*") as tar:
        tar.extractall(sandbox, filter="data")


def fetch_into_sandbox(
    uri: str,
    sandbox: Path,
    dest_path: str | None = None,
    *,
    extract: bool = True,
    executable: bool = False,
) -> Path:
    """Do what the Mesos fetcher does for one ``fetch`` entry; returns the fetched file.

    ``file://`` (or an absolute path) is copied, ``http(s)://`` downloaded (loopback only, 200
    only).  The local name is ``dest_path`` (Marathon ``destPath``) or the URI's basename
    *including* any ``?query``, so an unnamed presigned URL is not extracted.  Names ending in
    an archive suffix are extracted into the sandbox root (the archive stays); a bare ``.gz``
    is gunzipped next to it; anything else is only copied.
    """
    if any(ch in uri for ch in ("\\", "'", "\0")):
        raise ValueError("Illegal characters in URI")
    name = dest_path if dest_path is not None else _mesos_basename(uri)
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"unusable local file name {name!r}")
    sandbox.mkdir(parents=True, exist_ok=True)
    local = sandbox / name
    local.parent.mkdir(parents=True, exist_ok=True)

    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme in ("", "file"):
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URI with a remote host: {uri}")
        source = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else uri)
        if not source.is_absolute():
            raise ValueError(f"relative local path needs --frameworks_home: {uri}")
        shutil.copyfile(source, local)
    elif parsed.scheme in ("http", "https"):
        _check_loopback(parsed.hostname)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(uri, timeout=10) as resp:
            if resp.status != 200:
                raise OSError(f"HTTP {resp.status} fetching {uri}")
            with local.open("wb") as out:
                shutil.copyfileobj(resp, out)
    else:
        raise ValueError(f"scheme {parsed.scheme!r} needs a Hadoop client; not emulated")

    if executable:
        local.chmod(0o755)
    elif extract:
        if name.endswith(ARCHIVE_SUFFIXES):
            _extract(local, sandbox)
        elif name.endswith(".gz"):
            with gzip.open(local) as src, (sandbox / Path(name[:-3]).name).open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return local
