"""Command line: argv and env in, exit code out (0 ok, 1 failed, 2 bad config or arguments).

Output for people goes to stdout, logs to stderr. Global options (``--config``, ``--quiet``,
``--log-level``) work before or after the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

from controller.archive import build_bundle
from controller.config import load_settings
from controller.errors import ConfigError, ControllerError
from controller.logs import configure
from controller.reference import InvalidReferenceError, normalize_registry_host
from controller.settings import Settings

__all__ = ["main", "run"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
EXIT_INTERRUPTED = 130
DEFAULT_CONFIG = "/etc/pullsecret-controller/config.yaml"
_LEVELS = ("debug", "info", "warning", "error")
_ONE_SHOT_LEVEL = "warning"
"""One-shot commands print a report on stdout; their info logs would only interleave with it."""


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes; on a subcommand they default to "not given", so that
    the same option given before the command is not overwritten."""
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--config", "-c", type=Path, default=default(Path(DEFAULT_CONFIG)),
                        metavar="FILE", help=f"YAML config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--quiet", "-q", action="store_true", default=default(False),
                        help="print only errors (and a one-shot pass's summary)")
    parser.add_argument("--log-level", choices=_LEVELS, default=default(None),
                        help="override logging.level from the config")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pullsecret-controller",
        description="Keeps private-registry pull credentials working for Docker apps on "
                    "Marathon.",
        epilog="First run: check-config, then plan, then reconcile --once, then run.\n"
               "Exit codes: 0 ok, 1 something failed (an app, a registry, or Marathon could not "
               "be reached), 2 invalid configuration or arguments.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {version('marathon-pullsecret-controller')}")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help_text, description=help_text,
            epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
        _global_options(sub, suppress=True)
        return sub

    run = command("run", "Run the controller daemon (stops on SIGTERM/SIGINT).",
                  "pullsecret-controller run --config /etc/pullsecret-controller/config.yaml")
    run.add_argument("--dry-run", action="store_true", help="log the changes, write nothing")
    command("check-config", "Validate the config file and report every problem.",
            "pullsecret-controller check-config -c config.yaml")
    plan = command("plan", "Show the change each app would get; write nothing.",
                   "pullsecret-controller plan -v -c config.yaml")
    plan.add_argument("--verbose", "-v", action="store_true",
                      help="also list the apps that are skipped, and why")
    once = command("reconcile", "Publish the bundles and converge every app once.",
                   "pullsecret-controller reconcile --once -c config.yaml")
    once.add_argument("--once", action="store_true", required=True,
                      help="one pass, then exit (the daemon is `run`)")
    once.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    uninstall = command(
        "uninstall", "Remove this controller's entries from every app (same rate limit and "
        "deployment budget as the daemon; never forced).",
        "pullsecret-controller uninstall --dry-run -c config.yaml")
    uninstall.add_argument("--dry-run", action="store_true",
                           help="show the entries that would be removed, change nothing")
    uninstall.add_argument("--delete-bundles", action="store_true",
                           help="also delete the stored bundles, once every app is clean")
    bundle = command("bundle", "Build one registry's bundle by hand (the manual recipe, done "
                     "right).", "pullsecret-controller bundle --registry registry.example.com "
                     "-o docker.tar.gz")
    bundle.add_argument("--registry", required=True, help="a configured registry host")
    bundle.add_argument("--output", "-o", type=lambda p: Path(p).absolute(), required=True,
                        metavar="FILE", help="where to write the archive (mode 0600)")
    inject = command(
        "inject", "Print app definitions with this controller's entry, as the daemon would "
        "write it, so that a deploy needs no second one. Offline: no Marathon, no registry, "
        "no credential. Exit 1 if an app is invalid (printed unchanged).",
        "pullsecret-controller inject -c config.yaml app.json > app.injected.json")
    inject.add_argument("file", nargs="?", default="-", metavar="FILE",
                        help="an app, a list of apps or a group, as JSON (default -: stdin)")
    inject.add_argument("--check", action="store_true",
                        help="print nothing but the apps that lack their entry or carry a "
                             "wrong one, and exit 1 if there are any")
    demo = commands.add_parser(
        "demo", help="Run the daemon against the built-in Marathon simulator.",
        description="Run the whole daemon against the built-in Marathon simulator, with "
                    "generated credentials and a temporary bundle directory.",
        epilog="example:\n  pullsecret-controller demo --duration 20",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--listen", default="127.0.0.1:9102", metavar="HOST:PORT",
                      help="where to serve the ops endpoints (default 127.0.0.1:9102)")
    demo.add_argument("--verbose", action="store_true",
                      help="print the daemon's log lines too (default: to a file)")
    commands.add_parser("simulator", help="Serve the Marathon API simulator "
                        "(see `simulator --help`).", add_help=False)
    return parser


def _load(args: argparse.Namespace, env: Mapping[str, str], *, one_shot: bool) -> Settings:
    settings = load_settings(args.config, env)
    level = ("error" if args.quiet else args.log_level
             or (_stricter(settings.logging.level, _ONE_SHOT_LEVEL) if one_shot
                 else settings.logging.level))
    configure(level, settings.logging.format)
    return settings


def _stricter(level: str, floor: str) -> str:
    return max(level, floor, key=_LEVELS.index)


async def _pass(settings: Settings, env: Mapping[str, str], *, dry_run: bool, verbose: bool,
                quiet: bool) -> int:
    from controller.app import build
    from controller.manager import run_once
    from controller.passreport import format_report

    async with build(settings, env, dry_run=dry_run) as parts:
        report = await run_once(parts)
    text = format_report(report, verbose=verbose)
    if quiet:
        text = "\n".join(line for line in text.splitlines()
                         if "FAILED" in line or line.startswith("summary:"))
    print(text, flush=True)
    return EXIT_OK if report.ok else EXIT_FAILED


async def _uninstall(settings: Settings, env: Mapping[str, str], *, dry_run: bool,
                     delete_bundles: bool, quiet: bool) -> int:
    """Plan as if no registry were configured: every entry this controller owns goes, and then,
    if asked, every bundle it owns."""
    from controller.app import build
    from controller.manager import run_once
    from controller.passreport import format_report

    async with build(replace(settings, registries=()), env, dry_run=dry_run) as parts:
        report = await run_once(parts, every_app=True)
        if not quiet or not report.ok:
            print(format_report(report), flush=True)
        if not report.ok:
            print("some apps may still carry entries: run uninstall again", file=sys.stderr)
            return EXIT_FAILED
        if delete_bundles:
            names = await parts.bundles.prune()
            if not quiet:
                verb = "would delete" if dry_run else "deleted"
                print(f"{verb} {len(names)} bundle(s): {', '.join(names) or '-'}")
    return EXIT_OK


async def _bundle(settings: Settings, env: Mapping[str, str], host: str, output: Path) -> int:
    from controller.app import credential_source
    from controller.storage.fs import write_atomically

    try:
        wanted = normalize_registry_host(host)
    except InvalidReferenceError as e:
        raise ConfigError([f"--registry: {e}"]) from None
    registry = next((r for r in settings.registries if r.registry == wanted), None)
    if registry is None:
        known = ", ".join(r.host for r in settings.registries) or "none"
        raise ConfigError([f"--registry: {host} is not configured (configured: {known})"])
    credential = await credential_source(registry, env).fetch()
    data = build_bundle(registry.registry, credential, registry.format)
    await asyncio.to_thread(write_atomically, output, data)
    print(f"wrote {output} ({registry.format} for {registry.host}, {len(data)} bytes, "
          "mode 0600)")
    return EXIT_OK


def _check_output(output: Path) -> None:
    """An ordinary mistake with ``-o`` is named before any credential is fetched."""
    if output.is_dir():
        raise ConfigError([f"--output: {output} is a directory; name the file to write, e.g. "
                           f"{output / 'docker.tar.gz'}"])
    if not output.parent.is_dir():
        raise ConfigError([f"--output: directory {output.parent} does not exist"])


def _check_config(path: Path, settings: Settings, quiet: bool) -> int:
    if not quiet:
        count = len(settings.registries)
        print(f"{path}: OK ({count} {'registry' if count == 1 else 'registries'})")
    return EXIT_OK


def _inject(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Plan as the daemon does (``manager.planner``), with the config alone: the files and
    variables it names need not exist, and the store is built without the filesystem
    ``group`` (it only sets the mode of files written; the pipeline's host need not know it).
    Building a store has no other side effect: no directory is made, no client created."""
    from controller.app import store_from_settings
    from controller.inject import Injector, inject, parse_document, render
    from controller.manager import planner

    settings = load_settings(args.config, env, offline=True)
    configure("error" if args.quiet else args.log_level
              or _stricter(settings.logging.level, _ONE_SHOT_LEVEL), settings.logging.format)
    storage = settings.storage
    if storage.filesystem is not None:
        storage = replace(storage, filesystem=replace(storage.filesystem, group=None))
    store = store_from_settings(storage)
    injector = Injector.of(planner(settings, store.home), store.fixed_location)
    source = "stdin" if args.file == "-" else args.file
    if args.file == "-" and sys.stdin.isatty():
        raise ConfigError(["inject reads the JSON from stdin, which is a terminal: name a FILE "
                           "or pipe the JSON in"])
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        text = data.decode("utf-8")
    except OSError as e:
        raise ConfigError([f"{source}: cannot read it ({e.strerror})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: is not UTF-8 text"]) from None
    result = inject(parse_document(text, source), injector)
    for finding in result.invalid + (() if args.quiet else result.conflicts):
        print(finding, file=sys.stderr)
    if args.check:
        for finding in result.changes:
            print(finding)
        return EXIT_FAILED if result.changes or result.invalid else EXIT_OK
    sys.stdout.write(render(result.document))
    return EXIT_FAILED if result.invalid else EXIT_OK


def _command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.command == "demo":
        from controller.demo import run_demo

        return run_demo(duration=args.duration, listen=args.listen, verbose=args.verbose)
    if args.command == "inject":
        return _inject(args, env)
    settings = _load(args, env, one_shot=args.command != "run")
    if args.command == "run":
        from controller.manager import run as run_daemon

        if args.dry_run:
            settings = replace(settings, reconcile=replace(settings.reconcile, dry_run=True))
        return asyncio.run(run_daemon(settings, env))
    if args.command == "check-config":
        return _check_config(args.config, settings, args.quiet)
    if args.command in ("plan", "reconcile"):
        return asyncio.run(_pass(settings, env, dry_run=args.command == "plan" or args.dry_run,
                                 verbose=getattr(args, "verbose", False), quiet=args.quiet))
    if args.command == "uninstall":
        return asyncio.run(_uninstall(settings, env, dry_run=args.dry_run,
                                      delete_bundles=args.delete_bundles, quiet=args.quiet))
    if args.command == "bundle":
        _check_output(args.output)
        return asyncio.run(_bundle(settings, env, args.registry, args.output))
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """The whole CLI, with argv and env injected for tests."""
    if argv[:1] == ["simulator"]:  # its own argument parser
        from controller.simulator import main as simulator_main

        return simulator_main(list(argv[1:]))
    args = _parser().parse_args(argv)
    try:
        return _command(args, env)
    except ConfigError as e:
        print(f"error: {e.problems[0]}" if len(e.problems) == 1 else f"error: {e}",
              file=sys.stderr)
        return EXIT_CONFIG
    except ControllerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def main() -> None:
    sys.exit(run(sys.argv[1:], os.environ))
