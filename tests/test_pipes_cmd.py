"""`loom pipes` and `loom pipe create`."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_loom


def test_create_validates_and_stores_a_definition(loom_home: Path) -> None:
    r = run_loom("pipe", "create", "errors-only", input='- filter: "level == `error`"\n')
    assert r.returncode == 0, r.stderr
    stored = json.loads((loom_home / "pipes/errors-only/config.json").read_text())
    assert stored["name"] == "errors-only"
    assert stored["operators"][0]["operator"] == "filter"
    listed = json.loads(run_loom("pipes", "--json").stdout)
    mine = [d for d in listed["definitions"] if d["name"] == "errors-only"]
    assert mine == [{"name": "errors-only", "where": "home", "steps": "filter", "description": ""}]


def test_create_refuses_bad_definitions_and_names(loom_home: Path, tmp_path: Path) -> None:
    r = run_loom("pipe", "create", "bad", input="- filtr: x\n")
    assert r.returncode == 2 and "did you mean 'filter'" in r.stderr
    assert run_loom("pipe", "create", "../evil", input="- map: '@'\n").returncode == 2
    assert run_loom("pipe", "create", "empty", input="").returncode == 2
    assert not (loom_home / "pipes/bad").exists()
    assert not (loom_home / "pipes/evil").exists()
    f = tmp_path / "p.json"
    f.write_text(json.dumps([{"operator": "map", "expr": "title"}]))
    assert run_loom("pipe", "create", "from-file", str(f)).returncode == 0


def test_pipes_lists_the_catalog(loom_home: Path) -> None:
    out = run_loom("pipes").stdout
    assert "DEFINITIONS" in out and "dedupe-by-id" in out and "catalog" in out
    assert "INSTANCES" in out
