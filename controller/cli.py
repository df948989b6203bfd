"""Command line: argv and env in, exit code out (0 ok, 1 failed, 2 bad config or arguments,
130 interrupted).

Output for people goes to stdout, logs to stderr. Global options (``--config``, ``--quiet``,
``--log-level``, ``--log-format``) work before or after the command, on every command. Exit 1
is for failures of ours (a publish, Marathon or storage, a refused write); an app whose own
definition is invalid is reported as such and fails nothing (``controller.passreport``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from controller import __version__
from controller.archive import build_bundle
from controller.config import load_settings
from controller.errors import ConfigError, ControllerError
from controller.logs import configure
from controller.reference import InvalidReferenceError, normalize_registry_host
from controller.settings import Settings

if TYPE_CHECKING:
    from controller.passreport import PassReport

__all__ = ["exit_after", "main", "run"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
EXIT_INTERRUPTED = 130
_EXIT_MARGIN_SECONDS = 5.0
"""After SIGTERM, the process ends at most this long after ``shutdown_timeout_seconds``."""
DEFAULT_CONFIG = "/etc/pullsecret-controller/config.yaml"
_LEVELS = ("debug", "info", "warning", "error")
_FORMATS = ("auto", "json", "console")
_T = TypeVar("_T")
_ONE_SHOT_LEVEL = "warning"
"""One-shot commands print a report on stdout; their info logs would only interleave with it."""


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes; on a subcommand they default to "not given", so that
    the same option given before the command is not overwritten."""
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--config", "-c", type=Path, default=default(None),
                        metavar="FILE", help=f"YAML config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--quiet", "-q", action="store_true", default=default(False),
                        help="print only errors (and a one-shot pass's summary)")
    parser.add_argument("--log-level", choices=_LEVELS, default=default(None),
                        help="override logging.level from the config")
    parser.add_argument("--log-format", choices=_FORMATS, default=default(None),
                        help="override logging.format from the config (auto: JSON unless "
                             "stderr is a terminal)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pullsecret-controller",
        description="Keeps private-registry pull credentials working for Docker apps on "
                    "Marathon.",
        epilog="First run: check-config, then plan, then reconcile --once, then run.\n"
               "Exit codes: 0 ok (apps with an invalid definition are listed, not failed), "
               "1 something of ours failed (a registry's publish, Marathon or storage could not "
               "be reached, a write was refused), 2 invalid configuration or arguments, "
               "130 interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    check = command("check-config", "Validate the config file and report every problem.",
                    "pullsecret-controller check-config -c config.yaml")
    check.add_argument("--offline", action="store_true",
                       help="check syntax and values only: not whether the files it names "
                            "exist, its variables are set, its group exists or its storage "
                            "directory is there (a config checked off its target host)")
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
    bundle.add_argument("--no-verify", action="store_true",
                        help="write it without logging in to the registry first (the registry's "
                             "verify setting is ignored)")
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
        epilog="example:\n  pullsecret-controller demo --duration 20\n\n"
               "--config is not used (the demo makes its own); --quiet prints only errors; "
               "--log-level and --log-format apply to the daemon's log lines.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(demo, suppress=True)
    demo.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--listen", default="127.0.0.1:9102", metavar="HOST:PORT",
                      help="where to serve the ops endpoints (default 127.0.0.1:9102)")
    demo.add_argument("--verbose", action="store_true",
                      help="print the daemon's log lines too (default: to a file)")
    simulator = commands.add_parser("simulator", help="Serve the Marathon API simulator "
                                    "(see `simulator --help`).", add_help=False)
    _global_options(simulator, suppress=True)  # its own options are its parser's
    return parser


def _config_path(args: argparse.Namespace) -> Path:
    return args.config if args.config is not None else Path(DEFAULT_CONFIG)


def _load(args: argparse.Namespace, env: Mapping[str, str], *, one_shot: bool,
          offline: bool = False) -> Settings:
    """The settings, and logging set up from them and the options. Only ``bundle`` loads
    without looking for the storage directory: it never touches storage. ``offline`` (or the
    ``--offline`` option) checks the file's values alone."""
    settings = load_settings(_config_path(args), env,
                             offline=offline or getattr(args, "offline", False),
                             storage=args.command != "bundle")
    level = ("error" if args.quiet else args.log_level
             or (_stricter(settings.logging.level, _ONE_SHOT_LEVEL) if one_shot
                 else settings.logging.level))
    configure(level, args.log_format or settings.logging.format)
    return settings


def exit_after(seconds: float, code: int = EXIT_FAILED) -> None:
    """End the process after ``seconds`` whatever it waits for: the hard bound of a shutdown.

    The daemon drains within ``shutdown_timeout_seconds``, but a thread stuck in the kernel (an
    fsync on a hung mount, say) cannot be cancelled, and the interpreter waits for it on the way
    out. A daemon thread cannot hold the process: if it is still alive when the time is up, it
    says so on stderr and exits with ``code``.
    """
    def force() -> None:
        sys.stderr.write(json.dumps({"component": "cli", "event": "shutdown_forced",
                                     "after_seconds": seconds, "level": "error"}) + "\n")
        sys.stderr.flush()
        os._exit(code)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()


def _stricter(level: str, floor: str) -> str:
    return max(level, floor, key=_LEVELS.index)


def _print_report(report: PassReport, *, verbose: bool = False, quiet: bool = False,
                  interrupted: bool = False) -> None:
    """The pass's report on stdout; ``quiet`` keeps the problems and the summary."""
    from controller.passreport import format_report

    text = format_report(report, verbose=verbose, interrupted=interrupted)
    if quiet:
        text = "\n".join(line for line in text.splitlines()
                         if "FAILED" in line or "INVALID" in line
                         or line.startswith(("summary:", "interrupted:")))
    print(text, flush=True)


async def _reported(work: Coroutine[Any, Any, _T], report: PassReport, *, verbose: bool = False,
                    quiet: bool = False) -> _T:
    """Run one pass's ``work``; if it is interrupted, print what it did so far (the writes
    already made) before the interruption goes on."""
    try:
        return await work
    except asyncio.CancelledError:
        _print_report(report, verbose=verbose, quiet=quiet, interrupted=True)
        raise


async def _pass(settings: Settings, env: Mapping[str, str], *, dry_run: bool, verbose: bool,
                quiet: bool) -> int:
    from controller.manager import run_once
    from controller.passreport import PassReport
    from controller.wiring import build

    async with build(settings, env, dry_run=dry_run) as parts:
        report = PassReport(preview=parts.dry_run)
        await _reported(run_once(parts, report=report), report, verbose=verbose, quiet=quiet)
    _print_report(report, verbose=verbose, quiet=quiet)
    return EXIT_OK if report.ok else EXIT_FAILED


async def _uninstall(settings: Settings, env: Mapping[str, str], *, dry_run: bool,
                     delete_bundles: bool, quiet: bool) -> int:
    """Plan as if no registry were configured: every entry this controller owns goes, and then,
    if asked, every bundle it owns (only once no app may still fetch one)."""
    from controller.manager import run_once
    from controller.passreport import PassReport
    from controller.wiring import build

    report = PassReport()
    async with build(replace(settings, registries=()), env, dry_run=dry_run) as parts:
        await _reported(run_once(parts, every_app=True, report=report), report, quiet=quiet)
        if not quiet or not report.ok or report.invalid:
            _print_report(report)
        if not report.ok:
            print("some apps may still carry entries: run uninstall again", file=sys.stderr)
            return EXIT_FAILED
        if delete_bundles and report.invalid:
            print(f"bundles kept: {len(report.invalid)} app(s) could not be read (INVALID above) "
                  "and may still fetch one; fix or delete them, then run uninstall again",
                  file=sys.stderr)
            return EXIT_FAILED
        if delete_bundles:
            names = await parts.bundles.prune()
            if not quiet:
                verb = "would delete" if parts.dry_run else "deleted"
                print(f"{verb} {len(names)} bundle(s): {', '.join(names) or '-'}")
    return EXIT_OK


async def _bundle(settings: Settings, env: Mapping[str, str], host: str, output: Path, *,
                  verify: bool) -> int:
    """The registry's bundle in ``output``, tried at the registry first as its ``verify``
    says (as the daemon would before publishing it), unless ``verify`` is false."""
    import aiohttp

    from controller.storage.fs import write_atomically
    from controller.wiring import credential_source, registry_logins

    try:
        wanted = normalize_registry_host(host)
    except InvalidReferenceError as e:
        raise ConfigError([f"--registry: {e}"]) from None
    registry = next((r for r in settings.registries if r.registry == wanted), None)
    if registry is None:
        known = ", ".join(r.host for r in settings.registries) or "none"
        raise ConfigError([f"--registry: {host} is not configured (configured: {known})"])
    credential = await credential_source(registry, env).fetch()
    if verify and registry.verify != "off":
        async with aiohttp.ClientSession() as session:
            (login,) = registry_logins([registry], session, reconcile_seconds=60).values()
            result = await login.verify(credential)
        if result.blocks_publishing(registry.verify):
            print(f"error: {registry.host}: the login was not accepted ({result.result}: "
                  f"{result.detail}); verify is {registry.verify}: nothing written "
                  "(--no-verify writes it anyway)", file=sys.stderr)
            return EXIT_FAILED
        if result.result != "accepted":
            print(f"warning: {registry.host}: the login could not confirm the credential "
                  f"({result.result}: {result.detail}); written, as verify is best_effort",
                  file=sys.stderr)
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


def _check_config(path: Path, settings: Settings, *, quiet: bool, offline: bool) -> int:
    if not quiet:
        count = len(settings.registries)
        checked = ("; offline: syntax and values only, not the files, variables, group or "
                   "storage directory it names" if offline else "")
        print(f"{path}: OK ({count} {'registry' if count == 1 else 'registries'}{checked})")
    return EXIT_OK


def _one_shot(work: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run(work)``, where SIGINT and SIGTERM cancel the work (so that it can say
    what it did) and end in exit code 130, rather than killing it mid-write."""
    async def interruptible() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await work
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(interruptible())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def _demo(args: argparse.Namespace) -> int:
    from controller.demo import run_demo

    if args.config is not None:
        print(f"demo: --config {args.config} is not used: the demo makes its own config "
              "(a simulated Marathon, a temporary bundle directory)", file=sys.stderr)
    return run_demo(duration=args.duration, listen=args.listen, verbose=args.verbose,
                    quiet=args.quiet, log_level=args.log_level or "info",
                    log_format=args.log_format)


def _inject(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Plan as the daemon does (``manager.planner``), with the config alone: the files and
    variables it names need not exist, and the store is built without the filesystem
    ``group`` (it only sets the mode of files written; the pipeline's host need not know it).
    Building a store has no other side effect: no directory is made, no client created."""
    from controller.inject import Injector, inject, parse_document, render
    from controller.manager import planner
    from controller.storage.backends import FilesystemStorage
    from controller.wiring import store_from_settings

    settings = _load(args, env, one_shot=True, offline=True)
    storage = settings.storage
    if isinstance(storage, FilesystemStorage):
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
        return _demo(args)
    if args.command == "inject":
        return _inject(args, env)
    settings = _load(args, env, one_shot=args.command != "run")
    if args.command == "run":
        from controller.manager import run as run_daemon

        if args.dry_run:
            settings = replace(settings, reconcile=replace(settings.reconcile, dry_run=True))
        deadline = settings.reconcile.shutdown_timeout_seconds + _EXIT_MARGIN_SECONDS
        return asyncio.run(run_daemon(settings, env,
                                      on_stop_signal=lambda: exit_after(deadline)))
    if args.command == "check-config":
        return _check_config(_config_path(args), settings, quiet=args.quiet,
                             offline=args.offline)
    if args.command in ("plan", "reconcile"):
        return _one_shot(_pass(settings, env, dry_run=args.command == "plan" or args.dry_run,
                               verbose=getattr(args, "verbose", False), quiet=args.quiet))
    if args.command == "uninstall":
        return _one_shot(_uninstall(settings, env, dry_run=args.dry_run,
                                    delete_bundles=args.delete_bundles, quiet=args.quiet))
    if args.command == "bundle":
        _check_output(args.output)
        return _one_shot(_bundle(settings, env, args.registry, args.output,
                                 verify=not args.no_verify))
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


def _simulator(args: argparse.Namespace, argv: list[str]) -> int:
    """The simulator, with its own argument parser for ``argv``; of the global options,
    ``--quiet`` silences its banner, the log options set up logging, and ``--config`` is not
    used."""
    from controller.simulator import main as simulator_main

    if args.config is not None:
        print(f"simulator: --config {args.config} is not used: the simulator needs no config",
              file=sys.stderr)
    configure(args.log_level or "info", args.log_format or "auto")
    with contextlib.ExitStack() as banner:
        if args.quiet:
            banner.enter_context(contextlib.redirect_stdout(
                banner.enter_context(open(os.devnull, "w"))))
        return simulator_main(argv)


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """The whole CLI, with argv and env injected for tests."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "simulator":  # the rest is for its own parser
        return _simulator(args, rest)
    args = parser.parse_args(argv)
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
