"""`loom test`: YAML unit tests for pipes, through the real CLI and the library."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import run_loom

from loom.pipeline import pipetest

PIPE = """\
- filter: "n > `1`"
- map: "{n: n, s: s}"
"""


def project(tmp_path: Path, tests: str, pipe: str = PIPE, name: str = "p") -> Path:
    """A project folder with pipes/<name>.yml and pipes/<name>.test.yml."""
    folder = tmp_path / "project" / "pipes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yml").write_text(pipe, encoding="utf-8")
    test_file = folder / f"{name}.test.yml"
    test_file.write_text(textwrap.dedent(tests), encoding="utf-8")
    return test_file


def outcomes(test_file: Path) -> list[pipetest.Outcome]:
    return list(pipetest.run(test_file))


# --- through the CLI ------------------------------------------------------------------


def test_passing_tests_print_ok_lines_and_a_summary(tmp_path: Path) -> None:
    test_file = project(
        tmp_path,
        """\
        tests:
          - name: keeps big numbers
            input: [{n: 2, s: a}, {n: 1, s: b}, '{"n": 3}']
            expect: [{n: 2, s: a}, {n: 3, s: null}]
            expect_dropped: 1
          - name: strings are compared as is
            input: ['{"n": 5, "s": "x"}']
            expect: ['{"n":5,"s":"x"}']
        """,
    )
    r = run_loom("test", cwd=test_file.parent.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [
        "ok    pipes/p.test.yml:2: keeps big numbers",
        "ok    pipes/p.test.yml:6: strings are compared as is",
        "2 passed, 0 failed",
    ]


def test_a_failure_shows_a_unified_diff_and_exits_1(tmp_path: Path) -> None:
    test_file = project(
        tmp_path,
        """\
        tests:
          - name: wrong expectation
            input: [{n: 2, s: a}, {n: 3, s: b}]
            expect: [{n: 2, s: a}, {n: 3, s: X}]
            expect_dropped: 1
          - name: right one
            input: [{n: 2}]
            expect: [{n: 2, s: null}]
        """,
    )
    r = run_loom("test", str(test_file))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith("FAIL  ") and lines[0].endswith("p.test.yml:2: wrong expectation")
    assert '      -{"n": 3, "s": "X"}' in lines
    assert '      +{"n": 3, "s": "b"}' in lines
    assert '       {"n": 2, "s": "a"}' in lines  # context line
    assert "      dropped: expected 1, got 0" in lines
    assert lines[-2].startswith("ok    ")
    assert lines[-1] == "1 passed, 1 failed"


def test_a_malformed_file_names_file_and_line_and_exits_2(tmp_path: Path) -> None:
    test_file = project(
        tmp_path,
        """\
        tests:
          - name: typo
            input: [a]
            expct: [a]
        """,
    )
    r = run_loom("test", str(test_file))
    assert r.returncode == 2
    assert f"{test_file}:4: unknown key 'expct'" in r.stdout
    assert r.stdout.splitlines()[-1] == "0 passed, 0 failed, 1 malformed test file"


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    test_file = project(tmp_path, "tests:\n  - name: x\n    input: [a\n    expect: []\n")
    r = run_loom("test", str(test_file))
    assert r.returncode == 2
    assert f"{test_file}:" in r.stdout and "invalid YAML" in r.stdout


def test_other_files_still_run_when_one_is_malformed(tmp_path: Path) -> None:
    good = project(tmp_path, "tests:\n  - {name: g, input: [{n: 2}], expect_dropped: 0}\n")
    project(tmp_path, "tests: {}\n", name="q")
    r = run_loom("test", str(good.parent))
    assert r.returncode == 2
    assert "ok    " in r.stdout and "ERROR " in r.stdout and "q.test.yml:1" in r.stdout


def test_no_pipes_folder_and_an_empty_folder_are_usage_errors(tmp_path: Path) -> None:
    r = run_loom("test", cwd=tmp_path)
    assert r.returncode == 2 and "./pipes" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_loom("test", str(tmp_path / "empty"))
    assert r.returncode == 2 and "no *.test.yml" in r.stderr
    r = run_loom("test", str(tmp_path / "missing"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_help_shows_an_example() -> None:
    r = run_loom("test", "--help")
    assert r.returncode == 0 and "Example: loom test" in r.stdout


# --- malformed files, in-process -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        ("- just a list\n", 1, "expected a mapping"),
        ("tests: []\n", 1, "non-empty list"),
        ("tests:\n  - just a string\n", 2, "must be a mapping"),
        ("tests:\n  - input: [a]\n    expect: [a]\n", 2, "needs a 'name'"),
        ("tests:\n  - name: x\n    input: a\n    expect: [a]\n", 3, "must be a list of messages"),
        ("tests:\n  - name: x\n    input: [a]\n", 2, "checks nothing"),
        ("tests:\n  - name: x\n    input: [a]\n    expect: a\n", 4, "must be a list"),
        ("tests:\n  - name: x\n    input: []\n    expect_dropped: -1\n", 4, "a count"),
        ("tests:\n  - name: x\n    input: []\n    expect: []\n    flush: 1\n", 5, "true or false"),
        ("tests:\n  - name: x\n    input: []\n    expect_to: [[1]]\n", 4, "list of names"),
        (
            "tests:\n  - {name: x, input: [], expect: []}\n  - {name: x, input: [], expect: []}\n",
            3,
            "duplicate test name",
        ),
        (
            "tests:\n  - name: x\n    input:\n      - envelope: {from: a}\n    expect: []\n",
            4,
            "needs a 'body'",
        ),
        (
            "tests:\n  - name: x\n    input:\n      - envelope: {body: b, id: ../x}\n"
            "    expect: []\n",
            4,
            "'id' is letters and digits",
        ),
        (
            "tests:\n  - name: x\n    input:\n      - envelope: {body: b, colour: red}\n"
            "    expect: []\n",
            4,
            "unknown key 'colour'",
        ),
        ("pipe: ghost\ntests:\n  - {name: x, input: [], expect: []}\n", 1, "no pipe named"),
        ("pipe: 7\ntests:\n  - {name: x, input: [], expect: []}\n", 1, "a pipe name or a file"),
    ],
)
def test_malformed_test_files_are_located(
    tmp_path: Path, body: str, line: int, problem: str
) -> None:
    test_file = project(tmp_path, body)
    with pytest.raises(pipetest.MalformedTest) as caught:
        pipetest.load(test_file)
    assert str(caught.value).startswith(f"{test_file}:{line}: ")
    assert problem in str(caught.value)


def test_a_broken_pipe_definition_is_a_malformed_test(tmp_path: Path) -> None:
    test_file = project(
        tmp_path, "tests:\n  - {name: x, input: [], expect: []}\n", pipe="- mop: x\n"
    )
    with pytest.raises(pipetest.MalformedTest, match="unknown operator 'mop'"):
        pipetest.load(test_file)


def test_a_test_file_without_sibling_pipe_says_so(tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.test.yml"
    lonely.write_text("tests:\n  - {name: x, input: [], expect: []}\n")
    with pytest.raises(pipetest.MalformedTest, match=r"no sibling lonely\.yml"):
        pipetest.load(lonely)


# --- semantics, in-process ---------------------------------------------------------------


def test_mappings_compare_as_json_and_strings_as_text(tmp_path: Path) -> None:
    test_file = project(
        tmp_path,
        """\
        tests:
          - name: mapping matches whatever the spacing and key order
            input: ['{"s": "a",   "n": 2}']
            expect: [{s: a, n: 2}]
          - name: string must match exactly
            input: ['{"n": 2, "s": "a"}']
            expect: ['{"n": 2, "s": "a"}']
          - name: true is not 1
            input: [{n: 2, s: true}]
            expect: [{n: 2, s: 1}]
          - name: a mapping never matches text
            input: [{n: 2, s: a}]
            expect: [{n: 2, s: a, extra: 1}]
        """,
    )
    results = outcomes(test_file)
    assert [o.passed for o in results] == [True, False, False, False]
    assert "output bodies differ" in results[1].problems[0]


def test_envelope_inputs_and_partial_envelope_expectations(tmp_path: Path) -> None:
    test_file = project(
        tmp_path,
        """\
        tests:
          - name: envelope fields
            input:
              - envelope: {id: A1, ts: 1700000000001, from: up, body: {n: 2}, origin: 1-R.msg}
            expect_envelopes:
              - {from: p, origin: 1-R.msg/1700000000001-A1.msg, error: null, body: {n: 2, s: null}}
          - name: a wrong field fails
            input:
              - envelope: {body: {n: 2}, error: true}
            expect_envelopes:
              - {error: false}
        """,
    )
    first, second = outcomes(test_file)
    assert first.passed, first.problems
    assert not second.passed and '"error": true' in second.problems[0]


def test_expect_to_accepts_a_name_a_list_or_null(tmp_path: Path) -> None:
    pipe = """\
- route:
    - {when: "n == `1`", to: one}
    - {when: "n == `2`", to: [two, deux]}
- map: "n"
"""
    test_file = project(
        tmp_path,
        """\
        tests:
          - name: destinations
            input: [{n: 1}, {n: 2}]
            expect: ["1", 2]
            expect_to: [one, [two, deux]]
        """,
        pipe=pipe,
    )
    [result] = outcomes(test_file)
    assert result.passed, result.problems


def test_flush_false_keeps_windows_open(tmp_path: Path) -> None:
    test_file = project(
        tmp_path,
        """\
        tests:
          - name: held
            input: [a, b]
            flush: false
            expect: []
          - name: flushed
            input: [a, b]
            expect_envelopes: [{from: p}]
        """,
        pipe="- window: {size: 5, timeout: 1h}\n",
    )
    assert [o.passed for o in outcomes(test_file)] == [True, True]


def test_an_operator_error_fails_the_test_and_shows_what_the_pipe_logged(tmp_path: Path) -> None:
    test_file = project(
        tmp_path,
        """\
        tests:
          - name: abs of text
            input: [{n: 3}, {n: x}]
            expect: [3]
        """,
        pipe='- command: "echo warned >&2; cat"\n- map: "abs(n)"\n',
    )
    [result] = outcomes(test_file)
    assert not result.passed
    assert result.problems[0].startswith("operator error on input 2: operator 2:map failed")
    assert "warned" in result.problems[-1]


def test_pipe_key_finds_a_sibling_a_relative_path_or_the_catalog(tmp_path: Path) -> None:
    folder = project(tmp_path, "tests:\n  - {name: x, input: [], expect: []}\n").parent
    (folder / "sub").mkdir()
    (folder / "sub" / "other.yml").write_text('- map: "n"\n')
    cases = {
        "by-name.test.yml": "pipe: p\n",
        "by-path.test.yml": "pipe: sub/other.yml\n",
        "catalog.test.yml": "pipe: dedupe-by-id\n",
    }
    for name, head in cases.items():
        (folder / name).write_text(
            head + "tests:\n  - {name: x, input: [{n: 2}], expect_dropped: 0}\n"
        )
    names = {name: pipetest.load(folder / name).definition.name for name in cases}
    assert names == {
        "by-name.test.yml": "p",
        "by-path.test.yml": "other",
        "catalog.test.yml": "dedupe-by-id",
    }


def test_a_failure_after_the_window_flushes_fails_the_test(tmp_path: Path) -> None:
    test_file = project(
        tmp_path,
        """\
        tests:
          - name: abs of a batch
            input: [a, b]
            expect: []
        """,
        pipe='- window: {size: 5, timeout: 1h}\n- map: "abs(@)"\n',
    )
    [result] = outcomes(test_file)
    assert not result.passed
    assert result.problems[0].startswith("operator error on a released batch: operator 2:map")


def test_yaml_dates_in_inputs_are_json_strings(tmp_path: Path) -> None:
    test_file = project(
        tmp_path,
        """\
        tests:
          - name: a date
            input: [{n: 2, s: 2024-01-31}]
            expect: [{n: 2, s: "2024-01-31"}]
        """,
    )
    [result] = outcomes(test_file)
    assert result.passed, result.problems
