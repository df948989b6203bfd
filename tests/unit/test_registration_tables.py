"""A credential kind or a storage backend is one module and one table entry.

This module is such a module twice over: a stub credential kind (``static: {username,
token_file}``) and a stub storage backend (``stub: {home, ttl}``), each registered with one entry
in its port's table (``controller.credentials.kinds``, ``controller.storage.backends``) and
nothing else. From the entry follow the schema (as ``python -m controller.settings_schema``
would write it), the loader's settings, checks and messages, and the adapter the wiring builds.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import grimp
import jsonschema
import pytest

from controller import config
from controller.config import load_schema, settings_from_mapping
from controller.credentials.kinds import CREDENTIAL_KINDS, CredentialKind
from controller.errors import ConfigError
from controller.model import RegistryCredential, Secret
from controller.settings import (
    CredentialSettings,
    Duration,
    Floor,
    Pattern,
    RegistrySettings,
    StorageSettings,
    Text,
)
from controller.settings_schema import json_schema
from controller.settingtables import Choice, ConfigChecks
from controller.settingtree import TABLES
from controller.storage.backends import STORAGE_BACKENDS
from controller.storage.memory import MemoryStore
from controller.wiring import credential_source, store_from_settings

HOST = "registry.test:5000"


# -- the stub credential kind: its settings, its check, its source and factory, its entry ------

@dataclass(frozen=True, slots=True, kw_only=True)
class StaticSettings:
    """A username, and a token kept in a file."""

    username: Text
    """Registry user."""
    token_file: Path
    """File that holds the token."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticCredentials(CredentialSettings):
    """A token in a file, with its own username."""

    static: StaticSettings
    """A username and a token in a file (a stub kind)."""


def _static(checks: ConfigChecks, path: str, data: dict[str, Any]) -> StaticSettings:
    checks.basic_auth_username(path, data)
    return StaticSettings(**checks.given(path, data, {"token_file": checks.secret_file}))


class StaticSource:
    """The token file's text, read on each call."""

    expiring = False

    def __init__(self, settings: StaticSettings) -> None:
        self.settings = settings

    async def fetch(self) -> RegistryCredential:
        token = self.settings.token_file.read_text(encoding="utf-8").strip()
        return RegistryCredential(username=self.settings.username, password=Secret(token))


def static_source(registry: RegistrySettings, env: dict[str, str]) -> StaticSource:
    assert isinstance(registry.credentials, StaticCredentials)
    return StaticSource(registry.credentials.static)


STATIC = CredentialKind(key="static", settings=StaticCredentials, username=False, check=_static,
                        factory=f"{__name__}:static_source")


# -- the stub storage backend ------------------------------------------------------------------

MEMORY_URI = Pattern(regex="^memory://", noun="a memory URI", rule="start it with memory://")


@dataclass(frozen=True, slots=True, kw_only=True)
class StubSettings:
    """Bundles kept in this process's memory."""

    home: Annotated[str, MEMORY_URI]
    """Where tasks would fetch the bundles from."""
    ttl: Annotated[Duration, Floor(seconds=60, why="a stub needs a minute")] = 600.0
    """How long a bundle would last."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StubStorage(StorageSettings):
    """Bundles in memory."""

    stub: StubSettings
    """A stub backend, in memory."""


def _stub(checks: ConfigChecks, path: str, data: dict[str, Any]) -> StubSettings:
    return StubSettings(**checks.given(path, data, {"ttl": checks.duration}))


def stub_store(settings: StorageSettings) -> MemoryStore:
    assert isinstance(settings, StubStorage)
    return MemoryStore(settings.stub.home)


STUB = Choice(key="stub", settings=StubStorage, check=_stub, factory=f"{__name__}:stub_store")


# -- registering them --------------------------------------------------------------------------

@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both stubs registered, and the loader validating with the schema regenerated from the
    tables (what ``python -m controller.settings_schema`` writes after a kind is added)."""
    for table, entry in ((CREDENTIAL_KINDS, STATIC), (STORAGE_BACKENDS, STUB)):
        monkeypatch.setattr(table, "entries", dict(table.entries))
        table.register(entry)
    monkeypatch.setattr(config, "config_schema", json_schema)


def doc(credentials: dict[str, Any], storage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"marathon": {"urls": ["http://127.0.0.1:8080"]},
            "registries": [{"host": HOST, "credentials": credentials}],
            "storage": storage or {"stub": {"home": "memory://bundles"}}}


def static(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    (tmp_path / "token").write_text("t0ken\n", encoding="utf-8")
    return {"static": {"username": "robot", "token_file": "token"}, **extra}


def problems(document: dict[str, Any], base_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(document, {}, base_dir=base_dir)
    return info.value.problems


class TestStubCredentialKind:
    def test_the_checked_in_schema_does_not_know_it(self, tmp_path):
        """Without their entries, ``static`` and ``stub`` are unknown keys: what follows is the
        entries' doing."""
        assert problems(doc(static(tmp_path)), tmp_path) == [
            "registries[0].credentials.static: unknown key (allowed: docker_config, ecr, helper, "
            "password_env, password_file, username)",
            "storage.stub: unknown key (allowed: filesystem, previous_locations, s3)"]

    def test_the_schema_describes_it(self, registered, tmp_path):
        """Its key, with its description (the field's docstring) and its own keys; a config
        that uses it is valid, and one the checked-in schema refuses."""
        schema = json_schema()
        credentials = schema["properties"]["registries"]["items"]["properties"]["credentials"]
        assert list(credentials["properties"])[-1] == "static"
        assert credentials["properties"]["static"] == {
            "description": "A username and a token in a file (a stub kind).",
            "type": "object", "additionalProperties": False,
            "required": ["username", "token_file"],
            "properties": {
                "username": {"description": "Registry user.", "type": "string", "minLength": 1},
                "token_file": {"description": "File that holds the token.", "type": "string",
                               "minLength": 1}}}
        document = doc(static(tmp_path))
        jsonschema.Draft202012Validator(schema).validate(document)
        assert not jsonschema.Draft202012Validator(load_schema()).is_valid(document)

    def test_the_loader_builds_its_settings(self, registered, tmp_path):
        """Its dataclass, with the token file resolved against the config's directory."""
        settings = settings_from_mapping(doc(static(tmp_path)), {}, base_dir=tmp_path)
        assert settings.registries[0].credentials == StaticCredentials(
            static=StaticSettings(username="robot", token_file=tmp_path / "token"))

    def test_the_loader_checks_it(self, registered, tmp_path):
        """Its check (a missing file), the table's rules (no top-level username with it, one
        kind at a time, its key in the list) and the schema's (an unknown key in it)."""
        credentials = {"static": {"username": "robot", "token_file": "gone"},
                       "username": "x", "helper": "pass"}
        assert problems(doc(credentials), tmp_path) == [
            "registries[0].credentials: set exactly one credential source: username with "
            "password_env or password_file, docker_config, helper, ecr, or static",
            "registries[0].credentials.username: not used with helper",
            f"registries[0].credentials.static.token_file: file {tmp_path / 'gone'} does not "
            "exist"]
        assert problems(doc({"static": {"username": "r", "token_file": "t", "token": "x"}}),
                        tmp_path) == [
            "registries[0].credentials.static.token: secrets must not be written in the config "
            "file; name a file or an environment variable instead (e.g. password_file, "
            "password_env)"]

    def test_the_wiring_builds_its_source(self, registered, tmp_path):
        """The wiring imports the entry's factory and builds the source with it."""
        settings = settings_from_mapping(doc(static(tmp_path)), {}, base_dir=tmp_path)
        source = credential_source(settings.registries[0], {})
        assert isinstance(source, StaticSource)
        credential = asyncio.run(source.fetch())
        assert (credential.username, credential.password.reveal()) == ("robot", "t0ken")


class TestStubStorageBackend:
    def test_the_loader_and_the_wiring_follow(self, registered, tmp_path):
        """Its settings, after the shared keys' check, and the store its factory builds."""
        storage = {"stub": {"home": "memory://b", "ttl": "2m"},
                   "previous_locations": ["file:///mnt/old/"]}
        settings = settings_from_mapping(doc(static(tmp_path), storage), {}, base_dir=tmp_path)
        assert settings.storage == StubStorage(stub=StubSettings(home="memory://b", ttl=120.0),
                                               previous_locations=("file:///mnt/old",))
        assert store_from_settings(settings.storage).home == "memory://b"

    @pytest.mark.parametrize(("storage", "problem"), [
        ({"stub": {"home": "memory://b", "ttl": "30s"}},
         "storage.stub.ttl: must be at least 1m (a stub needs a minute)"),
        ({"stub": {"home": "memory://b", "ttl": 30}},
         "storage.stub.ttl: must be at least 1m (a stub needs a minute)"),
        ({"stub": {"home": "b"}}, "storage.stub.home: 'b' is not a memory URI: start it with "
                                  "memory://"),
        ({"stub": {"home": "memory://b"}, "s3": {"bucket": "b"}},
         "storage: set exactly one backend: filesystem, s3, or stub")],
        ids=["floor", "floor-in-schema", "pattern-words", "exactly-one"])
    def test_its_problems_are_worded(self, registered, tmp_path, storage, problem):
        """Its duration floor, whether the loader or the schema finds it, and the words of its
        pattern come from its dataclass; its key joins the table's message."""
        assert problems(doc(static(tmp_path), storage), tmp_path) == [problem]


class TestTables:
    def test_an_entry_must_fit_its_table(self, monkeypatch):
        """An entry's settings subclass the section's, with its key as their one own field; a
        key is registered once."""
        monkeypatch.setattr(STORAGE_BACKENDS, "entries", dict(STORAGE_BACKENDS.entries))
        with pytest.raises(TypeError, match="StubSettings must subclass StorageSettings"):
            STORAGE_BACKENDS.register(Choice(key="stub", settings=StubSettings, factory="x:y"))
        with pytest.raises(TypeError, match="with home as its one field"):
            STORAGE_BACKENDS.register(Choice(key="home", settings=StubStorage, factory="x:y"))
        with pytest.raises(ValueError, match="s3 is already in the table"):
            STORAGE_BACKENDS.register(Choice(key="s3", settings=StubStorage, factory="x:y"))

    @pytest.mark.parametrize(("table", "entry"), [
        (table, entry) for table in TABLES for entry in table.entries.values()],
        ids=lambda value: getattr(value, "key", ""))
    def test_each_factory_is_there(self, table, entry):
        """Each factory an entry names exists, with the port's signature: (registry, env) for a
        credential source, (storage) for a store."""
        module, _, name = entry.factory.partition(":")
        factory = getattr(importlib.import_module(module), name)
        parameters = list(inspect.signature(factory).parameters)
        assert parameters == (["registry", "env"] if table is CREDENTIAL_KINDS else ["settings"])

    def test_only_the_wiring_imports_an_adapter(self):
        """No module names an adapter a table names, and no adapter reaches another: a new
        adapter is covered without being listed anywhere else (``pyproject.toml``'s contracts
        list the adapters of their day)."""
        graph = grimp.build_graph("controller")
        adapters = sorted({entry.factory.partition(":")[0] for table in TABLES
                           for entry in table.entries.values()})
        importers = {adapter: graph.find_modules_that_directly_import(adapter)
                     for adapter in adapters}
        assert importers == {adapter: ({"controller.cli"} if adapter == "controller.storage.fs"
                                       else set()) for adapter in adapters}
        assert [(a, b) for a in adapters for b in adapters
                if a != b and graph.chain_exists(importer=a, imported=b)] == []
