"""What the chart renders for an operator's first day: the bundle group on a shared volume, launch
delay resets, credential helper binaries on PATH, and the way to the leader's status page.

Rendered by the real Helm engine (tests/packaging/test_packaging.py); where the chart hands a
command to someone (the init container's copy, NOTES.txt's leader lookup), the command runs here
against stand-ins for the image and for kubectl.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from controller.metrics import Metrics
from tests.packaging.test_image import HELPERS_DIR, runtime_env
from tests.packaging.test_packaging import (
    CHART,
    CUSTOM_VALUES,
    DEFAULT_VALUES,
    NAMESPACE,
    RELEASE,
    _rendered,
    check_rendered_config,
    ci_values,
    container,
    one,
    registries_with,
    render,
    rendered_config,
    values_with,
)


def pod_spec(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def notes(values: dict[str, Any]) -> str:
    """NOTES.txt as `helm install` prints it."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    (text,) = [t for path, t in rendered.items() if path.endswith("/NOTES.txt")]
    return text


# -- the bundle group ------------------------------------------------------------------------------


class TestBundleGroup:
    def test_gid_reaches_the_config_as_a_number_and_the_pod_joins_it(self, tmp_path: Path) -> None:
        """group: 2000 renders group: 2000 (a number, not the name "2000") in the config, and
        2000 in the pod's supplementalGroups, so the non-root controller may chown to it."""
        docs = render(values_with({"storage": {"filesystem": {"group": 2000}}}))
        assert rendered_config(tuple(docs))["storage"]["filesystem"]["group"] == 2000
        security = pod_spec(docs)["securityContext"]
        assert security["supplementalGroups"] == [2000]
        assert security["fsGroup"] == ci_values(DEFAULT_VALUES).get(
            "podSecurityContext", {}).get("fsGroup", 10001)
        assert check_rendered_config(docs, tmp_path).returncode == 0

    def test_gid_0_is_a_group_too(self) -> None:
        """gid 0 is not mistaken for "no group"."""
        docs = render(values_with({"storage": {"filesystem": {"group": 0}}}))
        assert rendered_config(tuple(docs))["storage"]["filesystem"]["group"] == 0
        assert pod_spec(docs)["securityContext"]["supplementalGroups"] == [0]

    def test_supplemental_groups_already_set_are_kept(self) -> None:
        """The gid joins the podSecurityContext's own supplementalGroups, once."""
        docs = render(values_with({
            "storage": {"filesystem": {"group": 2000}},
            "podSecurityContext": {"runAsNonRoot": True, "supplementalGroups": [3000, 2000]}}))
        assert pod_spec(docs)["securityContext"]["supplementalGroups"] == [3000, 2000]

    def test_no_group_no_supplemental_groups(self) -> None:
        """Without a group the pod joins none and the config has no group key."""
        docs = _rendered(DEFAULT_VALUES)
        assert "supplementalGroups" not in pod_spec(docs)["securityContext"]
        assert "group" not in rendered_config(docs)["storage"]["filesystem"]


# -- remediation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", [True, False])
def test_reset_launch_delay_reaches_the_config(reset: bool, tmp_path: Path) -> None:
    """remediation.resetLaunchDelay becomes remediation.reset_launch_delay, which the
    controller accepts."""
    docs = render(values_with({"remediation": {"resetLaunchDelay": reset}}))
    assert rendered_config(tuple(docs))["remediation"]["reset_launch_delay"] is reset
    assert check_rendered_config(docs, tmp_path).returncode == 0


def test_reset_launch_delay_is_on_by_default() -> None:
    assert rendered_config(_rendered(DEFAULT_VALUES))["remediation"]["reset_launch_delay"] is True


# -- credential helpers ----------------------------------------------------------------------------

HELPER_IMAGE = {"repository": "registry.example.com/tools/credential-helpers", "tag": "1.0"}
HELPER_FILE = "/usr/local/bin/docker-credential-ecr-login"


def helpers_from_image() -> list[dict[str, Any]]:
    change = {"credentialHelpers": {"image": HELPER_IMAGE, "files": [HELPER_FILE]}}
    return render(values_with(change | registries_with(credentials={"helper": "ecr-login"})))


class TestCredentialHelpers:
    def test_none_by_default(self) -> None:
        """Without credentialHelpers, no init container and no helper volume."""
        spec = pod_spec(_rendered(DEFAULT_VALUES))
        assert "initContainers" not in spec
        assert "credential-helpers" not in {v["name"] for v in spec["volumes"]}

    def test_image_files_are_copied_onto_the_path(self) -> None:
        """An init container of the helper image copies the files into an emptyDir that the
        controller mounts read-only where the image's PATH looks."""
        docs = helpers_from_image()
        (init,) = pod_spec(docs)["initContainers"]
        assert init["image"] == "registry.example.com/tools/credential-helpers:1.0"
        assert init["command"] == ["cp", "--", HELPER_FILE, f"{HELPERS_DIR}/"]
        assert init["securityContext"] == container(docs)["securityContext"]
        (volume,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "credential-helpers"]
        assert "emptyDir" in volume
        (mount,) = [m for m in container(docs)["volumeMounts"]
                    if m["name"] == "credential-helpers"]
        assert (mount["mountPath"], mount["readOnly"]) == (HELPERS_DIR, True)
        assert mount["mountPath"] in runtime_env()["PATH"].split(":")

    def test_copied_helper_is_found_as_the_controller_looks(self, tmp_path: Path) -> None:
        """The init container's command, run with a stand-in binary, leaves a helper that
        `which docker-credential-ecr-login` finds on the image's PATH (the controller runs
        docker-credential-<helper> from PATH)."""
        docs = helpers_from_image()
        (init,) = pod_spec(docs)["initContainers"]
        image, helpers = tmp_path / "image", tmp_path / "helpers"
        binary = image / HELPER_FILE.lstrip("/")
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\necho '{}'\n")
        binary.chmod(0o755)
        helpers.mkdir()
        command = [str(image / a.lstrip("/")) if a == HELPER_FILE else a.replace(
            HELPERS_DIR, str(helpers)) for a in init["command"]]
        subprocess.run(command, check=True, timeout=30)
        path = runtime_env()["PATH"].replace(HELPERS_DIR, str(helpers))
        helper = rendered_config(tuple(docs))["registries"][0]["credentials"]["helper"]
        found = shutil.which(f"docker-credential-{helper}", path=path)
        assert found == str(helpers / "docker-credential-ecr-login")
        assert os.stat(found).st_mode & stat.S_IXUSR

    def test_a_volume_is_mounted_as_it_is(self) -> None:
        """credentialHelpers.volume is mounted read-only on the PATH, with no init container."""
        source = {"persistentVolumeClaim": {"claimName": "credential-helpers"}}
        docs = render(values_with({"credentialHelpers": {"volume": source}}))
        assert "initContainers" not in pod_spec(docs)
        (volume,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "credential-helpers"]
        assert volume == {"name": "credential-helpers", **source}
        assert {"name": "credential-helpers", "mountPath": HELPERS_DIR,
                "readOnly": True} in container(docs)["volumeMounts"]

    @pytest.mark.parametrize(("change", "message"), [
        pytest.param({"image": HELPER_IMAGE}, r"credentialHelpers\.files: name the helper",
                     id="image-without-files"),
        pytest.param({"files": [HELPER_FILE]}, r"credentialHelpers\.image\.repository: set",
                     id="files-without-image"),
        pytest.param({"image": {"repository": HELPER_IMAGE["repository"]}, "files": [HELPER_FILE]},
                     r"credentialHelpers\.image\.tag: pin", id="image-without-tag"),
        pytest.param({"image": HELPER_IMAGE, "files": [HELPER_FILE],
                      "volume": {"emptyDir": {}}}, r"set image \(with files\) or volume, not both",
                     id="image-and-volume"),
    ])
    def test_half_set_values_fail_with_a_message(self, change: dict[str, Any],
                                                 message: str) -> None:
        with pytest.raises(helm.HelmRenderError, match=message):
            render(values_with({"credentialHelpers": change}))

    def test_files_must_be_helpers(self) -> None:
        """A file that is not a docker-credential-<name> binary is refused by the schema."""
        change = {"credentialHelpers": {"image": HELPER_IMAGE, "files": ["/bin/sh"]}}
        with pytest.raises(helm.HelmValuesError, match="credentialHelpers/files/0"):
            render(values_with(change))


# -- the leader's status page ----------------------------------------------------------------------


def metrics_text(*, leader: bool) -> str:
    """A replica's real /metrics, leading or standing by."""
    registry = CollectorRegistry()
    Metrics(registry).on_leader(leader)
    return generate_latest(registry).decode()


def fake_kubectl(bin_dir: Path, pods: dict[str, bool], selector: str, port: int) -> None:
    """A kubectl stand-in: lists ``pods`` for ``selector``, serves each pod's /metrics (leading
    or not) through the pod proxy path, and prints what port-forward would forward."""
    metrics = bin_dir / "metrics"
    metrics.mkdir()
    for pod, leads in pods.items():
        (metrics / pod).write_text(metrics_text(leader=leads))
    script = f"""#!/bin/sh
case "$*" in
  "-n {NAMESPACE} get pods -l {selector} -o jsonpath={{.items[*].metadata.name}}")
    echo "{' '.join(pods)}";;
  "-n {NAMESPACE} get --raw /api/v1/namespaces/{NAMESPACE}/pods/"*":{port}/proxy/metrics")
    pod=${{5#/api/v1/namespaces/{NAMESPACE}/pods/}}; cat "{metrics}/${{pod%%:*}}";;
  "-n {NAMESPACE} port-forward "*) echo "forward $4 $5";;
  *) echo "unexpected: kubectl $*" >&2; exit 1;;
esac
"""
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(script)
    kubectl.chmod(0o755)


def leader_commands(text: str) -> str:
    """The shell lines NOTES.txt gives to reach the leader (from `leader=` to port-forward)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("leader=$("))
    end = next(i for i in range(start, len(lines)) if "port-forward" in lines[i])
    return "\n".join(lines[start:end + 1])


class TestLeaderPage:
    @pytest.mark.parametrize("pods", [{"pod-a": False, "pod-b": True},
                                      {"pod-a": True, "pod-b": False}], ids=["b-leads", "a-leads"])
    def test_notes_forward_to_the_leading_pod(self, pods: dict[str, bool],
                                              tmp_path: Path) -> None:
        """With two replicas, NOTES.txt's commands find the pod whose leader metric is 1 (with
        the Deployment's selector and port) and port-forward to it, whichever pod it is."""
        docs = _rendered(DEFAULT_VALUES)
        labels = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        port = container(docs)["ports"][0]["containerPort"]
        fake_kubectl(tmp_path, pods, selector, port)
        commands = leader_commands(notes(ci_values(DEFAULT_VALUES)))
        result = subprocess.run(["sh", "-c", commands], capture_output=True, text=True,
                                timeout=60, check=False,
                                env={"PATH": f"{tmp_path}:{os.environ.get('PATH', '')}"})
        assert result.returncode == 0, result.stderr
        (leader,) = [pod for pod, leads in pods.items() if leads]
        assert result.stdout.strip() == f"forward pod/{leader} {port}"

    def test_a_single_replica_is_reached_through_the_service(self) -> None:
        """Without leader election there is one pod: NOTES.txt forwards the Service's port."""
        docs = _rendered(CUSTOM_VALUES)
        text = notes(ci_values(CUSTOM_VALUES))
        service = one(docs, "Service")
        port = service["spec"]["ports"][0]["port"]
        assert "leader=$(" not in text
        forward = next(line for line in text.splitlines() if "port-forward" in line)
        assert shlex.split(forward)[-2:] == [f"svc/{service['metadata']['name']}",
                                             f"{container(docs)['ports'][0]['containerPort']}:"
                                             f"{port}"]

    def test_service_keeps_every_replica_for_the_scrape(self) -> None:
        """The Service still selects unready pods: a leader without Marathon must be scraped."""
        assert one(_rendered(DEFAULT_VALUES), "Service")["spec"]["publishNotReadyAddresses"]


def test_every_new_value_is_documented_in_values_yaml() -> None:
    """The keys this file exercises are in values.yaml, each under a comment."""
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    assert values["remediation"] == {"resetLaunchDelay": True, "rescueStuckDeployments": True}
    assert set(values["credentialHelpers"]) == {"image", "files", "volume"}
    assert values["storage"]["filesystem"]["group"] is None
    for key in ("remediation:", "credentialHelpers:", "    group: null"):
        before = text.splitlines()[text.splitlines().index(key) - 1]
        assert re.match(r"\s*#", before), key
