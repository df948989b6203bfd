"""A TCP proxy that limits the bandwidth towards the client: a simulated network link.

``python -m bench.proxy --upstream HOST:PORT --bits-per-second 1e9`` prints one ``listening on
URL`` line. Answers pass through a token bucket (burst 64 KiB), so a 12 MB list takes about
0.1 s on a 1 Gbit/s link, as it would between two hosts; requests pass unthrottled.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

_CHUNK = 64 * 1024


class TokenBucket:
    def __init__(self, bytes_per_second: float, burst: int = _CHUNK) -> None:
        self.rate = bytes_per_second
        self.burst = burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    async def take(self, count: int) -> None:
        """Wait until ``count`` bytes may pass (``count`` is at most the burst)."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= count:
                self.tokens -= count
                return
            await asyncio.sleep((count - self.tokens) / self.rate)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                bucket: TokenBucket | None) -> None:
    try:
        while chunk := await reader.read(_CHUNK):
            if bucket is not None:
                await bucket.take(len(chunk))
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    rate = args.bits_per_second / 8

    async def connection(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
                         ) -> None:
        upstream_r, upstream_w = await asyncio.open_connection(host, int(port))
        await asyncio.gather(_pump(client_r, upstream_w, None),
                             _pump(upstream_r, client_w, TokenBucket(rate)))

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT")
    parser.add_argument("--bits-per-second", type=float, default=1e9)
    asyncio.run(serve(parser.parse_args()))
