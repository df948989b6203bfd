"""The harness's own checks can fail: a bad bundle, a leak, a lost user entry and tasks that
do not run are seen."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.archive import build_bundle
from controller.model import RegistryCredential, Secret
from controller.simulator import Agent, MarathonState
from tests.reliability import harness
from tests.reliability.harness import (
    REG,
    THIRD_REG,
    BundleWatch,
    Measurement,
    Scenario,
    basic_auth,
    docker_app,
    user_part,
)


def make_world(tmp_path: Path, state: MarathonState) -> Scenario:
    storage = tmp_path / "work" / "bundles"
    storage.mkdir(parents=True)
    (tmp_path / "secrets").mkdir()
    return Scenario(workdir=tmp_path / "work", storage=storage, secrets_dir=tmp_path / "secrets",
                    state=state, measurement=Measurement())


@pytest.fixture
def world(tmp_path) -> Scenario:
    return make_world(tmp_path, MarathonState())


@pytest.fixture
async def live(tmp_path) -> AsyncIterator[Scenario]:
    """A world whose simulator runs its agent: tasks launch, fetch and pull."""
    agent = Agent(tmp_path / "sandboxes")
    try:
        yield make_world(tmp_path, MarathonState(agent=agent))
    finally:
        await agent.close()


async def settled(world: Scenario) -> None:
    """Wait until no launch is fetching or pulling."""
    assert world.state.agent is not None
    await world.state.agent.idle()


def publish(world: Scenario, *, recorded: bytes | None = None) -> bytes:
    """Serve a valid bundle for ``REG`` with a record of ``recorded`` (default: itself)."""
    registry = world.registries.get(REG) or world.registry(REG)
    data = build_bundle(REG, RegistryCredential(username="robot",
                                                password=Secret(registry.password)),
                        "config.json")
    (world.storage / registry.bundle).write_bytes(data)
    record = {"sha256": hashlib.sha256(recorded or data).hexdigest()}
    (world.storage / registry.bundle.replace(".tar.gz", ".json")).write_text(json.dumps(record))
    return data


class TestBundleWatch:
    def test_a_valid_bundle_matching_its_record_passes(self, world):
        """A complete bundle with its own hash on record is fine."""
        publish(world)
        watch = BundleWatch(world.shelf)
        watch.check_once()
        assert watch.problems == []

    def test_a_truncated_bundle_is_reported(self, world):
        """Half a gzip stream is a problem at once."""
        data = publish(world)
        (world.storage / world.registries[REG].bundle).write_bytes(data[:len(data) // 2])
        watch = BundleWatch(world.shelf)
        watch.check_once()
        assert watch.problems == [f"{world.registries[REG].bundle}: not a complete gzip stream"]

    def test_a_record_that_never_catches_up_is_reported(self, world, monkeypatch):
        """Served bytes that differ from their record past the catch-up time are a problem."""
        monkeypatch.setattr(harness, "RECORD_CATCH_UP_SECONDS", -1.0)
        publish(world, recorded=b"other bytes")
        watch = BundleWatch(world.shelf)
        watch.check_once()
        assert len(watch.problems) == 1
        assert "differ from their record" in watch.problems[0]


class TestLeaks:
    def test_a_secret_in_a_file_and_a_temp_file_are_found(self, world):
        """The auth form of a marker in a file, and any ``.tmp`` file, are leaks."""
        registry = world.registry(REG)
        (world.workdir / "dump.txt").write_text(f"x {basic_auth(registry.password)} y")
        (world.storage / ".pullsecret-x.tar.gz.42.tmp").write_bytes(b"")
        assert world.leaks() == ["temp file bundles/.pullsecret-x.tar.gz.42.tmp", "file dump.txt"]

    def test_served_bundles_are_not_leaks(self, world):
        """A bundle holds the credential by design."""
        publish(world)
        assert world.leaks() == []


class TestUserPart:
    def test_managed_entries_do_not_count(self, world):
        """Adding a managed entry keeps the user part; adding another entry changes it."""
        world.state.load_apps([docker_app("/a", artifact="file:///artifacts/a/config.tgz")])
        before = user_part(world.state.get_app("/a"))
        fetch = world.state.get_app("/a")["fetch"]
        world.state.update_app("/a", {"fetch": [*fetch, {"uri": "file:///b/pullsecret-x.tar.gz"}]})
        assert user_part(world.state.get_app("/a")) == before
        world.state.update_app("/a", {"fetch": [{"uri": "file:///b/pullsecret-x.tar.gz"}]},
                               force=True)
        assert user_part(world.state.get_app("/a")) != before


class TestConverged:
    async def test_running_tasks_of_a_public_registry_are_converged(self, live):
        """An app whose tasks fetch its user's artifact and pull from a public registry runs:
        nothing is left to wait for."""
        live.add_apps([docker_app("/pub", THIRD_REG, artifact=live.artifact("/pub/c.tgz"))],
                      deployed=True)
        await settled(live)
        assert live.state.get_app("/pub")["tasksRunning"] == 1
        assert live.unconverged() == []

    async def test_a_deployment_whose_tasks_fail_is_not_converged(self, live):
        """A user entry that cannot be fetched fails every task, so the app's deployment never
        ends: not converged, though its entries are right."""
        missing = (live.workdir / "gone.tgz").as_uri()
        live.add_apps([docker_app("/pub", THIRD_REG, artifact=missing)])
        await settled(live)
        [reason] = live.unconverged()
        assert reason.startswith("/pub: deployments [")

    async def test_a_served_app_runs_once_it_fetches_its_bundle(self, live):
        """On a served registry an app cannot pull until it has its entry; an opted-out app
        there never runs, and is no reason to wait."""
        live.registry(REG)
        publish(live)
        live.add_apps([docker_app("/a"), docker_app("/out", opted_in=False)], deployed=True)
        await settled(live)
        assert "no basic auth credentials" in live.state.get_app("/a")["lastTaskFailure"]["message"]
        assert live.unconverged() == [f"/a: managed entries [], want [{live.expected_uri(REG)!r}]"]
        live.state.update_app("/a", {"fetch": [{"uri": live.expected_uri(REG)}]})
        await settled(live)
        assert live.state.get_app("/a")["tasksRunning"] == 1
        assert live.state.get_app("/out")["tasksRunning"] == 0
        assert live.unconverged() == []
