"""Where deployments and tasks meet: a deployment ends when its new tasks run, a forced one
replaces it, and groups and batches deploy several apps as one plan (simulated agent)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.simulator import (
    ApiError,
    FailedPull,
    MarathonSimulator,
    MarathonState,
    Puller,
)
from tests.services import REFERENCE, busy_port
from tests.simulator.support import (
    IMAGE,
    REGISTRY,
    TIMEOUT,
    USER,
    Recorder,
    bundle,
    settle,
    web_app,
)

CANCELLED = "The upgrade has been cancelled"
LOCKED = ("App is locked by one or more deployments. Override with the option '?force=true'. "
          "View details at '/v2/deployments/<DEPLOYMENT_ID>'.")
NEW_IMAGE = f"{REGISTRY}/team/web:2"


def tasks(state: MarathonState, app_id: str = "/team/web") -> list[tuple[str, str]]:
    """``(state, version)`` of each task."""
    return [(task["state"], task["version"]) for task in state.list_tasks(app_id)]


class HeldPuller:
    """Pulls as ``inner`` does, once ``release`` is set."""

    def __init__(self, inner: Puller) -> None:
        self._inner = inner
        self.release = asyncio.Event()

    async def pull(self, image: str, home: Path) -> FailedPull | None:
        await self.release.wait()
        return await self._inner.pull(image, home)


def failed_launches(recorder: Recorder) -> int:
    return sum(1 for u in recorder.of("status_update_event") if u["taskStatus"] == "TASK_FAILED")


class TestANewAppThatCannotPull:
    async def test_stays_locked_until_a_forced_write_brings_working_credentials(
            self, state, agent, http, recorder, scheduler, tmp_path):
        async with http.post("/v2/apps", json=web_app()) as response:
            assert response.status == 201
            created = (await response.json())["deployments"][0]["id"]
        for _ in range(3):  # the agent keeps relaunching, with Marathon's backoff
            await settle(agent)
            scheduler.fire_all()
        await settle(agent)
        assert failed_launches(recorder) == 4
        assert [d["id"] for d in state.list_deployments()] == [created]
        assert "deployment_success" not in recorder.types()

        async with http.patch("/v2/apps/team/web",
                              json={"fetch": [{"uri": bundle(tmp_path)}]}) as response:
            assert response.status == 409
            assert await response.json() == {"message": LOCKED,
                                             "deployments": [{"id": created}]}

        async with http.patch("/v2/apps/team/web", params={"force": "true"},
                              json={"fetch": [{"uri": bundle(tmp_path)}]}) as response:
            assert response.status == 200
            forced = (await response.json())["deploymentId"]
        failed = recorder.of("deployment_failed")
        assert [(f["id"], f["reason"]) for f in failed] == [(created, CANCELLED)]
        assert [d["id"] for d in state.list_deployments()] == [forced]
        await settle(agent)
        assert tasks(state) == [("TASK_RUNNING", state.get_app("/team/web")["version"])]
        assert state.list_deployments() == []
        assert recorder.of("deployment_success")[-1]["id"] == forced
        assert recorder.types()[-2:] == ["deployment_step_success", "deployment_success"]
        async with http.get("/v2/deployments") as response:
            assert await response.json() == []

    async def test_a_running_task_of_an_older_version_does_not_end_a_scale(
            self, state, agent, tmp_path):
        """A scale-up waits for new instances of its own version (``TaskStartActor``)."""
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path, name="web.tgz")}]))
        await settle(agent)
        assert state.list_deployments() == []
        bundle(tmp_path, "stale", name="web.tgz")  # the next launch fails to pull
        result = state.update_app("/team/web", {"instances": 2})
        await settle(agent)
        assert [d["id"] for d in state.list_deployments()] == [result.deployment_id]
        assert [s for s, _ in tasks(state)] == ["TASK_RUNNING"]


class TestAPipelineUpdateThatCannotPull:
    def pipeline_body(self, image: str, tmp_path: Path, **fields: Any) -> dict[str, Any]:
        """What a CI pipeline PUTs: the whole app, with its bundle, as it keeps it in git."""
        return {**web_app(fetch=[{"uri": bundle(tmp_path, name="web.tgz")}], **fields),
                "container": {"type": "DOCKER", "docker": {"image": image}}}

    async def test_the_old_task_keeps_running_and_the_deployment_is_stuck(
            self, state, agent, http, recorder, scheduler, tmp_path):
        state.add_app(self.pipeline_body(IMAGE, tmp_path))
        await settle(agent)
        (old,) = tasks(state)
        assert old[0] == "TASK_RUNNING"
        state.revoke_credentials(REGISTRY, USER)  # e.g. the robot's password rotated
        async with http.put("/v2/apps/team/web", params={"partialUpdate": "false"},
                            json=self.pipeline_body(NEW_IMAGE, tmp_path)) as response:
            assert response.status == 200
            deployment = (await response.json())["deploymentId"]
        for _ in range(3):
            await settle(agent)
            scheduler.fire_all()
        await settle(agent)
        assert tasks(state) == [old]  # never killed: no new instance ever ran
        assert failed_launches(recorder) >= 3
        assert [d["id"] for d in state.list_deployments()] == [deployment]
        assert state.list_deployments()[0]["currentActions"][0]["action"] == (
            "RestartApplication")
        async with http.put("/v2/apps/team/web", params={"partialUpdate": "false"},
                            json=self.pipeline_body(NEW_IMAGE, tmp_path)) as response:
            assert response.status == 200  # the same definition again changes nothing
        async with http.put("/v2/apps/team/web", params={"partialUpdate": "false"},
                            json=self.pipeline_body(f"{REGISTRY}/team/web:3", tmp_path)
                            ) as response:
            assert response.status == 409

    async def test_a_new_version_that_pulls_replaces_the_old_task_after_it_runs(
            self, state, agent, recorder, tmp_path):
        state.add_app(self.pipeline_body(IMAGE, tmp_path))
        await settle(agent)
        (old,) = state.list_tasks("/team/web")
        state.update_app("/team/web", self.pipeline_body(NEW_IMAGE, tmp_path), partial=False)
        await settle(agent)
        updates = [(u["taskId"], u["taskStatus"]) for u in recorder.of("status_update_event")]
        new = state.list_tasks("/team/web")[0]["id"]
        assert updates[-2:] == [(new, "TASK_RUNNING"), (old["id"], "TASK_KILLED")]
        assert state.list_deployments() == []

    async def test_minimum_health_capacity_zero_kills_the_old_task_first(
            self, state, agent, recorder, tmp_path):
        strategy = {"upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0}}
        state.add_app(self.pipeline_body(IMAGE, tmp_path, **strategy))
        await settle(agent)
        state.revoke_credentials(REGISTRY, USER)
        state.update_app("/team/web", self.pipeline_body(NEW_IMAGE, tmp_path, **strategy),
                         partial=False)
        assert recorder.of("status_update_event")[-1]["taskStatus"] == "TASK_KILLED"
        await settle(agent)
        assert tasks(state) == []
        assert len(state.list_deployments()) == 1

    async def test_two_instances_roll_one_at_a_time(self, state, agent, recorder, tmp_path):
        """Default strategy, two instances: the capacity allows four, so both new instances
        start at once, and each one that runs kills one old task."""
        state.add_app(self.pipeline_body(IMAGE, tmp_path, instances=2))
        await settle(agent)
        old = {task["id"] for task in state.list_tasks("/team/web")}
        result = state.update_app("/team/web", {"labels": {"v": "2"}})
        await settle(agent)
        assert {v for _, v in tasks(state)} == {result.version}
        assert len(tasks(state)) == 2
        killed = [u["taskId"] for u in recorder.of("status_update_event")
                  if u["taskStatus"] == "TASK_KILLED"]
        assert set(killed) == old
        assert state.list_deployments() == []


class TestGroups:
    def two_apps(self, tmp_path: Path) -> dict[str, Any]:
        fetch = [{"uri": bundle(tmp_path)}]
        return {"id": "/team", "apps": [{**web_app(fetch=fetch), "id": "web"},
                                        {**web_app(fetch=fetch), "id": "/team/api"}]}

    async def test_a_group_deploys_two_apps_as_one_plan(self, state, agent, http, recorder,
                                                         tmp_path, monkeypatch):
        held = HeldPuller(agent.puller)  # the plan is looked at before any task can run
        monkeypatch.setattr(agent, "_puller", held)
        async with http.put("/v2/groups/team", json=self.two_apps(tmp_path)) as response:
            assert response.status == 200
            deployment = (await response.json())["deploymentId"]
        async with http.get("/v2/deployments") as response:
            (listed,) = await response.json()
        assert listed["id"] == deployment
        assert sorted(listed["affectedApps"]) == ["/team/api", "/team/web"]
        assert [[a["action"] for a in step["actions"]] for step in listed["steps"]] == [
            ["StartApplication", "StartApplication"], ["ScaleApplication", "ScaleApplication"]]
        assert recorder.of("group_change_success")[0]["groupId"] == "/"
        assert "api_post_event" not in recorder.types()
        held.release.set()
        await settle(agent)
        assert state.list_deployments() == []
        assert [e["id"] for e in recorder.of("deployment_success")] == [deployment]
        async with http.get("/v2/groups/team") as response:
            group = await response.json()
        assert [app["id"] for app in group["apps"]] == ["/team/api", "/team/web"]
        async with http.get("/v2/groups") as response:
            root = await response.json()
        assert [g["id"] for g in root["groups"]] == ["/team"]
        example = json.loads((REFERENCE / "examples" / "group.json").read_text())
        assert example.keys() <= root.keys()

    async def test_a_forced_write_to_one_app_cancels_the_whole_plan(
            self, state, agent, http, recorder, tmp_path):
        body = self.two_apps(tmp_path)
        body["apps"][1]["container"] = {"type": "DOCKER", "docker": {"image": NEW_IMAGE}}
        body["apps"][1]["fetch"] = []  # /team/api cannot pull: the plan never ends
        result = state.update_group("/team", body)
        await settle(agent)
        assert [d["id"] for d in state.list_deployments()] == [result.deployment_id]
        with pytest.raises(ApiError) as refused:
            state.update_app("/team/web", {"labels": {"x": "1"}})
        assert refused.value.body["deployments"] == [{"id": result.deployment_id}]
        async with http.patch("/v2/apps/team/web", params={"force": "true"},
                              json={"labels": {"x": "1"}}) as response:
            assert response.status == 200
            forced = (await response.json())["deploymentId"]
        assert [(f["id"], f["reason"]) for f in recorder.of("deployment_failed")] == [
            (result.deployment_id, CANCELLED)]
        await settle(agent)
        assert state.list_deployments() == []  # /team/api is left where it was, unlocked
        assert recorder.of("deployment_success")[-1]["id"] == forced
        assert state.get_app("/team/api")["deployments"] == []
        state.update_app("/team/api", {"fetch": [{"uri": bundle(tmp_path)}]})  # no 409

    async def test_a_group_update_removes_the_apps_it_no_longer_lists(self, state, agent,
                                                                       recorder, tmp_path):
        state.update_group("/team", self.two_apps(tmp_path))
        await settle(agent)
        state.update_group("/team", {"apps": [self.two_apps(tmp_path)["apps"][0]]})
        assert [app["id"] for app in state.list_apps()] == ["/team/web"]
        assert recorder.of("app_terminated_event") == [
            {"appId": "/team/api", "eventType": "app_terminated_event",
             "timestamp": recorder.of("app_terminated_event")[0]["timestamp"]}]

    async def test_post_creates_a_group_once(self, http, tmp_path):
        async with http.post("/v2/groups", json=self.two_apps(tmp_path)) as response:
            assert response.status == 201
            assert response.headers["Location"].endswith("/team")
        async with http.post("/v2/groups", json=self.two_apps(tmp_path)) as response:
            assert response.status == 409
            assert (await response.json())["message"] == (
                "Group /team is already created. Use PUT to change this group.")

    async def test_an_unknown_group_is_404(self, http):
        async with http.get("/v2/groups/nope") as response:
            assert response.status == 404
            assert await response.json() == {"message": "Group '/nope' does not exist"}

    async def test_a_batch_put_is_one_deployment(self, state, agent, http, recorder, tmp_path):
        fetch = [{"uri": bundle(tmp_path)}]
        apps = [web_app(fetch=fetch), {**web_app(fetch=fetch), "id": "/team/api"}]
        async with http.put("/v2/apps", json=apps) as response:
            assert response.status == 200
            deployment = (await response.json())["deploymentId"]
        assert sorted(state.list_deployments()[0]["affectedApps"]) == ["/team/api",
                                                                      "/team/web"]
        await settle(agent)
        async with http.patch("/v2/apps", json=[{"id": "/team/web", "instances": 2},
                                                {"id": "/team/api", "instances": 2}]
                              ) as response:
            assert response.status == 200
        await settle(agent)
        assert recorder.of("deployment_success")[0]["id"] == deployment
        assert state.list_deployments() == []
        assert len(state.list_all_tasks()) == 4
        async with http.put("/v2/apps", json=[{"instances": 1}]) as response:
            assert response.status == 422


class TestTasks:
    async def test_all_tasks_and_the_status_filter(self, state, agent, http, tmp_path):
        held = asyncio.Event()

        class HoldLate:
            """Pulls at once, except ``late``'s image, which waits until the test is done."""

            async def pull(self, image: str, home: Path) -> None:
                if "/late:" in image:
                    await held.wait()

        agent._puller = HoldLate()
        state.add_app(web_app())
        state.add_app({**web_app(), "id": "/team/late",
                       "container": {"type": "DOCKER", "docker": {"image": "nginx/late:1"}}})
        async with asyncio.timeout(TIMEOUT):
            while state.get_app("/team/web")["tasksRunning"] == 0:
                await asyncio.sleep(0.01)
        states = {t["appId"]: t["state"] for t in state.list_all_tasks()}
        assert states == {"/team/web": "TASK_RUNNING", "/team/late": "TASK_STAGING"}
        for query, expected in (
                ([("status", "running")], ["/team/web"]),
                ([("status[]", "STAGING"), ("status[]", "running")], ["/team/late", "/team/web"]),
                ([("status", "killed")], ["/team/late", "/team/web"])):
            async with http.get("/v2/tasks", params=query) as response:
                listed = (await response.json())["tasks"]
            assert sorted(t["appId"] for t in listed) == expected
        held.set()
        await settle(agent)

    def test_no_tasks_without_an_agent(self):
        state = MarathonState()
        state.add_app(web_app())
        assert state.list_all_tasks() == []


class TestWithoutAnAgent:
    async def test_the_timer_still_ends_a_deployment_as_if_every_task_ran(self):
        state = MarathonState(deployment_seconds=0.0)
        recorder = Recorder()
        state.subscribe(recorder)
        async with MarathonSimulator(state):
            result = state.add_app(web_app())
            await recorder.wait_for("deployment_success")
        assert recorder.types() == [
            "group_change_success", "api_post_event", "deployment_info",
            "deployment_step_success", "deployment_info", "deployment_step_success",
            "deployment_success"]
        assert recorder.of("deployment_success")[0]["id"] == result["deployments"][0]["id"]

    async def test_cli_with_a_busy_port_says_so_in_one_line(self):
        with busy_port() as port:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "controller.simulator", "--listen", f"127.0.0.1:{port}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            async with asyncio.timeout(10 * TIMEOUT):
                stdout, stderr = await process.communicate()
        assert process.returncode == 2
        assert stdout == b""
        lines = stderr.decode().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"simulator: cannot listen on 127.0.0.1:{port}: ")
        assert "address already in use" in lines[0]
