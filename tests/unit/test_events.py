"""effect_of: which apps an event names (payload shapes from Marathon's serializer)."""

from __future__ import annotations

import pytest

from controller.events import EventEffect, effect_of

PLAN = {"id": "dep-1", "steps": [{"actions": [{"action": "RestartApplication", "app": "/a"},
                                              {"action": "ScaleApplication", "app": "/b"}]},
                                 {"actions": [{"action": "RestartApplication", "app": "/a"}]}],
        "version": "2026-01-01T00:00:00.000Z"}


@pytest.mark.parametrize(("event_type", "payload", "effect"), [
    ("api_post_event", {"clientIp": "10.0.0.1", "uri": "/v2/apps/a",
                        "appDefinition": {"id": "/a", "cmd": "sleep"}},
     EventEffect(app_ids=("/a",))),
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
], ids=["api-post", "terminated", "deployment-info", "deployment-success", "deployment-failed",
        "attached", "status-update-ignored", "malformed-app", "malformed-plan"])
def test_effect(event_type, payload, effect):
    """Each event type names the apps it concerns, and nothing else."""
    assert effect_of(event_type, payload) == effect
