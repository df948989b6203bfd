"""One source for each fact: the settings dataclasses give the schema, its defaults and words."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any

import jsonschema
import pytest
import yaml

from controller import settings as settings_module
from controller.config import load_schema, settings_from_mapping
from controller.settings_schema import SCHEMA_FILE, field_docs
from tests.unit.test_config import minimal

SETTINGS_CLASSES = [cls for name, cls in vars(settings_module).items()
                    if name.endswith("Settings") and is_dataclass(cls)]


def schema_keys(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Each key the schema allows, by path (``[]`` for a list item), with its schema."""
    for name, sub in schema.get("properties", {}).items():
        key = f"{path}.{name}" if path else name
        yield key, sub
        yield from schema_keys(sub, key)
        yield from schema_keys(sub.get("items", {}), key + "[]")


def with_defaults(doc: dict[str, Any], schema: dict[str, Any], *, top: bool = True) -> None:
    """Write every default into ``doc``: in each mapping it has, and in the optional sections.

    Only top-level sections that need no key are added (an empty ``auth`` would mean something).
    """
    for name, sub in schema["properties"].items():
        if top and name not in doc and sub.get("type") == "object" and "required" not in sub:
            doc[name] = {}
        if name not in doc and "default" in sub:
            doc[name] = sub["default"]
        elif isinstance(doc.get(name), dict) and "properties" in sub:
            with_defaults(doc[name], sub, top=False)
        elif isinstance(doc.get(name), list) and "properties" in sub.get("items", {}):
            for item in doc[name]:
                with_defaults(item, sub["items"], top=False)


class TestGeneratedSchema:
    def test_checked_in_schema_is_what_the_settings_generate(self, tmp_path):
        """`python -m controller.settings_schema` writes, byte for byte, the schema checked in."""
        target = tmp_path / "schema.json"
        subprocess.run([sys.executable, "-m", "controller.settings_schema", str(target)],
                       check=True, timeout=60)
        assert target.read_bytes() == SCHEMA_FILE.read_bytes(), (
            "run python -m controller.settings_schema after changing controller/settings.py")

    def test_the_loader_validates_with_it(self):
        """load_schema() is the checked-in schema: the package has one schema file."""
        assert load_schema() == yaml.safe_load(SCHEMA_FILE.read_text(encoding="utf-8"))

    @pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda cls: cls.__name__)
    def test_every_field_has_a_docstring(self, cls):
        """Each setting says what it means: every field has a docstring, the schema's words."""
        docs = field_docs(cls)
        assert [f.name for f in fields(cls) if not docs.get(f.name)] == []

    @pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda cls: cls.__name__)
    def test_every_section_has_a_docstring(self, cls):
        """Each settings class says what it is for (a list item's description in the schema)."""
        assert not cls.__doc__.startswith(f"{cls.__name__}(")  # what dataclass writes without one

    def test_every_key_is_described(self):
        """Every key in the schema carries a description."""
        assert [key for key, sub in schema_keys(load_schema()) if not sub.get("description")] == []


class TestDefaults:
    def test_each_default_is_a_valid_value(self):
        """Each default, written in the file, passes the schema (e.g. 6h is a duration)."""
        schema = load_schema()
        invalid = [key for key, sub in schema_keys(schema) if "default" in sub
                   and not jsonschema.Draft202012Validator(
                       {"$defs": schema["$defs"], **sub}).is_valid(sub["default"])]
        assert invalid == []

    @pytest.mark.parametrize(
        "doc",
        [minimal(),
         minimal(storage={"s3": {"bucket": "b"}}, leader_election={"zookeeper": "zk:2181"})],
        ids=["filesystem", "s3-leader-election"])
    def test_writing_every_default_out_changes_nothing(self, doc):
        """A config that sets each key to its schema default loads as one that leaves it out."""
        explicit = yaml.safe_load(yaml.safe_dump(doc))
        with_defaults(explicit, load_schema())
        assert explicit != doc
        assert settings_from_mapping(explicit, {"REG_PW": "x"}) == settings_from_mapping(
            doc, {"REG_PW": "x"})
