"""The JSON Schema of loom.yml ships with the package and agrees with every example weave."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "loom" / "weave" / "schema.json"
EXAMPLES = sorted(ROOT.glob("examples/*/loom.yml"))


def test_the_docs_copy_is_the_shipped_schema() -> None:
    assert json.loads((ROOT / "docs" / "loom.schema.json").read_text()) == json.loads(
        SCHEMA.read_text()
    )


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text()))


def test_there_are_at_least_three_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_every_example_weave_matches_the_schema(path: Path) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = [
        f"{list(e.path)}: {e.message}"
        for e in validator.iter_errors(yaml.safe_load(path.read_text()))
    ]
    assert errors == []


def test_the_schema_rejects_what_validate_rejects() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    bad = {"version": 1, "agents": [{"name": "../x", "model": "echo", "modle": "x"}]}
    assert len(list(validator.iter_errors(bad))) >= 2
