"""`pullsecret-controller uninstall` end to end on the simulator: the way out."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from controller.plan import is_managed_uri
from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import LABEL, config_doc, docker_app, write_config
from tests.integration.runner import cli
from tests.integration.test_cli import SECRET

USER_ENTRY = {"uri": "https://files.example.com/assets.tgz", "extract": True,
              "executable": False, "cache": True}


def labelled(app_id: str, value: str = "true", **extra: Any) -> dict[str, Any]:
    return docker_app(app_id, labels={LABEL: value, "team": "a"}, **extra)


def config(tmp_path: Path, url: str) -> Path:
    return write_config(tmp_path, config_doc(
        url, tmp_path / "bundles", reconcile={"max_writes_per_second": 100, "write_burst": 100}))


def without_managed(app: dict[str, Any]) -> dict[str, Any]:
    """The app as its user wrote it: everything but our entry (and Marathon's bookkeeping)."""
    shown = copy.deepcopy(app)
    shown["fetch"] = [e for e in shown.get("fetch", []) if not is_managed_uri(e["uri"])]
    for key in ("version", "versionInfo", "deployments", "tasks", "tasksStaged",
                "tasksRunning", "tasksHealthy", "tasksUnhealthy"):
        shown.pop(key, None)
    return shown


async def test_uninstall_removes_every_managed_entry_and_nothing_else(tmp_path):
    """Dry run first shows the diff and writes nothing; then every managed entry goes (also
    from an app whose label was deleted), user entries and fields stay byte-identical, no
    write is forced, and --delete-bundles removes the stored bundles."""
    state = MarathonState(deployment_seconds=0)
    state.load_apps([labelled("/a/one", fetch=[USER_ENTRY]), labelled("/a/two"),
                     labelled("/a/off", value="false", fetch=[USER_ENTRY])])
    env = {"REG_PW": SECRET}
    async with MarathonSimulator(state) as sim:
        path = config(tmp_path, sim.url)
        code, _, err = await cli("reconcile", "--once", "-c", path, env=env)
        assert code == 0, err
        # The label is deleted while no controller runs: the entry is still there.
        state.update_app("/a/two", {"labels": {"team": "a"}})
        before = {a["id"]: without_managed(a) for a in state.list_apps()}
        assert sum(is_managed_uri(e["uri"]) for a in state.list_apps()
                   for e in a.get("fetch", [])) == 2
        writes = len(state.writes)

        code, out, err = await cli("uninstall", "--dry-run", "-c", path, env=env)
        assert code == 0, err
        assert "/a/one: would remove" in out
        assert "/a/two: would remove" in out
        assert "  - {" in out
        assert len(state.writes) == writes

        code, out, err = await cli("uninstall", "--delete-bundles", "-c", path, env=env)
        assert code == 0, err
        after = {a["id"]: a for a in state.list_apps()}
        new_writes = state.writes[writes:]
    assert {w.path for w in new_writes} == {"/v2/apps/a/one", "/v2/apps/a/two"}
    assert all("force" not in w.query for w in new_writes)
    for app_id, app in after.items():
        assert not any(is_managed_uri(e["uri"]) for e in app.get("fetch", []))
        assert without_managed(app) == before[app_id]
    assert "deleted 1 bundle(s): pullsecret-registry.example.com_5000.tar.gz" in out
    assert not list((tmp_path / "bundles").glob("*.tar.gz"))
    assert SECRET not in out + err
