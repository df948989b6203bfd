"""The Mesos fetcher's rules as the simulated agent runs them (docs/marathon.md §4.2)."""

from __future__ import annotations

import gzip
import stat
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from controller.simulator import FetchError, FetchLimits, fetch_into_sandbox
from controller.simulator.fetcher import mesos_basename
from tests.factories import tar_gz

CONFIG = b'{"auths": {}}'


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    return tar_gz(source / "docker.tar.gz", {".docker/config.json": CONFIG})


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    return tmp_path / "sandbox"


class _Files(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_files() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback HTTP server: ``(base URL, path → body)``."""
    files: dict[str, bytes] = {}
    handler = type("Files", (_Files,), {"files": files})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class TestNames:
    def test_the_query_stays_in_the_name_so_a_presigned_url_is_not_extracted(self):
        assert mesos_basename("https://s3/b/docker.tar.gz?X-Amz-Signature=1") == (
            "docker.tar.gz?X-Amz-Signature=1")

    def test_a_uri_without_a_path_is_malformed(self):
        with pytest.raises(FetchError, match="missing path"):
            mesos_basename("https://host")

    @pytest.mark.parametrize("dest", ["../escape.tgz", "/etc/passwd", ""])
    def test_a_dest_path_may_not_leave_the_sandbox(self, archive, sandbox, dest):
        with pytest.raises(FetchError, match="unusable"):
            fetch_into_sandbox(archive.as_uri(), sandbox, dest)

    def test_illegal_characters_and_other_schemes_are_refused(self, sandbox):
        with pytest.raises(FetchError, match="Illegal"):
            fetch_into_sandbox("file:///tmp/it's.tgz", sandbox)
        with pytest.raises(FetchError, match="Hadoop"):
            fetch_into_sandbox("hdfs://nn/docker.tgz", sandbox)


class TestLocalFiles:
    def test_a_tarball_is_copied_and_extracted_into_the_sandbox_root(self, archive, sandbox):
        local = fetch_into_sandbox(archive.as_uri(), sandbox)
        assert local == sandbox / "docker.tar.gz"
        assert local.is_file()  # the archive stays beside what it held
        assert (sandbox / ".docker" / "config.json").read_bytes() == CONFIG

    def test_dest_path_names_the_file_and_decides_extraction(self, archive, sandbox, tmp_path):
        plain = tmp_path / "src" / "bundle"
        plain.write_bytes(archive.read_bytes())
        fetch_into_sandbox(plain.as_uri(), sandbox)
        assert not (sandbox / ".docker").exists()  # no archive suffix: only copied
        fetch_into_sandbox(plain.as_uri(), sandbox, "sub/docker.tgz")
        assert (sandbox / "sub" / "docker.tgz").is_file()
        assert (sandbox / ".docker" / "config.json").is_file()  # extracted into the root

    def test_extract_false_and_executable_only_copy(self, archive, sandbox):
        fetch_into_sandbox(archive.as_uri(), sandbox, extract=False)
        assert not (sandbox / ".docker").exists()
        local = fetch_into_sandbox(archive.as_uri(), sandbox, "run.tar.gz", executable=True)
        assert not (sandbox / ".docker").exists()
        assert local.stat().st_mode & stat.S_IXUSR

    def test_zip_and_bare_gz(self, sandbox, tmp_path):
        with zipfile.ZipFile(tmp_path / "creds.zip", "w") as zf:
            zf.writestr(".dockercfg", b"{}")
        fetch_into_sandbox((tmp_path / "creds.zip").as_uri(), sandbox)
        assert (sandbox / ".dockercfg").read_bytes() == b"{}"
        (tmp_path / "settings.json.gz").write_bytes(gzip.compress(b"{}"))
        fetch_into_sandbox((tmp_path / "settings.json.gz").as_uri(), sandbox)
        assert (sandbox / "settings.json").read_bytes() == b"{}"

    def test_a_missing_file_fails(self, sandbox, tmp_path):
        with pytest.raises(FetchError, match="Failed to copy"):
            fetch_into_sandbox((tmp_path / "nope.tgz").as_uri(), sandbox)


class TestHostileArchives:
    def test_a_member_outside_the_sandbox_is_refused(self, sandbox, tmp_path):
        evil = tar_gz(tmp_path / "evil.tar.gz", {"../outside": b"x"})
        with pytest.raises(FetchError):
            fetch_into_sandbox(evil.as_uri(), sandbox)
        assert not (tmp_path / "outside").exists()

    def test_a_zip_member_outside_the_sandbox_is_refused(self, sandbox, tmp_path):
        with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
            zf.writestr("../outside", b"x")
        with pytest.raises(FetchError, match="unsafe"):
            fetch_into_sandbox((tmp_path / "evil.zip").as_uri(), sandbox)

    def test_what_an_archive_unpacks_to_is_bounded(self, sandbox, tmp_path):
        big = tar_gz(tmp_path / "big.tgz", {"zeros": bytes(4096)})
        with pytest.raises(FetchError, match="unpacks to more than 1024 bytes"):
            fetch_into_sandbox(big.as_uri(), sandbox,
                               limits=FetchLimits(max_extracted_bytes=1024))

    def test_a_corrupt_archive_fails_cleanly(self, sandbox, tmp_path):
        (tmp_path / "broken.tgz").write_bytes(b"not a tarball")
        with pytest.raises(FetchError, match="Failed to extract"):
            fetch_into_sandbox((tmp_path / "broken.tgz").as_uri(), sandbox)


class TestHttp:
    def test_a_download_is_extracted(self, http_files, archive, sandbox):
        base, files = http_files
        files["/creds/docker.tar.gz"] = archive.read_bytes()
        fetch_into_sandbox(f"{base}/creds/docker.tar.gz", sandbox)
        assert (sandbox / ".docker" / "config.json").read_bytes() == CONFIG

    def test_not_200_fails(self, http_files, sandbox):
        base, _ = http_files
        with pytest.raises(FetchError, match="404"):
            fetch_into_sandbox(f"{base}/missing.tgz", sandbox)

    def test_a_download_is_bounded_in_size(self, http_files, sandbox):
        base, files = http_files
        files["/big.bin"] = bytes(4096)
        with pytest.raises(FetchError, match="larger than 1024 bytes"):
            fetch_into_sandbox(f"{base}/big.bin", sandbox, limits=FetchLimits(max_bytes=1024))

    def test_allow_host_can_refuse_a_host(self, sandbox):
        with pytest.raises(FetchError, match="refusing"):
            fetch_into_sandbox("https://example.com/x.tgz", sandbox,
                               allow_host=lambda host: host == "127.0.0.1")
