"""Clients that loop on the status endpoints, as a load test (or many open dashboards) does.

``python -m bench.opsload --url URL --clients N --seconds S`` runs N clients, half looping
``GET /status`` and half ``GET /``, each reading whole answers one after the other, for S
seconds (an answer under way then is still read); prints one JSON line: the
answers by status, the bytes read and the seconds it took. It runs as its own process, so that
its work does not delay the benchmark's ``/healthz`` probe.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp

_TIMEOUT = aiohttp.ClientTimeout(total=120)


async def load(url: str, clients: int, seconds: float) -> dict[str, Any]:
    answers: Counter[str] = Counter()
    read = 0
    started = time.monotonic()
    stop_at = started + seconds

    async def client(session: aiohttp.ClientSession, path: str) -> None:
        nonlocal read
        while time.monotonic() < stop_at:
            try:
                async with session.get(url + path, timeout=_TIMEOUT) as response:
                    read += len(await response.read())
                    answers[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError):
                answers["error"] += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session, "/status" if i % 2 == 0 else "/")
                               for i in range(clients)))
    return {"answers": dict(answers), "bytes": read,
            "seconds": round(time.monotonic() - started, 2)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.opsload", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the ops port, e.g. http://127.0.0.1:9102")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    arguments = parser.parse_args()
    print(json.dumps(asyncio.run(load(arguments.url, arguments.clients, arguments.seconds))),
          flush=True)
