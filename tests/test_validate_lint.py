"""`loom validate` as a linter: every problem of every file at its line and column, in
the file's own words; standalone pipe files; several files at once (SPEC 9)."""

from __future__ import annotations

from pathlib import Path

from conftest import run_loom

# Two bad operators after a good one; the columns below are those of the values.
BAD_PIPE = """\
- map: text
- window: {size: -1}
- throttle: {max: 0, per: 1s}
- filter: "kind =="
"""

WEAVE = """\
version: 1
pipes:
  tidy:
    - map: "{t: text"
    - operator: window
      size: 0
agents:
  - name: a
    model: echo
    from: [{agent: b, pipe: tidy}]
  - name: b
    model: echo
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_every_bad_operator_of_a_pipe_file_is_reported_at_its_column(tmp_path: Path) -> None:
    write(tmp_path, "pipes/x.yml", BAD_PIPE)
    r = run_loom("validate", "pipes/x.yml", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert "pipes/x.yml:2:18: pipe 'x', operator 2 (window), key 'size': " in lines[0]
    assert lines[1] == (
        "pipes/x.yml:3:19: pipe 'x', operator 3 (throttle), key 'max': "
        "must be a positive integer, got 0"
    )
    # The expression starts at column 12 (after the quote); it ends too early, at 19.
    assert lines[2].startswith(
        "pipes/x.yml:4:19: pipe 'x', operator 4 (filter): bad JMESPath expression"
    )
    assert lines[-1] == "loom: 3 problems in pipes/x.yml"
    assert "nothing started" not in r.stderr
    assert r.stdout == ""


def test_weave_problems_use_the_keys_as_the_file_writes_them(tmp_path: Path) -> None:
    write(tmp_path, "loom.yml", WEAVE)
    r = run_loom("validate", cwd=tmp_path)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("loom.yml:")]
    # `- map: EXPR` is written `map`, not the internal argument name `expr`.
    assert lines[0].startswith("loom.yml:4:21: pipe 'tidy', operator 1 (map): bad JMESPath")
    assert "'expr'" not in r.stderr
    assert lines[1] == (
        "loom.yml:6:13: pipe 'tidy', operator 2 (window), key 'size': "
        "must be a positive integer, got 0"
    )
    assert r.stderr.splitlines()[-1] == "loom: 2 problems in loom.yml"
    assert "nothing started" not in r.stderr


def test_unknown_keys_point_at_the_key(tmp_path: Path) -> None:
    write(tmp_path, "p.yml", "- map:\n    expr: text\n    exprs: x\n")
    r = run_loom("validate", "p.yml", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith(
        "p.yml:3:5: pipe 'p', operator 1 (map), key 'exprs': unknown key (did you mean 'expr'?)"
    )


def test_a_good_pipe_file_and_several_files_at_once(tmp_path: Path) -> None:
    write(tmp_path, "pipes/good.yml", "- filter: \"kind == 'x'\"\n- map: text\n")
    write(tmp_path, "pipes/node.yml", "from: [a]\nto: b\noperators:\n  - map: text\n")
    write(tmp_path, "good.yml", WEAVE.replace('"{t: text"', '"{t: text}"').replace("0", "2"))
    r = run_loom("validate", "pipes/good.yml", "pipes/node.yml", "good.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "pipes/good.yml: ok (pipe 'good', 2 operators)",
        "pipes/node.yml: ok (pipe 'node', 1 operator)",
        "good.yml: ok (2 agents, 1 pipe)",
    ]

    write(tmp_path, "pipes/x.yml", BAD_PIPE)
    write(tmp_path, "loom.yml", WEAVE)
    r = run_loom("validate", "pipes/good.yml", "pipes/x.yml", "loom.yml", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == "loom: 5 problems in 2 files"
    # A file that is not there is a usage error (2), and the others are still checked.
    r = run_loom("validate", "pipes/good.yml", "pipes/x.yml", "loom.yml", "gone.yml", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout.splitlines() == ["pipes/good.yml: ok (pipe 'good', 2 operators)"]
    errors = r.stderr.splitlines()
    assert sum(ln.startswith("pipes/x.yml:") for ln in errors) == 3
    assert sum(ln.startswith("loom.yml:") for ln in errors) == 2
    assert "loom: gone.yml: does not exist" in errors
    assert errors[-1] == "loom: 5 problems in 2 files"


def test_a_json_pipe_file_and_yaml_syntax_errors(tmp_path: Path) -> None:
    write(tmp_path, "p.json", '[{"operator": "window", "size": 0}]')
    r = run_loom("validate", "p.json", cwd=tmp_path)
    assert r.returncode == 1
    assert "p.json: pipe 'p', operator 1 (window), key 'size'" in r.stderr
    write(tmp_path, "broken.yml", "- map: [unclosed\n")
    r = run_loom("validate", "broken.yml", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("broken.yml:1:8: invalid YAML")


def test_up_still_says_nothing_started(tmp_path: Path) -> None:
    write(tmp_path, "loom.yml", WEAVE)
    r = run_loom("up", "-d", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == "loom: 2 problems in loom.yml; nothing started"


def test_unknown_agents_a_pipe_names_are_placed_where_it_names_them(tmp_path: Path) -> None:
    write(
        tmp_path,
        "loom.yml",
        "version: 1\npipes:\n  tri:\n    from: [ghost]\n    operators:\n      - route:\n"
        "          - {when: \"p == 'x'\", to: nobody}\n          - {to: a}\n"
        "      - fanout: [a, gone]\nagents:\n  - name: a\n    model: echo\n",
    )
    r = run_loom("validate", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "loom.yml:4:11: pipe 'tri': unknown agent 'ghost' in from",
        "loom.yml:7:36: pipe 'tri' sends to unknown agent 'nobody'",
        "loom.yml:9:17: pipe 'tri' sends to unknown agent 'gone'",
        "loom: 3 problems in loom.yml",
    ]


def test_a_bad_when_points_into_the_expression(tmp_path: Path) -> None:
    write(
        tmp_path,
        "loom.yml",
        "version: 1\nagents:\n  - name: a\n    model: echo\n"
        '    from:\n      - {agent: b, when: "x =="}\n'
        '  - name: b\n    model: echo\n    from:\n      - agent: c\n        when: "${W:-y ==}"\n'
        "  - name: c\n    model: echo\n",
    )
    r = run_loom("validate", cwd=tmp_path)
    assert r.returncode == 1
    located = [ln.split(" bad JMESPath")[0] for ln in r.stderr.splitlines() if "`when`" in ln]
    # The first at the end of its expression; the second, expanded from a variable, at
    # its value (an offset into the expanded text is no column of the file).
    assert located == ["loom.yml:6:31: bad `when`:", "loom.yml:11:15: bad `when`:"]


def test_a_pipes_folder_with_its_test_files_validates_at_once(tmp_path: Path) -> None:
    write(tmp_path, "pipes/title.yml", "- map: title\n")
    write(tmp_path, "pipes/title.test.yml", "tests:\n  - {name: t, input: ['{}'], expect: ['']}\n")
    write(tmp_path, "pipes/lax.test.yml", "pipe: title\ntests:\n  - name: x\n    input: [a]\n")
    r = run_loom(
        "validate", "pipes/lax.test.yml", "pipes/title.test.yml", "pipes/title.yml", cwd=tmp_path
    )
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "pipes/title.test.yml: ok (1 test of pipe 'title')",
        "pipes/title.yml: ok (pipe 'title', 1 operator)",
    ]
    assert r.stderr.splitlines() == [
        "pipes/lax.test.yml:3: test 'x' checks nothing; "
        "give expect, expect_to, expect_envelopes or expect_dropped",
        "loom: 1 problem in 1 file",
    ]


def test_the_catalog_validates(tmp_path: Path) -> None:
    catalog = sorted((Path(__file__).parent.parent / "pipes").glob("*.yml"))
    r = run_loom("validate", *map(str, catalog), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == len(catalog)
