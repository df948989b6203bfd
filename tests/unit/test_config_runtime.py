"""Values that used to pass check-config and then crash or misbehave at run time are refused at
load, with the key; the storage directory must be there; ``offline`` checks values only."""

from __future__ import annotations

import os
from typing import Any

import pytest

from controller.config import load_schema, settings_from_mapping
from controller.errors import ConfigError
from controller.settings import duration_text
from tests.factories import registry_entry
from tests.unit.test_config import STORAGE, minimal, problems


def with_registry(**fields: object) -> dict[str, object]:
    return minimal(registries=[registry_entry(**fields)])


class TestDurationFloors:
    """Each duration key has a floor: a value that parses but is too short to work."""

    FLOORS = {
        "marathon.timeout_seconds": 0.1, "registries[].max_age": 60,
        "registries[].min_validity": 60, "registries[].verify_timeout": 0.1,
        "storage.s3.presign_ttl": 3600, "reconcile.resync_seconds": 1,
        "reconcile.timeout_seconds": 0.1, "reconcile.shutdown_timeout_seconds": 1,
        "leader_election.session_timeout_seconds": 2, "reconcile.fight_window": 1,
        "registries[].refused_login_interval": 5,
    }

    def test_every_duration_key_has_its_floor(self):
        """Every duration in the schema has a ``minimum``: a new duration key must say its
        floor (``Floor`` in ``controller.settings``)."""
        found: dict[str, float] = {}
        stack: list[tuple[str, dict[str, Any]]] = [("", load_schema())]
        while stack:
            path, schema = stack.pop()
            if schema.get("$ref") == "#/$defs/duration":
                found[path] = schema["minimum"]
            for key, value in schema.get("properties", {}).items():
                stack.append((f"{path}.{key}".lstrip("."), value))
            if "items" in schema:
                stack.append((path + "[]", schema["items"]))
        assert found == self.FLOORS

    @staticmethod
    def doc(path: str, value: object) -> dict[str, object]:
        section, key = path.replace("[]", "").replace("storage.s3", "storage").split(".")
        if section == "registries":
            return with_registry(**{key: value})
        if section == "storage":
            return minimal(storage={"s3": {"bucket": "b", key: value}})
        base = {"leader_election": {"zookeeper": "zk:2181"}}.get(section, {})
        original = minimal().get(section, {})
        return minimal(**{section: {**original, **base, key: value}})

    @pytest.mark.parametrize("path", sorted(FLOORS))
    @pytest.mark.parametrize("written", ["number", "text"])
    def test_shorter_is_refused_with_the_floor_and_why(self, path, written):
        """Written as a number (the schema's minimum) or as text (the loader), the same words."""
        floor = self.FLOORS[path]
        value = floor / 2 if written == "number" else f"{round(floor * 500)}ms"
        (found,) = problems(self.doc(path, value))
        where = path.replace("[]", "[0]")
        assert found.startswith(f"{where}: must be at least {duration_text(floor)} (")

    @pytest.mark.parametrize("path", sorted(FLOORS))
    def test_the_floor_itself_is_taken(self, path):
        settings_from_mapping(self.doc(path, duration_text(self.FLOORS[path])), {"REG_PW": "x"})

    def test_the_schema_says_the_floor(self):
        """Editors see the floor: ``minimum`` for numbers, "At least" in the description."""
        reconcile = load_schema()["properties"]["reconcile"]["properties"]
        assert reconcile["resync_seconds"]["minimum"] == 1
        assert reconcile["resync_seconds"]["description"].endswith("At least 1s.")
        assert reconcile["timeout_seconds"]["description"].endswith("At least 100ms.")

    def test_a_microsecond_resync(self):
        assert problems(minimal(reconcile={"resync_seconds": 0.000001})) == [
            "reconcile.resync_seconds: must be at least 1s (each resync lists every opted-in app "
            "from Marathon)"]


class TestValuesThatFailedAtRunTime:
    @pytest.mark.parametrize("host", ["reg.example:99999", "reg.example:0", "[::1]:65536",
                                      "reg.example:000000"])
    def test_registry_port_outside_the_tcp_range(self, host):
        port = host.rpartition(":")[2]
        assert problems(with_registry(host=host)) == [
            f"registries[0].host: port '{port}' is not a number from 1 to 65535"]

    @pytest.mark.parametrize("host", ["reg.example:65535", "[::1]:5000", "[::1]", "reg.example"])
    def test_registry_ports_in_range(self, host):
        settings_from_mapping(with_registry(host=host), {"REG_PW": "x"})

    def test_registry_username_with_a_colon(self):
        """Basic auth (and docker's auth field) would split it into a user and a password."""
        assert problems(with_registry(username="robot:1")) == [
            "registries[0].credentials.username: must not contain ':' (basic auth cannot "
            "carry it)"]

    def test_marathon_username_with_a_colon(self):
        doc = minimal(marathon={"urls": ["http://m:8080"],
                                "auth": {"username": "a:b", "password_env": "REG_PW"}})
        assert problems(doc) == [
            "marathon.auth.username: must not contain ':' (basic auth cannot carry it)"]

    @pytest.mark.parametrize(("url", "says"), [
        ("http://m:8080?x=1", "has a query or fragment"),
        ("http://m:8080/#top", "has a query or fragment"),
        ("http://m:0", "port 0 is not a number from 1 to 65535")])
    def test_marathon_urls_that_no_path_can_follow(self, url, says):
        (found,) = problems(minimal(marathon={"urls": [url]}))
        assert found.startswith(f"marathon.urls[0]: {url!r}")
        assert says in found

    @pytest.mark.parametrize(("prefix", "says"), [
        ("file://mnt/shared", "names a host: write file:///<absolute path> (three slashes), "
                              "e.g. file:///mnt/shared"),
        ("https://cdn.example/b?sig=1", "has a query or fragment: the bundle's name is added "
                                        "at the end")])
    def test_uri_prefixes_no_agent_could_fetch(self, prefix, says):
        """Every app would be rewritten to such a URI: refused before that."""
        (found,) = problems(minimal(storage={"filesystem": {"path": STORAGE,
                                                            "uri_prefix": prefix}}))
        assert found.startswith("storage.filesystem.uri_prefix: ")
        assert found.endswith(says)

    def test_zookeeper_chroot_with_a_relative_part(self):
        """kazoo raises on it when the daemon starts; refused at load instead."""
        doc = minimal(leader_election={"zookeeper": "zk-1:2181,zk-2:2181/a/../b"})
        assert problems(doc) == ["leader_election.zookeeper: the chroot must not have . or .. "
                                 "in it (ZooKeeper paths are absolute)"]

    @pytest.mark.parametrize("doc", [
        minimal(storage={"s3": {"bucket": "b", "region": "us east 1"}}),
        with_registry(credentials={"ecr": {"region": "US_EAST_1"}})])
    def test_aws_region_that_is_no_region(self, doc):
        """A region goes into host names (an https bundle URI, the AWS endpoint)."""
        (found,) = problems(doc)
        assert "is not an AWS region: use lower-case letters, digits and '-'" in found


class TestStorageDirectory:
    def test_missing(self, tmp_path):
        missing = tmp_path / "mnt" / "shraed" / "pullsecrets"
        assert problems(minimal(storage={"filesystem": {"path": str(missing)}})) == [
            f"storage.filesystem.path: {missing} does not exist: is the shared filesystem "
            "mounted on this host?"]
        assert not (tmp_path / "mnt").exists()

    def test_a_file_in_the_way(self, tmp_path):
        (tmp_path / "mnt").write_text("")
        path = tmp_path / "mnt" / "pullsecrets"
        assert problems(minimal(storage={"filesystem": {"path": str(path)}})) == [
            f"storage.filesystem.path: {path} does not exist (a part of it is a file): is the "
            "shared filesystem mounted on this host?"]

    def test_require_mount_on_the_root_filesystem(self, tmp_path):
        if os.stat(tmp_path).st_dev != os.stat("/").st_dev:
            pytest.skip("tmp_path is not on the root filesystem here")
        doc = minimal(storage={"filesystem": {"path": str(tmp_path), "require_mount": True}})
        assert problems(doc) == [
            f"storage.filesystem.path: {tmp_path} is on the root filesystem, not on a mounted "
            "one (require_mount is set): is the shared filesystem mounted on this host?"]

    def test_require_mount_on_another_filesystem(self):
        """/proc is always another filesystem than / (nothing is written: this only loads)."""
        doc = minimal(storage={"filesystem": {"path": "/proc", "require_mount": True}})
        assert settings_from_mapping(doc, {"REG_PW": "x"}).storage.filesystem.require_mount

    def test_storage_false_leaves_it_out(self, tmp_path):
        doc = minimal(storage={"filesystem": {"path": str(tmp_path / "nope")}})
        settings_from_mapping(doc, {"REG_PW": "x"}, storage=False)


class TestOffline:
    def test_nothing_on_this_host_is_asked(self, tmp_path):
        """Files, variables, a group and the storage directory: none need be there."""
        doc = minimal(
            marathon={"urls": ["http://m:8080"], "ca_file": "ca.pem",
                      "auth": {"username": "ops", "password_file": "nope"}},
            registries=[registry_entry(password_env="UNSET"),
                        registry_entry("other.example", credentials={"docker_config": "c.json"})],
            storage={"filesystem": {"path": str(tmp_path / "nope"), "group": "no-such-group-x",
                                    "require_mount": True}})
        with pytest.raises(ConfigError):
            settings_from_mapping(doc, {}, base_dir=tmp_path)
        settings = settings_from_mapping(doc, {}, base_dir=tmp_path, offline=True)
        assert settings.marathon.ca_file == tmp_path / "ca.pem"

    def test_values_are_still_checked(self):
        doc = minimal(reconcile={"workers": 0, "resync_seconds": "0.5s"})
        with pytest.raises(ConfigError) as info:
            settings_from_mapping(doc, {}, offline=True)
        assert info.value.problems == ["reconcile.workers: must be at least 1"]

