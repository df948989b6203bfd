"""What a pass did to each app, and its human-readable form: a per-app diff of the fetch list
and a summary.

A failure is either ours or the app owner's. Ours (``failures``, ``registry_failures``: a
publish failed, Marathon or storage could not be reached, a write was refused) fail the pass,
and the command exits 1: running it again once the cause is fixed finishes the work. An app
whose definition cannot be planned (``invalid``: an image reference docker would refuse, a fetch
entry without a uri) is its owner's to fix: it is listed with the field and counted, and the
pass still succeeds, or one broken app would fail every pass for ever.

It shows URIs and flags only: bundle contents never reach this module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import msgspec

from controller.errors import InvalidAppError
from controller.model import AppId
from controller.outcome import AppOutcome
from controller.plan import AppPlan, Eligibility, shown_entry

__all__ = ["PassReport", "format_report"]

_COMES_BACK = frozenset({"deferred", "locked", "stuck"})


class PassReport(msgspec.Struct):
    outcomes: list[AppOutcome] = msgspec.field(default_factory=list)
    triaged: list[tuple[AppId, Eligibility]] = msgspec.field(default_factory=list)
    """Apps found to need nothing without a plan (not opted in, or converged: no change, no
    conflict), each with its decision: reported as the outcomes of such plans are."""
    failures: dict[AppId, str] = msgspec.field(default_factory=dict)
    """Apps that could not be converged for a reason of ours (Marathon, storage, a refused
    write)."""
    invalid: dict[AppId, str] = msgspec.field(default_factory=dict)
    """Apps whose definition cannot be planned; their owners must fix them."""
    registry_failures: dict[str, str] = msgspec.field(default_factory=dict)
    """Registries whose bundle could not be published (the last good one, if any, still serves)."""
    registry_plans: dict[str, str] = msgspec.field(default_factory=dict)
    """What each registry's refresh did without writing, in words (``BundleManager.previews``):
    found the bundle unchanged, or would have verified and published."""
    preview: bool = False
    """The pass writes nothing (``plan``, ``--dry-run``): it says what each registry's refresh
    would do (``registry_plans``)."""

    # -- the app reconciler's OutcomeListener ------------------------------------------------

    async def converged(self, outcome: AppOutcome) -> None:
        """A worker converged an app; an app that waits (deferred, locked, stuck) comes back
        and is reported then."""
        if outcome.action not in _COMES_BACK:
            self.outcomes.append(outcome)

    def settled(self, outcome: AppOutcome) -> None:
        self.outcomes.append(outcome)

    def settled_many(self, apps: Sequence[tuple[AppId, Eligibility]]) -> None:
        self.triaged.extend(apps)

    def failed(self, app_id: AppId, error: Exception) -> None:
        """Record why ``app_id`` could not be converged, as ours or as its owner's."""
        found = self.invalid if isinstance(error, InvalidAppError) else self.failures
        found[app_id] = str(error) or type(error).__name__

    @property
    def ok(self) -> bool:
        """Nothing of ours failed (invalid apps do not count)."""
        return not self.failures and not self.registry_failures


def _diff(outcome: AppOutcome) -> list[str]:
    plan = outcome.plan
    assert plan is not None
    kept = set(map(shown_entry, plan.current)) & set(map(shown_entry, plan.desired))
    lines = [f"  - {shown_entry(e)}" for e in plan.current if shown_entry(e) not in kept]
    lines += [f"  + {shown_entry(e)}" for e in plan.desired if shown_entry(e) not in kept]
    return lines


def format_report(report: PassReport, *, verbose: bool = False,
                  interrupted: bool = False) -> str:
    """The diff of every app that changes (or would), the failures, then one summary line;
    ``interrupted``: the pass stopped part way, and the summary says so."""
    lines: list[str] = []
    skipped: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    for registry, preview in sorted(report.registry_plans.items() if report.preview else ()):
        if verbose or not preview.startswith("unchanged"):
            lines.append(f"registry {registry}: {preview}")
    rows: list[tuple[AppId, AppOutcome | Eligibility]] = [(o.app_id, o) for o in report.outcomes]
    if verbose:
        rows += report.triaged
    else:  # only counted: no line to sort in
        for _, decision in report.triaged:
            if decision.reason != "eligible":
                skipped[decision.reason] += 1
            else:
                actions["unchanged"] += 1
    for app_id, row in sorted(rows, key=lambda r: r[0]):
        if isinstance(row, Eligibility):  # a triaged app: unchanged, as a plan would say
            row = AppOutcome(app_id=app_id, action="unchanged", plan=AppPlan(
                app_id=app_id, eligibility=row, field="fetch", current=(), desired=(),
                change=None))
        outcome, plan = row, row.plan
        if plan is not None and plan.eligibility.reason != "eligible" and not plan.changed:
            skipped[plan.eligibility.reason] += 1
            if verbose:
                lines.append(f"{outcome.app_id}: skipped ({plan.eligibility.detail})")
            continue
        if plan is not None and plan.conflict:
            skipped["conflict"] += 1
            lines.append(f"{outcome.app_id}: conflict (also managed by "
                         f"{'; '.join(plan.conflict)}; left alone)")
            continue
        if outcome.action == "withheld":
            skipped["conflict"] += 1
            lines.append(f"{outcome.app_id}: conflict ({outcome.detail})")
            continue
        actions[outcome.action] += 1
        if plan is not None and plan.change is not None:
            verb = "would " + plan.change if outcome.action == "would_update" else plan.change
            why = f" ({plan.eligibility.detail})" if plan.eligibility.detail else ""
            lines.append(f"{outcome.app_id}: {verb}{why}")
            lines.extend(_diff(outcome))
    for registry, error in sorted(report.registry_failures.items()):
        lines.append(f"registry {registry}: FAILED: {error}")
    for app_id, error in sorted(report.invalid.items()):
        lines.append(f"{app_id}: INVALID: {error} (the app's definition; left as it is)")
    for app_id, error in sorted(report.failures.items()):
        lines.append(f"{app_id}: FAILED: {error}")
    parts = [f"{n} {action.replace('_', ' ')}" for action, n in sorted(actions.items())]
    if skipped:
        parts.append(f"{sum(skipped.values())} skipped ("
                     + ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(skipped.items()))
                     + ")")
    if report.invalid:
        parts.append(f"{len(report.invalid)} invalid")
    parts.append(f"{len(report.failures)} failed")
    count = (len(report.outcomes) + len(report.triaged) + len(report.invalid)
             + len(report.failures))
    if interrupted:
        lines.append(f"interrupted: {count} apps so far: " + ", ".join(parts)
                     + "; a write under way may have landed too: run it again to finish")
    else:
        lines.append(f"summary: {count} apps: " + ", ".join(parts))
    return "\n".join(lines)
