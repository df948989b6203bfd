"""Packaging of verify-before-publish: the chart's registry login keys, the "credentials
rejected" alert and the dashboard's login panels (their metrics are checked against the real
/metrics by test_packaging's TestMetricNames, which reads every rule and panel)."""

from __future__ import annotations

import re

from tests.packaging.test_packaging import (
    CUSTOM_VALUES,
    _rendered,
    alert_rules,
    container,
    dashboard_panels,
    dashboard_queries,
    exported_series,
    metric_names,
    one,
    rendered_config,
)

ALERT = "MarathonPullSecretCredentialsRejected"
LOGINS = "marathon_pullsecret_registry_login_total"
REJECTED = "marathon_pullsecret_registry_credentials_rejected"


class TestChartKeys:
    def test_login_keys_reach_the_config(self) -> None:
        """verify, verifyRepository, verifyTimeout and insecure become the config's keys."""
        registry = rendered_config(_rendered(CUSTOM_VALUES))["registries"][0]
        assert {k: registry[k] for k in ("verify", "verify_repository", "verify_timeout",
                                         "insecure")} == {
            "verify": "required", "verify_repository": "team-a/app", "verify_timeout": "5s",
            "insecure": True}

    def test_ca_secret_is_mounted_where_the_config_points(self) -> None:
        """The registry's caSecret is a mounted file, and ca_file names it."""
        docs = _rendered(CUSTOM_VALUES)
        ca_file = rendered_config(docs)["registries"][0]["ca_file"]
        mounts = {m["mountPath"] for m in container(docs)["volumeMounts"]}
        assert ca_file == "/run/secrets/pullsecret-controller/registry-0-ca/ca.crt"
        assert ca_file.rpartition("/")[0] in mounts
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "secret-registry-0-ca"]
        assert volume["secret"]["secretName"] == "registry-ca"

    def test_registries_without_the_keys_keep_the_defaults(self) -> None:
        """A registry that sets none of them renders none, so the controller's defaults apply."""
        registry = rendered_config(_rendered(CUSTOM_VALUES))["registries"][1]
        assert not {"verify", "verify_repository", "verify_timeout", "ca_file",
                    "insecure"} & set(registry)


class TestAlert:
    def test_fires_on_the_leaders_rejection_gauge(self) -> None:
        """The alert reads the rejection gauge of the leading replica only, per registry."""
        rule = alert_rules(_rendered(CUSTOM_VALUES))[ALERT]
        expr = re.sub(r"\s+", " ", rule["expr"])
        assert re.search(rf"max by \(registry\) \( {REJECTED}\{{[^}}]*\}} \* on \(job, "
                         r"instance\) group_left \(\) \(marathon_pullsecret_leader\{[^}]*\} "
                         r"== 1\) \) == 1$", expr), expr
        assert rule["labels"]["severity"] == "critical"
        assert "credentials" in rule["annotations"]["summary"]

    def test_gauge_is_exported(self) -> None:
        """The gauge and counter the alert and panels read are on /metrics."""
        assert {LOGINS, REJECTED} <= exported_series()


class TestDashboard:
    def test_has_login_panels(self) -> None:
        """Logins by result and the rejection state each have a panel."""
        assert {LOGINS, REJECTED} <= metric_names(dashboard_queries())
        titles = {p["title"] for p in dashboard_panels()}
        assert {"Registry logins by result", "Credentials rejected"} <= titles

    def test_panels_do_not_overlap(self) -> None:
        """Every panel has its own place on the grid (rows and panels shifted consistently)."""
        cells: dict[tuple[int, int], str] = {}
        for panel in dashboard_panels():
            grid = panel["gridPos"]
            for y in range(grid["y"], grid["y"] + grid["h"]):
                for x in range(grid["x"], grid["x"] + grid["w"]):
                    assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                    cells[x, y] = panel["title"]
