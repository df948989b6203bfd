"""The simulated Mesos agent: tasks per instance, fetch and pull, TASK_FAILED, backoff, queue."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.pullfailure import classify
from controller.simulator import Agent, MarathonSimulator, MarathonState, main
from tests.simulator.support import (
    IMAGE,
    PASSWORD,
    REGISTRY,
    TIMEOUT,
    USER,
    Recorder,
    bundle,
    settle,
    simulator_process,
    web_app,
)

TASK_ID = re.compile(r"^team_web\.instance-[0-9a-f-]{36}\._app\.1$")
W1 = ("Failed to launch container: Failed to run 'docker -H unix:///var/run/docker.sock pull "
      f"{IMAGE}': exited with status 1; stderr='")


def states(state: MarathonState, app_id: str = "/team/web") -> list[str]:
    return [task["state"] for task in state.list_tasks(app_id)]


class TestTasks:
    async def test_each_instance_runs_a_task_with_marathons_ids_and_counts(
            self, state, agent, recorder, tmp_path):
        state.add_app(web_app(instances=2, fetch=[{"uri": bundle(tmp_path)}]))
        assert states(state) == ["TASK_STAGING", "TASK_STAGING"]
        assert state.get_app("/team/web")["tasksStaged"] == 2
        await settle(agent)
        tasks = state.list_tasks("/team/web")
        assert [task["state"] for task in tasks] == ["TASK_RUNNING", "TASK_RUNNING"]
        assert all(TASK_ID.fullmatch(task["id"]) for task in tasks)
        app = state.get_app("/team/web")
        assert (app["tasksStaged"], app["tasksRunning"]) == (0, 2)
        assert {task["id"] for task in app["tasks"]} == {task["id"] for task in tasks}
        assert tasks[0]["version"] == app["version"]
        assert set(tasks[0]) == {"appId", "healthCheckResults", "host", "id", "ipAddresses",
                                 "ports", "servicePorts", "slaveId", "state", "stagedAt",
                                 "startedAt", "version", "localVolumes"}
        updates = recorder.of("status_update_event")
        assert [u["taskStatus"] for u in updates] == ["TASK_RUNNING", "TASK_RUNNING"]
        assert set(updates[0]) == {"slaveId", "taskId", "taskStatus", "message", "appId", "host",
                                   "ipAddresses", "ports", "version", "eventType", "timestamp"}
        changes = recorder.of("instance_changed_event")
        assert [c["condition"] for c in changes] == ["Running", "Running"]
        assert changes[0]["instanceId"] + "._app.1" == updates[0]["taskId"]
        assert changes[0]["runSpecVersion"] == app["version"]

    async def test_the_sandbox_holds_the_fetched_bundle_and_home_is_the_sandbox(
            self, state, agent, tmp_path):
        seen: list[Path] = []

        class Recording:
            async def pull(self, image: str, home: Path) -> None:
                seen.append(home)
                assert (home / ".docker" / "config.json").is_file()
                assert (home / "docker.tar.gz").is_file()  # the archive stays beside it

        agent._puller = Recording()
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path), "destPath": "docker.tar.gz"}]))
        await settle(agent)
        assert states(state) == ["TASK_RUNNING"]
        assert seen == [agent.work_dir / state.list_tasks("/team/web")[0]["id"]]

    async def test_a_new_version_replaces_the_tasks_and_a_scale_keeps_them(
            self, state, agent, recorder, tmp_path):
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path)}]))
        await settle(agent)
        first = state.list_tasks("/team/web")[0]
        state.finish_all_deployments()
        state.update_app("/team/web", {"instances": 2})
        await settle(agent)
        tasks = state.list_tasks("/team/web")
        assert first in tasks
        assert len(tasks) == 2
        state.finish_all_deployments()
        state.update_app("/team/web", {"labels": {"new": "version"}})
        await settle(agent)
        replaced = state.list_tasks("/team/web")
        assert not {t["id"] for t in tasks} & {t["id"] for t in replaced}
        assert {t["version"] for t in replaced} == {state.get_app("/team/web")["version"]}
        killed = [u["taskId"] for u in recorder.of("status_update_event")
                  if u["taskStatus"] == "TASK_KILLED"]
        assert sorted(killed) == sorted(t["id"] for t in tasks)

    @pytest.mark.parametrize(("selection", "kept"), [("YOUNGEST_FIRST", 0), ("OLDEST_FIRST", 1)])
    async def test_a_scale_down_kills_by_kill_selection(self, state, agent, clock, selection, kept):
        state.add_app(web_app(container={"type": "DOCKER", "docker": {"image": "nginx:1"}},
                              killSelection=selection))
        await settle(agent)
        clock.advance(5)
        state.update_app("/team/web", {"instances": 2}, force=True)
        await settle(agent)
        tasks = sorted(state.list_tasks("/team/web"), key=lambda task: task["stagedAt"])
        state.update_app("/team/web", {"instances": 1}, force=True)
        assert [task["id"] for task in state.list_tasks("/team/web")] == [tasks[kept]["id"]]

    async def test_a_credential_rotation_kills_no_running_task(
            self, state, agent, recorder, tmp_path):
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path)}]))
        await settle(agent)
        before = len(recorder.events)
        state.accept_credentials(REGISTRY, USER, "rotated")
        state.revoke_credentials(REGISTRY, "someone-else")
        await settle(agent)
        assert states(state) == ["TASK_RUNNING"]
        assert len(recorder.events) == before

    async def test_deleting_the_app_kills_its_tasks(self, state, agent, recorder, tmp_path):
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path)}]))
        await settle(agent)
        state.delete_app("/team/web", force=True)
        assert recorder.of("status_update_event")[-1]["taskStatus"] == "TASK_KILLED"
        assert state.queue() == []

    async def test_a_public_image_needs_no_bundle(self, state, agent):
        state.add_app(web_app(container={"type": "DOCKER", "docker": {"image": "nginx:1.25"}}))
        await settle(agent)
        assert states(state) == ["TASK_RUNNING"]


class TestPullFailures:
    async def test_no_credentials_is_task_failed_with_the_mesos_message(
            self, state, agent, recorder):
        state.add_app(web_app())
        await settle(agent)
        assert states(state) == []
        failed = recorder.of("status_update_event")[-1]
        assert failed["taskStatus"] == "TASK_FAILED"
        assert failed["message"] == (
            W1 + 'Error response from daemon: Head "https://registry.example.com:5000/v2/team/'
            "web/manifests/1\": no basic auth credentials\n'")
        classified = classify(failed["message"])
        assert classified is not None
        assert (classified.reason, classified.registry) == ("auth", REGISTRY)
        assert recorder.of("instance_changed_event")[-1]["condition"] == "Failed"
        app = state.get_app("/team/web")
        assert app["lastTaskFailure"]["taskId"] == failed["taskId"]
        assert app["lastTaskFailure"]["message"] == failed["message"]
        assert (app["tasksStaged"], app["tasksRunning"]) == (0, 0)

    @pytest.mark.parametrize("fmt", ["config.json", "dockercfg"])
    async def test_a_wrong_password_is_an_auth_failure(self, state, agent, recorder, tmp_path,
                                                       fmt):
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path, "stale", fmt)}]))
        await settle(agent)
        message = recorder.of("status_update_event")[-1]["message"]
        assert message == (
            W1 + "Error response from daemon: unauthorized: authentication required\n'")
        assert classify(message).reason == "auth"

    @pytest.mark.parametrize("fmt", ["config.json", "dockercfg"])
    async def test_the_right_bundle_pulls(self, state, agent, tmp_path, fmt):
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path, fmt=fmt)}]))
        await settle(agent)
        assert states(state) == ["TASK_RUNNING"]

    async def test_an_untagged_image_is_pulled_as_latest(self, state, agent, recorder):
        image = f"{REGISTRY}/team/web"
        state.add_app(web_app(container={"type": "DOCKER", "docker": {"image": image}}))
        await settle(agent)
        assert f"pull {image}:latest'" in recorder.of("status_update_event")[-1]["message"]

    @pytest.mark.parametrize(("image", "cause", "reason"), [
        (f"{REGISTRY}/team/web:2", f"manifest for {REGISTRY}/team/web:2 not found: manifest "
         "unknown: manifest unknown", "not_found"),
        (f"{REGISTRY}/team/web@sha256:{'ab' * 32}", f"manifest for {REGISTRY}/team/web@sha256:"
         f"{'ab' * 32} not found: manifest unknown: manifest unknown", "not_found"),
        (f"{REGISTRY}/team/api:1", f"repository {REGISTRY}/team/api not found: name unknown: "
         "repository name not known to registry", "not_found"),
        (f"{REGISTRY}/team/secret:1", f"pull access denied for {REGISTRY}/team/secret, "
         "repository does not exist or may require 'docker login': denied: requested access "
         "to the resource is denied", "auth"),
    ])
    async def test_an_image_the_registry_does_not_give_fails_as_docker_says(
            self, state, agent, recorder, tmp_path, image, cause, reason):
        state.registries.push(REGISTRY, "team/web", "1")
        state.registries.push(REGISTRY, "team/secret", "1")
        state.registries.restrict(REGISTRY, USER, ["team/web", "team/api"])
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path)}],
                              container={"type": "DOCKER", "docker": {"image": image}}))
        await settle(agent)
        assert states(state) == []
        message = recorder.of("status_update_event")[-1]["message"]
        assert message == (
            "Failed to launch container: Failed to run 'docker -H unix:///var/run/docker.sock "
            f"pull {image}': exited with status 1; stderr='Error response from daemon: {cause}\n'")
        classified = classify(message)
        assert classified is not None
        assert (classified.reason, classified.registry, str(classified.image)) == (
            reason, REGISTRY, image)

    async def test_the_pushed_image_pulls_and_credentials_are_checked_first(
            self, state, agent, recorder, tmp_path):
        state.registries.push(REGISTRY, "team/web", "1")
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path)}]))
        missing = {"type": "DOCKER", "docker": {"image": f"{REGISTRY}/team/web:2"}}
        state.add_app(web_app(id="/team/stale", container=missing,
                              fetch=[{"uri": bundle(tmp_path, "stale")}]))
        await settle(agent)
        assert states(state) == ["TASK_RUNNING"]
        (stale,) = [u for u in recorder.of("status_update_event") if u["appId"] == "/team/stale"]
        assert stale["message"].endswith(
            "Error response from daemon: unauthorized: authentication required\n'")

    async def test_a_public_registry_with_images_fails_a_missing_one_for_anyone(
            self, state, agent, recorder):
        state.registries.push("docker.io", "nginx", "1.25")
        state.add_app(web_app(container={"type": "DOCKER", "docker": {"image": "nginx:1.25"}}))
        state.add_app(web_app(id="/team/typo",
                              container={"type": "DOCKER", "docker": {"image": "nginx:1.52"}}))
        await settle(agent)
        assert states(state) == ["TASK_RUNNING"]
        (failed,) = [u for u in recorder.of("status_update_event") if u["appId"] == "/team/typo"]
        message = failed["message"]
        assert "Error response from daemon: manifest for nginx:1.52 not found: " in message
        classified = classify(message)
        assert classified is not None
        assert (classified.reason, classified.registry) == ("not_found", "docker.io")

    async def test_a_broken_puller_fails_the_pull_not_the_agent(self, state, agent, recorder):
        class Broken:
            async def pull(self, image: str, home: Path) -> None:
                raise RuntimeError("boom")

        agent._puller = Broken()
        state.add_app(web_app())
        await settle(agent)
        failed = recorder.of("status_update_event")[-1]
        assert failed["taskStatus"] == "TASK_FAILED"
        assert "RuntimeError: boom" in failed["message"]

    async def test_a_failed_fetch_fails_the_task(self, state, agent, recorder, tmp_path):
        state.add_app(web_app(fetch=[{"uri": (tmp_path / "missing.tgz").as_uri()}]))
        await settle(agent)
        message = recorder.of("status_update_event")[-1]["message"]
        assert re.fullmatch(r"Failed to launch container: Failed to fetch all URIs for container "
                            r"'[0-9a-f-]{36}' with exit status: 256", message)
        assert classify(message) is None


class TestBackoff:
    async def test_the_delay_grows_by_the_factor_up_to_the_cap(self, state, agent, scheduler):
        state.add_app(web_app())
        delays = []
        for _ in range(5):
            await settle(agent)
            delays.append(agent.backoff("/team/web"))
            scheduler.fire_all()
        assert delays == [1, 2, 4, 5, 5]
        assert scheduler.delays == [1, 2, 4, 5, 5]

    async def test_junk_backoff_fields_fall_back_to_the_defaults(self, state, agent):
        state.add_app(web_app(backoffSeconds="soon", backoffFactor=None,
                              maxLaunchDelaySeconds=float("nan")))
        await settle(agent)
        assert agent.backoff("/team/web") == 1

    async def test_no_launch_while_delayed(self, state, agent, scheduler, clock, recorder):
        state.add_app(web_app(backoffSeconds=30, maxLaunchDelaySeconds=300))
        await settle(agent)
        assert state.queue()[0]["delay"] == {"timeLeftSeconds": 30, "overdue": False}
        launches = len(recorder.of("status_update_event"))
        agent._converge("/team/web")  # e.g. a stray wake-up: still delayed, nothing launches
        await settle(agent)
        assert states(state) == []
        assert len(recorder.of("status_update_event")) == launches

    async def test_a_reset_then_a_shorter_delay_wakes_on_time(self, state, agent, scheduler):
        state.add_app(web_app(backoffSeconds=30, maxLaunchDelaySeconds=300))
        await settle(agent)
        scheduler.fire_all()
        await settle(agent)
        assert agent.backoff("/team/web") == 60
        state.reset_delay("/team/web")
        await settle(agent)
        assert scheduler.delays == [30, 60, 30]  # not left waiting for the 60 s timer
        scheduler.fire_all()  # the stale 60 s timer does nothing, the 30 s one launches
        assert states(state) == ["TASK_STAGING"]

    async def test_a_running_task_resets_the_delay(self, state, agent, scheduler, tmp_path):
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path, "stale")}]))
        for _ in range(3):
            await settle(agent)
            scheduler.fire_all()
        await settle(agent)
        assert agent.backoff("/team/web") == 5
        state.accept_credentials(REGISTRY, USER, "stale")
        scheduler.fire_all()
        await settle(agent)
        assert states(state) == ["TASK_RUNNING"]
        assert agent.backoff("/team/web") is None
        assert state.queue() == []

    async def test_a_new_version_starts_without_the_old_delay(self, state, agent, tmp_path):
        state.add_app(web_app(backoffSeconds=30, maxLaunchDelaySeconds=300))
        await settle(agent)
        state.finish_all_deployments()
        state.update_app("/team/web", {"fetch": [{"uri": bundle(tmp_path)}]})
        assert states(state) == ["TASK_STAGING"]
        await settle(agent)
        assert states(state) == ["TASK_RUNNING"]


class TestRotationStory:
    async def test_rotation_crash_auth_failure_new_bundle_reset_runs_again(
            self, state, agent, scheduler, recorder, tmp_path):
        """The loop issue 11 closes, on the simulator alone: running tasks survive a rotation;
        their next launch fails auth; a fixed bundle at the same URI plus a delay reset runs."""
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path, name="web.tgz")}], backoffSeconds=60,
                              maxLaunchDelaySeconds=300))
        await settle(agent)
        state.accept_credentials(REGISTRY, USER, "rotated")
        assert states(state) == ["TASK_RUNNING"]
        assert agent.fail_tasks("/team/web") == 1
        assert recorder.of("status_update_event")[-1]["message"] == "Command exited with status 1"
        scheduler.fire_all()
        await settle(agent)
        assert classify(recorder.of("status_update_event")[-1]["message"]).reason == "auth"
        assert state.queue()[0]["delay"]["timeLeftSeconds"] == 120
        bundle(tmp_path, "rotated", name="web.tgz")  # the controller republishes in place
        state.reset_delay("/team/web")
        await settle(agent)
        assert states(state) == ["TASK_RUNNING"]
        assert state.queue() == []


class TestCommandLine:
    async def test_agent_dir_and_registry_credentials_and_images(self, tmp_path):
        """``--agent-dir`` runs tasks; ``--registry-credentials`` makes a registry private and,
        with ``images``, holds only those."""
        credentials = tmp_path / "registries.json"
        credentials.write_text(json.dumps({REGISTRY: {USER: PASSWORD},
                                           "images": [f"{REGISTRY}/team/web:1"]}))
        typo = {"type": "DOCKER", "docker": {"image": f"{REGISTRY}/team/web:2"}}
        async with (simulator_process("--agent-dir", str(tmp_path / "agent"),
                                      "--registry-credentials", str(credentials)) as url,
                    aiohttp.ClientSession(url) as http):
            await http.post("/v2/apps", json=web_app(fetch=[{"uri": bundle(tmp_path)}]))
            await http.post("/v2/apps", json={**web_app(), "id": "/team/bare"})
            await http.post("/v2/apps", json=web_app(id="/team/typo", container=typo,
                                                     fetch=[{"uri": bundle(tmp_path)}]))
            async with asyncio.timeout(TIMEOUT):
                while True:
                    web = (await (await http.get("/v2/apps/team/web")).json())["app"]
                    bare = (await (await http.get("/v2/apps/team/bare")).json())["app"]
                    typoed = (await (await http.get("/v2/apps/team/typo")).json())["app"]
                    if (web["tasksRunning"] == 1 and "lastTaskFailure" in bare
                            and "lastTaskFailure" in typoed):
                        break
                    await asyncio.sleep(0.05)
        assert classify(bare["lastTaskFailure"]["message"]).reason == "auth"
        assert classify(typoed["lastTaskFailure"]["message"]).reason == "not_found"

    @pytest.mark.parametrize(("content", "problem"), [
        ({"images": "team/web:1"}, "expected"),
        ({"images": [1]}, "expected"),
        ({"images": ["team/Web:1"]}, "images: invalid image reference"),
        ({"images": ["Team/web:1"]}, "images: 'web' at '1' is not one image of team"),
        ({"images": [f"{REGISTRY}/team/web@sha256:{'ab' * 32}"]}, "name a tag"),
    ])
    def test_registry_images_that_are_no_list_of_tagged_images_are_refused(
            self, tmp_path, content, problem):
        credentials = tmp_path / "registries.json"
        credentials.write_text(json.dumps(content))
        with pytest.raises(SystemExit, match=problem):
            main(["--listen", "127.0.0.1:0", "--registry-credentials", str(credentials)])


class TestWithoutAnAgent:
    async def test_no_tasks_no_queue_and_the_counts_say_every_instance_runs(self):
        state = MarathonState()
        state.add_app(web_app(instances=3))
        assert state.agent is None
        assert state.get_app("/team/web")["tasksRunning"] == 3
        assert state.list_tasks("/team/web") == []
        assert state.queue() == []


class TestHttp:
    async def test_app_tasks(self, state, agent, http, tmp_path):
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path)}]))
        await settle(agent)
        async with http.get("/v2/apps/team/web/tasks") as response:
            assert response.status == 200
            assert (await response.json())["tasks"] == state.list_tasks("/team/web")
        async with http.get("/v2/apps/team/nope/tasks") as response:
            assert response.status == 404
            assert await response.json() == {"message": "App '/team/nope' does not exist"}

    async def test_restart_replaces_every_task(self, state, agent, http, recorder, tmp_path):
        state.add_app(web_app(instances=2, backoffSeconds=30, maxLaunchDelaySeconds=300))
        await settle(agent)
        async with http.post("/v2/apps/team/web/restart") as response:
            assert response.status == 409  # the create deployment waits for tasks that fail
        state.update_app("/team/web", {"fetch": [{"uri": bundle(tmp_path)}], "instances": 1},
                         force=True)
        await settle(agent)
        assert state.list_deployments() == []  # its task ran: the deployment is over
        before = state.list_tasks("/team/web")
        async with http.post("/v2/apps/team/web/restart") as response:
            assert response.status == 200
            body = await response.json()
        assert body["version"] == state.get_app("/team/web")["version"]
        await settle(agent)
        after = state.list_tasks("/team/web")
        assert [t["state"] for t in after] == ["TASK_RUNNING"]
        assert after[0]["id"] != before[0]["id"]
        assert after[0]["version"] == body["version"]
        async with http.post("/v2/apps/team/nope/restart") as response:
            assert response.status == 404

    async def test_queue_and_delay_reset(self, state, agent, http, scheduler):
        state.add_app(web_app(backoffSeconds=30, maxLaunchDelaySeconds=300))
        await settle(agent)
        async with http.get("/v2/queue") as response:
            (entry,) = (await response.json())["queue"]
        assert entry["app"]["id"] == "/team/web"
        assert entry["count"] == 1
        assert entry["delay"] == {"timeLeftSeconds": 30, "overdue": False}
        assert set(entry) == {"app", "count", "delay", "since", "processedOffersSummary"}
        async with http.delete("/v2/queue/team/web/delay") as response:
            assert response.status == 204
        assert states(state) == ["TASK_STAGING"]  # launched at once, no timer fired
        assert len(scheduler.pending) == 1  # the wake-up from before the reset, still due
        await settle(agent)
        assert agent.backoff("/team/web") == 30  # it failed again: the first delay again
        assert [w.path for w in state.writes] == ["/v2/queue/team/web/delay"]

    async def test_delay_reset_is_404_when_not_queued(self, state, agent, http, tmp_path):
        state.add_app(web_app(fetch=[{"uri": bundle(tmp_path)}]))
        await settle(agent)
        for app_id in ("team/web", "team/nope"):
            async with http.delete(f"/v2/queue/{app_id}/delay") as response:
                assert response.status == 404
                assert await response.json() == {
                    "message": f"Application /{app_id} not found in tasks queue."}

    async def test_marathon_python_reads_tasks_and_queue(self, state, agent, http):
        import marathon
        state.add_app(web_app(backoffSeconds=30, maxLaunchDelaySeconds=300))
        await settle(agent)
        state.finish_all_deployments()
        state.add_app({**web_app(container={"type": "DOCKER", "docker": {"image": "nginx:1"}}),
                       "id": "/team/public"})
        await settle(agent)
        client = marathon.MarathonClient(str(http._base_url))
        tasks = await asyncio.to_thread(client.list_tasks, "/team/public")
        queue = await asyncio.to_thread(client.list_queue)
        assert [task.state for task in tasks] == ["TASK_RUNNING"]
        assert [(item.app.id, item.delay.time_left_seconds) for item in queue] == [
            ("/team/web", 30)]
        await asyncio.to_thread(client.reset_delay, "/team/web")
        assert states(state) == ["TASK_STAGING"]


def read_marathon_python_events(client: Any, event_types: list[str], until: str) -> list[Any]:
    """marathon-python's ``event_stream()`` until an event of type ``until`` (or the end)."""
    events = []
    for event in client.event_stream(event_types=event_types):
        events.append(event)
        if event.event_type == until:
            break
    return events


class TestMarathonPythonEvents:
    """marathon-python 0.13's ``event_stream()`` reads the simulator's events as it reads
    Marathon's: its ``MarathonDeploymentPlan`` needs ``plan.original`` and ``plan.target``, so it
    parses the deployment events of a Marathon that writes heavy plans by default (before 1.7),
    and breaks on the light ones of 1.8+ (it sends no ``plan-format``), which a client avoids by
    not subscribing to ``deployment_info`` and the step events."""

    async def stream(self, state: MarathonState, agent: Agent, event_types: list[str],
                     tmp_path: Path) -> list[Any]:
        import marathon
        recorder = Recorder()
        state.subscribe(recorder)
        async with MarathonSimulator(state) as sim:
            client = marathon.MarathonClient(sim.url)
            loop = asyncio.get_running_loop()
            cut = loop.call_later(TIMEOUT, state.disconnect_streams)  # never a hung thread
            reading = asyncio.ensure_future(asyncio.to_thread(
                read_marathon_python_events, client, event_types, "deployment_success"))
            await recorder.wait_for("event_stream_attached")
            state.add_app(web_app(fetch=[{"uri": bundle(tmp_path)}]))
            await settle(agent)
            try:
                return await reading
            finally:
                cut.cancel()

    async def test_heavy_plans_of_1_6_are_read_whole(self, clock, agent, tmp_path):
        from marathon.models.events import (
            MarathonDeploymentInfo,
            MarathonDeploymentSuccess,
            MarathonStatusUpdateEvent,
        )
        state = MarathonState(version="1.6.590", now=clock.wall, agent=agent)
        events = await self.stream(state, agent, [
            "deployment_info", "deployment_step_success", "status_update_event",
            "deployment_success"], tmp_path)
        assert [type(e).__name__ for e in events] == [
            "MarathonDeploymentInfo", "MarathonDeploymentStepSuccess", "MarathonDeploymentInfo",
            "MarathonStatusUpdateEvent", "MarathonDeploymentStepSuccess",
            "MarathonDeploymentSuccess"]
        info = events[2]
        assert isinstance(info, MarathonDeploymentInfo)
        assert [a.action for s in info.plan.steps for a in s.actions] == [
            "StartApplication", "ScaleApplication"]
        assert info.plan.original.id == info.plan.target.id == "/"
        assert [g["id"] for g in info.plan.target.groups] == ["/team"]
        update = events[3]
        assert isinstance(update, MarathonStatusUpdateEvent)
        assert (update.app_id, update.task_status) == ("/team/web", "TASK_RUNNING")
        success = events[-1]
        assert isinstance(success, MarathonDeploymentSuccess)
        assert success.id == info.plan.id

    async def test_light_plans_of_1_10_are_read_by_type(self, clock, agent, tmp_path):
        state = MarathonState(now=clock.wall, agent=agent)
        events = await self.stream(state, agent, [
            "api_post_event", "status_update_event", "deployment_success"], tmp_path)
        assert [e.event_type for e in events] == [
            "api_post_event", "status_update_event", "deployment_success"]
        assert events[0].app_definition["id"] == "/team/web"

    async def test_light_plans_of_1_10_break_its_deployment_info(self, clock, agent, tmp_path):
        state = MarathonState(now=clock.wall, agent=agent)
        with pytest.raises(AttributeError):  # MarathonDeploymentOriginalState.from_json(None)
            await self.stream(state, agent, ["deployment_info"], tmp_path)
