"""README.md's "First real run" is real output: its config runs, and each ``console`` example
prints what the README says it prints.

Everything is read from the README itself: the ``yaml`` config block, and in each ``console``
block the commands (``$ pullsecret-controller …``) and the lines after each one. The commands
run as operators run them (their own process, in a directory holding ``config.yaml``) against
the in-process Marathon simulator, holding the two apps the examples show. Only what must vary
is normalised: the simulator's URL, a temporary storage directory shown as the README's, the
registry for the commands that log in to it (it does not exist here: ``verify: off``; ``plan``
never logs in, so it runs with the README's config as it is), and the ops port. A log line of
``run`` that ends in ``...}`` stands for every real line that starts with the text before the
``...``; the README's lines must appear in that order.

When an output changes on purpose, the failure shows the real output to paste into README.md.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import LABEL
from tests.services import HOST, free_port

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## First real run"
PROGRAM = "pullsecret-controller"
README_STORAGE = "/mnt/shared/pullsecrets"
APPS = [
    {"id": "/shop/web", "cmd": "./serve", "labels": {LABEL: "true"},
     "container": {"type": "DOCKER", "docker": {"image": "registry.example.com/shop/web:2.1"}}},
    {"id": "/shop/cron", "cmd": "./tick", "labels": {LABEL: "true"},
     "container": {"type": "DOCKER", "docker": {"image": "busybox:1.36"}}},
]
"""The apps the examples show: one on the configured registry, one on Docker Hub."""
_FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    command: str
    """What follows ``$ ``."""
    output: list[str]


def section() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end != -1 else None]


def blocks(kind: str) -> list[str]:
    """The fenced blocks of ``kind`` in the section, without their indentation."""
    found = []
    for match in _FENCE.finditer(section()):
        indent, lang, body = match.groups()
        if lang == kind:
            found.append("".join(line.removeprefix(indent) for line in
                                 body.splitlines(keepends=True)))
    return found


def examples() -> Iterator[Example]:
    for block in blocks("console"):
        current: Example | None = None
        for line in block.splitlines():
            if line.startswith("$ "):
                if current is not None:
                    yield current
                current = Example(line[2:], [])
            else:
                assert current is not None, f"output before any command: {line!r}"
                current.output.append(line)
        if current is not None:
            yield current


class World:
    """A directory holding the README's config (normalised), beside a running simulator."""

    def __init__(self, directory: Path, url: str) -> None:
        self.directory = directory
        self.storage = directory / "pullsecrets"
        self.storage.mkdir()
        self.listen = f"{HOST}:{free_port()}"
        (config_block,) = blocks("yaml")
        self.config: dict[str, Any] = yaml.safe_load(config_block)
        self.config["marathon"]["urls"] = [url]
        self.config["storage"]["filesystem"]["path"] = str(self.storage)
        for registry in self.config["registries"]:
            for key in ("password_file", "token_file"):
                if key in registry["credentials"]:
                    (directory / registry["credentials"][key]).write_text("s3cret\n")
        self.config["server"] = {"listen": self.listen}

    def prepare(self, command: str) -> None:
        """The config as ``command`` runs with it: a command that would log in to the
        registry, which does not exist here, runs with ``verify: off``."""
        config = dict(self.config)
        if shlex.split(command)[1] not in ("check-config", "plan"):
            config["registries"] = [{**r, "verify": "off"} for r in config["registries"]]
        (self.directory / "config.yaml").write_text(yaml.safe_dump(config))

    def argv(self, command: str) -> list[str]:
        words = shlex.split(command)
        assert words[0] == PROGRAM, f"not a {PROGRAM} command: {command}"
        return [sys.executable, "-m", "controller", *words[1:]]

    def shown(self, text: str) -> list[str]:
        """Output as the README shows it."""
        return text.replace(str(self.storage), README_STORAGE).replace(
            self.listen, "127.0.0.1:9102").splitlines()

    async def run(self, command: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(command), cwd=self.directory, env=dict(os.environ),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def daemon_log(self, command: str, wanted: list[str]) -> list[str]:
        """Run the daemon until its log has lines matching ``wanted`` in order (or 30 s);
        then stop it with SIGTERM, which must end it with exit code 0. Its log, as shown."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(command), cwd=self.directory, env=dict(os.environ),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(30):
                while not in_order(wanted, lines) and (raw := await proc.stderr.readline()):
                    lines.extend(self.shown(raw.decode()))
        except TimeoutError:
            pass
        finally:
            proc.send_signal(signal.SIGTERM)
            _, rest = await asyncio.wait_for(proc.communicate(), 30)
        lines.extend(self.shown(rest.decode()))
        assert proc.returncode == 0, "\n".join(lines)
        return lines


def matches(shown: str, real: str) -> bool:
    """A README log line ending in ``...}`` is a prefix of the real line; else it is whole."""
    return real.startswith(shown[:-4]) if shown.endswith(", ...}") else real == shown


def in_order(wanted: list[str], lines: list[str]) -> bool:
    """Each of ``wanted`` matches one of ``lines``, in the same order."""
    remaining = iter(lines)
    return all(any(matches(shown, real) for real in remaining) for shown in wanted)


def test_the_section_has_its_examples():
    """The test reads what it means to: a config, and the commands of the first run."""
    commands = [shlex.split(e.command)[1] for e in examples()]
    assert commands == ["check-config", "plan", "reconcile", "reconcile", "run"]
    assert len(blocks("yaml")) == 1


@pytest.fixture
async def world(tmp_path: Path) -> Any:
    state = MarathonState(deployment_seconds=0)
    state.load_apps(APPS)
    async with MarathonSimulator(state) as sim:
        yield World(tmp_path, sim.url)


async def test_every_example_prints_what_the_readme_says(world: World):
    """Each command in turn, as the README runs them: the one-shot commands' stdout is the
    README's text, line for line, and the daemon logs the README's lines in order."""
    for example in examples():
        world.prepare(example.command)
        if shlex.split(example.command)[1] == "run":
            lines = await world.daemon_log(example.command, example.output)
            assert in_order(example.output, lines), (
                f"$ {example.command}: README lines not found in order; the real log:\n"
                + "\n".join(lines))
            continue
        code, out, err = await world.run(example.command)
        assert code == 0, f"$ {example.command}\n{out}{err}"
        assert world.shown(out) == example.output, (
            f"$ {example.command}: the real output (paste it into README.md):\n{out}")
