"""The `simulator` command and ``python -m controller.simulator``: serve until signalled."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from controller.reference import InvalidReferenceError, parse_image
from controller.simulator.agent import Agent
from controller.simulator.http import MarathonSimulator
from controller.simulator.seed import seed_apps
from controller.simulator.state import MarathonState
from controller.simulator.wire import DEFAULT_VERSION, LOCAL


def _listen_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _load_registries(state: MarathonState, path: Path) -> None:
    """``{"registry[:port]": {"username": "password"}, "images": ["registry/repository:tag"]}``:
    kept in a file, never in argv. ``images`` is optional: a registry named in it holds only
    the images listed (an untagged one is ``:latest``, as ``docker push`` has it); the others
    hold every image. No registry is called ``images``: without a dot or a port, a name is
    never an image's registry."""
    try:
        registries = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"cannot read --registry-credentials {path}: {e}") from None
    images = registries.pop("images", []) if isinstance(registries, dict) else None
    if not isinstance(registries, dict) or not all(
            isinstance(users, dict) and all(isinstance(p, str) for p in users.values())
            for users in registries.values()) or not (
            isinstance(images, list) and all(isinstance(image, str) for image in images)):
        raise SystemExit(f"--registry-credentials {path}: expected "
                         '{"registry": {"username": "password"}, "images": ["image:tag"]}')
    for registry, users in registries.items():
        for username, password in users.items():
            state.accept_credentials(registry, username, password)
    for image in images:
        try:
            reference = parse_image(image)
            if reference.digest:
                raise InvalidReferenceError(f"{image!r}: name a tag; a digest is computed")
            state.registries.push(reference.registry, reference.path, reference.tag or "latest")
        except InvalidReferenceError as e:
            raise SystemExit(f"--registry-credentials {path}: images: {e}") from None


async def _serve(args: argparse.Namespace) -> int:
    agent = Agent(args.agent_dir) if args.agent_dir is not None else None
    state = MarathonState(version=args.marathon_version,
                          deployment_seconds=args.deployment_seconds, agent=agent)
    if args.registry_credentials is not None:
        _load_registries(state, args.registry_credentials)
    seed_apps(state, args.apps)
    host, port = args.listen
    simulator = MarathonSimulator(state, heartbeat_seconds=args.heartbeat_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await simulator.start(host, port)
    except OSError as e:  # the port is taken, or the address is not this machine's
        print(f"simulator: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        if agent is not None:
            await agent.close()
        return 2
    try:
        print(f"marathon simulator {state.version} listening on {simulator.url}", flush=True)
        await stop.wait()
    finally:
        await simulator.stop()
        if agent is not None:
            await agent.close()
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
                        help="without --agent-dir, how long each deployment runs (with it, "
                             "a deployment ends when its tasks run)")
    parser.add_argument("--marathon-version", default=DEFAULT_VERSION,
                        help=f"the version to simulate (default {DEFAULT_VERSION})")
    parser.add_argument("--agent-dir", type=Path, default=None, metavar="DIR",
                        help="run one simulated Mesos agent with its task sandboxes under DIR "
                             "(default: no agent, no tasks)")
    parser.add_argument("--registry-credentials", type=Path, default=None, metavar="FILE",
                        help='JSON {"registry": {"username": "password"}, "images": '
                             '["registry/repository:tag"]}: those registries accept only these '
                             "credentials (the others are public); a registry named in the "
                             "optional images holds only those (the others hold every image)")
    return asyncio.run(_serve(parser.parse_args(argv)))
