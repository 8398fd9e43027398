"""The `pipes/` catalog: every pipe documented, tested, and runnable by name from anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, run_loom

from loom.pipeline import load_definition

CATALOG = ROOT / "pipes"
PIPES = sorted(p for p in CATALOG.glob("*.yml") if not p.name.endswith(".test.yml"))
NAMES = [p.stem for p in PIPES]


def test_the_catalog_has_at_least_six_pipes_and_nothing_else() -> None:
    assert len(PIPES) >= 6
    strays = [
        p.name
        for p in CATALOG.iterdir()
        if not (p.suffix == ".yml" or p.name.endswith(".test.yml") or p.name.startswith("."))
    ]
    assert strays == [], "pipes/ holds pipe definitions and their tests only"
    assert not (CATALOG / "__init__.py").exists()


@pytest.mark.parametrize("pipe", PIPES, ids=NAMES)
def test_every_pipe_has_a_header_a_description_and_a_test_file(pipe: Path) -> None:
    text = pipe.read_text("utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header and header[0].startswith(f"# {pipe.stem}: "), "header names the pipe"
    joined = "\n".join(header)
    for part in ("Input:", "Output:", "Run:"):
        assert part in joined, f"the header says {part}"
    assert f"loom pipe run {pipe.stem}" in joined
    definition = load_definition(str(pipe))
    assert definition.description
    tests = pipe.with_name(f"{pipe.stem}.test.yml")
    assert tests.is_file(), f"{pipe.name} needs {tests.name}"
    assert "- name:" in tests.read_text("utf-8")


def test_every_test_file_belongs_to_a_pipe() -> None:
    for test_file in CATALOG.glob("*.test.yml"):
        assert test_file.with_name(test_file.name.replace(".test.yml", ".yml")).is_file()


def test_loom_test_passes_on_the_whole_catalog(tmp_path: Path) -> None:
    # No PATH set up: command steps find the catalog's operators by name on their own.
    r = run_loom("test", str(CATALOG), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = r.stdout.splitlines()[-1]
    passed = int(summary.split()[0])
    assert summary == f"{passed} passed, 0 failed" and passed >= len(PIPES) * 2
    for name in NAMES:
        assert f"pipes/{name}.test.yml:" in r.stdout


@pytest.mark.parametrize("name", NAMES)
def test_every_pipe_runs_by_name_from_an_unrelated_folder(name: str, tmp_path: Path) -> None:
    definition = load_definition(name, cwd=tmp_path)
    assert Path(definition.source).resolve() == (CATALOG / f"{name}.yml").resolve()


def test_a_project_pipe_of_the_same_name_wins_over_the_catalog(tmp_path: Path) -> None:
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "dedupe-by-id.yml").write_text("- map: \"'mine'\"\n")
    r = run_loom("pipe", "run", "dedupe-by-id", input='{"id": 1}\n', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "mine\n"


def test_catalog_pipes_run_by_name_through_the_cli(tmp_path: Path) -> None:
    r = run_loom(
        "pipe", "run", "dedupe-by-id",
        input='{"id": 1}\n{"id": 2}\n{"id": 1}\nnot json\n',
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == '{"id": 1}\n{"id": 2}\nnot json\n'
    r = run_loom("pipe", "run", "triage", "--envelope", input='{"priority": "urgent"}\n')
    assert r.returncode == 0, r.stderr
    assert '"to":["notifier"]' in r.stdout
