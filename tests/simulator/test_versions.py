"""The simulator's own Marathon version table, against the controller's client and against the
events each version writes (light and heavy plans, ``plan-format``, deprecated features)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from controller.dialect import Dialect
from controller.simulator import MarathonSimulator, MarathonState
from controller.simulator.versions import MarathonVersion, parse_version
from tests.clock import FakeClock
from tests.services import REFERENCE
from tests.simulator.test_simulator import SSE, read_event, web_app

VERSIONS = ["0.14.1", "0.15.0", "1.1.7", "1.3.6", "1.3.7", "1.3.14", "1.4.0", "1.4.0-RC1",
            "1.4.5", "1.4.6", "1.5.0", "1.5.9", "1.6.0", "1.6.322", "1.6.590", "1.7.37",
            "1.7.50", "1.7.236", "1.8.180", "1.9.109", "1.10.26"]
SHARED = ("has_fetch", "has_patch", "shows_uris", "filters_events", "drops_omitted_resources")
RAML = REFERENCE / "raml" / "types"


def raml_properties(name: str) -> set[str]:
    """The property names of a RAML type with a flat ``properties`` block."""
    text = (RAML / name).read_text()
    block = text.split("properties:", 1)[1]
    return {m.group(1) for m in re.finditer(r"^      (\w+)\??:", block, re.MULTILINE)}


class TestTheTable:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_the_client_and_the_simulator_agree(self, version):
        """Every feature both tables have, at every threshold either knows of."""
        client, simulator = Dialect.of(version), MarathonVersion.of(version)
        assert {f: getattr(client, f) for f in SHARED} == {
            f: getattr(simulator, f) for f in SHARED}
        assert client.write_method == ("PATCH" if simulator.has_patch else "PUT")

    @pytest.mark.parametrize(("version", "field"), [
        ("1.1.7", None), ("1.3.0", "outputFile"), ("1.4.5", "outputFile"),
        ("1.4.6", "destPath"), ("1.10.26", "destPath")])
    def test_the_fetch_output_file_field(self, version, field):
        assert MarathonVersion.of(version).fetch_dest_field == field

    @pytest.mark.parametrize(("version", "asked", "heavy_events", "light"), [
        ("1.4.13", ["light"], False, False),
        ("1.5.8", ["light"], False, False),
        ("1.5.9", [], False, False),
        ("1.5.9", ["light"], False, True),
        ("1.6.0", ["light"], False, False),
        ("1.6.322", ["light"], False, True),
        ("1.7.236", [], False, True),
        ("1.7.236", [], True, False),
        ("1.7.236", ["light"], True, True),
        ("1.8.180", [], False, True),
        ("1.10.26", ["heavy"], False, True)])
    def test_light_plans(self, version, asked, heavy_events, light):
        assert MarathonVersion.of(version).light_plans(asked, heavy_events) is light

    @pytest.mark.parametrize(("version", "proxy_events", "redirects"), [
        ("1.6.590", False, False), ("1.7.37", False, False), ("1.7.50", False, True),
        ("1.7.50", True, False), ("1.8.180", True, True)])
    def test_standby_event_redirects(self, version, proxy_events, redirects):
        assert MarathonVersion.of(version).redirects_events(proxy_events) is redirects

    def test_versions_parse_like_marathon_names_them(self):
        assert parse_version("1.10.26") == (1, 10, 26)
        assert parse_version("1.4.0-RC1") == (1, 4, 0)
        assert parse_version("1.5") == (1, 5, 0)
        assert parse_version("snapshot") > parse_version("1.10.26")

    def test_marathon_refuses_unknown_or_removed_deprecated_features(self):
        MarathonState(version="1.7.236", deprecated_features=["api_heavy_events"])
        for version, feature in (("1.8.180", "api_heavy_events"), ("1.7.37", "proxy_events"),
                                 ("1.7.236", "nope")):
            with pytest.raises(ValueError, match=feature):
                MarathonState(version=version, deprecated_features=[feature])


class TestAppsByVersion:
    def test_before_fetch_there_are_only_uris(self):
        state = MarathonState(version="0.14.1")
        state.add_app(web_app(uris=["https://a/b.tgz"], fetch=[{"uri": "https://a/ignored"}]))
        app = state.get_app("/team/web")
        assert app["uris"] == ["https://a/b.tgz"]
        assert "fetch" not in app

    def test_1_4_5_names_the_output_file_output_file(self):
        state = MarathonState(version="1.4.5")
        state.add_app(web_app(fetch=[{"uri": "https://a/b", "outputFile": "b.tgz",
                                      "destPath": "ignored"}]))
        (item,) = state.get_app("/team/web")["fetch"]
        assert item["outputFile"] == "b.tgz"
        assert "destPath" not in item
        assert state.app("/team/web")["fetch"][0]["destPath"] == "b.tgz"  # what the agent reads

    def test_1_4_6_ignores_output_file(self):
        state = MarathonState(version="1.4.6")
        state.add_app(web_app(fetch=[{"uri": "https://a/b", "outputFile": "b.tgz"}]))
        (item,) = state.get_app("/team/web")["fetch"]
        assert "destPath" not in item
        assert "outputFile" not in item


async def deployment_events(state: MarathonState, query: dict[str, str]
                            ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The events a stream with ``query`` gets while an app is created and its deployment
    ends (no agent: by hand)."""
    async with (MarathonSimulator(state) as sim, aiohttp.ClientSession(sim.url) as http,
                http.get("/v2/events", headers=SSE, params=query) as response):
        await read_event(response)  # event_stream_attached
        state.load_apps([{**web_app(), "id": "/other/app"}])
        result = state.add_app(web_app())
        state.finish_deployment(result["deployments"][0]["id"])
        while True:
            event = await read_event(response)
            yield event
            if event[0] == "deployment_success":
                return


DEPLOYMENT_TYPES = {"deployment_info", "deployment_step_success", "deployment_success",
                    "deployment_failed", "deployment_step_failure"}


async def plans(version: str, query: dict[str, str], **options: Any) -> list[dict[str, Any]]:
    state = MarathonState(version=version, now=FakeClock().wall, deployment_seconds=None, **options)
    return [payload["plan"] async for event_type, payload in deployment_events(state, query)
            if event_type in DEPLOYMENT_TYPES]


class TestDeploymentEvents:
    async def test_1_10_writes_light_plans_whatever_the_stream_asks(self):
        for query in ({}, {"plan-format": "heavy"}):
            for plan in await plans("1.10.26", query):
                assert list(plan) == ["id", "steps", "version"]
                assert set(plan) == raml_properties("deploymentPlan.raml")

    async def test_1_6_writes_the_root_groups_unless_the_stream_asks_for_light(self):
        heavy = await plans("1.6.590", {})
        assert len(heavy) == 5  # info, step success (start), info, step success, success
        for plan in heavy:
            assert list(plan) == ["id", "original", "target", "steps", "version"]
        original, target = heavy[0]["original"], heavy[0]["target"]
        example = json.loads((REFERENCE / "examples" / "group.json").read_text())
        for root in (original, target):
            assert root["id"] == "/"
            assert example.keys() <= root.keys()
        assert [g["id"] for g in original["groups"]] == ["/other"]
        assert [g["id"] for g in target["groups"]] == ["/other", "/team"]
        (team,) = [g for g in target["groups"] if g["id"] == "/team"]
        assert [a["id"] for a in team["apps"]] == ["/team/web"]
        assert target["version"] == heavy[0]["version"]
        for plan in await plans("1.6.590", {"plan-format": "light"}):
            assert list(plan) == ["id", "steps", "version"]

    async def test_before_the_flag_every_plan_is_heavy(self):
        for plan in await plans("1.4.13", {"plan-format": "light"}):
            assert "original" in plan
            assert "pods" in plan["target"]
        for plan in await plans("1.3.14", {}):
            assert "pods" not in plan["target"]

    async def test_1_7_is_light_unless_heavy_events_are_enabled(self):
        assert all("original" not in p for p in await plans("1.7.236", {}))
        heavy = await plans("1.7.236", {}, deprecated_features=["api_heavy_events"])
        assert all("original" in p for p in heavy)
        light = await plans("1.7.236", {"plan-format": "light"},
                            deprecated_features=["api_heavy_events"])
        assert all("original" not in p for p in light)

    async def test_event_payloads_match_marathons_writes(self):
        state = MarathonState(now=FakeClock().wall, deployment_seconds=None)
        events = [e async for e in deployment_events(state, {})]
        shapes = {event_type: list(payload) for event_type, payload in events}
        assert shapes["deployment_info"] == ["plan", "currentStep", "eventType", "timestamp"]
        assert shapes["deployment_step_success"] == [
            "plan", "currentStep", "eventType", "timestamp"]
        assert shapes["deployment_success"] == ["id", "plan", "eventType", "timestamp"]
        assert shapes["group_change_success"] == ["groupId", "version", "eventType",
                                                  "timestamp"]
        info = dict(events)["deployment_info"]
        assert set(info["currentStep"]) == raml_properties("deploymentSteps.raml") - {"steps"}
        (action,) = info["currentStep"]["actions"]
        assert set(action) <= raml_properties("deploymentAction.raml")

    @pytest.mark.parametrize(("version", "reason"), [("1.6.322", False), ("1.6.590", True),
                                                     ("1.10.26", True)])
    def test_a_cancelled_deployment_fails_with_a_reason_from_1_6_352(self, version, reason):
        state = MarathonState(version=version, deployment_seconds=None)
        recorder_events: list[tuple[str, dict[str, Any]]] = []

        class Keep:
            def deliver(self, event: Any) -> None:
                recorder_events.append((event.type, event.payload))

            def close(self) -> None:
                pass

        state.subscribe(Keep())
        first = state.add_app(web_app())["deployments"][0]["id"]
        state.update_app("/team/web", {"instances": 3}, force=True)
        (failed,) = [p for t, p in recorder_events if t == "deployment_failed"]
        assert failed["id"] == first
        assert ("reason" in failed) is reason
        assert not [t for t, _ in recorder_events if t == "deployment_step_failure"]


class TestStandbysByVersion:
    @pytest.mark.parametrize(("version", "redirected"), [("1.6.590", False), ("1.10.26", True)])
    async def test_a_standby_proxies_events_before_1_7_50(self, version, redirected):
        state = MarathonState(version=version)
        async with (MarathonSimulator(state) as leader,
                    MarathonSimulator(state, leader_url=leader.url) as standby,
                    aiohttp.ClientSession() as http,
                    http.get(f"{standby.url}/v2/events", headers=SSE,
                             allow_redirects=False) as response):
            assert (response.status == 302) is redirected
            if not redirected:
                assert (await read_event(response))[0] == "event_stream_attached"
