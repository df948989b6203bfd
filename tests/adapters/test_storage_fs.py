"""FilesystemStore on a real directory: atomic publish, modes, records."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta

import pytest

from controller.config import FilesystemStorageSettings
from controller.errors import StorageError
from controller.model import BundleManifest
from controller.storage.fs import FilesystemStore, write_atomically

NAME = "pullsecret-registry.example.com_5000.tar.gz"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def manifest(sha: str = "sha256:aa") -> BundleManifest:
    return BundleManifest(registry="registry.example.com:5000", sha256=sha, format="config.json",
                          created_at=NOW, refresh_at=NOW + timedelta(hours=6),
                          expires_at=NOW + timedelta(hours=12), leader_epoch=3)


def store(tmp_path, **kw) -> FilesystemStore:
    return FilesystemStore(FilesystemStorageSettings(
        path=tmp_path / "bundles", uri_prefix="file:///mnt/pullsecrets", **kw))


class TestFilesystemStore:
    async def test_round_trip(self, tmp_path):
        """What is published reads back, record included."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"archive", manifest())
        assert await s.get_manifest(NAME) == manifest()
        assert (tmp_path / "bundles" / NAME).read_bytes() == b"archive"

    async def test_location_uses_uri_prefix(self, tmp_path):
        """Tasks fetch from the configured prefix, not the local path."""
        loc = await store(tmp_path).location(NAME)
        assert loc.uri == f"file:///mnt/pullsecrets/{NAME}"
        assert loc.dest_path is None

    async def test_mode_0600_by_default(self, tmp_path):
        """Bundles and records are readable by the owner only."""
        await store(tmp_path).put_bundle(NAME, b"x", manifest())
        for f in (tmp_path / "bundles").iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600

    async def test_mode_0640_with_group(self, tmp_path):
        """With a group, the fetcher's users in it can read the bundle."""
        await store(tmp_path, group=os.getgid()).put_bundle(NAME, b"x", manifest())
        info = (tmp_path / "bundles" / NAME).stat()
        assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o640, os.getgid())

    async def test_missing_bundle_has_no_manifest(self, tmp_path):
        """A record without its bundle counts as missing, so the bundle is rebuilt."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"x", manifest())
        (tmp_path / "bundles" / NAME).unlink()
        assert await s.get_manifest(NAME) is None

    async def test_damaged_record_counts_as_missing(self, tmp_path):
        """An unreadable record is rebuilt rather than trusted."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"x", manifest())
        (tmp_path / "bundles" / "pullsecret-registry.example.com_5000.json").write_text("{")
        assert await s.get_manifest(NAME) is None

    async def test_failed_publish_keeps_the_old_bundle(self, tmp_path):
        """A publish that cannot write raises StorageError; the previous bundle stays."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"good", manifest())
        directory = tmp_path / "bundles"
        (directory / f".{NAME}.{os.getpid()}.tmp").mkdir()  # the temp file cannot be created
        with pytest.raises(StorageError, match="cannot publish"):
            await s.put_bundle(NAME, b"new", manifest("sha256:bb"))
        assert (directory / NAME).read_bytes() == b"good"
        assert await s.get_manifest(NAME) == manifest()

    async def test_delete(self, tmp_path):
        """Delete removes bundle and record."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"x", manifest())
        await s.delete(NAME)
        assert list((tmp_path / "bundles").iterdir()) == []


class TestWriteAtomically:
    def test_no_temp_file_left(self, tmp_path):
        """The temp file is renamed over the target: nothing else remains."""
        target = tmp_path / "f"
        write_atomically(target, b"one")
        write_atomically(target, b"two")
        assert [p.name for p in tmp_path.iterdir()] == ["f"]
        assert target.read_bytes() == b"two"

    def test_failed_write_leaves_target(self, tmp_path):
        """If the data cannot be written, the old file stays and the temp file goes."""
        target = tmp_path / "f"
        write_atomically(target, b"old")
        with pytest.raises(TypeError):
            write_atomically(target, "not bytes")  # type: ignore[arg-type]
        assert target.read_bytes() == b"old"
        assert [p.name for p in tmp_path.iterdir()] == ["f"]
