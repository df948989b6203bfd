"""The credential file watch: every way a file is replaced fires its key once, and only it.

Real files throughout. The ways of replacing a file are the benchmark's (``bench.filewatch
.Layout``: ten watched files, a Kubernetes-style volume among them), so what is measured there
is what is checked here. Passes are driven by ``check_now``; the clock the watch compares
stamps with is an hour ahead unless a test is about that comparison, so no stamp is "too
recent" by accident. One test runs the real loop, against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bench.filewatch import KINDS, Layout
from controller.filewatch import Absent, FileState, FileWatch, observe
from tests.clock import FakeClock

HOUR_NS = 3600 * 10**9
MS = 1_000_000


def an_hour_later() -> int:
    """A clock for which every stamp on disk has long settled."""
    return time.time_ns() + HOUR_NS


class Calls(list[str]):
    """The keys ``on_change`` was called with, in order."""

    def __call__(self, key: str) -> None:
        self.append(key)


def watch_of(paths_by_key: dict[str, list[Path]], calls: Calls, **kwargs: object
             ) -> FileWatch[str]:
    kwargs.setdefault("now_ns", an_hour_later)
    return FileWatch(paths_by_key, calls, **kwargs)  # type: ignore[arg-type]


def passes(watch: FileWatch[str], count: int) -> list[str]:
    """The keys fired over ``count`` passes, all together."""
    return [key for _ in range(count) for key in watch.check_now()]


@pytest.mark.parametrize("kind", KINDS)
def test_each_replacement_fires_its_key_once_and_no_other(tmp_path: Path, kind: str) -> None:
    """In place, renamed over, a Kubernetes ``..data`` swap, deleted and re-created, appeared,
    made unreadable: one callback, for the key of the file replaced, however many passes."""
    layout = Layout(tmp_path)
    calls = Calls()
    watch = watch_of(layout.paths_by_key, calls)
    assert watch.check_now() == []
    if layout.prepare(kind):
        assert passes(watch, 3) == [layout.key(kind)]
        calls.clear()
    layout.change(kind)
    assert passes(watch, 5) == [layout.key(kind)]
    assert calls == [layout.key(kind)]


def test_a_kubernetes_swap_changes_what_the_path_resolves_to_not_the_path(tmp_path: Path
                                                                          ) -> None:
    """The watched path is a link that stays as it is; only the file behind it is new."""
    layout = Layout(tmp_path)
    path = layout.volume / "password"
    link_before, state_before = os.readlink(path), observe(path)
    layout.change("k8s_swap")
    assert os.readlink(path) == link_before
    assert isinstance(state_before, FileState)
    assert observe(path) != state_before


def test_a_rewrite_in_the_same_second_with_the_same_size_fires(tmp_path: Path) -> None:
    """Same inode, same size, same whole-second mtime: the nanoseconds and ctime tell."""
    path = tmp_path / "password"
    path.write_bytes(b"first-password")
    second = time.time_ns() // 10**9 * 10**9
    os.utime(path, ns=(second, second + 100))
    calls = Calls()
    watch = watch_of({"reg": [path]}, calls)
    watch.check_now()
    before = path.stat()
    with path.open("r+b") as f:
        f.write(b"other-password")
    os.utime(path, ns=(second, second + 200))
    after = path.stat()
    assert (after.st_ino, after.st_size, int(after.st_mtime)) == (
        before.st_ino, before.st_size, int(before.st_mtime))
    assert watch.check_now() == ["reg"]


def test_keys_sharing_a_path_each_fire_once_and_a_key_once_for_several_files(
        tmp_path: Path) -> None:
    """Two keys watch one file; one key watches two files that both change in one pass."""
    shared, own, other = (tmp_path / name for name in ("shared", "own", "other"))
    for path in (shared, own, other):
        path.write_text("v1")
    calls = Calls()
    watch = watch_of({"first": [shared], "both": [shared, own], "third": [other]}, calls)
    watch.check_now()
    shared.write_text("v2")
    own.write_text("v2")
    assert passes(watch, 3) == ["first", "both"]
    assert calls == ["first", "both"]


def test_nothing_changed_fires_nothing_and_logs_nothing(tmp_path: Path) -> None:
    """A hundred passes over ten untouched files, a missing one among them: silence."""
    layout = Layout(tmp_path)
    (layout.plain / "appear").unlink()
    calls = Calls()
    watch = watch_of(layout.paths_by_key, calls)
    with capture_logs() as logs:
        assert passes(watch, 100) == []
    assert calls == []
    assert logs == []


def test_a_file_that_appears_later_fires_even_in_a_directory_made_later(tmp_path: Path
                                                                        ) -> None:
    """Configured before it exists (its directory too): nothing until it appears, then once."""
    path = tmp_path / "not-yet" / "mounted" / "config.json"
    calls = Calls()
    watch = watch_of({"reg": [path]}, calls)
    assert passes(watch, 3) == []
    path.parent.mkdir(parents=True)
    assert passes(watch, 2) == []
    with capture_logs() as logs:
        path.write_text("{}")
        assert passes(watch, 3) == ["reg"]
    assert logs == [{"event": "credential_file_changed", "component": "filewatch",
                     "path": str(path), "state": "present", "log_level": "info"}]


def test_a_deletion_fires_and_so_does_the_return(tmp_path: Path) -> None:
    """Seen apart, the deletion and the new file are two changes: what reads the file next
    fails, then works again."""
    path = tmp_path / "password"
    path.write_text("one")
    calls = Calls()
    watch = watch_of({"reg": [path]}, calls)
    watch.check_now()
    path.unlink()
    assert passes(watch, 2) == ["reg"]
    path.write_text("two")
    assert passes(watch, 2) == ["reg"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A temp dir that ``nobody`` can reach (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="filewatch-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path)


@contextlib.contextmanager
def without_privilege() -> Iterator[None]:
    """Permission checks as an ordinary user's: root's pass any mode bits. As root, the
    effective uid is nobody's inside (the real uid stays root, so it can come back)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(pwd.getpwnam("nobody").pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)


def test_an_unreadable_directory_is_logged_once_and_the_watch_recovers(shared_dir: Path
                                                                       ) -> None:
    """A directory without permissions: the key fires (reading the file now fails), one
    warning names the path, later passes stay quiet; readable again, the key fires again."""
    secrets = shared_dir / "secrets"
    secrets.mkdir(mode=0o755)
    path = secrets / "password"
    path.write_text("pw")
    path.chmod(0o644)
    calls = Calls()
    watch = watch_of({"reg": [path], "other": [shared_dir / "other"]}, calls)
    with without_privilege():
        watch.check_now()
    with capture_logs() as logs:
        secrets.chmod(0)
        with without_privilege():
            assert observe(path) == Absent("EACCES")
            assert passes(watch, 5) == ["reg"]
        secrets.chmod(0o755)
        with without_privilege():
            assert passes(watch, 3) == ["reg"]
    assert [entry for entry in logs if entry["event"] == "credential_file_unreadable"] == [
        {"event": "credential_file_unreadable", "component": "filewatch", "path": str(path),
         "error": "EACCES", "log_level": "warning"}]
    assert calls == ["reg", "reg"]


def move_to(clock: FakeClock, ns: int) -> None:
    """Set ``clock`` to the instant ``ns``, forwards or back (a wall clock may go either way)."""
    clock.advance((ns - clock.ns()) / 10**9)


def test_a_state_seen_within_a_tick_of_its_stamp_is_settled_on_a_later_pass(tmp_path: Path
                                                                            ) -> None:
    """On a coarse clock a second write in the same tick would keep the stamps: a state seen
    that close is looked at again once the tick is over, and reported then, once."""
    path = tmp_path / "password"
    path.write_text("one")
    clock = FakeClock.at_ns(an_hour_later())
    calls = Calls()
    watch = watch_of({"reg": [path]}, calls, now_ns=clock.ns)
    watch.check_now()
    path.write_text("two")
    stamp = max(path.stat().st_mtime_ns, path.stat().st_ctime_ns)
    move_to(clock, stamp + 5 * MS)
    assert watch.check_now() == []
    assert watch.recheck_in == pytest.approx(0.015)
    move_to(clock, stamp + 25 * MS)
    assert watch.check_now() == ["reg"]
    assert watch.recheck_in == 0
    assert passes(watch, 3) == []


@pytest.mark.parametrize(("stamp", "now", "unsettled"), [
    (10**18 + 7 * MS, 10**18 + 12 * MS, 15 * MS),  # within the 20 ms of a kernel tick
    (10**18 + 7 * MS, 10**18 + 27 * MS, 0),
    (10**18, 10**18 + 500 * MS, 1500 * MS),  # whole seconds: a filesystem that keeps seconds
    (10**18, 10**18 + 2000 * MS, 0),
    (10**18 + 7 * MS, 10**18, 27 * MS),  # a little ahead of this host's clock
    (10**18 + HOUR_NS + 7 * MS, 10**18, 0),  # far ahead (another host's clock): not waited for
])
def test_how_long_a_state_stays_unsettled(stamp: int, now: int, unsettled: int) -> None:
    """The window is a tick after a fractional stamp and two seconds after a whole one."""
    state = FileState(device=1, inode=2, size=3, mode=0o100600, mtime_ns=stamp - MS,
                      ctime_ns=stamp)
    assert state.unsettled_for_ns(now) == unsettled
    assert Absent("missing").unsettled_for_ns(now) == 0


async def test_run_sleeps_the_interval_and_wakes_early_for_a_racy_stamp(tmp_path: Path
                                                                        ) -> None:
    """The loop's own timing, on an injected clock and sleep: a baseline seen 5 ms after its
    stamp is looked at again 15 ms later, then every interval."""
    path = tmp_path / "password"
    path.write_text("one")
    clock = FakeClock.at_ns(max(path.stat().st_mtime_ns, path.stat().st_ctime_ns) + 5 * MS)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)
        if len(sleeps) == 4:
            raise asyncio.CancelledError

    calls = Calls()
    watch = watch_of({"reg": [path]}, calls, interval=2.0, sleep=sleep, now_ns=clock.ns)
    with pytest.raises(asyncio.CancelledError):
        await watch.run()
    assert sleeps == pytest.approx([0.015, 2.0, 2.0, 2.0])
    assert calls == []


async def test_the_real_loop_notices_a_rename_before_a_deadline(tmp_path: Path) -> None:
    """``run`` on real time: a password file replaced by a rename fires its key, once."""
    path = tmp_path / "password"
    path.write_text("one")
    fired = asyncio.Event()
    calls = Calls()
    pass_count = 0
    passed = asyncio.Condition()

    def on_change(key: str) -> None:
        calls(key)
        fired.set()

    async def sleep(seconds: float) -> None:
        nonlocal pass_count
        async with passed:
            pass_count += 1
            passed.notify_all()
        await asyncio.sleep(seconds)

    async def until(predicate: Callable[[], bool]) -> None:
        async with passed:
            await passed.wait_for(predicate)

    watch = FileWatch({"reg": [path], "other": [tmp_path / "other"]}, on_change,
                      interval=0.05, sleep=sleep)
    task = asyncio.create_task(watch.run())
    try:
        async with asyncio.timeout(30):
            await until(lambda: pass_count >= 1 and not watch.recheck_in)  # a settled baseline
            (tmp_path / "password.tmp").write_text("two")
            (tmp_path / "password.tmp").replace(path)
            await fired.wait()
            seen_at = pass_count
            await until(lambda: pass_count >= seen_at + 3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert calls == ["reg"]
