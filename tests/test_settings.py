"""LOOM_* settings: one module reads them all; a malformed one is one line and exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_loom

from loom import settings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_every_loom_variable_the_code_reads_is_a_setting() -> None:
    package = Path(settings.__file__).parent
    read = set()
    for path in package.rglob("*.py"):
        read |= set(re.findall(r"\b(LOOM_[A-Z_]*[A-Z])\b", path.read_text("utf-8")))
    # Variables loom sets for the programs it runs, not settings it reads.
    given = {"LOOM_MSG_ID", "LOOM_MSG_FROM", "LOOM_PIPE", "LOOM_AGENT_NAME", "LOOM_AGENT_DIR"}
    declared = {s.name for s in settings.ALL}
    assert read - given - declared == set()


def test_the_configuration_page_shows_the_generated_table() -> None:
    assert settings.table() in DOCS.read_text("utf-8")


@pytest.mark.parametrize(
    ("variable", "value", "form"),
    [
        ("LOOM_RETRY_BASE", "abc", "a number of seconds >= 0"),
        ("LOOM_RETRIES", "-1", "a whole number >= 0"),
        ("LOOM_TOOL_ROUNDS", "many", "a whole number >= 0"),
        ("LOOM_FSYNC", "maybe", "one of 1, 0, true, false, yes, no, on, off"),
    ],
)
def test_a_foreground_agent_reports_a_bad_setting_in_one_line(
    variable: str, value: str, form: str
) -> None:
    r = run_loom(
        "agent",
        "start",
        "a",
        "--model",
        "echo",
        "--stdin",
        "--prompt",
        "hi",
        input="hello",
        env={variable: value},
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"loom: {variable} must be {form}, got '{value}'\n"


def test_a_bad_restart_setting_stops_a_detached_start_at_once(loom_home: Path) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", "-d", env={"LOOM_RESTART_BASE": "abc"})
    assert r.returncode == 2, r.stderr
    # Its own reason, not the 15 s wait's "did not start" for a supervisor that died.
    assert r.stderr == "loom: LOOM_RESTART_BASE must be a number of seconds >= 0, got 'abc'\n"


def test_the_supervisor_checks_every_setting_when_it_starts(loom_home: Path) -> None:
    r = run_loom("supervisor", "run", env={"LOOM_SUPERVISOR_RESCAN": "soon"}, timeout=20)
    assert r.returncode == 2
    assert r.stderr == "loom: LOOM_SUPERVISOR_RESCAN must be a number of seconds > 0, got 'soon'\n"
    assert not (loom_home / "supervisor.pid").exists()


def test_a_supervisor_started_on_demand_that_fails_is_reported_not_waited_for(
    loom_home: Path,
) -> None:
    # The supervisor cannot create its log folder, so it exits at once with a reason.
    loom_home.mkdir(parents=True)
    (loom_home / "supervisor").write_text("not a folder")
    r = run_loom("agent", "start", "a", "--model", "echo", "-d", timeout=30)
    assert r.returncode == 1, r.stderr
    # The supervisor's own reason, not the start timeout's "did not start a within 15 s":
    # the command saw it exit instead of waiting (a bound in seconds fails under load).
    assert r.stderr.startswith("loom: ") and "supervisor/logs" in r.stderr, r.stderr
    assert "did not start" not in r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_unset_and_blank_give_the_defaults() -> None:
    assert settings.RETRY_BASE.get({}) == 1.0
    assert settings.RETRY_BASE.get({"LOOM_RETRY_BASE": " "}) == 1.0
    assert settings.RETRIES.get({"LOOM_RETRIES": "0"}) == 0
    assert settings.FSYNC.get({"LOOM_FSYNC": "Off"}) is False
    assert settings.WATCH.get({"LOOM_WATCH": "POLL"}) == "poll"


def test_a_bad_setting_given_to_one_agent_is_refused_before_it_is_written(
    loom_home: Path, tmp_path: Path
) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", "-d", "--env", "LOOM_RETRIES=x")
    assert r.returncode == 2
    assert r.stderr == "loom: LOOM_RETRIES must be a whole number >= 0, got 'x'\n"
    assert not (loom_home / "agents" / "a").exists()
    (tmp_path / "loom.yml").write_text(
        "version: 1\nagents:\n  - name: b\n    model: echo\n    env: {LOOM_TOOL_TIMEOUT: soon}\n"
    )
    up = run_loom("up", "-d", cwd=tmp_path)
    assert up.returncode == 2
    assert up.stderr == "loom: LOOM_TOOL_TIMEOUT must be a number of seconds > 0, got 'soon'\n"
    assert not (loom_home / "agents" / "b").exists()
