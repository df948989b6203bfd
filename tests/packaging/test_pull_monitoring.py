"""Packaging of pull-failure remediation: the "image pull auth failures" alert and the
dashboard's image pull panels (their metrics are checked against the real /metrics by
test_packaging's TestMetricNames, which reads every rule and panel)."""

from __future__ import annotations

import re
from typing import Any

from tests.packaging.test_packaging import (
    CUSTOM_VALUES,
    _rendered,
    alert_rules,
    dashboard_panels,
    exported_series,
    metric_names,
)

ALERT = "MarathonPullSecretImagePullAuthFailures"
PULL_FAILURES = "marathon_pullsecret_image_pull_failures_total"
DELAY_RESETS = "marathon_pullsecret_delay_resets_total"


def panel_reading(series: str) -> dict[str, Any]:
    """The one dashboard panel whose queries read ``series``."""
    (panel,) = [p for p in dashboard_panels()
                if series in metric_names([t["expr"] for t in p.get("targets", [])])]
    return panel


class TestAlert:
    def test_fires_on_auth_failures_per_registry(self) -> None:
        """The alert counts auth pull failures per registry over 5 minutes, with no `for`, so it
        resolves 5 minutes after the last failure (tests/alerts.promtool.yaml shows it)."""
        rule = alert_rules(_rendered(CUSTOM_VALUES))[ALERT]
        expr = re.sub(r"\s+", " ", rule["expr"])
        assert re.fullmatch(rf'sum by \(registry\) \(increase\({PULL_FAILURES}\{{[^}}]*'
                            r'reason="auth"\}\[5m\]\)\) > 0', expr), expr
        assert "for" not in rule
        assert rule["labels"]["severity"] == "warning"

    def test_description_says_what_to_check(self) -> None:
        """The description points at the credential source and /status's last_pull_failure."""
        annotations = alert_rules(_rendered(CUSTOM_VALUES))[ALERT]["annotations"]
        assert "{{ $labels.registry }}" in annotations["summary"]
        for hint in ("credential source", "last_pull_failure", "/status"):
            assert hint in annotations["description"], hint

    def test_series_are_exported(self) -> None:
        """The counters the alert and panels read are on /metrics."""
        assert {PULL_FAILURES, DELAY_RESETS} <= exported_series()


class TestDashboard:
    def test_pull_failures_are_a_rate_by_registry_and_reason(self) -> None:
        """Failed pulls show as a rate split by registry and reason."""
        panel = panel_reading(PULL_FAILURES)
        assert panel["title"] == "Image pull failures by reason"
        (target,) = panel["targets"]
        assert re.fullmatch(rf"sum by \(registry, reason\) \(rate\({PULL_FAILURES}\{{[^}}]*\}}"
                            r"\[\$__rate_interval\]\)\)", target["expr"]), target["expr"]
        assert target["legendFormat"] == "{{registry}} {{reason}}"

    def test_delay_resets_are_split_by_result(self) -> None:
        """Launch delay resets show per result (ok, not_queued, error)."""
        panel = panel_reading(DELAY_RESETS)
        assert panel["title"] == "Launch delay resets by result"
        (target,) = panel["targets"]
        assert target["expr"].startswith("sum by (result) ("), target["expr"]
        assert target["legendFormat"] == "{{result}}"
