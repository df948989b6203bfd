"""Failed tasks' messages classified as image-pull failures, row by row from the notes' table.

Every row of ``docs/pull-failure-messages.md`` is a case here, under the same id; the notes say
where each message comes from (a real report, or the Mesos/Docker format string it follows).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import NamedTuple, get_args

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from controller.pullfailure import (
    FAILED_TASK_STATES,
    MESSAGE_LIMIT,
    PULL_FAILURE_REASONS,
    SUMMARY_LIMIT,
    FailedPull,
    PullFailure,
    PullFailureReason,
    classify,
    classify_status_update,
    failed_pull,
    may_report_failed_task,
    summary,
)
from controller.reference import normalize_registry_host, parse_image

NOTES = Path(__file__).resolve().parents[2] / "docs" / "pull-failure-messages.md"
SOCKET = "unix:///var/run/docker.sock"
DIGEST = "sha256:" + "ab" * 32


def mesos_1(image: str, stderr: str) -> str:
    """Mesos >= 1.0: slave.cpp's launch-failure prefix around docker.cpp's ``failure()``."""
    return (f"Failed to launch container: Failed to run 'docker -H {SOCKET} pull {image}': "
            f"exited with status 1; stderr='{stderr}\n'")


def mesos_0_25(image: str, stderr: str) -> str:
    """Mesos 0.25 to 0.28: the older ``failure()`` wording, with ``-H``."""
    return (f"Failed to launch container: Failed to 'docker -H {SOCKET} pull {image}': "
            f"exit status = exited with status 1 stderr = {stderr}")


def ucr(failure: str) -> str:
    """The Mesos containerizer's launch failure around a Docker fetcher failure."""
    return "Failed to launch container: " + failure


class Case(NamedTuple):
    id: str
    message: str
    reason: PullFailureReason | None
    image: str | None = None
    registry: str | None = None


ECR_CNI = "602401143452.dkr.ecr.us-west-2.amazonaws.com"
ECR_SG = "267023985100.dkr.ecr.ap-southeast-1.amazonaws.com"
ECR_EU = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
ECR_US = "1234567890.dkr.ecr.us-west-2.amazonaws.com"
ALIYUN = "registry.cn-beijing.aliyuncs.com"
CONTAINER = "59d5cd89-091f-4454-940a-d9eb4361c640"

CASES = [
    # Whole messages as they were reported.
    Case("mesos-asgard-pull-access-denied",
         "Failed to launch container: Failed to run 'docker -H unix:///var/run/docker.sock pull "
         "debian7': exited with status 1; stderr='Error response from daemon: pull access denied "
         "for debian7, repository does not exist or may require 'docker login'\n'",
         "auth", "debian7", "docker.io"),
    Case("mesos-0.25-image-not-found",
         "Failed to launch container: Failed to 'docker -H unix:///tmp/docker.sock pull "
         "registry.mydomain.com/work/app-web-test:7': exit status = exited with status 1 "
         "stderr = Error: image work/app-web-test:7 not found",
         "not_found", "registry.mydomain.com/work/app-web-test:7", "registry.mydomain.com"),
    Case("mesos-0.23-logrus-image-not-found",
         "Failed to launch container: Failed to 'docker pull organisation_name/docker_repo_name:1.0"
         "': exit status = exited with status 1 stderr = time=\"2015-09-03T09:16:18Z\" "
         "level=\"fatal\" msg=\"Error: image organisation_name/docker_repo_name:1.0 not found\"",
         "not_found", "organisation_name/docker_repo_name:1.0", "docker.io"),
    Case("mesos-0.23-empty-stderr",
         "Failed to launch container: Failed to 'docker pull registry.magnetic.io/dm_mysql:0.1.39'"
         ": exit status = exited with status 1 stderr = ",
         "other", "registry.magnetic.io/dm_mysql:0.1.39", "registry.magnetic.io"),
    Case("dcos-image-library-not-found",
         mesos_1("noimage:idonotexist", "Error: image library/noimage:idonotexist not found"),
         "not_found", "noimage:idonotexist", "docker.io"),
    Case("dcos-invalid-reference",
         mesos_1("/mybadimage/fakeimage:latest",
                 'Error parsing reference: "/mybadimage/fakeimage:latest" is not a valid '
                 "repository/tag"),
         "other"),
    # Docker's stderr as reported, inside the Mesos wrapper.
    Case("docker-denied-private-registry",
         mesos_1(f"{ALIYUN}/ms-jupyter/ak_tools:v1.0.5",
                 f"Error response from daemon: pull access denied for {ALIYUN}/ms-jupyter/"
                 "ak_tools, repository does not exist or may require 'docker login': denied: "
                 "requested access to the resource is denied"),
         "auth", f"{ALIYUN}/ms-jupyter/ak_tools:v1.0.5", ALIYUN),
    Case("docker-denied-hub",
         mesos_1("utils:latest",
                 "Error response from daemon: pull access denied for utils, repository does not "
                 "exist or may require 'docker login': denied: requested access to the resource "
                 "is denied"),
         "auth", "utils:latest", "docker.io"),
    Case("docker-1.13-no-pull-access",
         mesos_1("team/private-app:1.0",
                 "Error response from daemon: repository team/private-app not found: does not "
                 "exist or no pull access"),
         "auth", "team/private-app:1.0", "docker.io"),
    Case("docker-no-basic-auth-ecr",
         mesos_1(f"{ECR_CNI}/amazon-k8s-cni:v1.6.3",
                 f"Error response from daemon: Get https://{ECR_CNI}/v2/amazon-k8s-cni/manifests/"
                 "v1.6.3: no basic auth credentials"),
         "auth", f"{ECR_CNI}/amazon-k8s-cni:v1.6.3", ECR_CNI),
    Case("docker-no-basic-auth-head-quoted",
         mesos_1(f"{ECR_SG}/container-name:55",
                 f'Error response from daemon: Head "https://{ECR_SG}/v2/container-name/manifests/'
                 '55": no basic auth credentials'),
         "auth", f"{ECR_SG}/container-name:55", ECR_SG),
    Case("docker-unauthorized-incorrect-password",
         mesos_1("minio/minio:latest",
                 "Error response from daemon: Get https://registry-1.docker.io/v2/minio/minio/"
                 "manifests/latest: unauthorized: incorrect username or password"),
         "auth", "minio/minio:latest", "docker.io"),
    Case("docker-unauthorized-authentication-required",
         mesos_1("mydomain.com/openlistteam/openlist:latest",
                 "Error response from daemon: unauthorized: authentication required"),
         "auth", "mydomain.com/openlistteam/openlist:latest", "mydomain.com"),
    Case("docker-unauthorized-identity-token",
         mesos_1("dtr.abcddevpoc.com/myservice:latest",
                 "Error response from daemon: Get https://dtr.abcddevpoc.com/v2/myservice/"
                 "manifests/latest: unauthorized: unable to get identity token from client token: "
                 "invalid_grant: no such account for refresh token: id:"),
         "auth", "dtr.abcddevpoc.com/myservice:latest", "dtr.abcddevpoc.com"),
    Case("docker-denied-ecr-token-expired",
         mesos_1(f"{ECR_US}/app:1.0", "denied: Your Authorization Token has expired"),
         "auth", f"{ECR_US}/app:1.0", ECR_US),
    Case("docker-credential-helper-missing",
         mesos_1(f"{ECR_EU}/shop/api:55",
                 'error getting credentials - err: exec: "docker-credential-ecr-login": '
                 "executable file not found in $PATH, out: ``"),
         "auth", f"{ECR_EU}/shop/api:55", ECR_EU),
    Case("docker-v1-status-403",
         mesos_0_25("quay.io/repo/project:latest",
                    'msg="Error: Status 403 trying to pull repository repo/project: '
                    '\\"{\\\\\\"error\\\\\\": \\\\\\"Permission Denied\\\\\\"}\\""'),
         "auth", "quay.io/repo/project:latest", "quay.io"),
    Case("docker-manifest-unknown",
         mesos_1("whitelok/watermark-remover:latest",
                 "Error response from daemon: manifest for whitelok/watermark-remover:latest not "
                 "found: manifest unknown: manifest unknown"),
         "not_found", "whitelok/watermark-remover:latest", "docker.io"),
    Case("docker-manifest-not-found",
         mesos_1("aaronngray/bpi-build:latest",
                 "Error response from daemon: manifest for aaronngray/bpi-build:latest not found"),
         "not_found", "aaronngray/bpi-build:latest", "docker.io"),
    Case("docker-toomanyrequests-pull-rate-limit",
         mesos_1("zixia/wechat:3.3.0.115",
                 "Error response from daemon: toomanyrequests: You have reached your pull rate "
                 "limit. You may increase the limit by authenticating and upgrading: "
                 "https://www.docker.com/increase-rate-limit"),
         "rate_limited", "zixia/wechat:3.3.0.115", "docker.io"),
    Case("docker-toomanyrequests-unauthenticated",
         mesos_1("docker.n8n.io/n8nio/n8n:latest",
                 "Error response from daemon: toomanyrequests: You have reached your "
                 "unauthenticated pull rate limit. https://www.docker.com/increase-rate-limit"),
         "rate_limited", "docker.n8n.io/n8nio/n8n:latest", "docker.n8n.io"),
    Case("docker-toomanyrequests-ecr-public",
         mesos_1("public.ecr.aws/zebrunner/appium:2.0.2",
                 "Error response from daemon: toomanyrequests: Rate exceeded"),
         "rate_limited", "public.ecr.aws/zebrunner/appium:2.0.2", "public.ecr.aws"),
    Case("docker-no-such-host",
         mesos_1("my-registry:5000/app:latest",
                 "Error response from daemon: Get http://my-registry:5000/v2/: dial tcp: lookup "
                 "my-registry on 192.168.65.1:53: no such host"),
         "network", "my-registry:5000/app:latest", "my-registry:5000"),
    Case("docker-dns-io-timeout",
         mesos_1("hyperledger/composer-playground:latest",
                 "Error response from daemon: Get https://registry-1.docker.io/v2/: dial tcp: "
                 "lookup registry-1.docker.io on 192.168.65.1:53: read udp 192.168.65.2:45941->"
                 "192.168.65.1:53: i/o timeout"),
         "network", "hyperledger/composer-playground:latest", "docker.io"),
    Case("docker-dns-connection-refused",
         mesos_1("hello-world:latest",
                 "Error response from daemon: Get https://registry-1.docker.io/v2/: dial tcp: "
                 "lookup registry-1.docker.io on [::1]:53: read udp [::1]:35914->[::1]:53: read: "
                 "connection refused"),
         "network", "hello-world:latest", "docker.io"),
    Case("docker-tls-handshake-timeout",
         mesos_1("ubuntu:latest",
                 "Error response from daemon: Get https://registry-1.docker.io/v2/library/ubuntu/"
                 "manifests/latest: net/http: TLS handshake timeout"),
         "network", "ubuntu:latest", "docker.io"),
    Case("docker-x509-unknown-authority",
         mesos_1("hello-world:latest",
                 "Error response from daemon: Get https://registry-1.docker.io/v2/: x509: "
                 "certificate signed by unknown authority"),
         "network", "hello-world:latest", "docker.io"),
    Case("docker-x509-valid-for-quoted",
         mesos_1("johnnewcombe/telstar:latest",
                 'Error response from daemon: Get "https://registry-1.docker.io/v2/": tls: failed '
                 "to verify certificate: x509: certificate is valid for "
                 "*.blue-staging.pipingrock.cloud, *.pipingrock.cloud, not registry-1.docker.io"),
         "network", "johnnewcombe/telstar:latest", "docker.io"),
    Case("docker-tls-handshake-failure",
         mesos_1("snyk/broker:latest",
                 "Error response from daemon: Get https://registry-1.docker.io/v2/: remote error: "
                 "tls: handshake failure"),
         "network", "snyk/broker:latest", "docker.io"),
    Case("docker-http-response-to-https",
         mesos_1("192.168.6.131:8090/library/app:1.0",
                 "Error response from daemon: Get https://192.168.6.131:8090/v2/: http: server "
                 "gave HTTP response to HTTPS client"),
         "network", "192.168.6.131:8090/library/app:1.0", "192.168.6.131:8090"),
    Case("docker-signed-blob-url",
         mesos_1("wso2/wso2mi:latest",
                 'error pulling image configuration: Get "https://production.cloudflare.docker.com'
                 "/registry-v2/docker/registry/v2/blobs/sha256/96/969c62cec213be2ba97bf2dad184fff"
                 "edd9a72179c122286976b1b838210fed4/data?verify=1640772128-k8xBexcZ2syw6Yuw4GDJRT0"
                 'elmY%3D": http: server gave HTTP response to HTTPS client'),
         "network", "wso2/wso2mi:latest", "docker.io"),
    Case("docker-500-unexpected-status",
         mesos_1("busybox:latest",
                 "Error response from daemon: Get https://registry-1.docker.io/v2/library/busybox/"
                 "manifests/latest: Received unexpected HTTP status: 500 Internal Server Error"),
         "other", "busybox:latest", "docker.io"),
    Case("docker-daemon-not-running",
         mesos_1("busybox:latest",
                 f"Cannot connect to the Docker daemon at {SOCKET}. Is the docker daemon running?"),
         "other", "busybox:latest", "docker.io"),
    # GitHub's registry (GHCR) prints the DENIED code alone, and Artifactory its own words.
    Case("ghcr-head-denied-denied",
         mesos_1("ghcr.io/riverqueue/riverui:latest",
                 'Error response from daemon: Head "https://ghcr.io/v2/riverqueue/riverui/'
                 'manifests/latest": denied: denied'),
         "auth", "ghcr.io/riverqueue/riverui:latest", "ghcr.io"),
    Case("ghcr-head-denied-bare",
         mesos_1("ghcr.io/noslate-project/noslate-demo:0.0.1",
                 'Error response from daemon: Head "https://ghcr.io/v2/noslate-project/'
                 'noslate-demo/manifests/0.0.1": denied'),
         "auth", "ghcr.io/noslate-project/noslate-demo:0.0.1", "ghcr.io"),
    Case("ghcr-daemon-denied-bare",
         mesos_1("ghcr.io/inkotake/ojo:latest", "Error response from daemon: denied"),
         "auth", "ghcr.io/inkotake/ojo:latest", "ghcr.io"),
    Case("ghcr-error-from-registry-denied",
         mesos_1("ghcr.io/wolffcatskyy/crowdsec-blocklist-import-python:latest",
                 "Error response from daemon: error from registry: denied\ndenied"),
         "auth", "ghcr.io/wolffcatskyy/crowdsec-blocklist-import-python:latest", "ghcr.io"),
    Case("artifactory-authentication-is-required",
         mesos_1("artifactory.example.com/docker-local/app:1.0",
                 "Error response from daemon: Get https://artifactory.example.com/v2/docker-local/"
                 "app/manifests/1.0: unknown: Authentication is required"),
         "auth", "artifactory.example.com/docker-local/app:1.0", "artifactory.example.com"),
    # The Mesos containerizer's (UCR) Docker fetcher.
    Case("ucr-manifest-401",
         ucr("Unexpected HTTP response '401 Unauthorized' when trying to get the manifest"),
         "auth"),
    Case("ucr-manifest-403",
         ucr("Unexpected HTTP response '403 Forbidden' when trying to get the manifest"),
         "auth"),
    Case("ucr-manifest-404",
         ucr("Unexpected HTTP response '404 Not Found' when trying to get the manifest"),
         "not_found"),
    Case("ucr-manifest-500",
         ucr("Unexpected HTTP response '500 Internal Server Error' when trying to get the "
             "manifest"),
         "other"),
    Case("ucr-token-server-401",
         ucr("Unexpected HTTP response '401 Unauthorized' when trying to GET 'https://auth."
             "docker.io/token?service=registry.docker.io&scope=repository:library/busybox:pull'"),
         "auth"),
    Case("ucr-blob-429",
         ucr("Unexpected HTTP response '429' when trying to download the blob"),
         "rate_limited"),
    Case("ucr-decode-429",
         ucr("Failed to decode HTTP responses: Decoding failed\nHTTP/1.1 429 Too Many Requests\r\n"
             "Content-Type: application/json\r\n\r\n{\"errors\":[{\"code\":\"TOOMANYREQUESTS\","
             "\"message\":\"You have reached your pull rate limit.\"}]}\n"),
         "rate_limited"),
    Case("ucr-expecting-401-got-404",
         ucr("Expecting a '401 Unauthorized' response when fetching a blob, but get "
             "'404 Not Found' instead"),
         "not_found"),
    Case("ucr-missing-realm",
         ucr("Missing 'realm', 'service' or 'scope' in header WWW-Authenticate: Bearer "
             'realm="https://auth.example.com/token"'),
         "other"),
    Case("ucr-curl-resolve-host",
         ucr("Failed to perform 'curl' for 'https://registry.example.com/v2/team/app/manifests/"
             "1.4': curl: (6) Could not resolve host: registry.example.com\n"),
         "network", "registry.example.com/team/app:1.4", "registry.example.com"),
    Case("ucr-curl-connect-refused",
         ucr("Failed to perform 'curl': curl: (7) Failed to connect to registry-1.docker.io port "
             "443: Connection refused\n"),
         "network"),
    Case("ucr-curl-ssl-certificate",
         ucr(f"Failed to perform 'curl' for 'https://registry.example.com:5000/v2/team/app/blobs/"
             f"{DIGEST}': curl: (60) SSL certificate problem: self signed certificate\n"),
         "network", None, "registry.example.com:5000"),
    # The fetcher's own answers to a registry's 401, by Mesos version.
    Case("ucr-basic-refused-1.10",
         ucr("Got unexpected BASIC Authorization response status: 401 Unauthorized from "
             "https://registry.example.com:5000/v2/team/app/manifests/1.0"),
         "auth", "registry.example.com:5000/team/app:1.0", "registry.example.com:5000"),
    Case("ucr-basic-refused-1.7",
         ucr("Unexpected BASIC Authorization response status: 401 Unauthorized"), "auth"),
    Case("ucr-basic-scheme-1.2", ucr("Unsupported auth-scheme: BASIC"), "auth"),
    Case("ucr-empty-challenge-1.10",
         ucr("Got unexpected empty WWW-Authenticate header from "
             "https://registry.example.com/v2/team/app/manifests/1.4"),
         "auth", "registry.example.com/team/app:1.4", "registry.example.com"),
    Case("ucr-empty-challenge-1.2", ucr("Unexpected empty WWW-Authenticate header"), "auth"),
    Case("ucr-no-challenge-0.27", ucr("WWW-Authorization header is not found"), "auth"),
    Case("ucr-unsupported-scheme-1.10",
         ucr("Got unsupported auth-scheme: NEGOTIATE from "
             "https://registry.example.com/v2/team/app/manifests/1.4"),
         "other", "registry.example.com/team/app:1.4", "registry.example.com"),
    Case("ucr-not-bearer-0.27", ucr("Not a Bearer authentication challenge"), "other"),
    Case("ucr-malformed-challenge-1.10",
         ucr("Failed to get WWW-Authenticate header from https://registry.example.com/v2/team/"
             "app/manifests/1.4: Unexpected WWW-Authenticate header format: 'Basic'"),
         "other", "registry.example.com/team/app:1.4", "registry.example.com"),
    Case("ucr-missing-realm-fallback",
         ucr("Missing 'realm' in WWW-Authenticate header obtained from "
             "https://registry.example.com/v2"),
         "other"),
    Case("ucr-token-answer-without-token", ucr("Failed to find token in JSON object"), "other"),
    # Not pull failures.
    Case("not-pull-container-exited", "Container exited with status 1", None),
    Case("not-pull-command-exited", "Command exited with status 1", None),
    Case("not-pull-memory-limit",
         "Memory limit exceeded: Requested: 64MB Maximum Used: 64MB\n\nMEMORY STATISTICS: \n"
         "cache 0\nrss 67108864\n", None),
    Case("not-pull-fetch-failed-0.2x",
         f"Failed to launch container: Failed to fetch all URIs for container '{CONTAINER}' "
         "with exit status: 256", None),
    Case("not-pull-fetch-failed-1.x",
         f"Failed to launch container: Failed to fetch all URIs for container '{CONTAINER}': "
         "exited with status 1", None),
    Case("not-pull-destroyed-while-pulling", "Container destroyed while pulling image", None),
    Case("not-pull-container-terminated", "Container terminated", None),
    Case("not-pull-docker-inspect",
         f"Failed to run 'docker -H {SOCKET} inspect mesos-{CONTAINER}': exited with status 1; "
         f"stderr='Error: No such object: mesos-{CONTAINER}\n'", None),
    Case("not-pull-abnormal-termination", "Abnormal executor termination: unknown container",
         None),
    Case("not-pull-empty", "", None),
]


def expected(case: Case) -> PullFailure | None:
    if case.reason is None:
        return None
    return PullFailure(reason=case.reason, image=case.image, registry=case.registry)


class TestNotesTable:
    @pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
    def test_message_is_classified_as_the_notes_say(self, case: Case):
        """Each documented message gives its documented reason, image and registry, nothing else."""
        assert classify(case.message) == expected(case)

    def test_every_row_of_the_notes_is_a_case(self):
        """The notes' table and the cases above list the same ids with the same classes."""
        notes = NOTES.read_text(encoding="utf-8")
        documented = sorted(re.findall(r"^\| `([a-z0-9.]+(?:-[a-z0-9.]+)+)` \| (\w+) \|", notes,
                                       re.MULTILINE))
        tested = sorted((case.id, case.reason or "none") for case in CASES)
        assert documented == tested

    def test_case_ids_are_unique(self):
        """An id names one row."""
        ids = [case.id for case in CASES]
        assert len(ids) == len(set(ids))


class TestReasons:
    def test_reasons_are_the_closed_set_of_the_literal(self):
        """The metric label set is exactly the type's values, in a fixed order."""
        assert get_args(PullFailureReason) == PULL_FAILURE_REASONS
        assert PULL_FAILURE_REASONS == ("auth", "not_found", "rate_limited", "network", "other")

    def test_every_reason_has_a_documented_case(self):
        """No reason is unreachable from a real message shape."""
        assert {case.reason for case in CASES} == {*PULL_FAILURE_REASONS, None}


class TestImageNames:
    """Docker echoes the image's name; a name must not decide the reason."""

    @pytest.mark.parametrize(("image", "stderr", "reason"), [
        ("acme/mtls:1.0", "Error response from daemon: manifest for acme/mtls:1.0 not found: "
                          "manifest unknown: manifest unknown", "not_found"),
        ("acme/unauthorized-page:2", "Error response from daemon: manifest for "
                                     "acme/unauthorized-page:2 not found", "not_found"),
        ("x509:latest", "Error response from daemon: manifest for x509:latest not found",
         "not_found"),
        ("toomanyrequests/app:1", "Error response from daemon: repository "
                                  "toomanyrequests/app not found: name unknown", "not_found"),
    ], ids=["tls-in-name", "unauthorized-in-name", "x509-as-name", "toomanyrequests-as-name"])
    def test_echoed_name_does_not_vote(self, image: str, stderr: str,
                                       reason: PullFailureReason):
        """The reason comes from Docker's words, not from the repository's name."""
        assert classify(mesos_1(image, stderr)) == PullFailure(reason=reason, image=image,
                                                               registry="docker.io")

    def test_marker_that_equals_a_bare_name_still_counts(self):
        """An image called ``tls`` keeps Docker's ``tls:`` network marker."""
        message = mesos_1("tls:1.0", "Error response from daemon: Get https://registry-1.docker"
                                     ".io/v2/: remote error: tls: handshake failure")
        assert classify(message) == PullFailure(reason="network", image="tls:1.0",
                                                registry="docker.io")

    def test_digest_reference_gives_image_and_registry(self):
        """A pull by digest names the image with its digest and the registry."""
        image = f"registry.example.com:5000/team/app@{DIGEST}"
        message = mesos_1(image, "Error response from daemon: manifest for "
                                 f"{image} not found: manifest unknown: manifest unknown")
        assert classify(message) == PullFailure(reason="not_found", image=image,
                                                registry="registry.example.com:5000")

    def test_hub_manifest_url_gives_the_familiar_image(self):
        """A UCR manifest URL on Docker Hub names the image as people write it."""
        message = ucr("Failed to perform 'curl' for 'https://registry-1.docker.io/v2/library/"
                      "busybox/manifests/latest': curl: (28) Operation timed out after 30000 "
                      "milliseconds with 0 bytes received\n")
        assert classify(message) == PullFailure(reason="network", image="busybox:latest",
                                                registry="docker.io")


class TestNearMisses:
    """Texts next to the new ``auth`` markers that must not be taken for them."""

    @pytest.mark.parametrize(("stderr", "reason"), [
        ("Error response from daemon: failed to register layer: open /var/lib/docker/overlay2/"
         "x/link: permission denied", "other"),
        ("Error response from daemon: The process cannot access the file. Access is denied.",
         "other"),
        ("Error response from daemon: deniedness", "other"),
        ("Error response from daemon: Get https://r.example.com/v2/: proxyconnect tcp: dial tcp "
         "10.0.0.1:3128: connect: permission denied", "network"),
        ("Error response from daemon: Get https://r.example.com/v2/: Proxy Authentication "
         "Required", "network"),
        ("Error response from daemon: manifest for r.example.com/denied:1 not found: manifest "
         "unknown: manifest unknown", "not_found"),
    ], ids=["permission-denied", "access-is-denied", "longer-word", "proxy-permission",
            "proxy-407", "denied-as-name"])
    def test_docker_text_near_an_auth_marker(self, stderr: str, reason: PullFailureReason):
        image = "r.example.com/denied:1"
        assert classify(mesos_1(image, stderr)) == PullFailure(reason=reason, image=image,
                                                               registry="r.example.com")

    @pytest.mark.parametrize("message", [
        "Error response from daemon: denied",
        "Error response from daemon: error from registry: denied\ndenied",
        "unknown: Authentication is required",
        "Failed to launch container: Failed to run 'docker -H unix:///s inspect x': exited with "
        "status 1; stderr='Error response from daemon: denied\n'",
    ], ids=["daemon-denied", "error-from-registry", "artifactory", "inspect-denied"])
    def test_docker_auth_text_without_a_docker_pull_is_no_pull_failure(self, message: str):
        """Docker's new auth wordings count only inside a quoted ``docker … pull``."""
        assert classify(message) is None


class TestGate:
    @pytest.mark.parametrize("message", [
        "Failed to run 'git pull origin': exited with status 1; stderr='unauthorized\n'",
        "Failed to launch container: Failed to run 'docker -H unix:///s pull': exited with "
        "status 1; stderr='unauthorized\n'",
        "Failed to run 'docker -H unix:///s pull " + "a" * 3000 + "': exited with status 1",
        "stderr='Error response from daemon: pull access denied for x, repository does not "
        "exist or may require 'docker login''",
    ], ids=["another-program", "no-image", "command-too-long", "docker-text-without-mesos"])
    def test_only_a_quoted_docker_pull_or_the_docker_fetcher_is_a_pull_failure(self,
                                                                                 message: str):
        """Pull-like words outside Mesos's two pull wrappers are not taken for a pull failure."""
        assert classify(message) is None

    def test_first_docker_pull_command_decides(self):
        """A message holding two pull commands reports the first one's image."""
        first = mesos_1("busybox:latest", "Error response from daemon: unauthorized: x")
        second = mesos_1("other/app:1", "Error response from daemon: manifest unknown")
        result = classify(first + "; " + second)
        assert result is not None
        assert (result.image, result.registry) == ("busybox:latest", "docker.io")


class TestStatusUpdate:
    MESSAGE = CASES[0].message

    @pytest.mark.parametrize("state", sorted(FAILED_TASK_STATES))
    def test_failed_task_is_classified(self, state: str):
        """A failed or errored task's message is read."""
        event = {"eventType": "status_update_event", "taskStatus": state,
                 "message": self.MESSAGE, "appId": "/web"}
        assert classify_status_update(event) == expected(CASES[0])

    @pytest.mark.parametrize("event", [
        {"taskStatus": "TASK_RUNNING", "message": MESSAGE},
        {"taskStatus": "TASK_KILLED", "message": MESSAGE},
        {"taskStatus": "TASK_FAILED"},
        {"taskStatus": "TASK_FAILED", "message": None},
        {"taskStatus": "TASK_FAILED", "message": ["not", "text"]},
        {"taskStatus": ["TASK_FAILED"], "message": MESSAGE},
        {},
    ], ids=["running", "killed", "no-message", "null-message", "list-message",
            "list-status", "empty"])
    def test_other_payloads_report_no_pull_failure(self, event: dict[str, object]):
        """Anything but a failed task with a text message, however malformed, answers None."""
        assert classify_status_update(event) is None


class TestBounds:
    def test_text_past_the_limit_is_not_read(self):
        """A pull failure that starts after ``MESSAGE_LIMIT`` characters is not seen."""
        assert classify(" " * MESSAGE_LIMIT + CASES[0].message) is None

    def test_cause_is_read_up_to_the_limit(self):
        """A cause whose last word ends exactly at the limit still decides the reason."""
        head = mesos_1("busybox:latest", "").removesuffix("\n'")
        filler = "x" * (MESSAGE_LIMIT - len(head) - len("no such host"))
        assert len(head + filler + "no such host") == MESSAGE_LIMIT
        result = classify(head + filler + "no such host\n'")
        assert result == PullFailure(reason="network", image="busybox:latest",
                                     registry="docker.io")

    @pytest.mark.parametrize("unit", [
        "Failed to '", "Failed to run 'docker pull ", "https://", "https://a/v2/",
        "when trying to get the manifest https://x/v2/a/manifests/", "pull ", "'",
        "Failed to run 'docker pull a': " + "a/" * 40,
        "Failed to run 'docker pull a': " + ":   denie" * 40, "auth-scheme: ",
    ], ids=["old-prefix", "new-prefix", "url", "registry-url", "ucr-url", "pull-word", "quote",
            "name-echo", "bare-denied", "ucr-auth-phrase"])
    def test_adversarial_messages_finish_quickly(self, unit: str):
        """Ten megabytes built to provoke re-scanning are classified in well under a second."""
        message = unit * (10 * 1024 * 1024 // len(unit))
        started = time.perf_counter()
        classify(message)
        assert time.perf_counter() - started < 1.0


FRAGMENTS = [
    "Failed to run '", "Failed to '", "docker -H ", " pull ", "'", ": ", "https://", "http://",
    "/v2/", "/manifests/", "/blobs/", "@", ":", "sha256:", "when trying to get the manifest",
    "Failed to perform 'curl'", "unauthorized", "not found", "tls:", "toomanyrequests",
    "docker daemon", "permission denied", "[::1]", "localhost:5000", "registry.example.com",
    "registry-1.docker.io",
]
MESSAGES = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=20), max_size=30).map("".join)


AUTH_WORDS = [
    "denied", "denied: denied", "unauthorized", "Authentication is required",
    "authentication required", "401 Unauthorized", "403 Forbidden", "BASIC", "Bearer",
    "no basic auth credentials", "pull access denied", "error getting credentials",
    "Error response from daemon: ", "error from registry: ", "WWW-Authenticate", ": ", "\n",
    "'", '"',
]
NOT_PULL = [case.message for case in CASES if case.reason is None]


class TestProperties:
    @given(st.text(max_size=500) | MESSAGES)
    @example("when trying to get the manifesthttp://[")  # a URL urlsplit refuses
    def test_any_text_gives_none_or_a_known_reason(self, message: str):
        """No string raises; the answer is None or a known reason with a valid image/registry."""
        result = classify(message)
        if result is not None:
            assert result.reason in PULL_FAILURE_REASONS
            if result.image is not None:
                assert parse_image(result.image).registry == result.registry
            elif result.registry is not None:
                assert normalize_registry_host(result.registry) == result.registry

    @given(st.sampled_from(NOT_PULL), st.lists(st.sampled_from(AUTH_WORDS) | st.text(max_size=8),
                                               max_size=8).map("".join), st.booleans())
    def test_auth_words_never_make_another_failure_a_pull_failure(self, message: str, words: str,
                                                                   before: bool):
        """A task that failed for another reason (the table's not-pull rows) is no pull failure,
        so never ``auth``, whatever registry or auth wording is printed around its message."""
        assert classify(words + message if before else message + words) is None

    @given(st.text(max_size=500))
    def test_any_stderr_of_a_docker_pull_is_a_pull_failure(self, stderr: str):
        """Whatever Docker printed, a failed ``docker pull`` is a pull failure of that image."""
        result = classify(mesos_1("registry.example.com/team/app:1.0", stderr))
        assert result is not None
        assert result.reason in PULL_FAILURE_REASONS
        assert (result.image, result.registry) == ("registry.example.com/team/app:1.0",
                                                    "registry.example.com")

    @given(st.text(max_size=300), st.text(max_size=300))
    def test_answer_quotes_nothing_else_from_the_message(self, before: str, after: str):
        """Text around the command (tokens, URLs, helper output) never reaches the answer."""
        assume("Failed to" not in before)
        image = "registry.example.com/team/app:1.0"
        result = classify(before + mesos_1(image, after))
        assert result is not None
        assert (result.image, result.registry) == (image, "registry.example.com")


FAILED_AUTH = mesos_1("registry.example.com/team/app:1.0",
                      "Error response from daemon: Get https://robot:s3cret@registry.example.com"
                      "/v2/team/app/manifests/1.0?token=abc: unauthorized: authentication "
                      "required")


def status_update(state: str, message: str, **fields: object) -> dict[str, object]:
    return {"eventType": "status_update_event", "taskStatus": state, "message": message,
            "appId": "/team/app", "taskId": "team_app.1",
            "version": "2026-12-01T06:00:00.000Z", **fields}


def escaped_json(payload: dict[str, str]) -> str:
    """JSON with every character of every key and value written as a ``\\uXXXX`` escape."""
    def text(value: str) -> str:
        # ensure_ascii writes a character past U+FFFF as its two surrogates' escapes
        return '"' + "".join(json.dumps(c)[1:-1] if ord(c) > 0xFFFF else f"\\u{ord(c):04x}"
                             for c in value) + '"'

    return "{" + ",".join(f"{text(k)}:{text(v)}" for k, v in payload.items()) + "}"


class TestFailedPull:
    def test_failed_task_of_an_app_is_a_failed_pull(self):
        """The app, the task and a summary come with the classified failure."""
        failed = failed_pull(status_update("TASK_FAILED", FAILED_AUTH))
        assert failed == FailedPull(
            app_id="/team/app", task_id="team_app.1", version="2026-12-01T06:00:00.000Z",
            failure=PullFailure(reason="auth", image="registry.example.com/team/app:1.0",
                                registry="registry.example.com"),
            summary="Error response from daemon: Get https://registry.example.com/\u2026: "
                    "unauthorized: authentication required")

    @pytest.mark.parametrize("fields", [
        {"appId": None}, {"appId": "team/app"}, {"appId": "/" + "a" * 2000}, {"appId": 7},
    ], ids=["no-app", "relative-app", "long-app", "number-app"])
    def test_event_without_a_usable_app_id_is_none(self, fields: dict[str, object]):
        """The app is the key of everything that follows: without a real one, nothing."""
        assert failed_pull(status_update("TASK_FAILED", FAILED_AUTH, **fields)) is None

    @pytest.mark.parametrize("task_id", [None, 42, "t" * 2000])
    def test_unusable_task_id_is_left_out(self, task_id: object):
        failed = failed_pull(status_update("TASK_ERROR", FAILED_AUTH, taskId=task_id))
        assert failed is not None
        assert failed.task_id is None


class TestSummary:
    @pytest.mark.parametrize(("message", "shown"), [
        (FAILED_AUTH, "Error response from daemon: Get https://registry.example.com/\u2026: "
                      "unauthorized: authentication required"),
        (mesos_0_25("busybox:latest", "Error: image library/busybox:latest not found"),
         "Error: image library/busybox:latest not found"),
        (mesos_1("busybox:latest", ""),
         "Failed to run 'docker -H unix:///var/run/docker.sock pull busybox:latest': exited "
         "with status 1; stderr="),
        ("Failed to launch container: Unexpected HTTP response '401 Unauthorized' when trying "
         "to get the manifest", "Unexpected HTTP response '401 Unauthorized' when trying to get "
                                "the manifest"),
        (mesos_1("a.dkr.ecr.eu-west-1.amazonaws.com/x:1", "error getting credentials - err: "
                 "exit status 1, out: `{\"Secret\": \"hunter2\"}`"),
         "error getting credentials - err: exit status 1"),
        ("Failed to launch container: Failed to decode HTTP responses: Decoding failed\n"
         "HTTP/1.1 200 OK\r\n\r\n{\"token\": \"abc\"}", "Failed to decode HTTP responses: "
                                                         "Decoding failed"),
    ], ids=["docker-stderr", "old-wrapper", "empty-stderr", "ucr", "helper-output", "raw-http"])
    def test_summary_is_the_line_an_operator_needs(self, message: str, shown: str):
        """Docker's line, the fetcher's line, or the command when Docker said nothing; never a
        credential helper's output, a raw answer after the first line, or a URL's path."""
        assert summary(message) == shown

    def test_long_message_is_cut(self):
        text = summary(mesos_1("busybox:latest", "unauthorized: " + "x" * 5000))
        assert len(text) == SUMMARY_LIMIT
        assert text.endswith("\u2026")

    @given(st.text(max_size=600) | MESSAGES)
    def test_any_text_gives_a_short_printable_line(self, message: str):
        text = summary(message)
        assert len(text) <= SUMMARY_LIMIT
        assert text.isprintable()

    @given(st.sampled_from(["http://", "https://", "https://user:pw@"]),
           st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9]{1,5})?", fullmatch=True),
           st.sampled_from(["/", "?", "#", "/v2/a/manifests/1?"]), st.text(max_size=60),
           st.text(max_size=100) | MESSAGES)
    def test_a_url_keeps_only_its_scheme_and_host(self, scheme: str, host: str, separator: str,
                                                  rest: str, around: str):
        """What follows a URL's host (path, query with a signed token) never shows, nor does
        user info, wherever the URL stands in the message."""
        secret = "SIGNEDxTOKEN"
        url = f"{scheme}{host}{separator}{secret}{rest.split()[0] if rest.split() else ''}"
        text = summary(mesos_1("busybox:latest", f"{around} Get {url} unauthorized"))
        assert secret not in text
        assert "user:pw" not in text


class TestStatusUpdatePreCheck:
    """``may_report_failed_task`` lets the watcher skip decoding: it may only skip events that
    certainly report no failed task."""

    payloads = st.fixed_dictionaries(
        {"taskStatus": st.sampled_from([*sorted(FAILED_TASK_STATES), "TASK_RUNNING",
                                        "TASK_STAGING"])},
        optional={"message": st.text(max_size=80) | st.just(FAILED_AUTH), "appId":
                  st.just("/team/app"), "taskId": st.text(max_size=10)})

    @given(payloads, st.booleans())
    def test_no_failed_pull_is_ever_skipped(self, payload: dict[str, str], ascii_only: bool):
        if failed_pull(payload) is not None:
            assert may_report_failed_task(json.dumps(payload, ensure_ascii=ascii_only))

    @given(payloads)
    def test_escapes_cannot_hide_a_failed_state(self, payload: dict[str, str]):
        """A JSON text may spell any character as ``\\uXXXX``; such a text is decoded."""
        data = escaped_json(payload)
        assert json.loads(data) == payload
        if payload["taskStatus"] in FAILED_TASK_STATES:
            assert may_report_failed_task(data)

    def test_running_tasks_are_skipped(self):
        """The point of it: a running task's update, as Marathon writes it, is not decoded."""
        data = json.dumps(status_update("TASK_RUNNING", "", host="agent-1", ports=[31000]),
                          separators=(",", ":"))
        assert not may_report_failed_task(data)

    def test_every_failed_state_is_looked_for(self):
        for state in FAILED_TASK_STATES:
            assert may_report_failed_task(f'{{"taskStatus":"{state}"}}')


class TestAnyPayload:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=40),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                    max_size=4), max_leaves=20)
    events = st.dictionaries(
        st.sampled_from(["taskStatus", "message", "appId", "taskId", "other"]),
        json_values | st.sampled_from(sorted(FAILED_TASK_STATES)) | st.just(FAILED_AUTH)
        | st.just("/team/app") | MESSAGES, max_size=5)

    @given(events)
    def test_any_payload_gives_none_or_a_failed_pull_of_an_app(self, event: dict[str, object]):
        """Whatever a status update holds, reading it never raises."""
        failed = failed_pull(event)
        if failed is not None:
            assert failed.app_id.startswith("/")
            assert failed.failure.reason in PULL_FAILURE_REASONS
            assert len(failed.summary) <= SUMMARY_LIMIT
