"""Remediation: the pure reset rule, then ``PullRemediator`` with a real status book, metrics,
write gate and rate limiter, and an in-memory launch queue."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from controller.appindex import AppIndex, AppStatus
from controller.errors import MarathonUnavailable
from controller.metrics import Metrics
from controller.model import AppId
from controller.outcome import Action, AppOutcome
from controller.plan import AppPlan, Eligibility
from controller.pullfailure import FailedPull, PullFailure, PullFailureReason
from controller.ratelimit import DeploymentBudget, TokenBucket, WriteGate
from controller.remediation import Evidence, PullRemediator, reset_due
from controller.statusbook import StatusBook

REG = "registry.example.com"
APP = AppId("/team/web")
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


class TestRule:
    @pytest.mark.parametrize(("failed", "fixed", "reset", "due"), [
        (None, None, None, False),
        (1, None, None, False),
        (None, 1, None, False),
        (2, 1, None, False),
        (1, 2, None, True),
        (1, 2, 3, False),
        (4, 2, 3, False),
        (4, 5, 3, True),
        (2, 3, 1, True),
    ], ids=["nothing", "failed-only", "fixed-only", "fix-before-failure", "fixed-after-failure",
            "already-reset", "failed-again-not-fixed", "failed-again-fixed-again",
            "reset-before-this-failure-fixed"])
    def test_reset_is_due_once_a_failure_is_fixed(self, failed, fixed, reset, due):
        """Due when the last auth failure was fixed since and no reset followed the failure."""
        evidence = Evidence(registry=REG, failed=failed, fixed=fixed, reset=reset)
        assert reset_due(evidence) is due

    @given(st.lists(st.sampled_from(["fail", "fix", "reset_if_due"]), max_size=40))
    def test_at_most_one_reset_per_fix(self, steps: list[str]):
        """Whatever the order of failures and fixes, each reset follows a fix that followed a
        failure, with no other reset in between."""
        evidence = Evidence(registry=REG)
        resets: list[tuple[int | None, int | None, int]] = []
        for tick, step in enumerate(steps, start=1):
            if step == "fail":
                evidence.failed = tick
            elif step == "fix":
                evidence.fixed = tick
            elif reset_due(evidence):
                evidence.reset = tick
                resets.append((evidence.failed, evidence.fixed, tick))
        fixes = [f for _, f, _ in resets]
        assert len(set(fixes)) == len(fixes)
        for (failed, fixed, _), earlier in zip(resets, [None, *resets], strict=False):
            assert failed is not None
            assert fixed is not None
            assert failed < fixed
            assert earlier is None or earlier[2] < failed


class LaunchQueue:
    """Marathon's launch queue in memory: answers as scripted, remembers every reset."""

    def __init__(self, *answers: bool | Exception) -> None:
        self.answers = list(answers)
        self.resets: list[AppId] = []

    async def reset_launch_delay(self, app_id: AppId) -> bool:
        self.resets.append(app_id)
        answer = self.answers.pop(0) if self.answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer


class World:
    """A remediator wired to real parts, and what it asked of the rest of the controller."""

    def __init__(self, *answers: bool | Exception, enabled: bool = True,
                 state: str = "converged") -> None:
        self.index = AppIndex(now=lambda: NOW)
        self.index.set_status(APP, AppStatus(state=state, registry=REG))  # type: ignore[arg-type]
        self.index.track(APP, REG)
        self.status = StatusBook(self.index)
        self.metrics = Metrics(CollectorRegistry())
        self.queue = LaunchQueue(*answers)
        self.reconciled: list[AppId] = []
        self.verified: list[str] = []

        async def running() -> set[str]:
            return set()

        gate = WriteGate(TokenBucket(1000, 10), DeploymentBudget(10, running=running))
        self.remediator = PullRemediator(
            index=self.index, observer=self.metrics, queue=self.queue, gate=gate,
            reconcile_app=self.reconciled.append, verify_registry=self.verified.append,
            reset_launch_delay=enabled)

    def fail(self, reason: PullFailureReason = "auth", *, registry: str | None = REG,
             app_id: AppId = APP) -> None:
        self.remediator.pull_failed(FailedPull(
            app_id=app_id, task_id="team_web.1", version="2026-12-01T06:00:00.000Z",
            failure=PullFailure(reason=reason, image=None, registry=registry),
            summary="unauthorized: authentication required"))

    async def converge(self, action: Action = "unchanged", registry: str | None = REG) -> None:
        plan = AppPlan(app_id=APP, eligibility=Eligibility(
            registry=registry, reason="eligible" if registry else "not_opted_in"),
            field="fetch", current=(), desired=(), change=None)
        await self.remediator.converged(AppOutcome(app_id=APP, action=action, plan=plan))

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.collectors.get_sample_value(f"marathon_pullsecret_{name}", labels)
        return value or 0.0

    def snapshot(self) -> dict[str, object]:
        apps: dict[str, dict[str, object]] = self.status.snapshot({}, NOW)["apps"]
        return apps[APP]


class TestFailedPulls:
    def test_auth_failure_is_counted_shown_and_looked_into(self):
        world = World()
        world.fail("auth")
        assert world.sample("image_pull_failures_total", registry=REG, reason="auth") == 1
        assert world.snapshot()["last_pull_failure"] == {
            "reason": "auth", "at": NOW.isoformat(), "task_id": "team_web.1",
            "message": "unauthorized: authentication required"}
        assert (world.reconciled, world.verified) == ([APP], [REG])

    @pytest.mark.parametrize("reason", ["not_found", "network", "rate_limited", "other"])
    def test_other_failures_queue_the_app_but_ask_no_verification(self, reason):
        """Only a refusal of the credentials says anything about them."""
        world = World()
        world.fail(reason)
        assert world.sample("image_pull_failures_total", registry=REG, reason=reason) == 1
        assert (world.reconciled, world.verified) == ([APP], [])

    @pytest.mark.parametrize("case", ["unknown-app", "other-registry", "conflict"])
    def test_failures_of_apps_that_are_not_ours_are_ignored(self, case):
        """Not in the book, an image on another registry, or an app another controller claims
        too: no count, no note, no work."""
        world = World(state="conflict" if case == "conflict" else "converged")
        if case == "unknown-app":
            world.fail(app_id=AppId("/elsewhere"))
        else:
            world.fail(registry="other.example.com" if case == "other-registry" else REG)
        assert world.sample("image_pull_failures_total", registry=REG, reason="auth") == 0
        assert world.snapshot()["last_pull_failure"] is None
        assert (world.reconciled, world.verified) == ([], [])

    def test_an_app_without_a_bundle_yet_is_ours(self):
        """Cold start: the app's registry is known from its first plan though no bundle could be
        published, so its failures count (and are evidence for the fix that follows)."""
        world = World(state="failed")
        world.index.set_status(APP, AppStatus(state="failed", registry=None))
        world.fail()
        assert world.sample("image_pull_failures_total", registry=REG, reason="auth") == 1
        assert (world.reconciled, world.verified) == ([APP], [REG])

    def test_a_flood_of_failures_logs_one_warning_a_minute_per_app(self):
        """Every failure counts; the log says it once, then how many it held back."""
        world = World()
        with capture_logs() as logs:
            for _ in range(500):
                world.fail()
        warnings = [e for e in logs if e["event"] == "image_pull_failed"]
        assert len(warnings) == 1
        assert world.sample("image_pull_failures_total", registry=REG, reason="auth") == 500

    def test_failure_without_a_registry_in_its_text_is_the_apps(self):
        """The Mesos containerizer's messages name no image: the app's registry is meant."""
        world = World()
        world.fail(registry=None)
        assert world.sample("image_pull_failures_total", registry=REG, reason="auth") == 1


class TestReset:
    async def test_a_new_bundle_after_an_auth_failure_resets_the_delay_once(self):
        world = World()
        world.fail()
        world.remediator.bundle_published(REG)
        await world.converge()
        world.remediator.bundle_published(REG)  # another fix, the failure was handled already
        await world.converge()
        assert world.queue.resets == [APP]
        assert world.sample("delay_resets_total", result="ok") == 1
        assert world.snapshot()["last_delay_reset"] == {"at": NOW.isoformat(), "result": "ok"}

    async def test_a_write_of_the_entry_needs_no_reset(self):
        """The write changes the app's config: Marathon launches the new version without the
        old one's delay, so a reset would only cost a write token and earn a 404."""
        world = World()
        world.fail()
        await world.converge("updated")
        await world.converge()
        assert world.queue.resets == []
        world.fail()  # a task of the new version fails too: the next fix resets
        world.remediator.bundle_published(REG)
        await world.converge()
        assert world.queue.resets == [APP]

    async def test_new_bundle_for_the_registry_queues_the_app_and_resets(self):
        world = World()
        world.fail()
        world.reconciled.clear()
        world.remediator.bundle_published("other.example.com")
        assert world.reconciled == []
        world.remediator.bundle_published(REG)
        assert world.reconciled == [APP]
        await world.converge()
        assert world.queue.resets == [APP]

    async def test_no_fix_no_reset(self):
        """A failure alone, or a fix before the failure, resets nothing."""
        world = World()
        world.remediator.bundle_published(REG)
        world.fail()
        await world.converge()
        await world.converge("would_update")
        assert world.queue.resets == []

    async def test_other_reasons_are_never_reset(self):
        """Only credentials can be fixed by the controller."""
        world = World()
        world.fail("not_found")
        await world.converge("updated")
        assert world.queue.resets == []

    async def test_failure_after_the_reset_needs_a_new_fix(self):
        world = World()
        world.fail()
        world.remediator.bundle_published(REG)
        await world.converge()
        world.fail()
        await world.converge()
        assert world.queue.resets == [APP]
        world.remediator.bundle_published(REG)
        await world.converge()
        assert world.queue.resets == [APP, APP]

    async def test_not_queued_is_no_error_and_counts_as_done(self):
        world = World(False)
        world.fail()
        world.remediator.bundle_published(REG)
        await world.converge()
        assert world.queue.resets == [APP]
        assert world.sample("delay_resets_total", result="not_queued") == 1
        assert world.snapshot()["last_delay_reset"] == {"at": NOW.isoformat(),
                                                        "result": "not_queued"}

    async def test_error_is_counted_and_tried_again_at_the_next_reconcile(self):
        world = World(MarathonUnavailable("DELETE /v2/queue/team/web/delay: 503 busy"))
        world.fail()
        world.remediator.bundle_published(REG)
        await world.converge()
        assert world.sample("delay_resets_total", result="error") == 1
        assert world.snapshot()["last_delay_reset"] == {"at": NOW.isoformat(), "result": "error"}
        await world.converge()
        await world.converge()
        assert world.queue.resets == [APP, APP]
        assert world.sample("delay_resets_total", result="ok") == 1

    async def test_disabled_never_resets(self):
        world = World(enabled=False)
        world.fail()
        await world.converge("updated")
        world.remediator.bundle_published(REG)
        await world.converge()
        assert world.queue.resets == []
        assert world.reconciled == [APP]  # failures are still seen and looked into

    @pytest.mark.parametrize("action", ["gone", "opted_out"])
    async def test_app_that_is_no_longer_ours_is_forgotten(self, action):
        world = World()
        world.fail()
        if action == "gone":
            await world.remediator.converged(AppOutcome(app_id=APP, action="gone"))
        else:
            await world.converge("updated", registry=None)
        world.remediator.bundle_published(REG)
        await world.converge()
        assert world.queue.resets == []
