"""One source for each fact: the settings dataclasses give the schema, its defaults and words."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any

import jsonschema
import pytest
import yaml

from controller import settings as settings_module
from controller.config import load_schema, parse_duration, settings_from_mapping
from controller.settings_schema import SCHEMA_FILE, field_docs
from controller.settingtree import TABLES, floor_at, type_hints
from tests.unit.test_config import EXAMPLE, ROOT, minimal

SETTINGS_CLASSES = [cls for name, cls in vars(settings_module).items()
                    if name.endswith("Settings") and is_dataclass(cls)] + [
    cls for table in TABLES for entry in table.entries.values() for cls in (
        entry.settings, *(hint for hint in type_hints(entry.settings).values()
                          if is_dataclass(hint)))]
"""The settings dataclasses, the registration tables' included (with what their keys hold)."""
ILLUSTRATIONS = {"registries[].apps", "storage.s3.prefix"}
"""Keys the example sets to an example value instead of the default (its header says so)."""
_COMMENTED_CODE = re.compile(r"(?P<indent> *)#(?P<code>[^ #].*| {2,}\S.*)")


def schema_keys(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Each key the schema allows, by path (``[]`` for a list item), with its schema."""
    for name, sub in schema.get("properties", {}).items():
        key = f"{path}.{name}" if path else name
        yield key, sub
        yield from schema_keys(sub, key)
        yield from schema_keys(sub.get("items", {}), key + "[]")


def example_keys() -> dict[str, list[object]]:
    """Each key the example sets or shows commented out, by path, with the values it shows.

    Commented-out YAML starts with ``#`` and no space (``#ca_file: …``); lines that continue it
    keep the ``#`` in the same column and indent after it (``#  bucket: …``). Prose comments
    start with ``# ``. Uncommenting gives one document whose mappings may repeat a key.
    """
    lines, code_indent = [], None
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _COMMENTED_CODE.fullmatch(line)
        if match and (not match["code"].startswith(" ") or match["indent"] == code_indent):
            lines.append(match["indent"] + match["code"])
            code_indent = match["indent"]
        else:
            lines.append(line)
            code_indent = None
    found: dict[str, list[object]] = {}
    stack: list[tuple[str, yaml.Node]] = [("", yaml.compose("\n".join(lines)))]
    while stack:
        path, node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = f"{path}.{key_node.value}" if path else key_node.value
                found.setdefault(key, []).append(yaml.SafeLoader("").construct_document(value_node))
                stack.append((key, value_node))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((path + "[]", item) for item in node.value)
    return found


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
        docs, own = field_docs(cls), vars(cls)["__annotations__"]
        assert [f.name for f in fields(cls) if f.name in own and not docs.get(f.name)] == []

    @pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda cls: cls.__name__)
    def test_every_section_has_a_docstring(self, cls):
        """Each settings class says what it is for (a list item's description in the schema)."""
        assert not cls.__doc__.startswith(f"{cls.__name__}(")  # what dataclass writes without one

    def test_every_key_is_described(self):
        """Every key in the schema carries a description."""
        assert [key for key, sub in schema_keys(load_schema()) if not sub.get("description")] == []

    def test_the_loader_finds_each_keys_floor(self):
        """``floor_at`` (the loader's, which reads only the sections along a path) gives every
        key the floor the schema states: a duration's ``minimum``, none for any other key."""
        found = {key: floor_at(key.replace("[]", "[0]")) for key, _ in schema_keys(load_schema())}
        expected = {key: sub.get("minimum") if sub.get("$ref") == "#/$defs/duration" else None
                    for key, sub in schema_keys(load_schema())}
        assert {key: floor and floor.seconds for key, floor in found.items()} == expected
        assert sum(v is not None for v in expected.values()) >= 10
        assert floor_at("reconcile.no_such_key") is None
        assert floor_at("reconcile.resync_seconds.deeper") is None


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


class TestExampleKeys:
    def test_every_example_key_is_in_the_schema(self):
        """The example sets or shows no key (active or commented out) the loader would refuse."""
        assert set(example_keys()) - {key for key, _ in schema_keys(load_schema())} == set()

    def test_every_schema_key_is_in_the_example(self):
        """The example documents every key, at its place, active or commented out."""
        assert {key for key, _ in schema_keys(load_schema())} - set(example_keys()) == set()

    def test_the_example_shows_each_default(self):
        """Where a key has a default, the example shows it set to that default."""
        shown = example_keys()
        wrong = {}
        for key, sub in schema_keys(load_schema()):
            if "default" in sub and key not in ILLUSTRATIONS:
                same = (parse_duration if sub.get("$ref") == "#/$defs/duration"
                        else lambda value: value)
                if any(same(value) != same(sub["default"]) for value in shown[key]):
                    wrong[key] = (shown[key], sub["default"])
        assert wrong == {}

    def test_illustrations_differ_from_the_default(self):
        """The keys excused from showing their default do show something else."""
        shown, schema = example_keys(), dict(schema_keys(load_schema()))
        assert all(shown[key] != [schema[key]["default"]] for key in ILLUSTRATIONS)


class TestReadmeTable:
    """README's configuration table restates keys and defaults for readers; it must not drift."""

    @staticmethod
    def rows() -> list[tuple[list[str], list[str]]]:
        """The (keys, defaults) of each row of the table under README's "### Configuration"."""
        text = (ROOT / "README.md").read_text(encoding="utf-8")
        section = text.split("### Configuration", 1)[1].split("\n### ", 1)[0]
        rows = []
        for line in section.splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if line.startswith("| `") and len(cells) >= 2:
                keys = re.findall(r"`([^`]+)`", cells[0])
                rows.append((keys, cells[1].split(", ")))
        return rows

    @staticmethod
    def value(cell: str) -> object:
        """The value a default cell states: `code` or a number or boolean, else None (prose)."""
        if cell.startswith("`") and cell.endswith("`"):
            return yaml.safe_load(cell.strip("`"))
        value = yaml.safe_load(cell) if cell else None
        return value if isinstance(value, int | float | bool) else None

    def test_every_key_it_names_exists(self):
        """Each key in the table is a key of the schema."""
        known = {key for key, _ in schema_keys(load_schema())}
        named = {key.removesuffix("[]") for keys, _ in self.rows() for key in keys}
        assert len(named) > 20
        assert named - known == set()

    def test_the_defaults_it_states_are_the_defaults(self):
        """Each default the table states as a value, for a key that has one, is that default."""
        schema = dict(schema_keys(load_schema()))
        wrong = {}
        for keys, defaults in self.rows():
            for key, stated in zip(keys, defaults, strict=False):
                default = schema.get(key, {}).get("default")
                value = self.value(stated)
                if default is None or value is None:
                    continue
                if schema[key].get("$ref") == "#/$defs/duration":
                    same = parse_duration(value) == parse_duration(default)
                else:
                    same = value == default
                if not same:
                    wrong[key] = (stated, default)
        assert wrong == {}
