"""The Mesos fetcher's rules for one ``fetch`` entry (docs/marathon.md §4.2), as the simulated
agent runs them.

``file://`` (or an absolute path) is copied and ``http(s)://`` downloaded (200 only, bounded in
size and time). The local name is ``destPath`` (Mesos ``output_file``) or the URI's basename
*including* any ``?query`` (``Fetcher::basename``), so an unnamed presigned URL is not extracted.
``executable`` makes the file executable and skips extraction; otherwise a name ending in an
archive suffix is extracted into the sandbox root (the archive stays), a bare ``.gz`` is gunzipped
next to it, and anything else is only copied. Other schemes need a Hadoop client: not simulated.

Synchronous file and socket I/O on purpose: the agent runs it in a worker thread, and test
helpers call it directly. Archives are hostile input: members that would land outside the
sandbox, links and devices are refused, and what they unpack is bounded.
"""

from __future__ import annotations

import gzip
import tarfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

__all__ = [
    "ARCHIVE_SUFFIXES",
    "FetchError",
    "FetchLimits",
    "extract_archive",
    "fetch_into_sandbox",
    "local_name",
    "mesos_basename",
]

ARCHIVE_SUFFIXES: Final = (".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz",
                           ".zip")
"""What mesos-fetcher extracts (libarchive since 1.7; ``tar``/``unzip`` before, same list)."""
_ILLEGAL: Final = ("\\", "'", "\0")
_CHUNK: Final = 64 * 1024


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class FetchError(Exception):
    """One URI could not be fetched; the whole fetch fails (and so does the task)."""


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Bounds on what one ``fetch`` entry may cost the agent."""

    max_bytes: int = 64 * 1024 * 1024
    """The largest file a download or copy may produce."""
    max_extracted_bytes: int = 256 * 1024 * 1024
    """The most an archive (or a ``.gz``) may unpack to."""
    timeout: float = 30.0
    """Seconds for an HTTP connection to answer and for each read."""


def mesos_basename(uri: str) -> str:
    """``Fetcher::basename``: treat the URI as a path, so a ``?query`` stays in the name."""
    rest = uri
    index = uri.find("://")
    if index > 1:
        slash = uri.find("/", index + 3)
        if slash == -1:
            raise FetchError(f"Malformed URI (missing path): {uri}")
        rest = uri[slash:]
    return rest.rstrip("/").rsplit("/", 1)[-1]


def local_name(uri: str, dest_path: str | None = None) -> str:
    """The file name in the sandbox: ``destPath`` or the basename (validated, never escaping)."""
    if any(ch in uri for ch in _ILLEGAL):
        raise FetchError("Illegal characters in URI")
    name = dest_path if dest_path is not None else mesos_basename(uri)
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise FetchError(f"unusable local file name {name!r}")
    return name


def _copy_bounded(source: _Readable, target: Path, limit: int, what: str) -> None:
    copied = 0
    with target.open("wb") as out:
        while chunk := source.read(_CHUNK):
            copied += len(chunk)
            if copied > limit:
                raise FetchError(f"{what} is larger than {limit} bytes")
            out.write(chunk)


def _inside(sandbox: Path, member: str) -> bool:
    return (sandbox / member).resolve().is_relative_to(sandbox.resolve())


def extract_archive(archive: Path, sandbox: Path, limits: FetchLimits | None = None) -> None:
    """Extract like mesos-fetcher, into the sandbox root, refusing unsafe or oversized members."""
    limits = limits or FetchLimits()
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for member in members:
                if not _inside(sandbox, member.filename):
                    raise FetchError(f"unsafe zip member {member.filename!r}")
            if sum(member.file_size for member in members) > limits.max_extracted_bytes:
                raise FetchError(f"{archive.name} unpacks to more than "
                                 f"{limits.max_extracted_bytes} bytes")
            zf.extractall(sandbox)  # noqa: S202 - every member was checked above
        return
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            if sum(member.size for member in tar.getmembers()) > limits.max_extracted_bytes:
                raise FetchError(f"{archive.name} unpacks to more than "
                                 f"{limits.max_extracted_bytes} bytes")
            tar.extractall(sandbox, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise FetchError(f"Failed to extract {archive.name}: {e}") from None


def _download(uri: str, local: Path, limits: FetchLimits) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(uri, timeout=limits.timeout) as response:
            if response.status != 200:
                raise FetchError(f"HTTP {response.status} fetching {uri}")
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limits.max_bytes:
                raise FetchError(f"{uri} is larger than {limits.max_bytes} bytes")
            _copy_bounded(response, local, limits.max_bytes, uri)
    except FetchError:
        raise
    except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts, bad URLs
        raise FetchError(f"Failed to fetch {uri}: {e}") from None


def fetch_into_sandbox(
    uri: str,
    sandbox: Path,
    dest_path: str | None = None,
    *,
    extract: bool = True,
    executable: bool = False,
    limits: FetchLimits | None = None,
    allow_host: Callable[[str | None], bool] | None = None,
) -> Path:
    """Do what the Mesos fetcher does for one ``fetch`` entry; returns the fetched file.

    ``allow_host`` may refuse an http(s) host (tests keep every fetch on this machine).
    Raises ``FetchError`` saying which URI failed and why.
    """
    limits = limits or FetchLimits()
    name = local_name(uri, dest_path)
    sandbox.mkdir(parents=True, exist_ok=True)
    local = sandbox / name
    local.parent.mkdir(parents=True, exist_ok=True)
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme in ("", "file"):
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise FetchError(f"file:// URI with a remote host: {uri}")
        source = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else uri)
        if not source.is_absolute():
            raise FetchError(f"relative local path needs --frameworks_home: {uri}")
        try:
            with source.open("rb") as src:
                _copy_bounded(src, local, limits.max_bytes, uri)
        except OSError as e:
            raise FetchError(f"Failed to copy {uri}: {e.strerror}") from None
    elif parsed.scheme in ("http", "https"):
        if allow_host is not None and not allow_host(parsed.hostname):
            raise FetchError(f"refusing to fetch from host {parsed.hostname!r}")
        _download(uri, local, limits)
    else:
        raise FetchError(f"scheme {parsed.scheme!r} needs a Hadoop client; not simulated")
    if executable:
        local.chmod(0o755)
    elif extract:
        if name.endswith(ARCHIVE_SUFFIXES):
            extract_archive(local, sandbox, limits)
        elif name.endswith(".gz"):
            try:
                with gzip.open(local) as src:
                    _copy_bounded(src, sandbox / Path(name[:-3]).name,
                                  limits.max_extracted_bytes, name)
            except (OSError, EOFError) as e:
                raise FetchError(f"Failed to gunzip {name}: {e}") from None
    return local
