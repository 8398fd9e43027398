"""Definitions: both step forms, list and node form, YAML and JSON, located errors, lookup."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loom.errors import ConfigError, InvalidName, NotFound
from loom.pipeline import (
    OperatorSpec,
    catalog_dir,
    instance_definition_path,
    load_definition,
    parse_definition,
    save_definition,
)

LIST_FORM = """
- filter: "type == 'finding'"
- dedupe: {key: id}
- window: {size: 5, timeout: 30s}
- command: "sort"
  timeout: 5s
"""

LONG_FORM = [
    {"operator": "filter", "expr": "type == 'finding'"},
    {"operator": "dedupe", "key": "id"},
    {"operator": "window", "size": 5, "timeout": "30s"},
    {"operator": "command", "cmd": "sort", "timeout": "5s"},
]


def test_short_and_long_forms_give_the_same_model() -> None:
    short = parse_definition(LIST_FORM, name="p", source="p.yml")
    long = parse_definition(LONG_FORM, name="p", source="config.json")
    assert short.operators == long.operators
    assert [op.kind for op in short.operators] == ["filter", "dedupe", "window", "command"]
    assert short.operators[3] == OperatorSpec("command", {"cmd": "sort", "timeout": "5s"}, 3)
    assert [op.line for op in short.operators] == [2, 3, 4, 5]
    assert [op.label for op in short.operators] == ["1:filter", "2:dedupe", "3:window", "4:command"]


def test_the_node_form_keeps_from_and_to() -> None:
    text = "from: [intake]\nto: archivist\ndescription: triage\noperators:\n  - map: '@'\n"
    defn = parse_definition(text, name="triage")
    assert defn.inputs == ("intake",)
    assert defn.to == ("archivist",)
    assert defn.description == "triage"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- map: x\n- fliter: y",
            "p.yml:2:3: pipe 'p', operator 2: unknown operator 'fliter' (did you mean 'filter'?)",
        ),
        (
            "- operator: fliter\n  expr: x",
            "p.yml:1:13: pipe 'p', operator 1: unknown operator 'fliter'",
        ),
        (
            "- map: x\n- window:\n    size: 5\n    timout: 5s",
            "p.yml:4:5: pipe 'p', operator 2 (window), key 'timout': "
            "unknown key (did you mean 'timeout'?)",
        ),
        (
            "- window: {size: 0}",
            "p.yml:1:18: pipe 'p', operator 1 (window), key 'size': "
            "must be a positive integer, got 0",
        ),
        ("- throttle: {max: 1, per: -1m}", "key 'per': must not be negative"),
        ("- map: x\n  filter: y", "one step holds two operators (map and filter)"),
        ("- map: x\n  expr: y", "p.yml:2:3: pipe 'p', operator 1 (map), key 'expr': given twice"),
        ("- window: 5", "'window' takes a mapping of arguments, got 5"),
        ("- 42", "p.yml:1:3: pipe 'p', operator 1: must be a mapping"),
        ("[]", "a pipe needs at least one operator"),
        ("hello", "a pipe is a list of operators"),
        (
            "operators: [{map: x}]\nform: [a]",
            "p.yml:2:1: pipe 'p', key 'form': unknown key (did you mean 'from'?)",
        ),
        ("from: [Bad]\noperators: [{map: x}]", "key 'from': invalid agent or pipe name"),
        (
            "- map: x\n- map: y\n  map: z",
            "p.yml:3:3: invalid YAML: while reading a mapping found duplicate key 'map'",
        ),
        ("- map: [unclosed", "p.yml:1:8: invalid YAML: while parsing a flow sequence"),
        (
            "- map: 'a.b.'",
            "p.yml:1:13: pipe 'p', operator 1 (map): bad JMESPath expression at character 5",
        ),
        (
            "- map:\n    expr: a[",
            "p.yml:2:13: pipe 'p', operator 1 (map), key 'expr': bad JMESPath",
        ),
    ],
)
def test_errors_name_the_file_line_operator_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_definition(text, name="p", source="p.yml")
    assert message in str(info.value)


def test_json_errors_name_the_file_operator_and_key(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"operator": "window", "size": 0}]))
    with pytest.raises(ConfigError, match=r"p.json: pipe 'p', operator 1 \(window\), key 'size'"):
        load_definition(str(path), tmp_path)
    path.write_text("[{")
    with pytest.raises(ConfigError, match=r"p.json:1:3: pipe 'p': not valid JSON"):
        load_definition(str(path), tmp_path)


def test_save_and_load_round_trip(loom_home: Path) -> None:
    defn = parse_definition(LIST_FORM, name="findings")
    path = save_definition(defn, loom_home)
    assert path == loom_home / "pipes" / "findings" / "config.json"
    stored = json.loads(path.read_text())
    assert stored["operators"][0] == {"operator": "filter", "expr": "type == 'finding'"}
    again = load_definition("findings", loom_home, cwd=loom_home)
    assert again.operators == defn.operators
    assert again.source == str(path)


def test_names_are_looked_up_in_order(tmp_path: Path, loom_home: Path) -> None:
    cwd = tmp_path / "project"
    (cwd / "pipes").mkdir(parents=True)
    save_definition(parse_definition("- map: home", name="p"), loom_home)
    assert load_definition("p", loom_home, cwd=cwd).operators[0].args["expr"] == "home"
    (cwd / "loom.yml").write_text("version: 1\npipes:\n  p:\n    - map: weave\n")
    assert load_definition("p", loom_home, cwd=cwd).operators[0].args["expr"] == "weave"
    (cwd / "pipes" / "p.yaml").write_text("- map: file\n")
    found = load_definition("p", loom_home, cwd=cwd)
    assert found.operators[0].args["expr"] == "file"
    assert found.source == str(cwd / "pipes" / "p.yaml")


def test_paths_are_read_directly(tmp_path: Path, loom_home: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.yml").write_text("- map: a\n")
    assert load_definition("sub/x.yml", loom_home, cwd=tmp_path).name == "x"
    assert load_definition(str(tmp_path / "sub" / "x.yml"), loom_home).name == "x"
    with pytest.raises(NotFound, match="no such pipe definition file"):
        load_definition("missing.yml", loom_home, cwd=tmp_path)


def test_unknown_names_and_bad_names(tmp_path: Path, loom_home: Path) -> None:
    with pytest.raises(NotFound, match="no pipe named 'nope'.*catalog"):
        load_definition("nope", loom_home, cwd=tmp_path)
    with pytest.raises(InvalidName):
        load_definition("Bad_Name", loom_home, cwd=tmp_path)
    with pytest.raises(InvalidName):
        load_definition("..", loom_home, cwd=tmp_path)


def test_instance_definitions_live_with_their_pipe(loom_home: Path) -> None:
    assert instance_definition_path("p~a→b", loom_home) == loom_home / "pipes/p/config.json"
    assert instance_definition_path("solo", loom_home) == loom_home / "pipes/solo/config.json"
    with pytest.raises(InvalidName):
        instance_definition_path("p~a→../b", loom_home)


def test_the_catalog_is_the_repository_pipes_folder_in_a_checkout() -> None:
    assert catalog_dir() == Path(__file__).resolve().parent.parent / "pipes"
    assert catalog_dir("operators").name == "operators"


def test_importing_the_engine_loads_neither_yaml_nor_httpx() -> None:
    code = "import sys, loom.pipeline; print([m for m in ('yaml', 'httpx') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
