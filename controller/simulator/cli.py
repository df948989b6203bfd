"""The `simulator` command and ``python -m controller.simulator``: serve until signalled."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

from controller.simulator.http import MarathonSimulator
from controller.simulator.seed import seed_apps
from controller.simulator.state import MarathonState
from controller.simulator.wire import DEFAULT_VERSION, LOCAL


def _listen_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


async def _serve(args: argparse.Namespace) -> int:
    state = MarathonState(version=args.marathon_version,
                          deployment_seconds=args.deployment_seconds)
    seed_apps(state, args.apps)
    host, port = args.listen
    simulator = MarathonSimulator(state, heartbeat_seconds=args.heartbeat_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await simulator.start(host, port)
    try:
        print(f"marathon simulator {state.version} listening on {simulator.url}", flush=True)
        await stop.wait()
    finally:
        await simulator.stop()
    return 0


def main(argv: Sequence[str] | None = None,
         prog: str = "pullsecret-controller simulator") -> int:
    """Run the simulator as a process until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve a simulated Marathon API.",
        epilog=f"example:\n  {prog} --listen 127.0.0.1:8080 --apps 100",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=_listen_address, default=(LOCAL, 8080),
                        metavar="HOST:PORT", help="where to listen (default 127.0.0.1:8080)")
    parser.add_argument("--apps", type=int, default=0, help="seed this many generated apps")
    parser.add_argument("--heartbeat-seconds", type=float, default=10.0,
                        help="event stream heartbeat period (Marathon: 10)")
    parser.add_argument("--deployment-seconds", type=float, default=0.0,
                        help="how long each deployment runs")
    parser.add_argument("--marathon-version", default=DEFAULT_VERSION,
                        help=f"the version to simulate (default {DEFAULT_VERSION})")
    return asyncio.run(_serve(parser.parse_args(argv)))
