"""Command line: argv and env in, exit code out (0 ok, 1 some apps failed, 2 bad config)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from controller import credentials
from controller.bundle import build_bundle
from controller.config import Settings, load_settings
from controller.errors import ConfigError, ControllerError
from controller.logs import configure
from controller.reference import InvalidReferenceError, normalize_registry_host

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
DEFAULT_CONFIG = "/etc/pullsecret-controller/config.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pullsecret-controller",
        description="Keeps private-registry pull credentials working for Docker apps on "
                    "Marathon.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", "-c", type=Path, default=Path(DEFAULT_CONFIG),
                         help=f"YAML config file (default {DEFAULT_CONFIG})")
        return sub

    run = with_config("run", "Run the controller daemon (stops on SIGTERM/SIGINT).")
    run.add_argument("--dry-run", action="store_true", help="log the changes, write nothing")
    with_config("check-config", "Validate the config file and report every problem.")
    plan = with_config("plan", "Show the change each app would get; write nothing.")
    plan.add_argument("--verbose", "-v", action="store_true",
                      help="also list the apps that are skipped, and why")
    once = with_config("reconcile", "Converge storage and apps.")
    once.add_argument("--once", action="store_true", required=True,
                      help="one pass, then exit (the daemon is `run`)")
    once.add_argument("--dry-run", action="store_true", help="log the changes, write nothing")
    bundle = with_config("bundle", "Build one registry's bundle by hand.")
    bundle.add_argument("--registry", required=True, help="a configured registry host")
    bundle.add_argument("--output", "-o", type=lambda p: Path(p).absolute(), required=True,
                        help="where to write the archive (mode 0600)")
    demo = commands.add_parser(
        "demo", help="Run the daemon against the built-in Marathon simulator.",
        description="Run the whole daemon against the built-in Marathon simulator, with "
                    "generated credentials and a temporary bundle directory.")
    demo.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--listen", default="127.0.0.1:9102",
                      help="where to serve /metrics and /status (default 127.0.0.1:9102)")
    commands.add_parser("simulator", help="Serve the Marathon API simulator "
                        "(see `simulator --help`).")
    return parser


def _load(path: Path, env: Mapping[str, str]) -> Settings:
    settings = load_settings(path, env)
    configure(settings.logging.level, settings.logging.format)
    return settings


async def _plan(settings: Settings, env: Mapping[str, str], *, dry_run: bool,
                verbose: bool) -> int:
    from controller.app import build, run_once
    from controller.report import format_report

    async with build(settings, env, dry_run=dry_run) as parts:
        report = await run_once(parts)
    print(format_report(report, verbose=verbose))
    return EXIT_OK if report.ok else EXIT_FAILED


async def _bundle(settings: Settings, env: Mapping[str, str], host: str, output: Path) -> int:
    from controller.storage.fs import write_atomically

    try:
        wanted = normalize_registry_host(host)
    except InvalidReferenceError as e:
        raise ConfigError([f"--registry: {e}"]) from None
    registry = next((r for r in settings.registries if r.registry == wanted), None)
    if registry is None:
        known = ", ".join(r.host for r in settings.registries)
        raise ConfigError([f"--registry: {host} is not configured (configured: {known})"])
    credential = await credentials.from_settings(registry, env).fetch()
    data = build_bundle(registry.registry, credential, registry.format)
    await asyncio.to_thread(write_atomically, output, data)
    print(f"wrote {output} ({registry.format} for {registry.host}, {len(data)} bytes)")
    return EXIT_OK


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """The whole CLI, with argv and env injected for tests."""
    if argv[:1] == ["simulator"]:  # its own argument parser
        from controller.simulator import main as simulator_main

        return simulator_main(list(argv[1:]))
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from controller.demo import demo

        configure("info", "console")
        return asyncio.run(demo(duration=args.duration, listen=args.listen))
    try:
        settings = _load(args.config, env)
        if args.command == "run":
            from controller.app import run as run_daemon

            if args.dry_run:
                settings = settings.with_overrides(
                    reconcile=replace(settings.reconcile, dry_run=True))
            return asyncio.run(run_daemon(settings, env))
        if args.command == "check-config":
            print(f"{args.config}: OK ({len(settings.registries)} registries)")
            return EXIT_OK
        if args.command == "plan":
            return asyncio.run(_plan(settings, env, dry_run=True, verbose=args.verbose))
        if args.command == "reconcile":
            return asyncio.run(_plan(settings, env, dry_run=args.dry_run, verbose=False))
        if args.command == "bundle":
            return asyncio.run(_bundle(settings, env, args.registry, args.output))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except ControllerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


def main() -> None:
    sys.exit(run(sys.argv[1:], os.environ))
