"""End to end with real parts: `reconcile --once` against the simulator, then each bundle is
fetched the way Mesos does and `skopeo` pulls from a real password-protected registry with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from controller.plan import is_managed_uri
from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import config_doc, docker_app, registry_entry, write_config
from tests.integration.runner import cli
from tests.services import REFERENCE, Registry, fetch_into_sandbox, skopeo_inspect

pytestmark = pytest.mark.e2e

SCHEMA = REFERENCE / "schema" / "AppDefinition.json"
OWN_ENTRY = {"uri": "https://files.example.com/assets.tgz", "extract": True, "cache": True}


def cluster(registry: Registry) -> list[dict[str, Any]]:
    """The mix the issue asks for."""
    return [
        docker_app("/team-a/web", registry.ref(), fetch=[OWN_ENTRY]),
        docker_app("/team-a/worker", registry.ref()),
        docker_app("/team-a/plain", registry.ref(), opted_in=False),
        docker_app("/team-a/public", "nginx:1.25"),
        docker_app("/team-b/hello", registry.ref(registry.other_image)),  # not allowed
        docker_app("/team-a/ucr", registry.ref(), kind="MESOS"),
        docker_app("/team-a/bad", f"{registry.host}/Team-A/UPPER:1"),  # malformed
    ]


def controller_config(tmp_path: Path, url: str, registry: Registry, fmt: str) -> Path:
    return write_config(tmp_path, config_doc(
        url, tmp_path / "bundles", marathon={"timeout_seconds": 5},
        registries=[registry_entry(registry.host, username=registry.username,
                                   password_env="E2E_REGISTRY_PASSWORD", format=fmt,
                                   apps=["/team-a/*"])],
        reconcile={"max_writes_per_second": 100}, logging={"format": "json"}))


async def reconcile_once(config: Path, registry: Registry) -> tuple[int, str, str]:
    """The real CLI in its own process, while this loop serves the simulator."""
    return await cli("reconcile", "--once", "--config", config,
                     env={"E2E_REGISTRY_PASSWORD": registry.password})


def managed_entries(state: MarathonState, app_id: str) -> list[dict[str, Any]]:
    return [e for e in state.get_app(app_id).get("fetch", []) if is_managed_uri(e["uri"])]


def storage_snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("fmt", ["config.json", "dockercfg"])
async def test_reconcile_once_gives_working_pull_credentials(registry, tmp_path, fmt):
    """Rewritten apps authenticate with their bundle; a second pass writes nothing."""
    state = MarathonState(deployment_seconds=0)
    state.load_apps(cluster(registry))
    async with MarathonSimulator(state) as sim:
        config = controller_config(tmp_path, sim.url, registry, fmt)
        code, out, err = await reconcile_once(config, registry)
        assert code == 0, out + err  # /team-a/bad is its owner's to fix: listed, not failed
        assert "/team-a/bad: INVALID: container.docker.image" in out
        assert "summary: 6 apps" in out  # listed by label: /team-a/plain has none
        assert registry.password not in out + err

        rewritten = {w.path.removeprefix("/v2/apps") for w in state.writes}
        assert rewritten == {"/team-a/web", "/team-a/worker"}
        for app_id in ("/team-a/plain", "/team-a/public", "/team-b/hello", "/team-a/ucr"):
            assert managed_entries(state, app_id) == []
        web_fetch = state.get_app("/team-a/web")["fetch"]
        assert web_fetch[0] == {**OWN_ENTRY, "executable": False}  # the app's own, untouched

        for app_id in sorted(rewritten):
            (entry,) = managed_entries(state, app_id)
            assert (entry["extract"], entry["cache"]) == (True, False)
            sandbox = tmp_path / f"sandbox{app_id.replace('/', '-')}"
            sandbox.mkdir()
            fetch_into_sandbox(entry["uri"], sandbox, entry.get("destPath"))
            result = skopeo_inspect(registry.ref(), sandbox)
            assert result.returncode == 0, registry.scrub(result.stderr)

        empty = tmp_path / "sandbox-empty"
        empty.mkdir()
        denied = skopeo_inspect(registry.ref(), empty)
        assert denied.returncode != 0
        assert "unauthorized" in denied.stderr.lower() or "401" in denied.stderr

        validator = jsonschema.Draft4Validator(json.loads(SCHEMA.read_text()))
        for write in state.writes:
            validator.validate({"id": write.path.removeprefix("/v2/apps"), **write.body})

        writes, stored = len(state.writes), storage_snapshot(tmp_path / "bundles")
        code, out, _ = await reconcile_once(config, registry)
        assert code == 0  # still only /team-a/bad, which is invalid
        assert len(state.writes) == writes
        assert storage_snapshot(tmp_path / "bundles") == stored


async def test_one_failing_app_does_not_stop_the_pass(registry, tmp_path):
    """A 500 on one app's write is reported; the others converge; the bundle stays."""
    state = MarathonState(deployment_seconds=0)
    state.load_apps(cluster(registry)[:2])
    async with MarathonSimulator(state) as sim:
        config = controller_config(tmp_path, sim.url, registry, "config.json")
        state.fail_next("/team-a/web$", 500, count=1, method="PATCH")
        code, out, _ = await reconcile_once(config, registry)
        assert code == 1
        assert "/team-a/web: FAILED" in out
        assert len(managed_entries(state, "/team-a/worker")) == 1
        assert managed_entries(state, "/team-a/web") == []
        assert list((tmp_path / "bundles").glob("*.tar.gz"))
        code, out, _ = await reconcile_once(config, registry)
        assert code == 0, out
        assert len(managed_entries(state, "/team-a/web")) == 1


async def test_bundle_command_replaces_the_manual_recipe(registry, tmp_path):
    """`bundle -o docker.tar.gz` makes the archive the manual recipe made, and it works."""
    config = controller_config(tmp_path, "http://127.0.0.1:1", registry, "config.json")
    out = tmp_path / "docker.tar.gz"
    code, _, stderr = await cli("bundle", "--config", config, "--registry", registry.host,
                                "-o", out, env={"E2E_REGISTRY_PASSWORD": registry.password})
    assert code == 0, stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    fetch_into_sandbox(out.as_uri(), sandbox)
    assert skopeo_inspect(registry.ref(), sandbox).returncode == 0


@pytest.mark.parametrize("verify", ["required", "best_effort"])
async def test_bundle_command_refuses_a_credential_the_registry_rejects(registry, tmp_path,
                                                                        verify):
    """`bundle` logs in first as the daemon would before publishing: a refused password is not
    written (exit 1), unless --no-verify says so."""
    config = write_config(tmp_path, config_doc(
        "http://127.0.0.1:1", tmp_path / "bundles",
        registries=[registry_entry(registry.host, username=registry.username,
                                   password_env="E2E_REGISTRY_PASSWORD", verify=verify)]))
    out = tmp_path / "docker.tar.gz"
    wrong = {"E2E_REGISTRY_PASSWORD": "not-the-password"}
    code, _, stderr = await cli("bundle", "-c", config, "--registry", registry.host, "-o", out,
                                env=wrong)
    assert code == 1
    assert "nothing written" in stderr
    assert not out.exists()
    code, _, stderr = await cli("bundle", "-c", config, "--registry", registry.host, "-o", out,
                                "--no-verify", env=wrong)
    assert (code, out.exists()) == (0, True), stderr
