"""``python -m bench.filewatch``: how soon a replaced credential file is noticed, and what
watching costs while nothing happens: the stat poll (``controller.filewatch``) against inotify
through ``watchfiles`` (``pip install watchfiles``; that half is skipped without it).

Real files in a temp directory (``--dir`` to choose its filesystem): ten watched files, each
its own key, except the two of a Kubernetes-style volume, which share one. For each way of
replacing a file, ``--changes`` changes, each after a random pause (so the poll's phase is
random): the delay from the change's last syscall to the callback (median and max), the
changes never seen within ``--timeout`` s, and the callbacks beyond one per change (wrong key
or repeated). The ways:

- ``in_place``: the same bytes count rewritten in place (same inode, usually the same second);
- ``rename``: a temp file written beside it, then renamed over it (new inode);
- ``k8s_swap``: a Secret volume update as the kubelet's AtomicWriter does it (a new timestamped
  directory, ``..data`` re-linked to it by a rename, the old one removed): the watched path is
  ``<volume>/<name> -> ..data/<name>``, so the path itself never changes;
- ``recreate``: deleted and written again (the inode number is often reused);
- ``appear``: a missing file is created (its removal, before, is waited for and not timed,
  but a removal never seen counts as missed);
- ``chmod``: the file made unreadable, mode 000 (its mode restored before, likewise).

Watchers, each alone in turn:

- ``poll``: ``FileWatch.run`` with its 1 s interval;
- ``inotify_dirs``: ``watchfiles.awatch`` on the directories holding the files
  (non-recursive, default debounce 1600 ms and step 50 ms), each batch followed by one
  ``FileWatch.check_now`` that decides what changed: inotify on the file itself cannot see a
  Kubernetes swap, a rename over it, nor a file that does not exist yet;
- ``inotify_files``: ``watchfiles.awatch`` on the file paths themselves, to show what that
  misses (``--file-changes`` each).

Idle cost: each watcher in its own process with the same ten files, the CPU time
(``getrusage``, every thread) and voluntary context switches (wake-ups) over ``--idle``
seconds, scaled to one hour; next to a process whose event loop only sleeps.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.filewatch import FileWatch
from controller.logs import configure

K8S_KEY = "k8s"
KINDS = ("in_place", "rename", "k8s_swap", "recreate", "appear", "chmod")
WATCHERS = ("poll", "inotify_dirs", "inotify_files")
IDLE_WATCHERS = ("sleep_only", "poll", "poll_2s", "inotify_dirs")


def _content(n: int) -> bytes:
    """Same length every time: a rotated password of the same size is the hardest case."""
    return f"not-a-secret-{n:08d}\n".encode()


class Layout:
    """Ten watched files: one per kind, a Kubernetes volume of two, and three that never
    change. ``paths_by_key`` is what a watcher is given; ``change(kind)`` replaces one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.plain = root / "plain"
        self.volume = root / "volume"
        self.quiet = root / "quiet"
        for d in (self.plain, self.volume, self.quiet):
            d.mkdir(parents=True)
        self.n = 0
        for kind in KINDS:
            if kind != "k8s_swap":
                self._write(self.plain / kind)
        for name in ("a", "b", "c"):
            self._write(self.quiet / name)
        self._volume_dir = self._new_volume_dir()
        (self.volume / "..data").symlink_to(self._volume_dir.name)
        for name in ("password", "config.json"):
            (self.volume / name).symlink_to(Path("..data") / name)

    @property
    def paths_by_key(self) -> dict[str, list[Path]]:
        keys: dict[str, list[Path]] = {kind: [self.plain / kind] for kind in KINDS
                                       if kind != "k8s_swap"}
        keys[K8S_KEY] = [self.volume / "password", self.volume / "config.json"]
        for name in ("a", "b", "c"):
            keys[f"quiet_{name}"] = [self.quiet / name]
        return keys

    @property
    def directories(self) -> list[Path]:
        return [self.plain, self.volume, self.quiet]

    def key(self, kind: str) -> str:
        return K8S_KEY if kind == "k8s_swap" else kind

    def _write(self, path: Path) -> None:
        self.n += 1
        path.write_bytes(_content(self.n))

    def _new_volume_dir(self) -> Path:
        self.n += 1
        d = self.volume / f"..{datetime.now(UTC):%Y_%m_%d_%H_%M_%S}.{self.n:09d}"
        d.mkdir()
        for name in ("password", "config.json"):
            (d / name).write_bytes(_content(self.n))
        return d

    def prepare(self, kind: str) -> bool:
        """Bring the file to the state the change starts from; True if that was a change."""
        path = self.plain / kind
        if kind == "appear":
            path.unlink()
            return True
        if kind == "chmod":
            path.chmod(0o600)
            return True
        return False

    def change(self, kind: str) -> None:
        path = self.plain / kind
        self.n += 1
        if kind == "in_place":
            with path.open("r+b") as f:
                f.write(_content(self.n))
        elif kind == "rename":
            tmp = self.plain / f".{kind}.tmp"
            tmp.write_bytes(_content(self.n))
            os.replace(tmp, path)
        elif kind == "k8s_swap":
            new = self._new_volume_dir()
            link = self.volume / "..data_tmp"
            link.symlink_to(new.name)
            os.replace(link, self.volume / "..data")
            shutil.rmtree(self._volume_dir)
            self._volume_dir = new
        elif kind == "recreate":
            path.unlink()
            path.write_bytes(_content(self.n))
        elif kind == "appear":
            path.write_bytes(_content(self.n))
        elif kind == "chmod":
            path.chmod(0)
        else:
            raise ValueError(kind)


@dataclass
class Calls:
    """Every callback, with its time; ``wait`` returns the time of the next one."""

    seen: list[tuple[str, float]] = field(default_factory=list)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, key: str) -> None:
        self.seen.append((key, time.perf_counter()))
        self.event.set()

    async def wait(self, within: float) -> float | None:
        try:
            await asyncio.wait_for(self.event.wait(), within)
        except TimeoutError:
            return None
        finally:
            self.event.clear()
        return self.seen[-1][1]


def _watcher(name: str, layout: Layout, calls: Callable[[str], None]
             ) -> Callable[[], Any]:
    """The coroutine function that runs watcher ``name`` until cancelled."""
    if name in ("poll", "poll_2s"):
        watch = FileWatch(layout.paths_by_key, calls, interval=2.0 if name == "poll_2s" else 1.0)
        return watch.run
    if name == "sleep_only":
        return lambda: asyncio.sleep(10**9)
    import watchfiles  # optional: for this benchmark only

    watch = FileWatch(layout.paths_by_key, calls)
    targets = (layout.directories if name == "inotify_dirs"
               else [p for paths in layout.paths_by_key.values() for p in paths])

    async def check() -> None:
        watch.check_now()
        while watch.recheck_in:  # a state too close to its stamps: settle it as the poll does
            await asyncio.sleep(watch.recheck_in)
            watch.check_now()

    async def run() -> None:
        await check()
        async for _ in watchfiles.awatch(*targets, watch_filter=None, recursive=False):
            await check()

    return run


@contextlib.asynccontextmanager
async def _running(run: Callable[[], Any]) -> AsyncIterator[None]:
    task = asyncio.create_task(run())
    await asyncio.sleep(0.5)  # the baseline pass, or the inotify watches, are in place
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def measure_kind(watcher: str, kind: str, changes: int, within: float,
                       root: Path) -> dict[str, Any]:
    """``changes`` changes of one kind under a fresh layout and watcher."""
    layout = Layout(root)
    calls = Calls()
    delays: list[float] = []
    missed = 0
    async with _running(_watcher(watcher, layout, calls)):
        for _ in range(changes):
            if layout.prepare(kind) and await calls.wait(within) is None:
                missed += 1
            await asyncio.sleep(random.uniform(0.05, 1.0))
            layout.change(kind)
            changed = time.perf_counter()
            seen = await calls.wait(within)
            if seen is None:
                missed += 1
            else:
                delays.append(seen - changed)
        await asyncio.sleep(1.5)  # any late or repeated callback
    expected = changes * (2 if kind in ("appear", "chmod") else 1)
    wrong = sum(1 for key, _ in calls.seen if key != layout.key(kind))
    return {
        "changes": changes,
        "waits": expected,
        "median_ms": round(statistics.median(delays) * 1000, 1) if delays else None,
        "max_ms": round(max(delays) * 1000, 1) if delays else None,
        "missed": missed,
        "extra": len(calls.seen) - (expected - missed),
        "wrong_key": wrong,
    }


def _rusage() -> tuple[float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw


async def idle_child(watcher: str, seconds: float, root: Path) -> dict[str, float]:
    """In its own process: what ``watcher`` costs over ``seconds`` of nothing changing."""
    layout = Layout(root)
    calls = Calls()
    async with _running(_watcher(watcher, layout, calls)):
        await asyncio.sleep(1.0)
        cpu0, wake0 = _rusage()
        await asyncio.sleep(seconds)
        cpu1, wake1 = _rusage()
    assert not calls.seen, calls.seen
    per_hour = 3600 / seconds
    return {"cpu_s_per_hour": (cpu1 - cpu0) * per_hour,
            "wakeups_per_hour": (wake1 - wake0) * per_hour}


def measure_idle(seconds: float, root: Path, watchers: list[str]) -> dict[str, dict[str, float]]:
    """Every idle watcher at once, each in its own process (they sleep, so they do not
    disturb each other)."""
    procs = {}
    for name in watchers:
        d = root / f"idle-{name}"
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "bench.filewatch", "--idle-child", name, "--idle", str(seconds),
             "--dir", str(d)], stdout=subprocess.PIPE, text=True)
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"idle {name} exited {proc.returncode}")
        results[name] = json.loads(out)
    base = results.get("sleep_only")
    for figures in results.values():
        if base is not None:
            figures["cpu_s_per_hour_above_sleep"] = (figures["cpu_s_per_hour"]
                                                     - base["cpu_s_per_hour"])
        for k, v in figures.items():
            figures[k] = round(v, 3)
    return results


def _has_watchfiles() -> bool:
    return importlib.util.find_spec("watchfiles") is not None


def _filesystem(path: Path) -> str:
    out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() or "unknown"


async def main(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    """Idle costs first (nothing else running), then the delays, watcher after watcher."""
    watchers = ["poll"] + (["inotify_dirs", "inotify_files"] if _has_watchfiles() else [])
    idle_watchers = [w for w in IDLE_WATCHERS if not w.startswith("inotify") or _has_watchfiles()]
    report: dict[str, Any] = {
        "idle": await asyncio.to_thread(measure_idle, args.idle, base, idle_watchers),
        "delay": {},
    }
    runs = 0
    for watcher in watchers:
        changes = args.file_changes if watcher == "inotify_files" else args.changes
        report["delay"][watcher] = {}
        for kind in KINDS:
            runs += 1
            figures = await measure_kind(watcher, kind, changes, args.timeout,
                                         base / f"run-{runs}")
            report["delay"][watcher][kind] = figures
            print(watcher, kind, figures, file=sys.stderr, flush=True)
    return report


def render(report: dict[str, Any]) -> str:
    """The figures as a markdown table: delay median / max per kind, idle cost per watcher."""
    lines = ["| watcher | " + " | ".join(KINDS) + " | idle CPU s/h | wake-ups/h |",
             "|---" * (len(KINDS) + 3) + "|"]
    idle = report["idle"]
    for watcher, kinds in report["delay"].items():
        cells = []
        for kind in KINDS:
            f = kinds[kind]
            cell = (f"{f['median_ms']:.0f} / {f['max_ms']:.0f}" if f["median_ms"] is not None
                    else "-")
            if f["missed"]:
                cell += f" ({f['missed']}/{f['waits']} missed)"
            if f["extra"] or f["wrong_key"]:
                cell += f" (+{f['extra']} extra)"
            cells.append(cell)
        cost = idle.get(watcher, {})
        lines.append(f"| {watcher} | " + " | ".join(cells)
                     + f" | {cost.get('cpu_s_per_hour', '-')} | "
                     + f"{cost.get('wakeups_per_hour', '-')} |")
    for watcher in idle:
        if watcher not in report["delay"]:
            lines.append(f"| {watcher} | " + " | ".join("" for _ in KINDS)
                         + f" | {idle[watcher]['cpu_s_per_hour']} | "
                         + f"{idle[watcher]['wakeups_per_hour']} |")
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.filewatch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=50, help="changes of each kind")
    parser.add_argument("--file-changes", type=int, default=5,
                        help="changes of each kind for inotify_files (it misses some)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds after which a change counts as missed")
    parser.add_argument("--idle", type=float, default=120.0, help="seconds of idle watching")
    parser.add_argument("--dir", type=Path, default=None, help="where the files are made")
    parser.add_argument("--idle-child", choices=IDLE_WATCHERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure(level="warning", stream=sys.stderr)
    if args.idle_child:
        assert args.dir is not None
        print(json.dumps(asyncio.run(idle_child(args.idle_child, args.idle, args.dir))))
        return
    base = Path(tempfile.mkdtemp(prefix="filewatch-", dir=args.dir))
    try:
        machine = {"kernel": platform.release(), "cpus": os.cpu_count(),
                   "python": platform.python_version(), "filesystem": _filesystem(base),
                   "date": datetime.now(UTC).isoformat(timespec="seconds")}
        report = {"machine": machine, **asyncio.run(main(args, base))}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(report, indent=2))
    print(render(report))


if __name__ == "__main__":
    cli()
