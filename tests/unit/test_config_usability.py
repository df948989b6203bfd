"""Config features and messages that help operators: names, relative paths, durations, words."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from controller import config
from controller.config import load_schema, settings_from_mapping
from controller.plan import bundle_name
from controller.settings import ControllerSettings, Settings
from controller.settingtree import pattern_words
from controller.simulator import MarathonSimulator, MarathonState
from tests.unit.test_config import (
    check_config,
    example_here,
    file_problems,
    minimal,
    problems,
)

ENV = {"REG_PW": "x"}


def settings(doc: dict[str, Any], **kwargs: Any) -> Settings:
    return settings_from_mapping(doc, ENV, **kwargs)


class TestControllerName:
    def test_default(self):
        """Without a controller section the name is "default"."""
        assert settings(minimal()).controller == ControllerSettings(name="default")

    @pytest.mark.parametrize("name", ["prod-east", "a", "0", "a" * 40, "a-b-c9"])
    def test_valid(self, name):
        """Lower-case letters, digits and inner dashes, 1 to 40 characters, are a name."""
        assert settings(minimal(controller={"name": name})).controller.name == name

    @pytest.mark.parametrize("name", ["", "Prod", "-a", "a-", "a_b", "a" * 41, "a.b"])
    def test_invalid(self, name):
        """Anything else is refused in words, not with the pattern."""
        assert problems(minimal(controller={"name": name})) == [
            f"controller.name: {name!r} is not a controller name: use 1 to 40 lower-case "
            "letters, digits and '-', starting and ending with a letter or digit (e.g. prod-east)"]

    def test_unknown_key_in_section(self):
        """The section takes only name."""
        assert problems(minimal(controller={"id": "x"})) == [
            "controller.id: unknown key (allowed: name)"]


class TestRelativePaths:
    @pytest.mark.parametrize(
        ("section", "attribute"),
        [({"marathon": {"urls": ["http://m:8080"], "auth": {"username": "u",
                                                            "password_file": "s/file"}}},
          lambda s: s.marathon.auth.password_file),
         ({"marathon": {"urls": ["http://m:8080"], "auth": {"token_file": "s/file"}}},
          lambda s: s.marathon.auth.token_file),
         ({"marathon": {"urls": ["http://m:8080"], "ca_file": "s/file"}},
          lambda s: s.marathon.ca_file),
         ({"registries": [{"host": "r", "credentials": {"username": "u",
                                                         "password_file": "s/file"}}]},
          lambda s: s.registries[0].credentials.password_file),
         ({"registries": [{"host": "r", "credentials": {"docker_config": "s/file"}}]},
          lambda s: s.registries[0].credentials.docker_config)],
        ids=["marathon-password", "marathon-token", "ca", "registry-password", "docker-config"],
    )
    def test_resolved_against_the_config_directory(self, tmp_path, monkeypatch, section,
                                                   attribute):
        """A relative file path means the same file whatever the working directory."""
        conf = tmp_path / "etc"
        (conf / "s").mkdir(parents=True)
        (conf / "s" / "file").write_text("secret\n")
        (conf / "config.yaml").write_text(yaml.safe_dump(minimal(**section)))
        monkeypatch.chdir(tmp_path)
        assert attribute(config.load_settings(conf / "config.yaml", ENV)) == conf / "s" / "file"

    def test_settings_from_mapping_takes_a_base_directory(self, tmp_path):
        """Code that builds settings without a file names the directory to resolve against."""
        (tmp_path / "pw").write_text("secret")
        doc = minimal(registries=[{"host": "r", "credentials": {"username": "u",
                                                                "password_file": "pw"}}])
        assert settings(doc, base_dir=tmp_path).registries[0].credentials.password_file == \
            tmp_path / "pw"

    def test_default_base_is_the_working_directory(self, tmp_path, monkeypatch):
        """Without a base directory, relative paths are relative to the working directory."""
        (tmp_path / "pw").write_text("secret")
        monkeypatch.chdir(tmp_path)
        doc = minimal(registries=[{"host": "r", "credentials": {"username": "u",
                                                                "password_file": "pw"}}])
        assert settings(doc).registries[0].credentials.password_file == tmp_path / "pw"

    def test_missing_file_is_named_by_its_resolved_path(self, tmp_path):
        """The problem shows where the controller looked."""
        doc = minimal(marathon={"urls": ["http://m:8080"], "ca_file": "ca.pem"})
        with pytest.raises(config.ConfigError) as info:
            settings(doc, base_dir=tmp_path)
        assert info.value.problems == [f"marathon.ca_file: file {tmp_path / 'ca.pem'} does not "
                                       "exist"]


class TestDurations:
    @pytest.mark.parametrize(
        ("section", "key", "value", "seconds"),
        [("marathon", "timeout_seconds", "30s", 30),
         ("reconcile", "resync_seconds", "5m", 300),
         ("reconcile", "timeout_seconds", "30s", 30),
         ("reconcile", "shutdown_timeout_seconds", "1m30s", 90),
         ("leader_election", "session_timeout_seconds", "15s", 15),
         ("reconcile", "resync_seconds", 120, 120)],
    )
    def test_every_duration_key_takes_units(self, section, key, value, seconds):
        """Each *_seconds key takes 30s, 5m, 6h as well as a number."""
        doc = minimal()
        sections = {"marathon": doc["marathon"], "reconcile": {},
                    "leader_election": {"zookeeper": "zk:2181"}}
        sections[section][key] = value
        doc.update(sections)
        assert getattr(getattr(settings(doc), section), key) == seconds

    def test_session_timeout_under_two_seconds(self):
        """ZooKeeper sessions shorter than 2 s are refused, also when written with a unit."""
        doc = minimal(leader_election={"zookeeper": "zk:2181", "session_timeout_seconds": "1s"})
        assert problems(doc) == ["leader_election.session_timeout_seconds: must be at least 2s "
                                 "(ZooKeeper's shortest session)"]

    @pytest.mark.parametrize("zero", [0, "0s"])
    def test_zero_is_refused(self, zero):
        """A zero duration is refused with what is allowed."""
        assert problems(minimal(reconcile={"timeout_seconds": zero})) == [
            "reconcile.timeout_seconds: must be at least 100ms (it bounds a whole reconcile: "
            "reading and writing an app, or a registry's refresh with its login)"]


class TestMarathonUrls:
    @pytest.mark.parametrize(
        ("url", "base"),
        [("http://host:8080/v2/apps", "http://host:8080"),
         ("http://host:8080/v2", "http://host:8080"),
         ("https://dcos.example/service/marathon/v2/apps?embed=x",
          "https://dcos.example/service/marathon")],
    )
    def test_api_path_is_refused_with_the_base_url(self, url, base):
        """A URL with /v2 says to use the base URL, and which one."""
        assert problems(minimal(marathon={"urls": [url]})) == [
            f"marathon.urls[0]: {url!r} includes the API path: use the base URL, e.g. {base}"]

    def test_path_prefix_without_v2_is_kept(self):
        """A Marathon behind a path prefix is a base URL."""
        url = "https://dcos.example/service/marathon"
        assert settings(minimal(marathon={"urls": [url + "/"]})).marathon.urls == (url,)


class TestMessagesInWords:
    @pytest.mark.parametrize(
        ("doc", "expected"),
        [(minimal(reconcile={"resync_seconds": "6 hours"}),
          "reconcile.resync_seconds: '6 hours' is not a duration: use a number of seconds or "
          "e.g. 30s, 5m, 6h"),
         (minimal(reconcile={"resync_seconds": [1]}),
          "reconcile.resync_seconds: expected a duration, got a list"),
         (minimal(selector=None), "selector: expected a mapping, got nothing (null)"),
         (minimal(registries={"host": "r"}), "registries: expected a list, got a mapping"),
         (minimal(reconcile={"workers": "4"}),
          "reconcile.workers: expected a whole number, got text"),
         (minimal(reconcile={"dry_run": "no"}),
          "reconcile.dry_run: expected true or false, got text"),
         (minimal(storage={"s3": {"bucket": "b", "prefix": 2024}}),
          "storage.s3.prefix: expected text, got the number 2024 (put it in quotes if it is "
          "meant as text)"),
         (minimal(marathon={"urls": []}), "marathon.urls: must not be empty"),
         (minimal(marathon={"urls": [""]}), "marathon.urls[0]: must not be empty"),
         (minimal(reconcile={"workers": 0}), "reconcile.workers: must be at least 1"),
         (minimal(reconcile={"workers": 65}), "reconcile.workers: must be at most 64"),
         (minimal(reconcile={"max_writes_per_second": 0}),
          "reconcile.max_writes_per_second: must be more than 0"),
         (minimal(logging={"level": "loud"}),
          "logging.level: must be one of 'debug', 'info', 'warning', 'error'"),
         (minimal(selector={"label": "a b"}),
          "selector.label: 'a b' is not a label name: use letters, digits, '-', '_' and '.'"),
         (minimal(registries=[{"host": "r", "credentials": {"username": "u",
                                                            "password_env": "REG_PW"},
                               "apps": ["shop/*"]}]),
          "registries[0].apps[0]: 'shop/*' is not an app glob: app globs start with / (e.g. "
          "/team-a/*)"),
         (minimal(registries=[{"host": "r", "credentials": {"ecr": {
             "region": "us-east-1", "registry_id": "12345", "role_arn": "role/pull"}}}]),
          "registries[0].credentials.ecr.registry_id: '12345' is not an AWS account id: write "
          "its 12 digits in quotes"),
         (minimal(registries=[{"host": "r", "credentials": {"helper": "docker-credential-x y"}}]),
          "registries[0].credentials.helper: 'docker-credential-x y' is not a credential helper "
          "name: use the part after docker-credential- (letters, digits, '.', '_' and '-'), "
          "e.g. ecr-login"),
         (minimal(storage={"filesystem": {"path": "/b", "group": -1}}),
          "storage.filesystem.group: must be at least 0")],
        ids=["duration-pattern", "duration-type", "null-section", "list-type", "integer-type",
             "boolean-type", "text-type", "min-items", "min-length", "minimum", "maximum",
             "exclusive-minimum", "enum", "label-pattern", "app-glob", "account-id", "helper",
             "group-minimum"],
    )
    def test_schema_error_in_words(self, doc, expected):
        """Each kind of schema error says what is wrong and what is allowed, in words."""
        assert expected in problems(doc)

    def test_every_schema_keyword_has_a_case_above(self):
        """A keyword added to the schema needs its own wording (and a case in the table above)."""
        used = {key for schema in _schemas(load_schema()) for key in schema}
        assert used & VALIDATION_KEYWORDS == WORDED_KEYWORDS

    def test_every_pattern_has_words(self):
        """Every pattern in the schema has a noun and a rule for its messages."""
        patterns = {s["pattern"] for s in _schemas(load_schema()) if "pattern" in s}
        assert patterns <= set(pattern_words())

    def test_top_level_not_a_mapping(self):
        """A document that is not a mapping says what it is instead."""
        assert problems(None) == ["(top level): expected a mapping of sections, got nothing "
                                  "(null)"]


VALIDATION_KEYWORDS = {
    "type", "enum", "const", "pattern", "minLength", "maxLength", "minItems", "maxItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "required",
    "additionalProperties", "uniqueItems", "format", "multipleOf", "minProperties",
    "maxProperties", "dependentRequired", "oneOf", "anyOf", "allOf", "not", "if",
    "propertyNames", "contains", "patternProperties", "unevaluatedProperties",
}
WORDED_KEYWORDS = {"type", "enum", "pattern", "minLength", "minItems", "minimum", "maximum",
                   "exclusiveMinimum", "required", "additionalProperties"}


def _schemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``schema`` and every schema inside it (properties, items, definitions)."""
    yield schema
    for key in ("properties", "$defs"):
        for sub in schema.get(key, {}).values():
            yield from _schemas(sub)
    if "items" in schema:
        yield from _schemas(schema["items"])


class TestYamlErrors:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("marathon:\n\turls: [x]\n",
          "at line 2, column 1: found a tab character where indentation is expected (indent "
          "with spaces)"),
         ("marathon: {urls: [x\n",
          "at line 2, column 1: expected ',' or ']', but got the end of the file"),
         ("marathon: 'x\n",
          "at line 2, column 1: the file ends inside a quoted value (a closing quote is missing)"),
         ("marathon: a: b\n",
          "at line 1, column 12: found ':' where no key can start (put a value that contains "
          "': ' in quotes, or fix the indentation)"),
         ("marathon: @x\n",
          "at line 1, column 11: @ cannot start a value here (put the value in quotes)"),
         ("a: 1\n---\nb: 2\n",
          "at line 2, column 1: found a second document (---); a config file holds one")],
        ids=["tab", "unclosed-list", "unclosed-quote", "colon", "at-sign", "two-documents"],
    )
    def test_reason_line_and_column(self, tmp_path, text, expected):
        """A YAML error gives its reason in words with the line and column."""
        path = tmp_path / "c.yaml"
        path.write_text(text)
        assert file_problems(path) == [f"{path}: not valid YAML {expected}"]


class TestEnvVars:
    def test_empty_variable_is_empty_not_unset(self):
        """An empty variable is reported as empty."""
        assert problems(minimal(), {"REG_PW": ""}) == [
            "registries[0].credentials.password_env: variable REG_PW is empty"]

    def test_unset_variable(self):
        """A missing variable is reported as not set."""
        assert problems(minimal(), {"OTHER": "x"}) == [
            "registries[0].credentials.password_env: variable REG_PW is not set"]


class TestNoRegistries:
    def test_empty_list_is_allowed(self):
        """registries: [] loads: the controller then only removes its entries."""
        assert settings(minimal(registries=[])).registries == ()

    def test_check_config_reports_zero_registries(self, tmp_path):
        """check-config accepts it and says so."""
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(minimal(registries=[])))
        result = check_config(path)
        assert (result.returncode, result.stdout) == (0, f"{path}: OK (0 registries)\n")

    async def test_reconcile_removes_the_controllers_entries(self, tmp_path):
        """With no registries, reconcile --once removes the controller's fetch entry only."""
        bundles = tmp_path / "bundles"
        bundles.mkdir()
        ours = {"uri": f"file://{bundles}/{bundle_name('registry.example.com:5000')}",
                "extract": True, "cache": False, "executable": False}
        theirs = {"uri": "https://example.com/app.tgz", "extract": True, "cache": False,
                  "executable": False}
        state = MarathonState(deployment_seconds=0)
        state.load_apps([{"id": "/a/web", "cmd": "x", "labels": {"pullsecret.enabled": "true"},
                          "container": {"type": "DOCKER", "docker": {
                              "image": "registry.example.com:5000/a/web:1"}},
                          "fetch": [ours, theirs]}])
        async with MarathonSimulator(state) as sim:
            path = tmp_path / "c.yaml"
            path.write_text(yaml.safe_dump({"marathon": {"urls": [sim.url]}, "registries": [],
                                            "storage": {"filesystem": {"path": str(bundles)}}}))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "controller", "reconcile", "--once", "--config", str(path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
        assert [f["uri"] for f in state.get_app("/a/web")["fetch"]] == [theirs["uri"]]


class TestShippedExample:
    def test_passes_check_config_with_its_variables_set(self, tmp_path):
        """The example passes check-config once the two variables it names are set, on a host
        that has its storage directory."""
        result = check_config(example_here(tmp_path),
                              {"REGISTRY_PASSWORD": "x", "MARATHON_PASSWORD": "y"})
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout.endswith("OK (1 registry)\n")

    def test_names_the_variables_it_needs(self, tmp_path):
        """Without them, check-config names exactly those two variables."""
        assert file_problems(example_here(tmp_path), {}) == [
            "marathon.auth.password_env: variable MARATHON_PASSWORD is not set",
            "registries[0].credentials.password_env: variable REGISTRY_PASSWORD is not set"]
