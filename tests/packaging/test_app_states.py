"""Packaging of the app states beyond failed and conflict: stuck deployments and their rescue,
images the credential cannot pull, fights with another writer, and refused logins held back.

The chart values that steer them render into configs the real controller accepts; their alerts
and dashboard panels read series that a running controller (``pullsecret-controller run``
against the built-in Marathon simulator) serves on its ``/metrics`` from start-up, label values
included. tests/alerts.promtool.yaml makes each alert fire and resolve (test_alerts_promtool).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controller.model import AppState
from tests.packaging.test_image import free_port
from tests.packaging.test_packaging import (
    CHART,
    CUSTOM_VALUES,
    DEFAULT_VALUES,
    _rendered,
    _unavailable,
    alert_rules,
    check_rendered_config,
    dashboard_panels,
    dashboard_queries,
    registries_with,
    render,
    rendered_config,
    values_with,
)

STUCK = "MarathonPullSecretDeploymentStuck"
UNPULLABLE = "MarathonPullSecretImageUnpullable"
WITHHELD = "MarathonPullSecretWritesWithheld"
RESCUE_FAILED = "MarathonPullSecretDeploymentRescueFailed"
SELECTOR = re.compile(r"\b(marathon_pullsecret_[a-z0-9_]+)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
SCRAPE_LABELS = frozenset({"job", "namespace", "instance"})
"""Labels the scrape adds (the alert selector and the dashboard's $job), not the controller."""


def config_at(docs: list[dict[str, Any]], path: str) -> Any:
    """The rendered config's value at a dotted ``path`` (list indexes as numbers)."""
    node: Any = rendered_config(tuple(docs))
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else node[part]
    return node


# -- chart values ----------------------------------------------------------------------------------


class TestChartKeys:
    def test_defaults_are_the_controllers(self) -> None:
        """Left alone: rescue on, 3 removals within 1h make a fight, no mount required, no
        previous locations, and the registry keys unset (so check_images follows verify and
        refused_login_interval is the controller's 5m)."""
        docs = list(_rendered(DEFAULT_VALUES))
        assert config_at(docs, "remediation.rescue_stuck_deployments") is True
        assert config_at(docs, "reconcile.fight_limit") == 3
        assert config_at(docs, "reconcile.fight_window") == "1h"
        assert config_at(docs, "storage.filesystem.require_mount") is False
        assert "previous_locations" not in config_at(docs, "storage")
        assert not {"check_images", "refused_login_interval"} & set(
            config_at(docs, "registries.0"))

    @pytest.mark.parametrize(("change", "values_file", "path", "expected"), [
        pytest.param({"remediation": {"rescueStuckDeployments": False}}, DEFAULT_VALUES,
                     "remediation.rescue_stuck_deployments", False, id="rescue-off"),
        pytest.param({"reconcile": {"fightLimit": 10}}, DEFAULT_VALUES,
                     "reconcile.fight_limit", 10, id="fight-limit"),
        pytest.param({"reconcile": {"fightWindow": "30m"}}, DEFAULT_VALUES,
                     "reconcile.fight_window", "30m", id="fight-window"),
        pytest.param({"reconcile": {"fightWindow": 7200}}, DEFAULT_VALUES,
                     "reconcile.fight_window", 7200, id="fight-window-in-seconds"),
        pytest.param(registries_with(refusedLoginInterval="15m"), DEFAULT_VALUES,
                     "registries.0.refused_login_interval", "15m", id="refused-login-interval"),
        pytest.param(registries_with(checkImages=False), DEFAULT_VALUES,
                     "registries.0.check_images", False, id="check-images-off"),
        pytest.param(registries_with(checkImages=True, verify="off"), DEFAULT_VALUES,
                     "registries.0.check_images", True, id="check-images-on-without-verify"),
        pytest.param({"storage": {"previousLocations": ["file:///mnt/old/pullsecrets",
                                                        "s3a://old-bucket/marathon"]}},
                     DEFAULT_VALUES, "storage.previous_locations",
                     ["file:///mnt/old/pullsecrets", "s3a://old-bucket/marathon"],
                     id="previous-locations"),
        pytest.param({"storage": {"previousLocations": ["file:///mnt/shared/pullsecrets"]}},
                     CUSTOM_VALUES, "storage.previous_locations",
                     ["file:///mnt/shared/pullsecrets"], id="previous-location-of-an-s3-move"),
    ])
    def test_value_reaches_the_config_and_the_controller_accepts_it(
            self, change: dict[str, Any], values_file: str, path: str, expected: Any,
            tmp_path: Path) -> None:
        """Each new value becomes its snake_case config key, and check-config accepts it."""
        docs = render(values_with(change, values_file))
        assert config_at(docs, path) == expected
        result = check_rendered_config(docs, tmp_path)
        assert result.returncode == 0, result.stderr

    def test_require_mount_refuses_the_root_filesystem_and_takes_a_mounted_one(
            self, tmp_path: Path) -> None:
        """requireMount: true renders require_mount: true, which the controller holds to: the
        bundle directory on the root filesystem is refused, one on another (mounted)
        filesystem is taken."""
        docs = render(values_with({"storage": {"filesystem": {"requireMount": True}}}))
        assert config_at(docs, "storage.filesystem.require_mount") is True
        shm = Path("/dev/shm")
        if not shm.is_dir() or shm.stat().st_dev == Path("/").stat().st_dev:
            _unavailable("/dev/shm is not a filesystem of its own here")
        if tmp_path.stat().st_dev == Path("/").stat().st_dev:
            refused = check_rendered_config(docs, tmp_path)
            assert refused.returncode == 2
            assert "require_mount is set" in refused.stderr
        mounted = Path(tempfile.mkdtemp(dir=shm))
        try:
            accepted = check_rendered_config(docs, mounted)
            assert accepted.returncode == 0, accepted.stderr
        finally:
            shutil.rmtree(mounted)

    def test_each_key_is_documented_in_values_yaml(self) -> None:
        """values.yaml holds each new key (the registry ones in its commented example), each
        under a comment that says what it does."""
        lines = (CHART / "values.yaml").read_text().splitlines()
        for key in ("rescueStuckDeployments:", "fightLimit:", "requireMount:",
                    "previousLocations:", "#   checkImages:", "#   refusedLoginInterval:"):
            (at,) = [i for i, line in enumerate(lines) if line.lstrip().startswith(key)]
            assert re.match(r"\s*#", lines[at - 1]), key


# -- alerts ----------------------------------------------------------------------------------------


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class TestAlerts:
    @pytest.mark.parametrize(("alert", "state", "wait"), [
        (STUCK, "stuck", "5m"), (UNPULLABLE, "image_unpullable", "10m")])
    def test_app_state_alerts_read_the_leaders_gauge(self, alert: str, state: str,
                                                     wait: str) -> None:
        """Stuck and unpullable apps are counted from the leading replica's apps_managed (a
        former leader keeps its last values), and must last before a person is called."""
        rule = alert_rules(_rendered(CUSTOM_VALUES))[alert]
        assert re.fullmatch(rf'max\( marathon_pullsecret_apps_managed\{{[^}}]*,state="{state}"'
                            r'\} \* on \(job, instance\) group_left \(\) '
                            r'\(marathon_pullsecret_leader\{[^}]*\} == 1\) \) > 0',
                            flat(rule["expr"])), rule["expr"]
        assert rule["for"] == wait
        assert rule["labels"]["severity"] == "warning"

    @pytest.mark.parametrize(("alert", "series", "window"), [
        (WITHHELD, 'marathon_pullsecret_writes_withheld_total{[^}]*,reason="fight"}', "15m"),
        (RESCUE_FAILED, 'marathon_pullsecret_deployments_rescued_total{[^}]*,result="error"}',
         "1h")])
    def test_event_alerts_count_the_leaders_counter(self, alert: str, series: str,
                                                    window: str) -> None:
        """Fights and refused rescues are counters only the leader grows: any increase in the
        window fires at once (no `for`), and the alert clears a window after the last one."""
        rule = alert_rules(_rendered(CUSTOM_VALUES))[alert]
        assert re.fullmatch(rf"sum\(increase\({series}\[{window}\]\)\) > 0",
                            flat(rule["expr"])), rule["expr"]
        assert "for" not in rule

    @pytest.mark.parametrize(("alert", "hints"), [
        (STUCK, ("/status", "pullsecret-controller inject", "remediation.rescue_stuck_deployments",
                 "not_alone", "DELETE /v2/deployments/")),
        (UNPULLABLE, ("/status", "image_unpullable", "denied", "manifest_unknown")),
        (WITHHELD, ("/status", "pullsecret-controller inject", "fightLimit", "fightWindow")),
        (RESCUE_FAILED, ("/status", "deployment_rescued", "pullsecret-controller inject",
                         "remediation.rescue_stuck_deployments")),
    ])
    def test_description_says_what_it_means_and_what_to_check(
            self, alert: str, hints: tuple[str, ...]) -> None:
        """Each description is a runbook: what the state means, where to look, what fixes it."""
        description = flat(alert_rules(_rendered(CUSTOM_VALUES))[alert]["annotations"][
            "description"])
        for hint in hints:
            assert hint in description, hint

    def test_the_conflict_alert_also_names_fights(self) -> None:
        """A fight holds the app in conflict too, so the ownership alert points at the fight's."""
        rule = alert_rules(_rendered(CUSTOM_VALUES))["MarathonPullSecretAppOwnershipConflict"]
        assert WITHHELD in flat(rule["annotations"]["description"])


# -- dashboard -------------------------------------------------------------------------------------


def panel(title: str) -> dict[str, Any]:
    (found,) = [p for p in dashboard_panels() if p["title"] == title]
    return found


class TestDashboard:
    @pytest.mark.parametrize(("title", "expr", "legend"), [
        ("Stuck deployment rescues by result",
         r"sum by \(result\) \(increase\(marathon_pullsecret_deployments_rescued_total"
         r"\{job=~\"\$job\"\}\[\$__rate_interval\]\)\)", "{{result}}"),
        ("Writes withheld by reason",
         r"sum by \(reason\) \(increase\(marathon_pullsecret_writes_withheld_total"
         r"\{job=~\"\$job\"\}\[\$__rate_interval\]\)\)", "{{reason}}"),
        ("Image checks by result",
         r"sum by \(registry, result\) \(increase\(marathon_pullsecret_image_checks_total"
         r"\{job=~\"\$job\"\}\[\$__rate_interval\]\)\)", "{{registry}} {{result}}"),
        ("Logins withheld",
         r"sum by \(registry\) \(increase\(marathon_pullsecret_registry_login_total"
         r"\{job=~\"\$job\", result=\"withheld\"\}\[\$__rate_interval\]\)\)", "{{registry}}"),
    ])
    def test_has_the_panel(self, title: str, expr: str, legend: str) -> None:
        """Rescues by result, writes withheld, image checks by result and withheld logins each
        have a panel, counted per scrape interval and split as the legend says."""
        (target,) = panel(title)["targets"]
        assert re.fullmatch(expr, target["expr"]), target["expr"]
        assert target["legendFormat"] == legend

    def test_apps_by_state_shows_and_explains_every_state(self) -> None:
        """The apps panel filters no state, so stuck and image_unpullable show up as the
        controller exports them, and its description says what each state means."""
        apps = panel("Apps managed by state")
        (target,) = apps["targets"]
        assert "state" not in target["expr"].split("{", 1)[1].split("}", 1)[0]
        assert target["legendFormat"] == "{{state}}"
        for state in get_args(AppState):
            assert f"{state}:" in apps["description"], state


# -- a running controller's /metrics ---------------------------------------------------------------


def get(url: str) -> str | None:
    """The body of a 200 answer, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - 127.0.0.1 only
            body: bytes = answer.read()
            return body.decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def wait_for(url: str, ready: str, process: subprocess.Popen[bytes], log: Path,
             timeout: float = 60) -> str:
    """Poll ``url`` until its body holds ``ready``; fail, with the end of the process's
    ``log``, if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        body = get(url)
        if body is not None and ready in body:
            return body
        time.sleep(0.2)
    pytest.fail(f"{url} did not show {ready!r} (exit code {process.poll()}): "
                f"{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def served_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The text of /metrics from `pullsecret-controller run` (dry run, one registry with a
    password file, filesystem storage) against the Marathon simulator, once it is up."""
    work = tmp_path_factory.mktemp("controller")
    marathon, ops = free_port(), free_port()
    (work / "password").write_text("placeholder-password\n")
    (work / "bundles").mkdir()
    config = {
        "marathon": {"urls": [f"http://127.0.0.1:{marathon}"]},
        "registries": [{"host": "registry.example.com:5000", "verify": "off",
                        "credentials": {"username": "robot", "password_file": "password"}}],
        "storage": {"filesystem": {"path": str(work / "bundles")}},
        "reconcile": {"dry_run": True},
        "server": {"listen": f"127.0.0.1:{ops}"},
        "logging": {"format": "json"},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = work / f"{name}.log"
        with log.open("wb") as out:
            started.append(subprocess.Popen([sys.executable, "-m", "controller", *args],
                                            cwd=work, env=env, stdout=out, stderr=out))
        return started[-1], log

    try:
        simulator, log = start("simulator", "simulator", "--listen", f"127.0.0.1:{marathon}",
                               "--apps", "2")
        wait_for(f"http://127.0.0.1:{marathon}/v2/info", "version", simulator, log)
        controller, log = start("controller", "run", "--config", str(work / "config.yaml"))
        yield wait_for(f"http://127.0.0.1:{ops}/metrics", "marathon_pullsecret_leader 1.0",
                       controller, log)
    finally:
        for process in reversed(started):
            stop(process)


def served_series(text: str) -> set[tuple[str, str, str]]:
    """(sample name, label, value) of every labelled sample, and (name, "", "") of each."""
    found: set[tuple[str, str, str]] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.add((sample.name, "", ""))
            found.update((sample.name, label, value) for label, value in sample.labels.items())
    return found


def selected_label_values(exprs: list[str]) -> set[tuple[str, str, str]]:
    """(series, label, value) for each label value a query selects by name: label="v", or
    each alternative of label=~"a|b" (scrape labels and template variables aside)."""
    wanted: set[tuple[str, str, str]] = set()
    for expr in exprs:
        for series, matchers in SELECTOR.findall(expr):
            for label, op, value in MATCHER.findall(matchers):
                if label in SCRAPE_LABELS or "$" in value or op not in ("=", "=~"):
                    continue
                wanted.update((series, label, v) for v in value.split("|"))
    return wanted


class TestServedMetrics:
    def test_the_new_series_are_served_from_start_up(self, served_metrics: str) -> None:
        """Before any app gets stuck or any image is checked, /metrics already serves the
        series the new alerts and panels read, with their label values, at 0."""
        served = served_series(served_metrics)
        registry = "registry.example.com:5000"
        for state in ("stuck", "image_unpullable", "conflict"):
            assert ("marathon_pullsecret_apps_managed", "state", state) in served, state
        assert ("marathon_pullsecret_writes_withheld_total", "reason", "fight") in served
        for result in ("ok", "error", "not_alone"):
            assert ("marathon_pullsecret_deployments_rescued_total", "result", result) in served
        for result in ("ok", "denied", "manifest_unknown", "name_unknown"):
            assert ("marathon_pullsecret_image_checks_total", "result", result) in served
        assert ("marathon_pullsecret_image_checks_total", "registry", registry) in served
        assert ("marathon_pullsecret_registry_login_total", "result", "withheld") in served

    def test_alerts_and_panels_select_label_values_the_controller_serves(
            self, served_metrics: str) -> None:
        """Every label value an alert or a dashboard query selects (state="stuck",
        result=~"published|unchanged", ...) is one the running controller serves on that
        series, so no rule or panel waits for a series that never comes."""
        exprs = [r["expr"] for r in alert_rules(_rendered(CUSTOM_VALUES)).values()]
        wanted = selected_label_values(exprs + dashboard_queries())
        assert ("marathon_pullsecret_apps_managed", "state", "stuck") in wanted
        assert wanted - served_series(served_metrics) == set()

    def test_the_label_check_catches_a_misspelt_value(self, served_metrics: str) -> None:
        """The check is not vacuous: a state the controller does not export is reported."""
        wanted = selected_label_values(['marathon_pullsecret_apps_managed{state="stuk"}'])
        assert wanted - served_series(served_metrics) == {
            ("marathon_pullsecret_apps_managed", "state", "stuk")}
