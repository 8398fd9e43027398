"""What the `loom` command itself promises (SPEC 10): --version, -h, shell completion,
sorted whole descriptions, one-line usage errors, plurals, the graph's header and DOT
labels, gc's dry run, what `agent stop` says, and the live view's columns."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import run_loom, spawn_loom, wait_for


def test_version_prints_the_package_version() -> None:
    r = run_loom("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"loom {version('loom-runtime')}\n"
    assert re.fullmatch(r"loom \d+\.\d+\.\d+\S*\n", r.stdout)


@pytest.mark.parametrize("command", [(), ("agent",), ("agent", "start"), ("gc",)])
def test_dash_h_is_help(command: tuple[str, ...]) -> None:
    short, long = run_loom(*command, "-h"), run_loom(*command, "--help")
    assert short.returncode == long.returncode == 0, short.stderr
    assert short.stdout == long.stdout
    assert "-h, --help" in short.stdout


def _commands(help_text: str) -> list[tuple[str, str]]:
    section = help_text.split("Commands:\n", 1)[1]
    rows = []
    for line in section.splitlines():
        if not line.strip():
            break
        name, _, text = line.strip().partition(" ")
        rows.append((name, text.strip()))
    return rows


@pytest.mark.parametrize("group", [(), ("agent",), ("pipe",), ("supervisor",)])
def test_commands_are_sorted_with_whole_one_line_descriptions(group: tuple[str, ...]) -> None:
    r = run_loom(*group, "--help")
    assert r.returncode == 0, r.stderr
    rows = _commands(r.stdout)
    names = [name for name, _ in rows]
    assert names == sorted(names) and len(names) >= 1
    for name, text in rows:
        assert text and not text.endswith("..."), (name, text)
        assert text.endswith("."), (name, text)  # a whole sentence, not a cut one
    if not group:
        assert {"agent", "gc", "graph", "up", "validate"} <= set(names)
        described = dict(rows)
        assert described["gc"] == (
            "Archive old processed and delivered messages, compress and delete old logs."
        )


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    script = run_loom("--show-completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "_LOOM_COMPLETE=complete_bash" in script.stdout
    assert "complete -o default -F _loom_completion loom" in script.stdout
    # The protocol the script speaks, against the real CLI.
    env = {"_LOOM_COMPLETE": "complete_bash", "COMP_WORDS": "loom agent st", "COMP_CWORD": "2"}
    r = run_loom(env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["start", "stop"]
    bash = shutil.which("bash")
    if bash is None:
        return
    # And in bash itself, with `loom` on PATH as a user has it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "loom"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m loom "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "completion.bash").write_text(script.stdout)
    session = (
        f"source {tmp_path / 'completion.bash'}\n"
        "COMP_WORDS=(loom agent start a --det); COMP_CWORD=4\n"
        "_loom_completion loom\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        [bash, "--norc", "-c", session],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["--detach"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("agent", "start", "a", "--x"), "no such option: --x (see loom agent start --help)"),
        (
            ("agent", "start", "a", "--detch"),
            "no such option: --detch; did you mean --detach? (see loom agent start --help)",
        ),
        (("agent", "start"), "missing argument 'NAME' (see loom agent start --help)"),
        (("agent", "start", "a"), "missing option '--model' / '-m' (see loom agent start --help)"),
        (("nope",), "no such command 'nope' (see loom --help)"),
        (("agen",), "no such command 'agen'; did you mean 'agent'? (see loom --help)"),
        (
            ("gc", "--agent"),
            "option '--agent' requires an argument (see loom gc --help)",
        ),
        (
            ("agent", "start", "a", "-m", "echo", "-c", "many"),
            "invalid value for '--concurrency' / '-c': 'many' is not a valid integer "
            "(see loom agent start --help)",
        ),
    ],
)
def test_usage_errors_are_one_loom_line_with_exit_2(args: tuple[str, ...], message: str) -> None:
    r = run_loom(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == f"loom: {message}\n"


def test_no_arguments_still_show_the_help() -> None:
    for args in [(), ("agent",)]:
        r = run_loom(*args)
        assert r.returncode == 2
        assert "Commands:" in r.stderr and "Usage: loom" in r.stderr


ONE = """\
version: 1
pipes:
  gate:
    from: [a]
    operators:
      - route:
          - {when: "priority == 'urgent'", to: b}
          - {to: c}
agents:
  - name: a
    model: echo
  - name: b
    model: echo
  - name: c
    model: echo
    from: [{agent: b, when: "!error"}]
"""


def test_counts_say_one_agent_and_two_pipes(tmp_path: Path) -> None:
    (tmp_path / "loom.yml").write_text(
        "version: 1\npipes:\n  p:\n    - map: '@'\n  q:\n    - map: '@'\n"
        "agents:\n  - {name: a, model: echo}\n"
    )
    r = run_loom("validate", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "loom.yml: ok (1 agent, 2 pipes)\n"
    (tmp_path / "loom.yml").write_text("version: 1\nagents:\n  - {name: a}\n")
    r = run_loom("validate", cwd=tmp_path)
    assert (
        r.stderr.splitlines()[-1] == "loom: 1 problem in loom.yml"
    )  # validate starts nothing by nature


def test_the_graph_names_the_file_and_labels_edges_with_their_conditions(tmp_path: Path) -> None:
    sub = tmp_path / "project"
    sub.mkdir()
    (sub / "loom.yml").write_text(ONE)
    r = run_loom("graph", "--config", "project/loom.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "weave project/loom.yml: 3 agents, 1 pipe"
    assert "─[when priority == 'urgent']─▶ b" in r.stdout
    assert "─[otherwise]─▶ c" in r.stdout

    dot = run_loom("graph", "-c", "project/loom.yml", "--format", "dot", cwd=tmp_path).stdout
    assert '  label="project/loom.yml";' in dot
    for element in ("graph", "node", "edge"):
        assert f'  {element} [fontname="sans-serif"];' in dot
    assert '"gate" -> "b" [label="when priority == \'urgent\'"];' in dot
    assert '"gate" -> "c" [label="otherwise"];' in dot
    assert '"b" -> "c" [label="when !error"];' in dot
    if shutil.which("dot"):
        rendered = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
        assert rendered.returncode == 0, rendered.stderr

    mermaid = run_loom("graph", "-c", "project/loom.yml", "-f", "mermaid", cwd=tmp_path).stdout
    assert mermaid.splitlines()[:2] == ["flowchart LR", "  %% weave project/loom.yml"]


def test_gc_dry_run_says_when_there_is_nothing_to_do(loom_home: Path) -> None:
    r = run_loom("gc", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "nothing to do\n"
    quiet = run_loom("gc")  # without --dry-run it stays quiet, for cron
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_agent_stop_says_what_it_stopped(loom_home: Path, reap: list) -> None:
    p = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(p)
    pid_file = loom_home / "agents" / "a" / "pid"
    pid = wait_for(
        lambda: pid_file.exists() and pid_file.read_text().strip(), what="the runner's pid"
    )
    r = run_loom("agent", "stop", "a")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"stopped agent a (pid {pid})\n"
    assert p.wait(timeout=10) == 0
    again = run_loom("agent", "stop", "a")
    assert again.returncode == 0
    assert again.stdout == ""
    assert again.stderr == "agent a was not running; marked stopped\n"


LONG = "an-agent-whose-name-is-longer-than-thirty-two-columns"


def test_the_live_view_keeps_its_columns_aligned_with_long_names(
    weave_dir: Path, reap: list
) -> None:
    (weave_dir / "loom.yml").write_text(
        f"version: 1\nagents:\n  - {{name: {LONG}, model: echo}}\n  - {{name: b, model: echo}}\n"
    )
    p = spawn_loom("up", cwd=weave_dir)
    reap.append(p)
    assert p.stdout is not None
    header = p.stdout.readline().decode().rstrip("\n")
    rows = [p.stdout.readline().decode().rstrip("\n") for _ in range(2)]
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 0
    assert header.split() == ["NAME", "STATUS", "WAITING", "DONE", "FAILED"]
    assert sorted(row.split()[0] for row in rows) == sorted([LONG, "b"])
    status_at = header.index("STATUS")
    for row in rows:
        # Every row's status starts under STATUS, and its counts end under their headers.
        assert row[status_at - 2 : status_at] == "  " and row[status_at] != " ", row
        assert len(row) == len(header), (row, header)
