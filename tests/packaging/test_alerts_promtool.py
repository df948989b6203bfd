"""The chart's alert rules under Prometheus's own rule engine: ``promtool check rules`` on the
rendered PrometheusRule, and ``promtool test rules`` with the chart's
tests/alerts.promtool.yaml, which must make every alert fire and resolve.

promtool comes from the Debian package ``prometheus`` (``make system-deps`` installs it).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.packaging.test_packaging import CHART, CUSTOM_VALUES, _rendered, _unavailable, one

PROMTOOL_TESTS = CHART / "tests" / "alerts.promtool.yaml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        _unavailable("promtool is not installed (Debian package prometheus; make system-deps)")
    return str(found)


def rule_groups() -> list[dict[str, Any]]:
    """The rendered PrometheusRule's groups, as a Prometheus rule file holds them."""
    groups: list[dict[str, Any]] = one(_rendered(CUSTOM_VALUES), "PrometheusRule")["spec"]["groups"]
    return copy.deepcopy(groups)


def with_summaries_only(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups with every annotation but ``summary`` dropped: promtool compares annotations
    exactly, and the test file states the summaries only."""
    for group in groups:
        for rule in group["rules"]:
            if "annotations" in rule:
                rule["annotations"] = {"summary": rule["annotations"]["summary"]}
    return groups


def run_promtool_tests(groups: list[dict[str, Any]],
                       tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of the chart's test file against ``groups``."""
    rules_file = yaml.safe_load(PROMTOOL_TESTS.read_text())["rule_files"][0]
    (tmp_path / rules_file).write_text(yaml.safe_dump({"groups": groups}))
    tests = tmp_path / PROMTOOL_TESTS.name
    shutil.copy(PROMTOOL_TESTS, tests)
    return subprocess.run([promtool(), "test", "rules", tests.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)


def alert_names(groups: list[dict[str, Any]]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    """The rendered rules, annotations and all, are a valid Prometheus rule file (PromQL parses,
    annotation templates parse)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}))
    result = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_resolves_as_the_tests_say(tmp_path: Path) -> None:
    """`promtool test rules` passes: each alert fires, and stops, when its cases say."""
    result = run_promtool_tests(with_summaries_only(rule_groups()), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_resolving_case() -> None:
    """For each alert, one test makes it fire and, later on the same series, expects it gone."""
    covered: set[str] = set()
    for test in yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]:
        firing: dict[str, int] = {}
        for case in test["alert_rule_test"]:
            assert re.fullmatch(r"[0-9]+m", case["eval_time"]), case["eval_time"]
            at = int(case["eval_time"].removesuffix("m"))
            name = case["alertname"]
            if case.get("exp_alerts"):
                firing[name] = min(at, firing.get(name, at))
            elif name in firing and at > firing[name]:
                covered.add(name)
    assert alert_names(rule_groups()) - covered == set()


def test_promtool_tests_catch_a_slow_resolution(tmp_path: Path) -> None:
    """The tests are not vacuous: the auth-failure alert as it was (a 10 minute window) keeps
    firing after the failures stop, and promtool reports it."""
    groups = with_summaries_only(rule_groups())
    (rule,) = [r for g in groups for r in g["rules"]
               if r.get("alert") == "MarathonPullSecretImagePullAuthFailures"]
    assert "[5m]" in rule["expr"]
    rule["expr"] = rule["expr"].replace("[5m]", "[10m]")
    result = run_promtool_tests(groups, tmp_path)
    assert result.returncode != 0
    assert "MarathonPullSecretImagePullAuthFailures, time: 12m" in result.stdout + result.stderr
