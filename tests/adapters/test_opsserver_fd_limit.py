"""The ops server in a process out of file descriptors: little stderr, and it recovers."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import aiohttp

# Serves the ops app, then lowers its own RLIMIT_NOFILE to ``headroom`` descriptors above what it
# holds, prints its port and serves until stdin closes. The long idle timeout keeps the accepted
# connections, so the process stays at its fd limit for as long as the test holds them.
SERVER = """
import asyncio, os, resource, sys
from prometheus_client import CollectorRegistry
from controller.opsserver import ServerLimits, make_app, serve
from controller.logs import configure

async def main():
    configure(fmt="json")
    ok = lambda: {"loop": True}
    runner = await serve(make_app(collectors=CollectorRegistry(), health=ok, ready=ok,
                                  status=lambda page: {}),
                         "127.0.0.1", 0, ServerLimits(idle_timeout=60))
    held = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (held + int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    stdin_closed = asyncio.Event()
    asyncio.get_running_loop().add_reader(0, stdin_closed.set)
    print(runner.addresses[0][1], flush=True)
    await stdin_closed.wait()
    await runner.cleanup()

asyncio.run(main())
"""
HEADROOM = 8  # descriptors left for connections: far below the default cap of 64
CONNECTIONS = 40


async def healthz(port: int) -> int | None:
    """The /healthz status, or None if it does not answer within a second."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session, \
                session.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None


async def grows_to(path: Path, text: str, timeout: float) -> None:
    """Poll with a deadline until the file holds ``text`` (it is written by another process)."""
    async with asyncio.timeout(timeout):
        while text not in await asyncio.to_thread(path.read_text):
            await asyncio.sleep(0.05)


class TestOutOfFileDescriptors:
    async def test_accept_failures_are_logged_once_and_healthz_recovers(self, tmp_path) -> None:
        """At the fd limit stderr stays small, and /healthz answers again once clients leave."""
        stderr_path = tmp_path / "stderr"
        with stderr_path.open("wb") as stderr:
            server = await asyncio.create_subprocess_exec(
                sys.executable, "-c", SERVER, str(HEADROOM), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=stderr)
        writers: list[asyncio.StreamWriter] = []
        try:
            assert server.stdout is not None
            port = int(await asyncio.wait_for(server.stdout.readline(), 20))
            for _ in range(CONNECTIONS):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writers.append(writer)
            await grows_to(stderr_path, "ops_accept_failed", 10)
            await asyncio.sleep(3)  # an observation window: three seconds at the fd limit
            assert await healthz(port) is None  # still starved: the window was at the limit
            log = await asyncio.to_thread(stderr_path.read_text)
            assert len(log) < 20_000
            assert log.count("ops_accept_failed") == 1
            assert "Traceback" not in log

            for writer in writers:
                writer.close()
            async with asyncio.timeout(10):
                while await healthz(port) != 200:
                    await asyncio.sleep(0.1)
        finally:
            for writer in writers:
                writer.close()
            assert server.stdin is not None
            server.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait(), 10)
            if server.returncode is None:
                server.kill()
                await server.wait()
