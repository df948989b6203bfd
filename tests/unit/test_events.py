"""effect_of: which apps an event names (payload shapes from Marathon's serializer)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.events import EVENT_TYPES, EventEffect, Posted, effect_of

PLAN = {"id": "dep-1", "steps": [{"actions": [{"action": "RestartApplication", "app": "/a"},
                                              {"action": "ScaleApplication", "app": "/b"}]},
                                 {"actions": [{"action": "RestartApplication", "app": "/a"}]}],
        "version": "2026-01-01T00:00:00.000Z"}


@pytest.mark.parametrize(("event_type", "payload", "effect"), [
    ("api_post_event", {"clientIp": "10.0.0.1", "uri": "/v2/apps/a",
                        "appDefinition": {"id": "/a", "cmd": "sleep",
                                          "fetch": [{"uri": "https://x/a.tgz"}, {"no": "uri"}]}},
     EventEffect(app_ids=("/a",), posted=Posted(app_id="/a", writer="10.0.0.1 /v2/apps/a",
                                                uris=("https://x/a.tgz",)))),
    ("app_terminated_event", {"appId": "/gone"}, EventEffect(app_ids=("/gone",))),
    ("deployment_info", {"plan": PLAN, "currentStep": PLAN["steps"][0]},
     EventEffect(app_ids=("/a", "/b"))),
    ("deployment_success", {"id": "dep-1", "plan": PLAN},
     EventEffect(app_ids=("/a", "/b"), finished_deployment="dep-1")),
    ("deployment_failed", {"id": "dep-2", "plan": {"id": "dep-2", "steps": []},
                           "reason": "x"},
     EventEffect(finished_deployment="dep-2")),
    ("event_stream_attached", {"remoteAddress": "127.0.0.1"}, EventEffect()),
    ("status_update_event", {"appId": "/a", "taskStatus": "TASK_RUNNING"}, EventEffect()),
    ("api_post_event", {"appDefinition": "not an object"}, EventEffect()),
    ("deployment_info", {"plan": {"steps": [{"actions": "bad"}, "bad"]}}, EventEffect()),
    ("deployment_info", {"plan": {"id": "dep-3", "steps": [
        {"action": "ScaleApplication", "app": "/c"}]}}, EventEffect(app_ids=("/c",))),
], ids=["api-post", "terminated", "deployment-info", "deployment-success", "deployment-failed",
        "attached", "status-update-ignored", "malformed-app", "malformed-plan",
        "deployment-info-as-documented"])
def test_effect(event_type, payload, effect):
    """Each event type names the apps it concerns, and nothing else."""
    assert effect_of(event_type, payload) == effect


FAILED_PULL_MESSAGE = ("Failed to launch container: Failed to run 'docker -H "
                       "unix:///var/run/docker.sock pull registry.example.com/team/a:1': exited "
                       "with status 1; stderr='Error response from daemon: unauthorized: "
                       "authentication required\n'")


def test_failed_pull_is_the_effect_of_a_failed_task():
    """A task that failed to pull names no app to queue by itself: the failed pull goes to its
    own callback, which decides whether the app is ours."""
    effect = effect_of("status_update_event", {
        "appId": "/team/a", "taskId": "team_a.1", "taskStatus": "TASK_FAILED",
        "message": FAILED_PULL_MESSAGE})
    assert effect.app_ids == ()
    assert effect.failed_pull is not None
    assert (effect.failed_pull.app_id, effect.failed_pull.task_id,
            effect.failed_pull.failure.reason) == ("/team/a", "team_a.1", "auth")


@pytest.mark.parametrize("payload", [
    {"appId": "/team/a", "taskStatus": "TASK_FAILED", "message": "Command exited with status 1"},
    {"appId": "/team/a", "taskStatus": "TASK_RUNNING", "message": FAILED_PULL_MESSAGE},
], ids=["other-failure", "running"])
def test_other_status_updates_have_no_effect(payload):
    assert effect_of("status_update_event", payload) == EventEffect()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30)
    | st.sampled_from(["TASK_FAILED", "TASK_ERROR", FAILED_PULL_MESSAGE, "/team/a"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3), max_leaves=15)


@given(st.sampled_from(EVENT_TYPES), st.dictionaries(
    st.sampled_from(["taskStatus", "message", "appId", "taskId", "plan", "appDefinition", "id"]),
    _JSON, max_size=6))
def test_any_payload_of_any_type_has_an_effect_and_never_raises(event_type, payload):
    """Whatever a decoded event holds, its effect is computed; a failed pull is of the app the
    event names."""
    effect = effect_of(event_type, payload)
    if effect.failed_pull is not None:
        assert event_type == "status_update_event"
        assert effect.failed_pull.app_id == payload["appId"]
