"""Living with the other writers of app definitions: stuck deployments rescued (or reported),
fights with a sync job stopped, and entries that only look like ours left alone.

The simulator here runs deployments until a test ends them, as real Marathon does for a
deployment whose tasks never run; a task's failed pull is the ``status_update_event`` Marathon
sends (tests/simulator covers the agent that produces them by itself).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
import structlog.testing

from controller.config import settings_from_mapping
from controller.manager import run, run_once
from controller.plan import bundle_name
from controller.presence import NameTakenError
from controller.simulator import MarathonState
from controller.wiring import build
from tests.factories import REGISTRY, docker_app
from tests.integration.runner import Daemon, Ops, bundle_uris, daemon_config
from tests.services import eventually

AGENT = "marathon-pullsecret-controller/"
PULL_FAILED = ("Failed to launch container: Failed to run 'docker -H unix:///var/run/docker.sock "
               f"pull {REGISTRY}/team/new:2': exited with status 1; stderr='Error response from "
               "daemon: Get https://registry.example.com:5000/v2/team/new/manifests/2: no basic "
               "auth credentials\n'")
USER_FETCH = {"uri": "https://artifacts.example.com/team/conf.tgz", "extract": True,
              "executable": False, "cache": True}


@pytest.fixture
def state() -> MarathonState:
    return MarathonState(deployment_seconds=None)


@pytest.fixture
def env() -> dict[str, str]:
    return {"REG_PW": "robot-password"}


@pytest.fixture
def config(sim, tmp_path):
    def make(**sections: Any) -> dict[str, Any]:
        doc = daemon_config(sim.url, tmp_path)
        for section, values in sections.items():
            doc[section] = {**doc.get(section, {}), **values}
        return doc

    return make


def ours(state: MarathonState, *, forced: bool | None = None, status: int | None = None
         ) -> list[Any]:
    """The controller's write requests (forced ones, or the others, if asked)."""
    return [w for w in state.writes if w.client.startswith(AGENT)
            and (forced is None or ("force=true" in w.query) is forced)
            and (status is None or w.status == status)]


def fail_pull(state: MarathonState, app_id: str) -> None:
    """A task of the app's current version fails to pull, as Marathon reports it."""
    state.publish("status_update_event", {
        "slaveId": "agent-1", "taskId": f"{app_id.strip('/').replace('/', '_')}.1",
        "taskStatus": "TASK_FAILED", "message": PULL_FAILED, "appId": app_id,
        "host": "agent-1", "ipAddresses": [], "ports": [],
        "version": state.get_app(app_id)["version"]})


def unversioned(app: dict[str, Any] | None) -> dict[str, Any]:
    """The definition but its versions and the controller's entry."""
    assert app is not None
    return {k: v for k, v in app.items() if k not in ("version", "versionInfo", "fetch")} | {
        "fetch": [e for e in app["fetch"] if e == USER_FETCH]}


def deployments_of(state: MarathonState, app_id: str) -> list[str]:
    return [d["id"] for d in state.list_deployments() if app_id in d["affectedApps"]]


async def caught_up(daemon: Daemon, state: MarathonState) -> None:
    """Return once the daemon has handled every event sent so far: a sentinel app, named by an
    event sent now, gets its entry, and no reconcile is still running."""
    caught_up.count = getattr(caught_up, "count", 0) + 1
    sentinel = f"/sentinel/s{caught_up.count}"
    state.load_apps([docker_app(sentinel)])
    state.publish("api_post_event", {"clientIp": "127.0.0.1", "uri": f"/v2/apps{sentinel}",
                                     "appDefinition": state.get_app(sentinel)})
    assert daemon.handle is not None
    queue = daemon.handle.apps.queue
    await eventually(lambda: bundle_uris(state, sentinel) and not queue.processing, 20,
                     "the daemon caught up")


class TestStuckDeployments:
    async def test_a_new_app_without_the_entry_gets_one_forced_write_that_adds_only_it(
            self, state, config, env):
        """A new app's first deployment cannot finish (its tasks cannot pull): the first failed
        pull makes the controller force one write that adds only its entry."""
        settings = settings_from_mapping(config(), env)
        async with Daemon(settings, env) as daemon:
            created = docker_app("/team/new", f"{REGISTRY}/team/new:2", fetch=[USER_FETCH])
            state.add_app(created)
            (first,) = deployments_of(state, "/team/new")
            await eventually(lambda: ours(state, status=409), 20, "the lock is met")
            assert not ours(state, forced=True)  # no failed pull yet: it waits
            rolled_out = state.app("/team/new")
            fail_pull(state, "/team/new")
            await eventually(lambda: bundle_uris(state, "/team/new"), 20, "rescued")
            (forced,) = ours(state, forced=True)
            assert forced.status == 200
            assert set(forced.body) == {"fetch"}
            assert forced.body["fetch"][0] == USER_FETCH
            assert bundle_uris(state, "/team/new") == [forced.body["fetch"][1]["uri"]]
            assert first not in {d["id"] for d in state.list_deployments()}  # replaced
            assert unversioned(state.app("/team/new")) == unversioned(rolled_out)
            fail_pull(state, "/team/new")  # a late report: the entry is in, nothing more to do
            await caught_up(daemon, state)
            assert len(ours(state, forced=True)) == 1

    async def test_with_rescue_off_the_app_is_stuck_and_left_alone_until_the_deployment_ends(
            self, state, config, env, sim):
        """Rescue off: reported stuck (state, log line once, gauge, /status), never forced;
        once someone ends the deployment the entry goes in without force."""
        settings = settings_from_mapping(
            config(remediation={"rescue_stuck_deployments": False}), env)
        with structlog.testing.capture_logs() as logs:
            async with Daemon(settings, env), aiohttp.ClientSession() as session:
                ops = Ops(session, settings.server.listen, REGISTRY)
                state.add_app(docker_app("/team/new"))
                await eventually(lambda: ours(state, status=409), 20, "the lock is met")
                fail_pull(state, "/team/new")
                fail_pull(state, "/team/new")

                async def stuck() -> dict[str, Any] | None:
                    app = (await ops.document())["apps"].get("/team/new")
                    return app if app and app["state"] == "stuck" else None

                async with asyncio.timeout(10):
                    while (found := await stuck()) is None:
                        await asyncio.sleep(0.05)
                (deployment,) = deployments_of(state, "/team/new")
                assert found["deployment_id"] == deployment
                assert found["since"] is not None
                assert "rescue_stuck_deployments is off" in found["detail"]
                assert found["last_pull_failure"]["reason"] == "auth"
                assert "marathon_pullsecret_apps_managed{state=\"stuck\"} 1.0" in (
                    await ops.text("/metrics"))
                assert not ours(state, forced=True)
                state.delete_deployment(deployment, force=True)  # an operator cancels it
                await eventually(lambda: bundle_uris(state, "/team/new"), 20, "entry added")
        assert not ours(state, forced=True)
        assert [e["event"] for e in logs].count("deployment_stuck") == 1

    async def test_a_pipeline_put_without_the_entry_is_rescued_once(self, state, config, env):
        """A pipeline's full PUT of a new image tag drops the entry; its deployment is stuck
        at the first failed pull, and the one forced write is the pipeline's definition plus
        the entry."""
        settings = settings_from_mapping(config(), env)
        state.load_apps([docker_app("/team/web", f"{REGISTRY}/team/web:1")])
        async with Daemon(settings, env) as daemon:
            await eventually(lambda: bundle_uris(state, "/team/web"), 20, "converged")
            state.finish_all_deployments()
            pipeline = docker_app("/team/web", f"{REGISTRY}/team/web:2", instances=3,
                                  env={"RELEASE": "2"})
            state.update_app("/team/web", pipeline, partial=False)
            fail_pull(state, "/team/web")
            await eventually(lambda: bundle_uris(state, "/team/web"), 20, "rescued")
            assert len(ours(state, forced=True)) == 1
            app = state.get_app("/team/web")
            assert app["container"]["docker"]["image"] == f"{REGISTRY}/team/web:2"
            assert (app["instances"], app["env"]) == (3, {"RELEASE": "2"})
            assert [e["uri"] for e in app["fetch"]] == bundle_uris(state, "/team/web")
            state.finish_all_deployments()
            await caught_up(daemon, state)
            web = [w for w in ours(state, status=200) if w.path == "/v2/apps/team/web"]
            assert len(web) == 2  # the first entry, then the rescue


class TestFights:
    async def test_a_sync_job_removing_the_entry_is_fought_at_most_fight_limit_times(
            self, state, config, env):
        """A sync loop re-applying a definition without the entry: the controller writes at
        most fight_limit times, then reports a conflict naming the writer, and holds back."""
        settings = settings_from_mapping(config(reconcile={"fight_limit": 3}), env)
        definition = docker_app("/team/synced", fetch=[USER_FETCH])
        state.load_apps([definition])
        with structlog.testing.capture_logs() as logs:
            async with Daemon(settings, env) as daemon, aiohttp.ClientSession() as session:
                ops = Ops(session, settings.server.listen, REGISTRY)
                for _ in range(8):  # the sync job, every round
                    await eventually(lambda: not state.list_deployments() or (
                        state.finish_all_deployments() or False), 5)
                    before = len(ours(state, status=200))
                    state.update_app("/team/synced", definition, partial=False,
                                     client_ip="10.9.8.7")
                    state.finish_all_deployments()
                    await eventually(
                        lambda before=before: len(ours(state, status=200)) > before
                        or daemon.handle.index.state_of("/team/synced") == "conflict", 10)
                app = (await ops.document())["apps"]["/team/synced"]
                withheld = await ops.text("/metrics")
        assert len(ours(state, status=200)) == 3
        assert app["state"] == "conflict"
        assert "another writer keeps removing the entry" in app["detail"]
        assert "10.9.8.7" in app["detail"]
        assert 'marathon_pullsecret_writes_withheld_total{reason="fight"}' in withheld
        assert [e["event"] for e in logs].count("app_fight_detected") == 1


class TestWhatIsOurs:
    async def test_a_look_alike_user_entry_is_never_taken(self, state, sim, config, env):
        """A never-opted-in app whose own artifact is named like a bundle: the daemon, a
        one-shot pass and uninstall make no write to it."""
        tools = {"uri": "https://cdn.example/tools/pullsecret-tools.tar.gz", "extract": True,
                 "executable": False, "cache": False}
        state.load_apps([docker_app("/team/tools", opted_in=False, fetch=[tools]),
                         docker_app("/team/web")])
        settings = settings_from_mapping(config(), env)
        async with Daemon(settings, env) as daemon:
            await eventually(lambda: bundle_uris(state, "/team/web"), 20)
            state.finish_all_deployments()
            state.update_app("/team/tools", {"env": {"X": "1"}})  # an event names it
            state.finish_all_deployments()
            state.publish("status_update_event", {"appId": "/team/tools", "taskId": "t.1",
                                                  "taskStatus": "TASK_FAILED",
                                                  "message": PULL_FAILED})
            await caught_up(daemon, state)
        state.finish_all_deployments()
        async with build(settings, env) as parts:
            assert (await run_once(parts)).ok
        state.finish_all_deployments()
        async with build(replace(settings, registries=()), env) as parts:
            assert (await run_once(parts, every_app=True)).ok
        assert not [w for w in ours(state) if w.path == "/v2/apps/team/tools"]
        assert state.get_app("/team/tools")["fetch"] == [tools]

    async def test_a_storage_move_replaces_entries_only_from_listed_locations(
            self, state, config, env, tmp_path):
        """Entries at a previous location are replaced in place once it is listed; before, the
        app is a conflict and nothing is written."""
        old = {"uri": f"file:///mnt/old/pullsecrets/{bundle_name(REGISTRY)}", "extract": True,
               "executable": False, "cache": False}
        state.load_apps([docker_app("/team/moved", fetch=[old, USER_FETCH])])
        settings = settings_from_mapping(config(), env)
        async with build(settings, env) as parts:
            report = await run_once(parts)
        assert not ours(state)
        (outcome,) = report.outcomes
        assert outcome.plan is not None
        assert "storage.previous_locations" in outcome.plan.conflict[0]
        moved = settings_from_mapping(config(storage={
            "previous_locations": ["file:///mnt/old/pullsecrets"]}), env)
        async with build(moved, env) as parts:
            assert (await run_once(parts)).ok
        (write,) = ours(state)
        assert write.body["fetch"][1] == USER_FETCH
        assert write.body["fetch"][0]["uri"] == f"file://{tmp_path}/bundles/{bundle_name(REGISTRY)}"


class TestOneNameOneController:
    async def test_a_second_controller_with_the_same_name_refuses_to_run(
            self, state, sim, env, tmp_path):
        """Two controllers left at the default name, each with its own registry, one Marathon,
        one storage: the second refuses (exit 2, naming controller.name) and writes nothing;
        the first converges its apps once."""
        other = "registry.other.example:5000"
        state.load_apps([docker_app(f"/one/a{i}") for i in range(3)]
                        + [docker_app(f"/two/b{i}", f"{other}/two/b{i}:1") for i in range(3)])
        first = settings_from_mapping(daemon_config(sim.url, tmp_path), env)
        second = settings_from_mapping(daemon_config(sim.url, tmp_path, hosts=(other,)), env)
        async with Daemon(first, env):
            await eventually(lambda: all(bundle_uris(state, f"/one/a{i}") for i in range(3)), 20)
            with pytest.raises(NameTakenError, match=r"controller\.name"):
                await asyncio.wait_for(run(second, env), 30)
        assert len(ours(state, status=200)) == 3
        assert not any(bundle_uris(state, f"/two/b{i}") for i in range(3))
