"""FilesystemStore on a real directory: atomic publish, modes, records, hostile reads,
temp files that never survive, and pruning."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from controller.archive import MAX_BUNDLE_BYTES, build_bundle, inspect_bundle
from controller.bundles import BundleManager
from controller.credentials.kinds import PasswordEnvCredentials
from controller.credentials.password import PasswordSource
from controller.dryrun import Recorder, RecordingStore
from controller.errors import InvalidBundleError, NotLeaderError, StorageError
from controller.model import BundleManifest, RegistryCredential, Secret
from controller.plan import bundle_name
from controller.settings import RegistrySettings
from controller.storage.backends import FilesystemStorageSettings
from controller.storage.base import BundleStore
from controller.storage.fs import FilesystemStore, is_temp_name, write_atomically

REG = "registry.example.com:5000"
NAME = "pullsecret-registry.example.com_5000.tar.gz"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 64 KiB tmpfs, to run out of space on (needs root and mount permission)."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                              str(mountpoint)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def manifest(sha: str = "sha256:aa") -> BundleManifest:
    return BundleManifest(registry="registry.example.com:5000", sha256=sha, format="config.json",
                          created_at=NOW, refresh_at=NOW + timedelta(hours=6),
                          expires_at=NOW + timedelta(hours=12), leader_epoch=3)


def store(tmp_path, *, create: bool = True, **kw) -> FilesystemStore:
    """A store in ``tmp_path/bundles``, which is created first (as an operator would) unless
    ``create`` is false: the store itself never creates it."""
    if create:
        (tmp_path / "bundles").mkdir(exist_ok=True)
    return FilesystemStore(FilesystemStorageSettings(
        path=tmp_path / "bundles", uri_prefix="file:///mnt/pullsecrets", **kw))


class TestItsDirectory:
    """The store never creates its directory: a mistyped path, or a shared filesystem that is
    not mounted, fails the publish rather than publishing where no agent looks."""

    async def test_missing_directory_is_not_created(self, tmp_path):
        """A publish into a directory that is not there fails naming it; nothing is created."""
        missing = tmp_path / "shraed" / "pullsecrets"
        s = FilesystemStore(FilesystemStorageSettings(path=missing, uri_prefix="file:///x"))
        with pytest.raises(StorageError) as info:
            await s.put_bundle(NAME, b"x", manifest())
        assert str(info.value) == (
            f"cannot publish {NAME}: storage.filesystem.path: {missing} does not exist: is the "
            "shared filesystem mounted on this host?")
        assert not (tmp_path / "shraed").exists()

    async def test_a_file_in_its_place_is_refused(self, tmp_path):
        (tmp_path / "bundles").write_text("not a directory")
        with pytest.raises(StorageError, match="is not a directory"):
            await store(tmp_path, create=False).put_bundle(NAME, b"x", manifest())

    async def test_require_mount_refuses_the_root_filesystem(self, tmp_path):
        """With ``require_mount``, a directory on the same filesystem as / is refused (this
        test needs tmp_path on the root filesystem)."""
        if os.stat(tmp_path).st_dev != os.stat("/").st_dev:
            pytest.skip("tmp_path is not on the root filesystem here")
        with pytest.raises(StorageError, match="is on the root filesystem, not on a mounted "
                                               "one \\(require_mount is set\\)"):
            await store(tmp_path, require_mount=True).put_bundle(NAME, b"x", manifest())
        assert list((tmp_path / "bundles").iterdir()) == []

    async def test_require_mount_takes_a_mounted_filesystem(self, tiny_fs):
        """A directory on a mounted filesystem (a tmpfs here), or below one, is taken."""
        (tiny_fs / "pullsecrets").mkdir()
        for path in (tiny_fs, tiny_fs / "pullsecrets"):
            s = FilesystemStore(FilesystemStorageSettings(path=path, uri_prefix="file:///x",
                                                          require_mount=True))
            await s.put_bundle(NAME, b"x", manifest())
            assert (path / NAME).read_bytes() == b"x"


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

    async def test_record_without_bundle_reads_alone(self, tmp_path):
        """A record whose bundle is gone still reads, and the bundle reads as missing."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"x", manifest())
        (tmp_path / "bundles" / NAME).unlink()
        assert await s.get_manifest(NAME) == manifest()
        assert await s.read_bundle(NAME, 100) is None

    async def test_symlinked_record_counts_as_missing(self, tmp_path):
        """A record replaced by a symlink is not followed."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"x", manifest())
        elsewhere = tmp_path / "elsewhere.json"
        record = tmp_path / "bundles" / "pullsecret-registry.example.com_5000.json"
        record.rename(elsewhere)
        record.symlink_to(elsewhere)
        with capture_logs() as logs:
            assert await s.get_manifest(NAME) is None
        assert [(e["event"], e["reason"]) for e in logs] == [
            ("bundle_manifest_unreadable", f"{record.name} is a symbolic link")]

    async def test_damaged_record_counts_as_missing(self, tmp_path):
        """An unreadable record is rebuilt rather than trusted."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"x", manifest())
        (tmp_path / "bundles" / "pullsecret-registry.example.com_5000.json").write_text("{")
        assert await s.get_manifest(NAME) is None

    async def test_failed_publish_keeps_the_old_bundle(self, tiny_fs):
        """A publish that runs out of space raises StorageError; the previous bundle stays."""
        s = FilesystemStore(FilesystemStorageSettings(path=tiny_fs, uri_prefix="file:///b"))
        await s.put_bundle(NAME, b"good", manifest())
        with pytest.raises(StorageError, match="No space left on device"):
            await s.put_bundle(NAME, bytes(128 * 1024), manifest("sha256:bb"))
        assert (tiny_fs / NAME).read_bytes() == b"good"
        assert await s.get_manifest(NAME) == manifest()
        assert sorted(p.name for p in tiny_fs.iterdir()) == [
            "pullsecret-registry.example.com_5000.json", NAME]

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

    def test_out_of_space(self, tiny_fs):
        """ENOSPC is a StorageError that says so; the old file stays, the temp file goes."""
        target = tiny_fs / "f"
        write_atomically(target, b"old")
        with pytest.raises(StorageError, match=f"cannot write {target}: No space left"):
            write_atomically(target, bytes(128 * 1024))
        assert [p.name for p in tiny_fs.iterdir()] == ["f"]
        assert target.read_bytes() == b"old"

    def test_target_is_a_directory(self, tmp_path):
        """A non-empty directory in the way fails the rename: clear error, no temp file left."""
        target = tmp_path / "f"
        target.mkdir()
        (target / "inside").write_bytes(b"keep")
        with pytest.raises(StorageError, match=f"cannot write {target}: it is a directory"):
            write_atomically(target, b"secret")
        assert [p.name for p in tmp_path.iterdir()] == ["f"]
        assert (target / "inside").read_bytes() == b"keep"

    def test_parent_does_not_exist(self, tmp_path):
        """A missing directory is named in the error."""
        target = tmp_path / "missing" / "f"
        with pytest.raises(StorageError, match=f"the directory {target.parent} does not exist"):
            write_atomically(target, b"secret")


KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from controller.storage import fs

def stall(fd):
    print("written", flush=True)
    time.sleep(60)

os.fsync = stall  # the process is killed between write and rename
fs.write_atomically(Path(sys.argv[1]), b"the-credential")
"""


def age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


class TestCleanup:
    async def test_removes_what_a_killed_writer_left(self, tmp_path):
        """After ``kill -9`` between write and rename, the temp file (``.<name>.tmp-<hex>``)
        holds the secret until cleanup removes it."""
        directory = tmp_path / "bundles"
        directory.mkdir()
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", KILLED_WRITER, str(directory / NAME), stdout=subprocess.PIPE)
        try:
            assert writer.stdout is not None
            assert await asyncio.wait_for(writer.stdout.readline(), 30) == b"written\n"
        finally:
            writer.kill()
            await writer.wait()
        [leftover] = directory.iterdir()
        assert leftover.name.startswith(f".{NAME}.tmp-")
        assert is_temp_name(leftover.name)
        assert leftover.read_bytes() == b"the-credential"
        age(leftover, 120)
        assert await store(tmp_path).cleanup() == [leftover.name]
        assert list(directory.iterdir()) == []

    async def test_keeps_young_temp_files(self, tmp_path):
        """A temp file less than a minute old may be a write in progress: it stays."""
        directory = tmp_path / "bundles"
        directory.mkdir()
        young = directory / f".{NAME}.tmp-0123456789abcdef"
        young.write_bytes(b"x")
        assert await store(tmp_path).cleanup() == []
        assert young.exists()

    async def test_touches_nothing_else(self, tmp_path):
        """Only regular files of the exact temp pattern go; other files, dirs and links stay."""
        directory = tmp_path / "bundles"
        directory.mkdir()
        others = [directory / name for name in (
            "notes.txt", NAME, f".{NAME}.tmp-0123", f".{NAME}.tmp-0123456789ABCDEF",
            f".{NAME}.1234.tmp", f"{NAME}.tmp-0123456789abcdef",
            f".{NAME}.tmp-0123456789abcdef.bak")]
        for path in others:
            path.write_bytes(b"x")
        (directory / f".a.tmp-{'1' * 16}").mkdir()
        (directory / f".b.tmp-{'2' * 16}").symlink_to(others[0])
        ours = directory / f".{NAME}.tmp-0123456789abcdef"
        ours.write_bytes(b"x")
        for path in directory.iterdir():
            age(path, 120)
        assert await store(tmp_path).cleanup() == [ours.name]
        assert sorted(directory.iterdir()) == sorted(
            [*others, directory / f".a.tmp-{'1' * 16}", directory / f".b.tmp-{'2' * 16}"])

    async def test_missing_directory_is_clean(self, tmp_path):
        """A directory that is not there has nothing to clean (and is not created)."""
        assert await store(tmp_path, create=False).cleanup() == []
        assert not (tmp_path / "bundles").exists()

    @staticmethod
    def old_leftover(tmp_path):
        (tmp_path / "bundles").mkdir(exist_ok=True)
        leftover = tmp_path / "bundles" / f".{NAME}.tmp-0123456789abcdef"
        leftover.write_bytes(b"the-credential")
        age(leftover, 120)
        return leftover

    async def test_manager_cleanup(self, tmp_path):
        """The bundle manager's cleanup removes the store's leftovers."""
        leftover = self.old_leftover(tmp_path)
        assert await password_manager(store(tmp_path), REG).cleanup() == [leftover.name]
        assert not leftover.exists()

    async def test_manager_cleanup_is_fenced(self, tmp_path):
        """A replica that is not the leader removes nothing."""
        async def not_leader() -> int | None:
            raise NotLeaderError("lost the lease")

        leftover = self.old_leftover(tmp_path)
        with pytest.raises(NotLeaderError):
            await password_manager(store(tmp_path), REG, fence=not_leader).cleanup()
        assert leftover.exists()

    async def test_manager_cleanup_in_dry_run(self, tmp_path):
        """A dry run removes nothing."""
        leftover = self.old_leftover(tmp_path)
        recorder = Recorder()
        dry = password_manager(RecordingStore(store(tmp_path), recorder), REG)
        assert await dry.cleanup() == []
        assert recorder.counts == {"cleanup": 1}
        assert leftover.exists()


def plant_dev_zero(path) -> None:
    """A character device like ``/dev/zero``, which would never end if read."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("creating a device node needs root")


class TestReadBundle:
    async def test_reads_what_was_published(self, tmp_path):
        """The served bytes read back as written."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"archive", manifest())
        assert await s.read_bundle(NAME, 100) == b"archive"

    async def test_missing(self, tmp_path):
        """Nothing served reads as ``None``."""
        assert await store(tmp_path).read_bundle(NAME, 100) is None

    async def test_symlink_is_not_followed(self, tmp_path):
        """A symlink planted in place of the bundle is refused, whatever it points at."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"archive", manifest())
        (tmp_path / "other").write_bytes(b"archive")
        (tmp_path / "bundles" / NAME).unlink()
        (tmp_path / "bundles" / NAME).symlink_to(tmp_path / "other")
        with pytest.raises(InvalidBundleError, match=f"{NAME} is a symbolic link"):
            await s.read_bundle(NAME, 100)

    @pytest.mark.parametrize("plant", [os.mkfifo, os.mkdir, plant_dev_zero],
                             ids=["fifo", "directory", "device"])
    async def test_not_a_regular_file(self, tmp_path, plant):
        """A FIFO (which must not block the read), a directory or a device is refused."""
        (tmp_path / "bundles").mkdir()
        plant(tmp_path / "bundles" / NAME)
        with pytest.raises(InvalidBundleError, match=f"{NAME} is not a regular file"):
            await store(tmp_path).read_bundle(NAME, 100)

    async def test_bounded(self, tmp_path):
        """More than ``limit`` bytes is refused."""
        s = store(tmp_path)
        await s.put_bundle(NAME, bytes(101), manifest())
        with pytest.raises(InvalidBundleError, match="larger than 100 bytes"):
            await s.read_bundle(NAME, 100)



def password_manager(bundle_store: BundleStore, *registries: str, **options) -> BundleManager:
    """A manager of ``registries``, all with the same static password."""
    settings = {r: RegistrySettings(host=r, registry=r, credentials=PasswordEnvCredentials(
        username="robot", password_env="PW")) for r in registries}
    sources = {r: PasswordSource("robot", env_var="PW", file=None, env={"PW": "pw"})
               for r in registries}
    return BundleManager(settings, sources, bundle_store, **options)


def manager(tmp_path, *registries: str) -> BundleManager:
    return password_manager(store(tmp_path), *registries)


class TestServedCheck:
    async def test_tampered_file_is_repaired(self, tmp_path):
        """Bytes edited on disk are published again at the next refresh."""
        m = manager(tmp_path, REG)
        await m.refresh(REG)
        served = tmp_path / "bundles" / bundle_name(REG)
        good = served.read_bytes()
        served.write_bytes(build_bundle(REG, RegistryCredential(
            username="mallory", password=Secret("x")), "config.json"))
        assert await m.refresh(REG) == "repaired"
        assert (inspect_bundle(served.read_bytes(), "config.json")
                == inspect_bundle(good, "config.json"))  # the credential's bundle again

    async def test_planted_symlink_is_replaced_not_followed(self, tmp_path):
        """A symlink in place of the bundle is replaced by a file; its target is untouched."""
        m = manager(tmp_path, REG)
        await m.refresh(REG)
        served = tmp_path / "bundles" / bundle_name(REG)
        target = tmp_path / "victim"
        target.write_bytes(served.read_bytes())
        served.unlink()
        served.symlink_to(target)
        assert await m.refresh(REG) == "repaired"
        assert not served.is_symlink()
        assert (inspect_bundle(target.read_bytes(), "config.json")
                == inspect_bundle(served.read_bytes(), "config.json"))

    async def test_oversized_file_is_repaired(self, tmp_path):
        """A file beyond the size limit is never read in full, and is replaced."""
        m = manager(tmp_path, REG)
        await m.refresh(REG)
        served = tmp_path / "bundles" / bundle_name(REG)
        served.write_bytes(bytes(MAX_BUNDLE_BYTES + 1))
        with capture_logs() as logs:
            assert await m.refresh(REG) == "repaired"
        assert [e["reason"] for e in logs if e["event"] == "bundle_repaired"] == [
            f"{served.name} is larger than {MAX_BUNDLE_BYTES} bytes"]



class TestListAndPrune:
    async def test_list_names(self, tmp_path):
        """Bundles and lone records are listed by bundle name; dot files are not."""
        s = store(tmp_path)
        await s.put_bundle(NAME, b"x", manifest())
        await s.put_bundle("pullsecret-b.tar.gz", b"x", manifest())
        (tmp_path / "bundles" / "pullsecret-b.tar.gz").unlink()
        (tmp_path / "bundles" / f".{NAME}.tmp-0123456789abcdef").write_bytes(b"x")
        assert await s.list_names() == ["pullsecret-b.tar.gz", NAME]

    async def test_prune_deletes_unconfigured_bundles(self, tmp_path):
        """Prune removes bundle and record of a registry no longer configured, nothing else."""
        await manager(tmp_path, REG, "old.example.com").refresh("old.example.com")
        await manager(tmp_path, REG).refresh(REG)
        foreign = tmp_path / "bundles" / "pullsecret_blue_old.example.com.tar.gz"
        foreign.write_bytes(b"x")
        assert await manager(tmp_path, REG).prune() == [
            bundle_name("old.example.com")]
        assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == sorted([
            bundle_name(REG), "pullsecret-registry.example.com_5000.json", foreign.name])
