"""Ordinary mistakes through the real CLI: the documented exit code, one clear message that
names the key, file or flag and the fix, no traceback, no temp file left, no secret shown."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.factories import REGISTRY, config_doc, write_config
from tests.integration.runner import cli
from tests.integration.test_cli import SECRET
from tests.services import busy_port


def good_config(tmp_path: Path, **override: Any) -> dict[str, Any]:
    return {**config_doc("http://127.0.0.1:1", tmp_path / "bundles"), **override}


@dataclass(frozen=True)
class Mistake:
    argv: list[str]
    code: int
    says: list[str]
    config: dict[str, Any] | None = field(default=None)
    """Written to config.yaml; ``{CONFIG}`` in argv names it."""


def cases(tmp_path: Path) -> dict[str, Mistake]:
    return {
        "bundle into a directory": Mistake(
            ["bundle", "-c", "{CONFIG}", "--registry", REGISTRY, "-o", str(tmp_path)], 2,
            ["--output", "is a directory", "docker.tar.gz"], good_config(tmp_path)),
        "bundle into a missing directory": Mistake(
            ["bundle", "-c", "{CONFIG}", "--registry", REGISTRY, "-o",
             str(tmp_path / "nope" / "x.tgz")], 2,
            ["--output", f"directory {tmp_path / 'nope'} does not exist"],
            good_config(tmp_path)),
        "bundle for an unknown registry": Mistake(
            ["bundle", "-c", "{CONFIG}", "--registry", "quay.io", "-o",
             str(tmp_path / "x.tgz")], 2,
            ["--registry: quay.io is not configured", REGISTRY], good_config(tmp_path)),
        "missing config file": Mistake(
            ["check-config", "-c", str(tmp_path / "missing.yaml")], 2,
            [str(tmp_path / "missing.yaml")]),
        "marathon url with an API path": Mistake(
            ["check-config", "-c", "{CONFIG}"], 2, ["marathon.urls[0]", "http://127.0.0.1:1"],
            good_config(tmp_path, marathon={"urls": ["http://127.0.0.1:1/v2/apps"]})),
        "duration in words": Mistake(
            ["check-config", "-c", "{CONFIG}"], 2,
            ["registries[0].max_age", "'6 hours' is not a duration", "6h"],
            good_config(tmp_path, registries=[{
                "host": REGISTRY, "max_age": "6 hours",
                "credentials": {"username": "u", "password_env": "REG_PW"}}])),
        "app glob without a slash": Mistake(
            ["check-config", "-c", "{CONFIG}"], 2, ["registries[0].apps[0]", "/"],
            good_config(tmp_path, registries=[{
                "host": REGISTRY, "apps": ["shop/*"],
                "credentials": {"username": "u", "password_env": "REG_PW"}}])),
        "an empty section": Mistake(
            ["check-config", "-c", "{CONFIG}"], 2, ["storage", "got nothing"],
            good_config(tmp_path, storage=None)),
        "marathon unreachable": Mistake(
            ["plan", "-c", "{CONFIG}"], 1, ["connection refused"], good_config(tmp_path)),
    }


@pytest.mark.parametrize("name", ["bundle into a directory", "bundle into a missing directory",
                                  "bundle for an unknown registry", "missing config file",
                                  "marathon url with an API path", "duration in words",
                                  "app glob without a slash", "an empty section",
                                  "marathon unreachable"])
async def test_mistake_is_one_clear_message(tmp_path, name):
    mistake = cases(tmp_path)[name]
    argv = list(mistake.argv)
    if mistake.config is not None:
        path = write_config(tmp_path, mistake.config)
        argv = [path if a == "{CONFIG}" else a for a in argv]
    before = set(tmp_path.rglob("*"))
    code, out, err = await cli(*argv, env={"REG_PW": SECRET})
    assert code == mistake.code, err
    assert "Traceback" not in out + err
    for words in mistake.says:
        assert words in err, err
    assert "does not match" not in err  # no raw regex
    assert "NoneType" not in err  # no Python names
    assert "ClientConnectorError" not in err
    assert SECRET not in out + err
    assert set(tmp_path.rglob("*")) - before == set(), "a file was left behind"


async def test_demo_on_a_busy_port_names_the_flag():
    """`make demo` with 9102 taken says which flag picks another port."""
    with busy_port() as port:
        code, _, err = await cli("demo", "--duration", "5", "--listen", f"127.0.0.1:{port}")
    assert code == 2
    assert f"--listen 127.0.0.1:{port}: that port is busy" in err
    assert "DEMO_ARGS=" in err
    assert "Traceback" not in err


class TestConventions:
    async def test_version(self):
        """``--version`` names the version the package metadata carries (both read
        ``controller.__version__``)."""
        code, out, _ = await cli("--version")
        assert (code, out.split()) == (0, ["pullsecret-controller",
                                           version("marathon-pullsecret-controller")])

    @pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
    async def test_global_options_before_or_after_the_command(self, tmp_path, before):
        path = write_config(tmp_path, good_config(tmp_path))
        argv = (["--config", path, "check-config"] if before
                else ["check-config", "--config", path])
        code, out, err = await cli(*argv, env={"REG_PW": "x"})
        assert code == 0, err
        assert out.strip() == f"{path}: OK (1 registry)"

    async def test_quiet_check_config_prints_nothing(self, tmp_path):
        path = write_config(tmp_path, good_config(tmp_path))
        assert await cli("-q", "check-config", "-c", path, env={"REG_PW": "x"}) == (0, "", "")

    @pytest.mark.parametrize("command", ["run", "check-config", "plan", "reconcile",
                                         "uninstall", "bundle", "demo", "simulator"])
    async def test_every_command_has_help_with_an_example(self, command):
        code, out, _ = await cli(command, "--help")
        assert code == 0
        assert "example:\n  pullsecret-controller " in out
