"""Hostile or broken config files end in a clear ConfigError, not a traceback, hang or blow-up."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from controller.config import load_settings, settings_from_mapping
from controller.credentials.dockerconfig import DockerConfigSource
from controller.credentials.password import PasswordSource
from controller.errors import ConfigError, CredentialError
from tests.unit.test_config import STORAGE, check_config, file_problems, minimal, problems

SECRET = "hunter2"
BASE = f"""\
marathon: {{urls: ["http://127.0.0.1:8080"]}}
registries:
  - {{host: "registry.example.com:5000", credentials: {{username: robot, password_env: REG_PW}}}}
storage: {{filesystem: {{path: {STORAGE}}}}}
"""
ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
marathon: *i
"""
"""9**9 strings once expanded; jsonschema's type error would ``repr`` all of them."""


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "config.yaml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


class TestCheckConfigExitsTwo:
    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            (ALIAS_BOMB, "anchors and aliases (&name, *name) are not supported"),
            ("a: " + "[" * 5000 + "]" * 5000, "nested more than 32 levels deep"),
            ("{a: " * 5000 + "1" + "}" * 5000, "nested more than 32 levels deep"),
            (b"marathon: {urls: [\xff]}\n", "the config file is not UTF-8 text (line 1, byte 19)"),
            (BASE + "1: x\n", "(top level): the key 1 is not text"),
            (BASE + "~: x\n", "(top level): the key null is not text"),
            (BASE.replace("http://127.0.0.1:8080", "http://[::1"),
             "marathon.urls[0]: 'http://[::1' is not a valid URL"),
            (BASE + "reconcile: {max_writes_per_second: .nan}\n",
             "reconcile.max_writes_per_second: expected a finite number, got .nan"),
            (BASE + "reconcile: {workers: 2}\nreconcile: {workers: 3}\n",
             "line 6: duplicate key 'reconcile' (first at line 5)"),
            (BASE + "server: {listen: '127.0.0.1:70000'}\n",
             "server.listen: port '70000' is not a number from 1 to 65535"),
        ],
        ids=["alias-bomb", "deep-list", "deep-mapping", "not-utf8", "integer-key", "null-key",
             "broken-ipv6-url", "nan", "duplicate-key", "port-70000"],
    )
    def test_refused_with_its_reason(self, tmp_path, content, expected):
        """check-config exits 2 naming the problem, within 512 MiB and without a traceback."""
        result = check_config(write(tmp_path, content), {"REG_PW": "x"})
        assert (result.returncode, "Traceback" in result.stderr) == (2, False), result.stderr
        assert expected in result.stderr

    def test_named_pipe_does_not_hang(self, tmp_path):
        """A config path that is a named pipe is refused at once instead of waiting for a writer."""
        fifo = tmp_path / "config.yaml"
        os.mkfifo(fifo)
        result = check_config(fifo)
        assert result.returncode == 2
        assert "not a regular file" in result.stderr


class TestFileLevel:
    def test_anchor_is_refused_with_its_line(self, tmp_path):
        """A single harmless-looking anchor is refused too: config files have no need of them."""
        path = write(tmp_path, BASE + "selector: &s {label: a}\n")
        (found,) = file_problems(path)
        assert found == (f"{path}: not valid YAML at line 5, column 11: anchors and aliases "
                         "(&name, *name) are not supported: write each value out")

    def test_file_over_one_mebibyte_is_refused_before_parsing(self, tmp_path):
        """A valid config padded past 1 MiB is refused by size."""
        path = write(tmp_path, BASE + "#" * (1 << 20) + "\n")
        assert file_problems(path) == [f"{path}: cannot read the config file (larger than 1 MiB)"]

    def test_bytes_that_are_not_utf8_are_located_not_quoted(self, tmp_path):
        """Undecodable bytes are reported by line and byte, never echoed."""
        path = write(tmp_path, BASE.encode() + b"# " + SECRET.encode() + b"\xff\n")
        (found,) = file_problems(path)
        assert found == (f"{path}: the config file is not UTF-8 text (line 5, byte 10); save it "
                         "as UTF-8")

    @pytest.mark.parametrize(
        "content",
        [f"marathon: {{urls: ['{SECRET}]}}\n".encode(), f"# {SECRET}\xff".encode("latin-1"),
         f"marathon: '{SECRET}\x01'\n".encode()],
        ids=["broken-yaml", "not-utf8", "control-character"])
    def test_error_keeps_no_trace_of_the_file(self, tmp_path, content):
        """The ConfigError chains nothing: a parser's or decoder's error holds the file's text."""
        with pytest.raises(ConfigError) as info:
            load_settings(write(tmp_path, content), {})
        assert (info.value.__cause__, info.value.__context__) == (None, None)
        assert SECRET not in str(info.value)

    def test_control_character_is_located(self, tmp_path):
        """A control character is named by code point, line and column."""
        path = write(tmp_path, BASE + 'selector: {label: "a\x01"}\n')
        (found,) = file_problems(path)
        assert found.endswith("at line 5, column 21: control character U+0001 is not allowed")

    @pytest.mark.parametrize("value", ["9" * 5000, "0x_", "0b_"],
                             ids=["5000-digits", "hex-without-digits", "binary-without-digits"])
    def test_integer_python_cannot_read(self, tmp_path, value):
        """An integer Python refuses to convert is a YAML problem with its place."""
        path = write(tmp_path, BASE + f"reconcile: {{workers: {value}}}\n")
        (found,) = file_problems(path)
        assert found.endswith("at line 5, column 22: this number cannot be read (too many "
                              "digits, or none): put it in quotes if it is meant as text")

    @pytest.mark.parametrize("value", ["!!binary aGVsbG8=", "!!python/name:os.system", "!x y",
                                       "!!float abc", "!!bool abc", "!!int 1"])
    def test_tags_are_refused(self, tmp_path, value):
        """Explicit tags are refused (some crash PyYAML on a wrong value)."""
        (found,) = file_problems(write(tmp_path, BASE + f"selector: {value}\n"))
        assert found.endswith("tags (!name) are not supported, except !!str: write a plain "
                              "value")

    def test_str_tag_makes_text(self, tmp_path):
        """!!str is the one tag allowed: it makes a number text."""
        path = write(tmp_path, BASE.replace(STORAGE, "!!str 2024"))
        assert file_problems(path) == ["storage.filesystem.path: must be an absolute path"]

    def test_dates_stay_text(self, tmp_path):
        """An unquoted date is text (YAML 1.1 would make it a date object the schema can't name)."""
        path = write(tmp_path, BASE.replace(STORAGE, f"{STORAGE}, uri_prefix: 2024-01-01"))
        (found,) = file_problems(path)
        assert found == ("storage.filesystem.uri_prefix: '2024-01-01' has no scheme (e.g. file://, "
                         "https://)")


class TestReportSize:
    def test_problems_are_capped(self):
        """Thousands of problems are cut to the first fifty and a count of the rest."""
        found = problems(minimal(**{f"key{i}": 1 for i in range(60)}))
        assert len(found) == 51
        assert found[-1] == "… and 10 more problems"


class TestKeys:
    @pytest.mark.parametrize(
        ("line", "expected"),
        [("1: x", "(top level): the key 1 is not text"),
         ("~: x", "(top level): the key null is not text"),
         ("selector: {on: x}", "selector: the key true is not text")],
        ids=["integer", "null", "yes-no-word"])
    def test_key_that_is_not_text(self, tmp_path, line, expected):
        """A key that YAML reads as a number, null or boolean is named with its section."""
        (found,) = file_problems(write(tmp_path, BASE + line + "\n"))
        assert found == expected + " (put it in quotes if it is meant as a name)"

    def test_duplicate_keys_are_named_with_their_lines(self, tmp_path):
        """Every duplicate key is named with both lines, at any depth."""
        path = write(tmp_path, BASE + "server:\n  listen: a:1\n  listen: b:2\nserver: {}\n")
        assert file_problems(path) == [
            f"{path}: line 7: duplicate key 'listen' (first at line 6); remove one of them",
            f"{path}: line 8: duplicate key 'server' (first at line 5); remove one of them",
        ]

    def test_merge_key_is_refused(self, tmp_path):
        """A << merge key is refused like the aliases it is usually used with."""
        (found,) = file_problems(write(tmp_path, BASE + "selector: {<<: {label: a}}\n"))
        assert found.endswith("merge keys (<<) are not supported: write the keys out")


class TestNumbers:
    @pytest.mark.parametrize(
        ("line", "path"),
        [("reconcile: {max_writes_per_second: .nan}", "reconcile.max_writes_per_second"),
         ("reconcile: {resync_seconds: .inf}", "reconcile.resync_seconds"),
         ("reconcile: {timeout_seconds: -.inf}", "reconcile.timeout_seconds"),
         ("leader_election: {zookeeper: 'zk:2181', session_timeout_seconds: .NaN}",
          "leader_election.session_timeout_seconds")],
    )
    def test_not_finite_number_is_refused(self, tmp_path, line, path):
        """.nan, .inf and -.inf pass no number check, so they are refused by name."""
        (found,) = file_problems(write(tmp_path, BASE + line + "\n"))
        assert found.startswith(f"{path}: expected a finite number, got ")

    def test_not_finite_number_from_code_is_refused(self):
        """A NaN from another source (JSON, code) is refused the same way."""
        doc = minimal(reconcile={"max_writes_per_second": math.nan})
        assert problems(doc) == ["reconcile.max_writes_per_second: expected a finite number, "
                                 "got .nan"]

    def test_huge_burst_is_refused(self):
        """A burst far past any sane value is refused (it would overflow a float)."""
        assert problems(minimal(reconcile={"write_burst": 10**400})) == [
            "reconcile.write_burst: must be at most 1000000"]


class TestUrls:
    @pytest.mark.parametrize(
        ("doc", "path"),
        [(minimal(marathon={"urls": ["http://[::1"]}), "marathon.urls[0]"),
         (minimal(marathon={"urls": ["http://m:99999"]}), "marathon.urls[0]"),
         (minimal(storage={"s3": {"bucket": "b", "endpoint_url": "http://[::1"}}),
          "storage.s3.endpoint_url"),
         (minimal(registries=[{"host": "r", "credentials": {
             "ecr": {"region": "us-east-1", "endpoint_url": "https://[vpce"}}}]),
          "registries[0].credentials.ecr.endpoint_url"),
         (minimal(storage={"filesystem": {"path": STORAGE, "uri_prefix": "https://[cdn/x"}}),
          "storage.filesystem.uri_prefix")],
        ids=["ipv6-marathon", "port-marathon", "s3-endpoint", "ecr-endpoint", "uri-prefix"],
    )
    def test_unparseable_url(self, doc, path):
        """A URL urllib cannot split is a problem with its path, not a ValueError."""
        (found,) = problems(doc)
        assert found.startswith(f"{path}: ")
        assert found.endswith("is not a valid URL (check the port, and the [ ] around an IPv6 "
                              "address)")

    def test_broken_url_with_a_password_is_not_echoed(self):
        """A URL holding a password is refused as an inline secret even when it is malformed."""
        (found,) = problems(minimal(storage={"s3": {"bucket": "b", "endpoint_url":
                                                    f"https://key:{SECRET}@[::1"}}))
        assert found.startswith("storage.s3.endpoint_url: secrets must not be written")
        assert SECRET not in found


class TestListen:
    @pytest.mark.parametrize("port", ["70000", "-1", "abc", "0", "\u00b2",
                                      "\u0669\u0661\u0660\u0662"],
                             ids=["70000", "minus-1", "abc", "zero", "superscript-2",
                                  "arabic-indic-digits"])
    def test_invalid_port(self, port):
        """A port outside 1..65535, or not in ASCII digits, is named."""
        assert problems(minimal(server={"listen": f"127.0.0.1:{port}"})) == [
            f"server.listen: port {port!r} is not a number from 1 to 65535"]

    def test_no_port(self):
        """A listen address without a port says what it should look like."""
        assert problems(minimal(server={"listen": "9102"})) == [
            "server.listen: '9102' is not host:port (e.g. 127.0.0.1:9102, or 0.0.0.0:9102 for "
            "every interface)"]

    def test_bracketed_ipv6(self):
        """[::1]:9102 listens on ::1."""
        settings = settings_from_mapping(minimal(server={"listen": "[::1]:9102"}), {"REG_PW": "x"})
        assert (settings.server.host, settings.server.port) == ("::1", 9102)


class TestSecretFilesAtLoad:
    @pytest.mark.parametrize("content", ["", "  \n\t\n"], ids=["empty", "white-space"])
    def test_empty_password_file(self, tmp_path, content):
        """A password file with nothing but white space is refused at load."""
        (tmp_path / "pw").write_text(content)
        doc = minimal(registries=[{"host": "r", "credentials": {"username": "u",
                                                                "password_file": "pw"}}])
        assert problems_at(tmp_path, doc) == [
            f"registries[0].credentials.password_file: file {tmp_path / 'pw'} is empty"]

    def test_empty_token_file(self, tmp_path):
        """An empty Marathon token file is refused at load."""
        (tmp_path / "token").write_text("\n")
        doc = minimal(marathon={"urls": ["http://m:8080"], "auth": {"token_file": "token"}})
        assert problems_at(tmp_path, doc) == [
            f"marathon.auth.token_file: file {tmp_path / 'token'} is empty"]

    def test_oversized_password_file(self, tmp_path):
        """A password file past 64 KiB (a wrong path) is refused without reading it all."""
        (tmp_path / "pw").write_bytes(b"x" * ((64 << 10) + 1))
        doc = minimal(marathon={"urls": ["http://m:8080"],
                                "auth": {"username": "ops", "password_file": "pw"}})
        assert problems_at(tmp_path, doc) == [
            f"marathon.auth.password_file: cannot read file {tmp_path / 'pw'}: larger than 64 KiB"]

    def test_password_file_that_is_not_text(self, tmp_path):
        """A password file that is not UTF-8 is refused without quoting it."""
        (tmp_path / "pw").write_bytes(SECRET.encode() + b"\xff")
        doc = minimal(registries=[{"host": "r", "credentials": {"username": "u",
                                                                "password_file": "pw"}}])
        (found,) = problems_at(tmp_path, doc)
        assert found.endswith("is not UTF-8 text")
        assert SECRET not in found

    def test_oversized_docker_config(self, tmp_path):
        """A docker config past 1 MiB is refused at load."""
        (tmp_path / "config.json").write_bytes(b" " * ((1 << 20) + 1))
        doc = minimal(registries=[{"host": "r", "credentials": {"docker_config": "config.json"}}])
        (found,) = problems_at(tmp_path, doc)
        assert found.endswith("larger than 1 MiB")


def problems_at(base_dir: Path, doc: object) -> list[str]:
    """Like ``problems``, with relative paths resolved against ``base_dir``."""
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(doc, {"REG_PW": "x"}, base_dir=base_dir)
    return info.value.problems


class TestCredentialFileReads:
    async def test_oversized_password_file(self, tmp_path):
        """The running source refuses a password file past 64 KiB."""
        path = tmp_path / "pw"
        path.write_bytes(b"x" * ((64 << 10) + 1))
        with pytest.raises(CredentialError, match=r"larger than 64 KiB$"):
            await PasswordSource("u", env_var=None, file=path, env={}).fetch()

    async def test_password_file_that_is_not_text_leaves_no_trace(self, tmp_path):
        """An undecodable password file's CredentialError neither quotes nor chains it."""
        path = tmp_path / "pw"
        path.write_bytes(SECRET.encode() + b"\xff")
        with pytest.raises(CredentialError) as info:
            await PasswordSource("u", env_var=None, file=path, env={}).fetch()
        assert str(info.value) == f"cannot read password file {path}: not UTF-8 text"
        assert (info.value.__cause__, info.value.__context__) == (None, None)

    async def test_oversized_docker_config(self, tmp_path):
        """The running source refuses a docker config past 1 MiB."""
        path = tmp_path / "config.json"
        path.write_bytes(b" " * ((1 << 20) + 1))
        with pytest.raises(CredentialError, match=r"larger than 1 MiB$"):
            await DockerConfigSource(path, registry="reg.example").fetch()


class TestSecretsAreNotEchoed:
    @pytest.mark.parametrize("value", [f"{SECRET}!", "p@ss word", "1abc"])
    @pytest.mark.parametrize(
        "place", ["marathon.auth.password_env", "marathon.auth.token_env",
                  "registries[0].credentials.password_env"])
    def test_invalid_variable_name(self, place, value):
        """A value that cannot be a variable name is refused without being quoted."""
        doc = minimal()
        if place.startswith("marathon"):
            key = place.rsplit(".", 1)[1]
            doc["marathon"]["auth"] = {key: value, **({"username": "u"} if "password" in key
                                                      else {})}
        else:
            doc["registries"][0]["credentials"]["password_env"] = value
        (found,) = problems(doc)
        assert found == (f"{place}: must name an environment variable (letters, digits, "
                         "underscore); the value is not shown, as it may be a secret")

    def test_valid_but_lower_case_name_is_not_echoed(self):
        """An unset variable whose name has lower-case letters (maybe a password) is not named."""
        doc = minimal()
        doc["registries"][0]["credentials"]["password_env"] = SECRET
        (found,) = problems(doc)
        assert found.startswith("registries[0].credentials.password_env: the variable it names "
                                "is not set")
        assert SECRET not in found

    def test_number_in_a_variable_name_key_is_not_echoed(self):
        """A numeric password put in password_env is not echoed by the type check either."""
        doc = minimal()
        doc["registries"][0]["credentials"]["password_env"] = 918273
        assert problems(doc) == [
            "registries[0].credentials.password_env: expected the name of an environment "
            "variable, got a number"]
