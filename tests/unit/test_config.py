"""Config loading: schema, semantics, one report of every problem, and the shipped files."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from controller.config import load_schema, load_settings, parse_duration, settings_from_mapping
from controller.errors import ConfigError
from tests.factories import config_doc

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "controller.example.yaml"


STORAGE = tempfile.gettempdir()
"""A storage directory that exists on every host (the loader refuses one that does not);
nothing is written to it: these tests only load configs."""


def minimal(**overrides: Any) -> dict[str, Any]:
    """The smallest valid document; each of ``overrides`` replaces a whole section."""
    return {**config_doc("http://127.0.0.1:8080", STORAGE), **overrides}


def problems(doc: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(doc, env or {"REG_PW": "x"})
    return info.value.problems


def file_problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    """The problems ``load_settings`` finds in the file at ``path``."""
    with pytest.raises(ConfigError) as info:
        load_settings(path, env or {"REG_PW": "x"})
    return info.value.problems


def example_here(directory: Path) -> Path:
    """The shipped example, written to ``directory`` with its storage directory (which this
    host does not have) replaced by one there."""
    storage = directory / "pullsecrets"
    storage.mkdir()
    path = directory / "example.yaml"
    path.write_text(EXAMPLE.read_text().replace("/mnt/shared/pullsecrets", str(storage)))
    return path


def check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``check-config`` as operators run it, with 512 MiB of address space and 60 s at most.

    The limits turn a runaway (memory, recursion, a hang) into a quick failure of the test.
    """
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))

    return subprocess.run(
        [sys.executable, "-m", "controller", "check-config", "--config", str(path)],
        capture_output=True, text=True, timeout=60, check=False, preexec_fn=limit_memory,
        env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", **(env or {})})


class TestValid:
    def test_minimal_config_gets_defaults(self):
        """A minimal config fills every default the issue documents."""
        s = settings_from_mapping(minimal(), {"REG_PW": "x"})
        assert s.selector.label == "pullsecret.enabled"
        assert s.reconcile.workers == 4
        assert s.reconcile.max_writes_per_second == 5
        assert s.reconcile.max_concurrent_deployments == 10
        assert s.reconcile.resync_seconds == 300
        assert (s.server.host, s.server.port) == ("127.0.0.1", 9102)
        assert s.storage.filesystem is not None
        assert s.storage.filesystem.uri_prefix == f"file://{STORAGE}"
        assert s.registries[0].registry == "registry.example.com:5000"
        assert s.registries[0].max_age == 6 * 3600
        assert s.leader_election is None

    def test_registry_host_is_normalised(self):
        """Hub aliases and case differences normalise to one registry name."""
        doc = minimal(
            registries=[
                {
                    "host": "index.docker.io",
                    "credentials": {"username": "u", "password_env": "REG_PW"},
                }
            ]
        )
        assert settings_from_mapping(doc, {"REG_PW": "x"}).registries[0].registry == "docker.io"

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("90s", 90),
            ("30m", 1800),
            ("6h", 21600),
            ("1d", 86400),
            ("1h30m", 5400),
            ("500ms", 0.5),
            (120, 120),
        ],
    )
    def test_durations(self, text, seconds):
        """Durations accept unit suffixes, combinations and plain seconds."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["6", "h", "1h 30m", "-1h", "0s", "6hours", 0, -5, "400d"])
    def test_bad_durations(self, text):
        """Anything else is rejected."""
        with pytest.raises(ValueError, match=r"is not a duration|more than 0|at most 365d"):
            parse_duration(text)


class TestProblems:
    def test_every_problem_reported_at_once_with_paths(self):
        """Several mistakes give one report naming each path."""
        doc = minimal()
        doc["marathon"]["timeout_seconds"] = "ten"
        doc["marathon"]["colour"] = "blue"
        doc["registries"].append(
            {
                "host": "other:5000",
                "credentials": {"username": "u", "password_env": "REG_PW2"},
                "max_age": "forever",
            }
        )
        del doc["storage"]
        found = problems(doc)
        assert ("marathon.timeout_seconds: 'ten' is not a duration: use a number of seconds or "
                "e.g. 30s, 5m, 6h") in found
        assert any(p.startswith("marathon.colour: unknown key") for p in found)
        assert "storage: missing required key" in found
        assert any(p.startswith("registries[1].max_age:") for p in found)

    def test_semantic_problems_reported_together(self):
        """Once the shape is right, every semantic problem is listed too."""
        doc = minimal()
        doc["registries"].append(
            {"host": "other:5000", "credentials": {"username": "u", "password_env": "REG_PW2"}}
        )
        doc["marathon"]["ca_file"] = "/nonexistent/ca.pem"
        found = problems(doc)
        assert "registries[1].credentials.password_env: variable REG_PW2 is not set" in found
        assert "marathon.ca_file: file /nonexistent/ca.pem does not exist" in found

    @pytest.mark.parametrize("key", ["password", "token", "secret", "auth"])
    def test_inline_secret_is_refused(self, key):
        """A secret written in the file is named as such, not as an unknown key."""
        doc = minimal()
        doc["registries"][0]["credentials"][key] = "hunter2"
        (found,) = problems(doc)
        assert found.startswith(f"registries[0].credentials.{key}: secrets must not be written")
        assert "hunter2" not in found

    def test_inline_marathon_password_is_refused(self):
        """The Marathon password cannot be inline either."""
        doc = minimal(
            marathon={"urls": ["http://m:8080"], "auth": {"username": "ops", "password": "hunter2"}}
        )
        found = problems(doc)
        assert any(p.startswith("marathon.auth.password: secrets must not") for p in found)

    def test_two_credential_sources(self):
        """A registry takes exactly one credential source."""
        doc = minimal()
        doc["registries"][0]["credentials"]["helper"] = "ecr-login"
        assert any("exactly one credential source" in p for p in problems(doc))

    def test_duplicate_registry(self):
        """The same registry twice (even spelled differently) is an error."""
        doc = minimal()
        doc["registries"].append(
            {
                "host": "Registry.Example.com:5000",
                "credentials": {"username": "u", "password_env": "REG_PW"},
            }
        )
        assert any(
            p.startswith("registries[1].host: Registry.Example.com:5000 is already")
            for p in problems(doc)
        )

    def test_relative_storage_path(self):
        """Storage paths must be absolute."""
        doc = minimal(storage={"filesystem": {"path": "bundles"}})
        assert "storage.filesystem.path: must be an absolute path" in problems(doc)

    def test_not_a_mapping(self):
        """A document that is not a mapping is refused plainly."""
        assert problems(["a"]) == ["(top level): expected a mapping of sections, got a list"]

    def test_bad_listen(self):
        """server.listen must be host:port."""
        doc = minimal(server={"listen": "9102"})
        assert any(p.startswith("server.listen:") for p in problems(doc))

    def test_unreadable_yaml(self, tmp_path):
        """Broken YAML names the line."""
        path = tmp_path / "c.yaml"
        path.write_text("marathon:\n  urls: [\n")
        with pytest.raises(ConfigError, match=r"not valid YAML at line"):
            load_settings(path, {})


class TestShippedFiles:
    def test_schema_is_valid_json_schema(self):
        """The schema itself is a valid 2020-12 schema."""
        jsonschema.Draft202012Validator.check_schema(load_schema())

    def test_example_validates_against_schema(self):
        """The example's active keys have the documented shape."""
        jsonschema.Draft202012Validator(load_schema()).validate(yaml.safe_load(EXAMPLE.read_text()))

    def test_example_loads_with_its_env(self):
        """The example passes the full check when the variables it names are set (but for its
        storage directory, which this host does not have)."""
        settings = load_settings(EXAMPLE, {"REGISTRY_PASSWORD": "x", "MARATHON_PASSWORD": "y"},
                                 storage=False)
        assert settings.registries[0].apps == ("/team-a/*",)


def test_https_with_kms_is_refused():
    """Anonymous https fetches cannot read SSE-KMS objects: say so at start-up."""
    doc = minimal(storage={"s3": {"bucket": "b", "uri_style": "https", "kms_key_id": "k"}})
    assert any(p.startswith("storage.s3.kms_key_id: uri_style https") for p in problems(doc))


def test_password_in_marathon_url_is_refused():
    """A user:password in a Marathon URL is an inline secret, and is not echoed back."""
    (found,) = problems(minimal(marathon={"urls": ["http://ops:hunter2@marathon:8080"]}))
    assert found.startswith("marathon.urls[0]: secrets must not be written")
    assert "hunter2" not in found


def test_unknown_group_is_caught_at_load():
    """check-config names a storage group that does not exist."""
    doc = minimal(storage={"filesystem": {"path": STORAGE, "group": "no-such-group-xyz"}})
    assert "storage.filesystem.group: no group named no-such-group-xyz" in problems(doc)


def test_short_presign_ttl_is_refused():
    """A presign TTL under an hour would restart every app too often."""
    doc = minimal(storage={"s3": {"bucket": "b", "uri_style": "presigned", "presign_ttl": "30m"}})
    assert problems(doc) == ["storage.s3.presign_ttl: must be at least 1h (every re-sign, at "
                             "half the TTL, rewrites and so restarts every opted-in app)"]
