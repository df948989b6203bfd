"""The human-readable report: diffs, summary, and nothing secret."""

from __future__ import annotations

from controller.errors import InvalidAppError, MarathonUnavailable
from controller.model import AppId, BundleLocation
from controller.outcome import AppOutcome
from controller.passreport import PassReport, format_report
from controller.plan import Ownership, RegistryRule, bundle_name, eligibility, plan_app

REG = "registry.example.com:5000"
SIGNED = f"https://b.s3.amazonaws.com/{bundle_name(REG)}?X-Amz-Signature=deadbeef"


def outcome(app: dict, uri: str, action: str = "would_update") -> AppOutcome:
    decision = eligibility(app, label="l", rules=[RegistryRule(registry=REG)])
    plan = plan_app(app, decision, BundleLocation(uri=uri) if decision.registry else None,
                    ownership=Ownership(owner="default", homes=("https://b.s3.amazonaws.com",)))
    return AppOutcome(app_id=AppId(app["id"]), action=action, plan=plan)  # type: ignore[arg-type]


APP = {"id": "/a", "labels": {"l": "true"}, "fetch": [],
       "container": {"type": "DOCKER", "docker": {"image": f"{REG}/a:1"}}}


def test_presigned_signature_is_never_printed():
    """A presigned URL is shown without its query string (a bearer credential)."""
    text = format_report(PassReport(outcomes=[outcome(APP, SIGNED)]))
    assert "deadbeef" not in text
    assert "?<signature hidden>" in text


def test_summary_counts_actions_skips_and_failures():
    """The last line sums up the pass."""
    public = {**APP, "id": "/p", "container": {"type": "DOCKER", "docker": {"image": "nginx"}}}
    report = PassReport(outcomes=[outcome(APP, "file:///x/" + bundle_name(REG), "updated"),
                                  outcome(public, "unused", "unchanged")],
                        failures={AppId("/bad"): "container.docker.image: bad"})
    lines = format_report(report).splitlines()
    assert "/bad: FAILED: container.docker.image: bad" in lines
    assert lines[-1] == ("summary: 3 apps: 1 updated, 1 skipped (1 unconfigured registry), "
                         "1 failed")


def test_an_invalid_app_is_its_owners_and_fails_nothing():
    """An app whose definition cannot be planned is listed as INVALID and counted, but the pass
    is ok; any other error is ours, and fails it."""
    report = PassReport()
    report.failed(AppId("/bad"), InvalidAppError("container.docker.image: invalid image reference"))
    assert report.ok
    report.failed(AppId("/down"), MarathonUnavailable("GET /v2/apps/down: 503 busy"))
    assert not report.ok
    lines = format_report(report).splitlines()
    assert lines == [
        "/bad: INVALID: container.docker.image: invalid image reference (the app's definition; "
        "left as it is)",
        "/down: FAILED: GET /v2/apps/down: 503 busy",
        "summary: 2 apps: 1 invalid, 1 failed"]


def test_an_interrupted_pass_says_so_in_its_last_line():
    report = PassReport(outcomes=[outcome(APP, "file:///x/" + bundle_name(REG), "updated")])
    lines = format_report(report, interrupted=True).splitlines()
    assert lines[0] == "/a: add"
    assert lines[-1] == ("interrupted: 1 apps so far: 1 updated, 0 failed; a write under way may "
                         "have landed too: run it again to finish")
