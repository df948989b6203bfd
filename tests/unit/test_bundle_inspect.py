"""inspect_bundle: stored bytes are hostile input, bounded and checked member by member."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.archive import MAX_BUNDLE_BYTES, build_bundle, inspect_bundle
from controller.errors import InvalidBundleError
from controller.model import BundleFormat, RegistryCredential, Secret

REG = "registry.example.com"
CRED = RegistryCredential(username="robot", password=Secret("s3cr3t"))
CONFIG = b'{"auths": {}}\n'
GOOD = build_bundle(REG, CRED, "config.json")


def member(name: str, kind: bytes = tarfile.REGTYPE, content: bytes = CONFIG,
           linkname: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind == tarfile.REGTYPE:
        info.size = len(content)
        return info, content
    return info, None


def tar_gz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return gzip.compress(raw.getvalue())


DOCKER_DIR = member(".docker", tarfile.DIRTYPE)
CONFIG_FILE = member(".docker/config.json")


class TestAccepts:
    @pytest.mark.parametrize("fmt", ["config.json", "dockercfg"])
    def test_what_build_bundle_writes(self, fmt: BundleFormat) -> None:
        """Every bundle we build passes inspection in its own format."""
        inspect_bundle(build_bundle(REG, CRED, fmt), fmt)

    def test_other_format_is_refused(self) -> None:
        """A ``.dockercfg`` bundle is not what a ``config.json`` record describes."""
        with pytest.raises(InvalidBundleError, match="never write"):
            inspect_bundle(build_bundle(REG, CRED, "dockercfg"), "config.json")


class TestRefuses:
    @pytest.mark.parametrize(("data", "reason"), [
        (b"", "cut short"),
        (b"PK\x03\x04 a zip file", "not gzip data"),
        (GOOD[:-9], "cut short"),
        (GOOD + b"junk", "data after its gzip stream"),
        (GOOD + GOOD, "data after its gzip stream"),
        (gzip.compress(b"not a tar archive at all"), "not a tar archive"),
        (tar_gz(), "lacks .docker"),
        (tar_gz(DOCKER_DIR), "lacks .docker/config.json"),
        (tar_gz(DOCKER_DIR, CONFIG_FILE, member("/etc/passwd")), "absolute path"),
        (tar_gz(DOCKER_DIR, CONFIG_FILE, member(".docker/../../x")), r"path with '\.\.'"),
        (tar_gz(DOCKER_DIR, member(".docker/config.json", tarfile.SYMTYPE,
                                   linkname="/root/.docker/config.json")), "a link"),
        (tar_gz(DOCKER_DIR, member(".docker/config.json", tarfile.LNKTYPE,
                                   linkname="/etc/shadow")), "a link"),
        (tar_gz(DOCKER_DIR, CONFIG_FILE, member(".docker/tty", tarfile.CHRTYPE)),
         "device or a pipe"),
        (tar_gz(DOCKER_DIR, CONFIG_FILE, member(".docker/fifo", tarfile.FIFOTYPE)),
         "device or a pipe"),
        (tar_gz(DOCKER_DIR, CONFIG_FILE, member(".docker/c", tarfile.CONTTYPE)),
         "neither file nor directory"),
        (tar_gz(DOCKER_DIR, CONFIG_FILE, member(".bashrc")), "never write"),
        (tar_gz(member(".docker"), CONFIG_FILE), "never write"),
        (tar_gz(DOCKER_DIR, CONFIG_FILE, CONFIG_FILE), "config.json twice"),
        (tar_gz(DOCKER_DIR, member(".docker/config.json", content=b"[1]")), "not a JSON object"),
        (tar_gz(DOCKER_DIR, member(".docker/config.json", content=b"{")), "not a JSON object"),
        (tar_gz(DOCKER_DIR, member(".docker/config.json", content=b"[" * 100_000)),
         "not a JSON object"),
    ], ids=["empty", "not-gzip", "truncated", "trailing-junk", "two-members", "not-tar",
            "empty-tar", "no-config", "absolute", "dot-dot", "symlink", "hardlink", "device",
            "fifo", "contiguous", "extra-file", "dir-as-file", "duplicate", "json-array",
            "json-broken", "json-deep"])
    def test_refused_with_reason(self, data: bytes, reason: str) -> None:
        """Each violation is an InvalidBundleError that names the problem in words."""
        with pytest.raises(InvalidBundleError, match=reason):
            inspect_bundle(data, "config.json")

    def test_too_large_compressed(self) -> None:
        """More than the limit of compressed bytes is refused before anything is inflated."""
        with pytest.raises(InvalidBundleError, match="larger than 1048576 bytes"):
            inspect_bundle(GOOD + bytes(MAX_BUNDLE_BYTES), "config.json")

    def test_gzip_bomb_stops_at_the_limit(self) -> None:
        """A bomb of 64 MiB of zeros (64 KiB packed) is refused with under 10 MiB allocated."""
        deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = bytes(1 << 20)
        bomb = b"".join(deflater.compress(block) for _ in range(64)) + deflater.flush()
        assert len(bomb) < 100 * 1024
        tracemalloc.start()
        try:
            with pytest.raises(InvalidBundleError, match="unpacks to more than"):
                inspect_bundle(bomb, "config.json")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 10 * MAX_BUNDLE_BYTES

    def test_reason_never_quotes_member_names(self) -> None:
        """A hostile member name (here, a would-be log line) never reaches the message."""
        hostile = "x\nlevel=error event=forged"
        with pytest.raises(InvalidBundleError) as info:
            inspect_bundle(tar_gz(DOCKER_DIR, CONFIG_FILE, member(hostile)), "config.json")
        assert "forged" not in str(info.value)


def _flip(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for position in positions:
        out[position % len(out)] ^= 0xFF
    return bytes(out)


RAW_TAR = gzip.decompress(GOOD)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=4096),
    st.binary(max_size=4096).map(gzip.compress),
    st.lists(st.integers(min_value=0), min_size=1, max_size=8).map(
        lambda positions: gzip.compress(_flip(RAW_TAR, positions))),
    st.lists(st.integers(min_value=0), min_size=1, max_size=8).map(
        lambda positions: _flip(GOOD, positions)),
))
def test_any_bytes_raise_only_the_bundle_error(data: bytes) -> None:
    """Whatever the bytes, inspection passes or raises InvalidBundleError, nothing else, and
    allocates no more than a few times the size limit."""
    tracemalloc.start()
    try:
        inspect_bundle(data, "config.json")
    except InvalidBundleError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 4 * MAX_BUNDLE_BYTES
