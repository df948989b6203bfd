"""The Marathon simulator, checked against docs/marathon.md and Marathon's own reference data."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft4Validator

from controller.simulator import (
    STATE_KEY,
    ApiError,
    MarathonSimulator,
    MarathonState,
    seed_apps,
)
from tests.clock import FakeClock
from tests.services import REFERENCE, eventually
from tests.simulator.support import TIMEOUT, Recorder, simulator_process

EXAMPLES = REFERENCE / "examples"
SCHEMA = json.loads((REFERENCE / "schema" / "AppDefinition.json").read_text())
SSE = {"Accept": "text/event-stream"}
LOCKED = ("App is locked by one or more deployments. Override with the option '?force=true'. "
          "View details at '/v2/deployments/<DEPLOYMENT_ID>'.")
STATUS_FIELDS = {"tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy", "deployments",
                 "tasks", "version", "versionInfo"}
DOCKER = {"type": "DOCKER", "docker": {"image": "registry.example.com:5000/team/web:1"}}


@pytest.fixture
def state(clock: FakeClock) -> MarathonState:
    """No agent: deployments run until a test ends them."""
    return MarathonState(now=clock.wall, deployment_seconds=None)


def web_app(**fields: Any) -> dict[str, Any]:
    return {"id": "/team/web", "container": DOCKER, **fields}


async def read_event(response: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    """The next event on a stream, skipping heartbeat blank lines."""
    async with asyncio.timeout(TIMEOUT):
        raw = (await response.content.readuntil(b"\r\n\r\n")).lstrip(b"\r\n")
    event_line, data_line = raw.decode().removesuffix("\r\n\r\n").split("\r\n")
    return event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))


async def read_to_end(response: aiohttp.ClientResponse) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        return await response.content.read()


async def read_into(response: aiohttp.ClientResponse, received: bytearray) -> None:
    """Append everything the stream sends to ``received`` until it ends."""
    async with asyncio.timeout(TIMEOUT):
        while chunk := await response.content.read(1024):
            received += chunk


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def reference_apps() -> list[Any]:
    group = json.loads((EXAMPLES / "group.json").read_text())
    group_apps = [app for g in group["groups"] for app in g["apps"]]
    group_apps += [app for g in group["groups"] for sub in g["groups"] for app in sub["apps"]]
    files = ["app.json", "tests-system-docker-http-server.json",
             "tests-system-private-docker-app.json", "tests-system-private-ucr-docker-app.json",
             "tests-system-ucr-docker-http-server.json"]
    return ([pytest.param(json.loads((EXAMPLES / f).read_text()), id=f) for f in files]
            + [pytest.param(app, id=f"group.json:{app['id']}") for app in group_apps])


class TestReferenceExamples:
    @pytest.mark.parametrize("app", reference_apps())
    async def test_example_loads_via_post(self, http, app):
        """Marathon's own example apps are accepted as they are."""
        response = await http.post("/v2/apps", json=app)
        assert response.status == 201, await response.text()

    @pytest.mark.parametrize("app", reference_apps())
    async def test_get_output_validates_against_the_schema(self, http, app):
        """GET output, minus status fields and nulls, is a valid AppDefinition.

        From app.json we drop ``tty`` (valid since 1.8 but missing from the last JSON schema) and
        ``args`` (the example also has ``cmd``; the schema forbids both, the server does not).
        """
        await http.post("/v2/apps", json=app)
        shown = (await (await http.get(f"/v2/apps{app['id']}")).json())["app"]
        definition = {k: v for k, v in without_nulls(shown).items() if k not in STATUS_FIELDS}
        if app["id"] == "/foo":
            del definition["tty"], definition["args"]
        errors = [e.message for e in Draft4Validator(SCHEMA).iter_errors(definition)]
        assert errors == []

    def test_unknown_nested_docker_field_is_dropped(self, state):
        """The UCR example's ``forcePull`` is not a field; 1.5+ readers ignore it."""
        app = json.loads((EXAMPLES / "tests-system-private-ucr-docker-app.json").read_text())
        state.add_app(app)
        docker = state.get_app(app["id"])["container"]["docker"]
        assert "forcePull" not in docker
        assert docker["pullConfig"] == {"secret": "pullConfigSecret"}

    def test_deprecated_network_fields_move(self, state):
        """Since 1.5 GET shows networks and container.portMappings, never the old fields."""
        state.add_app(json.loads((EXAMPLES / "tests-system-docker-http-server.json").read_text()))
        app = state.get_app("/docker-http-server")
        assert app["networks"] == [{"mode": "container/bridge"}]
        assert app["container"]["portMappings"] == [{"containerPort": 8080, "hostPort": 0}]
        assert not {"network", "portMappings"} & app["container"]["docker"].keys()
        assert not {"uris", "ports", "ipAddress"} & app.keys()


class TestCreate:
    def test_defaults_are_filled_like_get_output(self, state, clock):
        """A minimal app gets Marathon's defaults, a version and versionInfo."""
        state.add_app({"id": "minimal", "cmd": "sleep 1"})
        app = state.get_app("/minimal")
        expected = {"id": "/minimal", "instances": 1, "cpus": 1, "mem": 128, "disk": 0,
                    "fetch": [], "labels": {}, "env": {}, "version": "2024-05-06T07:08:09.123Z"}
        assert expected.items() <= app.items()
        assert app["versionInfo"] == {"lastScalingAt": app["version"],
                                      "lastConfigChangeAt": app["version"]}

    def test_fetch_items_get_artifact_defaults(self, state):
        """Each fetch item shows uri/extract/executable/cache, and destPath only if given."""
        state.add_app(web_app(fetch=[{"uri": "https://a/x.tgz"},
                                     {"uri": "https://a/y", "cache": True, "destPath": "y.bin"}]))
        assert state.get_app("/team/web")["fetch"] == [
            {"uri": "https://a/x.tgz", "extract": True, "executable": False, "cache": False},
            {"uri": "https://a/y", "extract": True, "executable": False, "cache": True,
             "destPath": "y.bin"},
        ]

    def test_uris_become_fetch_by_the_extract_rule(self, state):
        """``uris`` converts to fetch (extract only for archive paths) and is never shown."""
        state.add_app(web_app(uris=["https://a/b.tar.gz", "https://a/run.py",
                                    "https://a/c.zip?sig=1", "https://a/d.tgz/"]))
        app = state.get_app("/team/web")
        assert [f["extract"] for f in app["fetch"]] == [True, False, True, False]
        assert "uris" not in app

    def test_both_uris_and_fetch_is_rejected(self, state):
        """POST with both non-empty is a validation failure (422)."""
        with pytest.raises(ApiError) as caught:
            state.add_app(web_app(uris=["https://a/b"], fetch=[{"uri": "https://a/c"}]))
        assert caught.value.status == 422
        assert caught.value.body == {"message": "Object is not valid", "details": [
            {"path": "/uris", "errors": ["may not be set in conjunction with fetch"]}]}

    def test_an_empty_uris_list_beside_fetch_is_fine(self, state):
        """Only two non-empty lists conflict."""
        state.add_app(web_app(uris=[], fetch=[{"uri": "https://a/c"}]))
        assert [f["uri"] for f in state.get_app("/team/web")["fetch"]] == ["https://a/c"]

    def test_existing_id_is_a_conflict(self, state):
        """A second POST of the same id is 409 with Marathon's message."""
        state.add_app(web_app())
        with pytest.raises(ApiError) as caught:
            state.add_app(web_app())
        assert (caught.value.status, caught.value.body) == (
            409, {"message": "An app with id [/team/web] already exists."})

    @pytest.mark.parametrize("app_id", ["/Upper", "/-dash", "/a b", "/"])
    def test_invalid_id_is_rejected(self, state, app_id):
        """Ids follow Marathon's path rules."""
        with pytest.raises(ApiError) as caught:
            state.add_app({"id": app_id})
        assert caught.value.status == 422

    def test_unknown_and_null_fields_are_ignored(self, state):
        """Fields outside the App type, and nulls, never reach the definition."""
        state.add_app(web_app(tasksRunning=7, color="blue", cmd=None))
        assert not {"color", "cmd"} & state.get_app("/team/web").keys()

    async def test_post_answers_201_with_location_and_deployment(self, http):
        """The 201 body is the app with zero counts and its deployment; no versionInfo."""
        response = await http.post("/v2/apps", json=web_app())
        body = await response.json()
        assert response.status == 201
        assert response.headers["Location"].endswith("/team/web")
        assert response.headers["Marathon-Deployment-Id"] == body["deployments"][0]["id"]
        assert body["tasksRunning"] == 0
        assert "versionInfo" not in body

    async def test_malformed_json_is_400(self, http):
        """A body that is not JSON gets Marathon's string-details error."""
        response = await http.post("/v2/apps", data=b"{nope")
        body = await response.json()
        assert response.status == 400
        assert body["message"] == "Invalid JSON"
        assert isinstance(body["details"], str)


LABELLED = {"/a": {"env": "prod", "tier": "frontend tier"}, "/b": {"env": "dev"}, "/c": {},
            "/d": {"env": "prod", "pullsecret.enabled": "true"}}


class TestListApps:
    @pytest.fixture
    def labelled(self, state):
        state.load_apps([{"id": app_id, "labels": labels} for app_id, labels in LABELLED.items()])
        return state

    @pytest.mark.parametrize(("selector", "expected"), [
        ("env", ["/a", "/b", "/d"]),
        ("env==prod", ["/a", "/d"]),
        ("env!=prod", ["/b"]),
        ("env in (dev, qa)", ["/b"]),
        ("env notin (dev)", ["/a", "/d"]),
        ("env==prod,pullsecret.enabled==true", ["/d"]),
        (r"tier==frontend\ tier", ["/a"]),
        ("  env ==  prod ", ["/a", "/d"]),
        ("env in ()", []),
    ], ids=["exists", "equals", "not-equals-needs-label", "in", "notin", "and", "escape",
            "whitespace", "empty-set"])
    def test_label_selector(self, labelled, selector, expected):
        """Marathon's selector grammar; every operator needs the label to exist."""
        assert [a["id"] for a in labelled.list_apps(label=selector)] == expected

    @pytest.mark.parametrize("selector", ["env=prod", "env==", "env in dev", "env,", "env)",
                                          "env==a b", "e@v"])
    def test_bad_selector_is_422(self, labelled, selector):
        """Syntax errors answer 422 with Marathon's message."""
        with pytest.raises(ApiError) as caught:
            labelled.list_apps(label=selector)
        assert (caught.value.status, caught.value.body) == (
            422, {"message": f"Can not parse label selector {selector}"})

    def test_id_filter_is_a_case_insensitive_substring(self, state):
        """``id`` matches anywhere in the id, not as a prefix."""
        state.load_apps([{"id": "/prod/a"}, {"id": "/x/prod/b"}, {"id": "/dev/c"}])
        assert [a["id"] for a in state.list_apps(id="/PROD/")] == ["/prod/a", "/x/prod/b"]

    def test_counts_and_deployments_are_always_embedded(self, state):
        """Each listed app carries task counts and its running deployments."""
        state.add_app(web_app(instances=3))
        app = state.list_apps()[0]
        assert (app["tasksRunning"], app["tasksStaged"]) == (3, 0)
        assert app["deployments"] == [{"id": state.list_deployments()[0]["id"]}]

    def test_embed_tasks_adds_an_empty_task_list(self, state):
        """Embeds beyond counts and deployments are honoured (there are no tasks)."""
        state.load_apps([web_app()])
        assert state.list_apps(embed=["apps.tasks"])[0]["tasks"] == []

    def test_listed_apps_are_copies(self, state):
        """Changing a listed app does not change the simulator."""
        state.load_apps([web_app()])
        state.list_apps()[0]["labels"]["x"] = "y"
        assert state.list_apps()[0]["labels"] == {}

    async def test_http_list_uses_the_label_query(self, http, labelled):
        """``GET /v2/apps?label=…`` filters, and a bad selector is 422."""
        listed = await (await http.get("/v2/apps", params={"label": "env==dev"})).json()
        assert [a["id"] for a in listed["apps"]] == ["/b"]
        assert (await http.get("/v2/apps", params={"label": "env="})).status == 422


class TestPartialUpdate:
    @pytest.fixture
    def app_id(self, state):
        state.load_apps([web_app(labels={"a": "1"}, env={"E": "x"}, instances=2,
                                 fetch=[{"uri": "https://a/one.tgz", "cache": True}],
                                 executorResources={"cpus": 0.2, "mem": 64})])
        return "/team/web"

    def test_only_given_fields_change_and_objects_are_replaced(self, state, app_id):
        """Present fields replace the old value wholesale; absent ones stay."""
        state.update_app(app_id, {"labels": {"b": "2"}, "executorResources": {"cpus": 0.2}})
        app = state.get_app(app_id)
        assert app["labels"] == {"b": "2"}
        assert (app["env"], app["instances"]) == ({"E": "x"}, 2)

    def test_omitted_executor_resources_are_dropped(self, state, app_id):
        """The 1.7+ quirk: a partial update that omits executorResources loses it."""
        state.update_app(app_id, {"fetch": []})
        assert "executorResources" not in state.get_app(app_id)

    def test_resent_executor_resources_are_kept(self, state, app_id):
        """Sending executorResources back keeps it."""
        state.update_app(app_id, {"fetch": [], "executorResources": {"cpus": 0.2, "mem": 64}})
        assert state.get_app(app_id)["executorResources"] == {"cpus": 0.2, "mem": 64}

    @pytest.mark.parametrize("extra", [{"instances": 3}, {"versionInfo": {}}])
    def test_version_with_other_fields_is_422(self, state, app_id, extra):
        """``version`` may only be combined with ``id``."""
        version = state.get_app(app_id)["version"]
        with pytest.raises(ApiError) as caught:
            state.update_app(app_id, {"version": version, **extra})
        assert caught.value.status == 422
        assert caught.value.body["details"][0]["errors"] == [
            "The 'version' field may only be combined with the 'id' field."]

    def test_version_alone_rolls_back(self, state, app_id, clock):
        """``{"version": v}`` restores that version's definition as a new version."""
        old = state.get_app(app_id)
        clock.advance(1)
        state.update_app(app_id, {"labels": {"new": "1"}, "executorResources": {"cpus": 0.2}})
        state.finish_all_deployments()
        state.update_app(app_id, {"id": app_id, "version": old["version"]})
        app = state.get_app(app_id)
        assert app["labels"] == old["labels"]
        assert app["version"] > old["version"]

    def test_uris_and_fetch_together_are_500(self, state, app_id):
        """The partial-update NormalizationException has no mapper: 500."""
        with pytest.raises(ApiError) as caught:
            state.update_app(app_id, {"uris": ["https://a/b"], "fetch": [{"uri": "https://a/c"}]})
        assert (caught.value.status, caught.value.body) == (
            500, {"message": "cannot specify both uris and fetch fields"})

    def test_uris_replace_the_whole_fetch_list(self, state, app_id):
        """``uris`` alone replaces fetch; the old entries and their flags are lost."""
        state.update_app(app_id, {"uris": ["https://a/two.py"]})
        assert state.get_app(app_id)["fetch"] == [
            {"uri": "https://a/two.py", "extract": False, "executable": False, "cache": False}]

    def test_empty_uris_leave_fetch_alone(self, state, app_id):
        """An empty ``uris`` list is no fetch change."""
        before = state.get_app(app_id)["fetch"]
        state.update_app(app_id, {"uris": [], "executorResources": {"cpus": 0.2, "mem": 64}})
        assert state.get_app(app_id)["fetch"] == before

    def test_no_op_keeps_the_version_and_needs_no_lock(self, state, app_id, recorder):
        """An update that changes nothing deploys no step, yet still posts an api_post_event."""
        before = state.get_app(app_id)
        state.update_app(app_id, {"executorResources": {"cpus": 0.2, "mem": 64}, "junk": 1})
        state.update_app(app_id, {"executorResources": {"cpus": 0.2, "mem": 64}})
        assert state.get_app(app_id)["version"] == before["version"]
        assert state.get_app(app_id)["deployments"] == []
        assert recorder.types().count("api_post_event") == 2
        assert "deployment_info" not in recorder.types()

    def test_scaling_keeps_last_config_change(self, state, app_id, clock):
        """Changing only instances is a scale: lastConfigChangeAt stays."""
        before = state.get_app(app_id)
        clock.advance(5)
        state.update_app(app_id, {"instances": 4, "executorResources": {"cpus": 0.2, "mem": 64}})
        info = state.get_app(app_id)["versionInfo"]
        assert info["lastConfigChangeAt"] == before["versionInfo"]["lastConfigChangeAt"]
        assert info["lastScalingAt"] > before["version"]
        assert state.list_deployments()[0]["steps"][0]["actions"][0]["action"] == (
            "ScaleApplication")

    def test_full_replace_resets_omitted_fields(self, state, app_id):
        """``partialUpdate=false`` is a complete replacement: omitted fields get defaults."""
        state.update_app(app_id, {"container": DOCKER}, partial=False)
        app = state.get_app(app_id)
        assert (app["instances"], app["labels"], app["fetch"]) == (1, {}, [])

    async def test_put_on_a_missing_app_creates_it(self, http):
        """PUT creates a missing app: 201 with a deployment result."""
        response = await http.put("/v2/apps/new/app", json={"container": DOCKER})
        body = await response.json()
        assert response.status == 201
        assert body.keys() == {"deploymentId", "version"}
        assert response.headers["Marathon-Deployment-Id"] == body["deploymentId"]

    async def test_patch_on_a_missing_app_is_404(self, http):
        """PATCH never creates."""
        response = await http.patch("/v2/apps/x", json={"instances": 1})
        assert response.status == 404
        assert await response.json() == {"message": "App '/x' does not exist"}

    async def test_get_of_a_missing_app_is_404(self, http):
        """GET of an unknown id answers Marathon's message."""
        response = await http.get("/v2/apps/x/y/")
        assert (response.status, await response.json()) == (
            404, {"message": "App '/x/y' does not exist"})


class TestDeployments:
    def test_running_deployment_locks_the_app_with_the_exact_body(self, state):
        """A non-forced update while a deployment runs is 409 naming that deployment."""
        state.add_app(web_app())
        running = state.list_deployments()[0]["id"]
        with pytest.raises(ApiError) as caught:
            state.update_app("/team/web", {"instances": 2})
        assert (caught.value.status, caught.value.body) == (
            409, {"message": LOCKED, "deployments": [{"id": running}]})

    async def test_update_succeeds_once_the_deployment_finished(self, http, state):
        """409 while locked over HTTP, then 200 after ``finish_deployment``."""
        created = await (await http.post("/v2/apps", json=web_app())).json()
        locked = await http.patch("/v2/apps/team/web", json={"instances": 2})
        assert (locked.status, (await locked.json())["message"]) == (409, LOCKED)
        state.finish_deployment(created["deployments"][0]["id"])
        assert (await http.patch("/v2/apps/team/web", json={"instances": 2})).status == 200

    def test_force_cancels_the_running_deployment(self, state, recorder):
        """``force`` ends the locking deployment as failed and goes ahead."""
        state.add_app(web_app())
        first = state.list_deployments()[0]["id"]
        state.update_app("/team/web", {"instances": 2}, force=True)
        assert recorder.of("deployment_failed")[0]["id"] == first
        assert [d["id"] for d in state.list_deployments()] != [first]

    def test_deployment_events_use_the_light_plan(self, state, recorder):
        """deployment_info at the start and deployment_success at the end, steps/actions shape."""
        state.load_apps([web_app()])
        result = state.update_app("/team/web", {"labels": {"x": "1"}})
        state.finish_deployment(result.deployment_id)
        steps = [{"actions": [{"action": "RestartApplication", "app": "/team/web"}]}]
        plan = {"id": result.deployment_id, "steps": steps, "version": result.version}
        info = recorder.of("deployment_info")[0]
        assert (info["plan"], info["currentStep"]) == (plan, steps[0])
        success = recorder.of("deployment_success")[0]
        assert (success["id"], success["plan"]) == (result.deployment_id, plan)
        assert recorder.types()[-2:] == ["deployment_step_success", "deployment_success"]

    def test_deployment_list_shape(self, state):
        """``GET /v2/deployments`` items look like Marathon's example; a new app's plan starts
        it (done at once), then scales it, and waits in that second step."""
        state.add_app(web_app())
        deployment = state.list_deployments()[0]
        example = json.loads((EXAMPLES / "deployments.json").read_text())[0]
        assert deployment.keys() == example.keys()
        assert deployment["affectedApps"] == ["/team/web"]
        assert [step["actions"][0]["action"] for step in deployment["steps"]] == [
            "StartApplication", "ScaleApplication"]
        assert (deployment["currentStep"], deployment["totalSteps"]) == (2, 2)
        assert deployment["currentActions"] == [
            {"action": "ScaleApplication", "app": "/team/web", "readinessCheckResults": []}]

    def test_deleting_a_deployment_rolls_back(self, state):
        """``DELETE /v2/deployments/{id}`` cancels and deploys the previous definition."""
        state.load_apps([web_app(instances=1)])
        result = state.update_app("/team/web", {"instances": 5})
        rollback = state.delete_deployment(result.deployment_id)
        assert rollback is not None
        assert state.get_app("/team/web")["instances"] == 1

    def test_force_deleting_a_deployment_keeps_the_change(self, state):
        """With ``force`` the deployment is only cancelled."""
        state.load_apps([web_app(instances=1)])
        result = state.update_app("/team/web", {"instances": 5})
        assert state.delete_deployment(result.deployment_id, force=True) is None
        assert (state.list_deployments(), state.get_app("/team/web")["instances"]) == ([], 5)

    async def test_unknown_deployment_is_404(self, http):
        """Deleting an unknown deployment answers Marathon's message."""
        response = await http.delete("/v2/deployments/nope")
        assert (response.status, await response.json()) == (
            404, {"message": "DeploymentPlan nope does not exist"})

    async def test_forced_deployment_delete_is_202(self, http, state):
        """``force=true`` answers 202 without a body."""
        state.add_app(web_app())
        deployment = state.list_deployments()[0]["id"]
        response = await http.delete(f"/v2/deployments/{deployment}", params={"force": "true"})
        assert response.status == 202

    async def test_deployments_end_by_themselves_under_the_facade(self):
        """With ``deployment_seconds=0`` a deployment ends on the next loop tick."""
        state = MarathonState()
        recorder = Recorder()
        state.subscribe(recorder)
        async with MarathonSimulator(state) as sim, aiohttp.ClientSession(sim.url) as http:
            await http.post("/v2/apps", json=web_app())
            await recorder.wait_for("deployment_success")
            assert await (await http.get("/v2/deployments")).json() == []

    async def test_another_facade_ends_deployments_once_the_first_stops(self):
        """A running deployment still ends when the facade that timed it stops."""
        state = MarathonState(deployment_seconds=0.05)
        recorder = Recorder()
        state.subscribe(recorder)
        first = MarathonSimulator(state)
        await first.start()
        async with MarathonSimulator(state):  # attached after the first: it waits its turn
            state.add_app(web_app())  # the first times this deployment...
            await first.stop()  # ...and cancels that timer as it stops
            await recorder.wait_for("deployment_success")
        assert state.list_deployments() == []

    def test_delete_app_terminates_when_its_deployment_ends(self, state, recorder):
        """The app is gone at once; app_terminated_event comes with the deployment's end."""
        state.load_apps([web_app()])
        state.delete_app("/team/web")
        with pytest.raises(ApiError):
            state.get_app("/team/web")
        assert "app_terminated_event" not in recorder.types()
        state.finish_all_deployments()
        assert recorder.of("app_terminated_event")[0]["appId"] == "/team/web"

    def test_finishing_an_unknown_deployment_is_a_key_error(self, state):
        """Tests learn early that a deployment already ended."""
        with pytest.raises(KeyError):
            state.finish_deployment("nope")


class TestEventStream:
    @pytest.mark.parametrize("accept", [None, "text/event-stream, */*",
                                        "text/event-stream;charset=UTF-8", "*/*"])
    async def test_anything_but_the_exact_accept_is_405(self, http, accept):
        """Jetty compares each Accept value with ``text/event-stream`` exactly."""
        headers = {"Accept": accept} if accept else {}
        assert (await http.get("/v2/events", headers=headers)).status == 405

    async def test_attach_event_comes_first_in_crlf_framing(self, http):
        """The client first sees its own event_stream_attached, framed like Jetty frames."""
        async with http.get("/v2/events", headers=SSE) as response:
            assert response.headers["Content-Type"] == "text/event-stream;charset=UTF-8"
            async with asyncio.timeout(TIMEOUT):
                raw = await response.content.readuntil(b"\r\n\r\n")
        assert raw.startswith(b'event: event_stream_attached\r\ndata: {"remoteAddress":"127.0.0.1"')
        assert raw.count(b"\r\n") == 3
        assert b"id:" not in raw
        assert b"retry:" not in raw

    async def test_event_type_filter(self, http, state):
        """Only the requested event types are sent."""
        params = [("event_type", "b"), ("event_type", "event_stream_attached"),
                  ("plan-format", "light")]
        async with http.get("/v2/events", params=params, headers=SSE) as response:
            assert (await read_event(response))[0] == "event_stream_attached"
            state.trigger_event("a", {})
            state.trigger_event("b", {"n": 1})
            assert await read_event(response) == ("b", {"n": 1, "eventType": "b",
                                                        "timestamp": "2024-05-06T07:08:09.123Z"})

    async def test_heartbeats_are_blank_lines(self):
        """Between events the stream carries bare CRLF lines."""
        async with (MarathonSimulator(heartbeat_seconds=0.02) as sim,
                    aiohttp.ClientSession(sim.url) as http,
                    http.get("/v2/events", headers=SSE) as response):
            await read_event(response)
            async with asyncio.timeout(TIMEOUT):
                assert await response.content.readexactly(4) == b"\r\n\r\n"

    async def test_api_post_event_carries_the_app_definition(self, http, state):
        """A PATCH posts api_post_event with the resulting app under ``appDefinition``."""
        state.load_apps([web_app()])
        async with http.get("/v2/events", headers=SSE,
                            params={"event_type": "api_post_event"}) as response:
            await http.patch("/v2/apps/team/web", json={"labels": {"x": "y"}})
            event_type, payload = await read_event(response)
        assert event_type == "api_post_event"
        assert payload["appDefinition"] == {
            k: v for k, v in state.get_app("/team/web").items()
            if k not in {"tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy",
                         "deployments", "tasks"}}
        assert (payload["uri"], payload["clientIp"]) == ("/v2/apps/team/web", "127.0.0.1")

    async def test_disconnect_streams_ends_them(self, http, state):
        """``disconnect_streams`` cuts every open stream."""
        async with http.get("/v2/events", headers=SSE) as response:
            await read_event(response)
            state.disconnect_streams()
            assert await read_to_end(response) == b""

    async def test_slow_consumer_is_disconnected(self, state):
        """More than ``max_outstanding`` undelivered events close the stream."""
        async with (MarathonSimulator(state, max_outstanding=4) as sim,
                    aiohttp.ClientSession(sim.url) as http,
                    http.get("/v2/events", headers=SSE) as response):
            await read_event(response)
            for n in range(10):
                state.trigger_event("status_update_event", {"n": n})
            assert await read_to_end(response) == b""

    async def test_a_consumer_that_stops_reading_is_cut(self, http, state, recorder):
        """Once the socket is full, queued events pile up past the limit and the stream closes."""
        padding = "x" * 4096
        async with http.get("/v2/events", headers=SSE) as response:
            await read_event(response)
            async with asyncio.timeout(TIMEOUT):
                while "event_stream_detached" not in recorder.types():
                    for _ in range(200):
                        state.trigger_event("status_update_event", {"message": padding})
                    await asyncio.sleep(0)  # yield, so the writer runs and finds the socket full

    async def test_old_marathon_ignores_the_filter(self):
        """Before 1.3.7 ``event_type`` did not exist: every event is sent."""
        state = MarathonState(version="1.3.6")
        async with (MarathonSimulator(state) as sim, aiohttp.ClientSession(sim.url) as http,
                    http.get("/v2/events", headers=SSE, params={"event_type": "b"}) as response):
            assert (await read_event(response))[0] == "event_stream_attached"

    async def test_a_flood_arrives_complete_and_in_order(self, http, state):
        """Thousands of events reach a consumer that keeps up."""
        count = 5000
        async with http.get("/v2/events", headers=SSE,
                            params={"event_type": "status_update_event"}) as response:
            for n in range(count):
                state.trigger_event("status_update_event", {"n": n})
                if n % 500 == 0:
                    await asyncio.sleep(0)  # yield, as any real producer does
            data = b""
            async with asyncio.timeout(TIMEOUT):
                while data.count(b"\r\n\r\n") < count:
                    data += await response.content.read(1 << 16)
        numbers = [json.loads(frame.split(b"data: ")[1])["n"]
                   for frame in data.split(b"\r\n\r\n") if frame.strip()]
        assert numbers == list(range(count))

    async def test_stop_closes_open_streams_promptly(self, state):
        """Stopping the simulator ends its streams instead of waiting for them."""
        sim = MarathonSimulator(state)
        await sim.start()
        async with aiohttp.ClientSession(sim.url) as http, \
                http.get("/v2/events", headers=SSE) as response:
            await read_event(response)
            async with asyncio.timeout(2):
                await sim.stop()
            assert await read_to_end(response) == b""

    async def test_cut_mid_event_sends_half_a_frame_then_breaks(self, http, state, sim):
        """The next event arrives half-written and the connection breaks before its end."""
        async with http.get("/v2/events", headers=SSE) as response:
            await read_event(response)
            sim.cut_streams_mid_event()
            state.trigger_event("b", {"n": 1})
            received = bytearray()
            with pytest.raises(aiohttp.ClientPayloadError):
                await read_into(response, received)
        frame = b'event: b\r\ndata: {"n":1,"eventType":"b","timestamp":"2024-05-06T07:08:09.123Z"}'
        assert received.lstrip(b"\r\n") == (frame + b"\r\n\r\n")[:(len(frame) + 4) // 2]

    async def test_detach_is_published_when_a_stream_ends(self, http, state, recorder):
        """Other subscribers see event_stream_detached."""
        async with http.get("/v2/events", headers=SSE) as response:
            await read_event(response)
            state.disconnect_streams()
            await read_to_end(response)
        assert (await recorder.wait_for("event_stream_detached"))["remoteAddress"] == "127.0.0.1"


class TestAuth:
    @pytest.fixture
    async def secured(self, state):
        async with MarathonSimulator(state, credentials=("ops", "s3cret"), token="tok") as sim:
            yield sim

    @pytest.mark.parametrize("path", ["/v2/apps", "/ping", "/v2/events"])
    async def test_every_path_needs_credentials(self, secured, path):
        """Basic auth covers /* including /ping and the event stream."""
        async with aiohttp.ClientSession(secured.url) as http:
            response = await http.get(path, headers=SSE)
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == 'Basic realm="Mesosphere"'
            assert await response.json() == {"message": "Invalid username or password."}

    @pytest.mark.parametrize("auth", [aiohttp.encode_basic_auth("ops", "s3cret"), "token=tok"],
                             ids=["basic", "dcos-token"])
    async def test_good_credentials_pass(self, secured, auth):
        """Either the basic credentials or the DC/OS token is accepted."""
        async with aiohttp.ClientSession(secured.url, headers={"Authorization": auth}) as http:
            assert (await http.get("/v2/apps")).status == 200

    @pytest.mark.parametrize("auth", [aiohttp.encode_basic_auth("ops", "wrong"), "token=bad",
                                      "Basic !!!"])
    async def test_wrong_credentials_fail(self, secured, auth):
        """A wrong password, token or header is 401."""
        async with aiohttp.ClientSession(secured.url, headers={"Authorization": auth}) as http:
            assert (await http.get("/v2/apps")).status == 401


class TestLeadership:
    async def test_standby_redirects_events_keeping_the_query(self, state):
        """A standby answers /v2/events with 302 to the leader's stream."""
        async with (MarathonSimulator(state) as leader,
                    MarathonSimulator(state, leader_url=leader.url) as standby,
                    aiohttp.ClientSession() as http):
            response = await http.get(f"{standby.url}/v2/events?event_type=a&event_type=b",
                                      headers=SSE, allow_redirects=False)
            assert response.status == 302
            assert response.headers["Location"] == (
                f"{leader.url}/v2/events?event_type=a&event_type=b")

    async def test_every_response_names_the_leader(self, state):
        """X-Marathon-Leader is on leader and standby answers, errors included."""
        async with (MarathonSimulator(state) as leader,
                    MarathonSimulator(state, leader_url=leader.url) as standby,
                    aiohttp.ClientSession() as http):
            for url in (f"{leader.url}/v2/apps", f"{standby.url}/v2/apps",
                        f"{standby.url}/v2/apps/missing", f"{leader.url}/v2/events"):
                response = await http.get(url)
                assert response.headers["X-Marathon-Leader"] == leader.url, url

    async def test_standby_serves_the_shared_state(self, state):
        """Sharing the state models a standby proxying to the leader."""
        state.load_apps([web_app()])
        async with (MarathonSimulator(state) as leader,
                    MarathonSimulator(state, leader_url=leader.url) as standby,
                    aiohttp.ClientSession(standby.url) as http):
            assert len((await (await http.get("/v2/apps")).json())["apps"]) == 1
            info = await (await http.get("/v2/info")).json()
            assert (info["elected"], info["leader"]) == (False, leader.url.removeprefix("http://"))
            assert await (await http.get("/v2/leader")).json() == {"leader": info["leader"]}


    async def test_follow_moves_the_leadership(self, state):
        """After a leader change the old leader names the new one, cuts its streams and
        redirects new ones there."""
        async with (MarathonSimulator(state) as first,
                    MarathonSimulator(state, leader_url=first.url) as second,
                    aiohttp.ClientSession() as http):
            async with http.get(f"{first.url}/v2/events", headers=SSE) as stream:
                await read_event(stream)
                second.follow(None)
                first.follow(second.url)
                assert await read_to_end(stream) == b""
            response = await http.get(f"{first.url}/v2/events", headers=SSE,
                                      allow_redirects=False)
            assert (response.status, response.headers["Location"]) == (
                302, f"{second.url}/v2/events")
            for url in (first.url, second.url):
                assert (await http.get(f"{url}/v2/apps")).headers["X-Marathon-Leader"] == (
                    second.url)


class TestRestart:
    async def test_restart_keeps_the_address_and_the_state(self, state, sim):
        """A restarted facade serves the same state on the same port."""
        state.load_apps([web_app()])
        url = sim.url
        await sim.restart()
        assert sim.url == url
        async with aiohttp.ClientSession(url) as http:
            assert [a["id"] for a in (await (await http.get("/v2/apps")).json())["apps"]] == [
                "/team/web"]

    async def test_restart_cuts_the_event_stream(self, state, sim, http):
        """Open streams end with the restart; a new one attaches to the restarted server."""
        async with http.get("/v2/events", headers=SSE) as response:
            await read_event(response)
            await sim.restart()
            assert await read_to_end(response) == b""
        async with http.get("/v2/events", headers=SSE) as response:
            assert (await read_event(response))[0] == "event_stream_attached"

    async def test_nothing_answers_while_down(self, state, sim, http):
        """During ``down_seconds`` connections are refused."""
        async def refused() -> bool:
            try:
                async with http.get("/ping"):
                    return False
            except aiohttp.ClientConnectorError:
                return True

        restarting = asyncio.ensure_future(sim.restart(down_seconds=0.5))
        await eventually(refused, TIMEOUT, "a connection is refused")
        await restarting
        assert (await http.get("/ping")).status == 200


class TestWriteLog:
    async def test_writes_record_the_client_and_status(self, http, state):
        """Each write, refused ones too, is logged with its User-Agent; reads are not."""
        await http.post("/v2/apps", json=web_app())
        await http.patch("/v2/apps/team/web", json={"instances": 2},
                         headers={"User-Agent": "other/2"})
        await http.get("/v2/apps")
        assert [(w.method, w.path, w.client, w.status) for w in state.writes] == [
            ("POST", "/v2/apps", "tests/1", 201),
            ("PATCH", "/v2/apps/team/web", "other/2", 409),
        ]
        assert state.writes[1].body == {"instances": 2}

    async def test_writes_record_the_query(self, http, state):
        """The query string is kept, so a test can tell whether a writer forced."""
        state.load_apps([web_app()])
        await http.put("/v2/apps/team/web", params={"force": "true"}, json={"instances": 2})
        assert state.writes[0].query == "force=true"

    async def test_faulted_writes_are_recorded(self, http, state):
        """A write refused by an injected fault still appears in the log."""
        state.fail_next("/team/web", 500)
        await http.put("/v2/apps/team/web", json={"container": DOCKER})
        assert [(w.method, w.status) for w in state.writes] == [("PUT", 500)]


class TestFaults:
    async def test_fail_next_by_app_id(self, http, state):
        """An app id is a fault pattern; the fault is used up after ``count`` requests."""
        state.load_apps([web_app()])
        state.fail_next("/team/web", 503, count=2)
        statuses = [(await http.get("/v2/apps/team/web")).status for _ in range(3)]
        assert statuses == [503, 503, 200]

    async def test_fail_next_by_method(self, http, state):
        """A method restricts the fault to those requests."""
        state.load_apps([web_app()])
        state.fail_next(r"^/v2/apps", 500, method="PATCH")
        assert (await http.get("/v2/apps/team/web")).status == 200
        assert (await http.patch("/v2/apps/team/web", json={})).status == 500

    async def test_unavailable_answers_503_everywhere(self, http, state):
        """The unavailable toggle fails every request until cleared."""
        state.unavailable = True
        assert (await http.get("/ping")).status == 503
        state.unavailable = False
        assert await (await http.get("/ping")).text() == "pong"

    async def test_a_fault_without_count_lasts_until_cleared(self, http, state):
        """``count=None`` fails every matching request until ``clear_faults``."""
        state.fail_next("^/ping", 502, count=None)
        statuses = [(await http.get("/ping")).status for _ in range(5)]
        state.clear_faults()
        assert statuses == [502] * 5
        assert (await http.get("/ping")).status == 200

    @pytest.mark.parametrize("status", [503, 403])
    async def test_events_fail_while_apps_work(self, http, state, status):
        """A fault on ``/v2/events`` leaves the app list alone."""
        state.fail_next("^/v2/events", status, count=None)
        assert (await http.get("/v2/events", headers=SSE)).status == status
        assert (await http.get("/v2/apps")).status == 200

    async def test_hang_holds_the_request_until_released(self, http, state):
        """A held request is answered normally once the fault is released."""
        fault = state.inject("^/ping", "hang")
        request = asyncio.ensure_future(http.get("/ping"))
        await eventually(lambda: fault.remaining == 0, TIMEOUT, "the request meets the fault")
        assert not request.done()
        fault.release()
        async with asyncio.timeout(TIMEOUT):
            assert (await request).status == 200

    async def test_hang_gives_up_after_its_seconds(self, http, state):
        """``seconds`` bounds the hold; a client with a shorter timeout sees a timeout."""
        state.inject("^/ping", "hang", seconds=0.3, count=2)
        with pytest.raises(TimeoutError):
            await http.get("/ping", timeout=aiohttp.ClientTimeout(total=0.1))
        async with asyncio.timeout(TIMEOUT):
            assert (await http.get("/ping")).status == 200

    async def test_a_landed_hang_applies_the_write_and_holds_the_answer(self, http, state):
        """With ``landed`` the write happens although its answer never comes in time."""
        state.load_apps([web_app()])
        fault = state.inject("^/v2/apps/", "hang", method="PATCH", landed=True)
        with pytest.raises(TimeoutError):
            await http.patch("/v2/apps/team/web", json={"instances": 3},
                             timeout=aiohttp.ClientTimeout(total=0.3))
        assert state.get_app("/team/web")["instances"] == 3
        fault.release()

    async def test_clear_faults_releases_held_requests(self, http, state):
        """Clearing the table lets every request its faults hold go on, also those of a fault
        that was used up and left the table."""
        fault = state.inject("^/ping", "hang", count=2)  # used up by the two: out of the table
        requests = [asyncio.ensure_future(http.get("/ping")) for _ in range(2)]
        await eventually(lambda: fault.remaining == 0, TIMEOUT, "both requests meet the fault")
        assert not any(request.done() for request in requests)
        state.clear_faults()
        async with asyncio.timeout(TIMEOUT):
            assert [(await request).status for request in requests] == [200, 200]

    async def test_truncate_sends_half_the_body_as_all_of_it(self, http, state):
        """A truncated answer is a complete HTTP response whose JSON is cut short."""
        state.load_apps([web_app()])
        whole = await (await http.get("/v2/apps")).read()
        state.inject("^/v2/apps$", "truncate", method="GET")
        response = await http.get("/v2/apps")
        body = await response.read()
        assert (response.status, body) == (200, whole[:len(whole) // 2])
        with pytest.raises(ValueError, match=r"^Unterminated string"):
            json.loads(body)

    async def test_take_fault_leaves_other_kinds_alone(self, state):
        """``take_fault`` returns status failures only, so a hang stays planned."""
        state.inject("^/ping", "hang")
        assert state.take_fault("GET", "/ping") is None
        assert state.claim_fault("GET", "/ping") is not None
        assert state.claim_fault("GET", "/ping") is None


class TestOldMarathon:
    @pytest.fixture
    def state(self, clock):
        return MarathonState(version="1.3.14", now=clock.wall, deployment_seconds=None)

    async def test_patch_does_not_exist(self, http, state):
        """PATCH came with 1.4."""
        state.load_apps([web_app()])
        assert (await http.patch("/v2/apps/team/web", json={})).status == 405
        assert [(w.method, w.status) for w in state.writes] == [("PATCH", 405)]

    def test_get_shows_uris_beside_fetch(self, state):
        """≤ 1.4 writes both ``uris`` and ``fetch``."""
        state.load_apps([web_app(fetch=[{"uri": "https://a/b.tgz"}])])
        app = state.get_app("/team/web")
        assert (app["uris"], app["fetch"][0]["uri"]) == (["https://a/b.tgz"], "https://a/b.tgz")

    async def test_put_is_always_partial_and_has_no_deployment_header(self, http, state):
        """``partialUpdate`` did not exist: PUT patched, and answered no deployment header."""
        state.load_apps([web_app(instances=3)])
        response = await http.put("/v2/apps/team/web", params={"partialUpdate": "false"},
                                  json={"labels": {"x": "1"}})
        assert response.status == 200
        assert "Marathon-Deployment-Id" not in response.headers
        assert state.get_app("/team/web")["instances"] == 3

    def test_round_tripping_get_output_is_400(self, state):
        """A GET→PUT round trip fails because GET shows both ``uris`` and ``fetch``."""
        state.load_apps([web_app(fetch=[{"uri": "https://a/b.tgz"}])])
        app = state.get_app("/team/web")
        with pytest.raises(ApiError) as caught:
            state.update_app("/team/web", {"uris": app["uris"], "fetch": app["fetch"]})
        assert caught.value.status == 400


class TestState:
    def test_versions_always_increase(self, state):
        """Changes within one clock tick still get distinct, increasing versions."""
        state.load_apps([web_app()])
        versions = []
        for n in range(3):
            state.update_app("/team/web", {"instances": n + 2}, force=True)
            versions.append(state.get_app("/team/web")["version"])
        assert versions == sorted(set(versions))

    def test_events_are_encoded_once_with_marathon_fields(self, state, recorder):
        """An event carries eventType and timestamp, and its frame is its SSE encoding."""
        state.trigger_event("custom", {"k": "v"})
        event = recorder.events[0]
        assert event.payload == {"k": "v", "eventType": "custom",
                                 "timestamp": "2024-05-06T07:08:09.123Z"}
        assert event.frame == (b'event: custom\r\ndata: {"k":"v","eventType":"custom",'
                               b'"timestamp":"2024-05-06T07:08:09.123Z"}\r\n\r\n')

    def test_disconnect_streams_closes_subscribers(self, state, recorder):
        """Every subscriber is told its stream was cut."""
        state.disconnect_streams()
        assert recorder.closed

    async def test_the_app_keeps_its_state_under_a_key(self, state):
        """``aiohttp_client(sim.app)`` users find the state under STATE_KEY."""
        assert MarathonSimulator(state).app[STATE_KEY] is state


class TestInfo:
    async def test_info_has_the_shape_of_marathons(self, http):
        """``/v2/info`` has the example's top-level keys and the simulated version."""
        info = await (await http.get("/v2/info")).json()
        example = json.loads((EXAMPLES / "info.json").read_text())
        assert info.keys() == example.keys()
        assert (info["version"], info["elected"]) == ("1.10.26", True)
        assert info["http_config"]["http_port"] == int(info["leader"].rpartition(":")[2])

    async def test_ping(self, http):
        """``/ping`` answers pong."""
        response = await http.get("/ping")
        assert (response.status, await response.text()) == (200, "pong")


class TestSeedAndMain:
    def test_seed_is_deterministic_with_a_tenth_opted_in(self):
        """The same count gives the same apps; 10 % carry the opt-in label and registry."""
        first, second = MarathonState(), MarathonState()
        assert seed_apps(first, 100) == seed_apps(second, 100)
        opted = first.list_apps(label="pullsecret.enabled==true")
        assert len(opted) == 10
        assert all(a["container"]["docker"]["image"].startswith("registry.example.com:5000/")
                   for a in opted)

    async def test_main_serves_until_sigterm(self):
        """``python -m controller.simulator`` seeds, serves, and exits 0 on SIGTERM."""
        async with (simulator_process("--apps", "30") as url,
                    aiohttp.ClientSession(url) as http):
            listed = await (await http.get("/v2/apps")).json()
        assert len(listed["apps"]) == 30
