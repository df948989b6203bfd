"""``conforms`` says yes only where jsonschema finds nothing wrong, and does for every valid
config, so that a valid config never loads jsonschema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import load_schema
from controller.schemacheck import conforms
from tests.fuzz.test_fuzz_config import SLOTS, VALID, _put, values

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = load_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_valid_configs_conform():
    for document in (VALID, yaml.safe_load((ROOT / "config/controller.example.yaml")
                                           .read_text())):
        assert not list(VALIDATOR.iter_errors(document))
        assert conforms(document, SCHEMA)


@settings(max_examples=400)
@given(st.builds(_put, st.just(VALID), st.sampled_from(SLOTS), values))
def test_conforms_agrees_with_jsonschema(document):
    """One value anywhere replaced by anything: ``conforms`` never passes what jsonschema
    refuses, nor doubts what it accepts."""
    assert conforms(document, SCHEMA) == (not list(VALIDATOR.iter_errors(document)))


def test_a_valid_config_loads_no_jsonschema(tmp_path):
    """Loading a valid config file imports no jsonschema."""
    code = ("import sys, os; from pathlib import Path; from controller.config import "
            "load_settings; load_settings(Path(sys.argv[1]), {'MARATHON_PASSWORD': 'x', "
            "'REGISTRY_PASSWORD': 'x'}, storage=False); "
            "print('jsonschema' in sys.modules)")
    example = str(ROOT / "config/controller.example.yaml")
    out = subprocess.run([sys.executable, "-c", code, example], capture_output=True, text=True,
                         check=True, timeout=60, cwd=tmp_path)
    assert out.stdout.strip() == "False"
