"""Running one tool call (SPEC 12): whatever the plugin does, the model gets a result, and
the agent's log gets every call, result and progress line."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from plugin_kit import sh_plugin, write_script

from loom.providers.base import ToolCall, ToolResult
from loom.store.logs import Log
from loom.tools.invoke import Invocation, invoke, parse_arguments
from loom.tools.settings import OUTPUT_LIMIT, ToolSettings
from loom.tools.toolbox import Toolbox


def run(tmp_path: Path, body: str, arguments: dict | None = None, timeout: float = 5) -> Invocation:
    path = write_script(tmp_path / "plugins", "tool", f"#!/bin/sh\n{body}\n")
    return invoke(
        "tool",
        path,
        arguments or {},
        env=dict(os.environ),
        timeout=timeout,
        limit=OUTPUT_LIMIT,
        cwd=tmp_path,
    )


def test_an_ok_result_is_given_as_text(tmp_path: Path) -> None:
    outcome = run(tmp_path, """echo '{"status": "ok", "result": "forty-two"}'""")
    assert (outcome.ok, outcome.text) == (True, "forty-two")


def test_a_structured_result_is_given_as_json(tmp_path: Path) -> None:
    outcome = run(tmp_path, """echo '{"status": "ok", "result": {"n": [1, 2]}}'""")
    assert (outcome.ok, json.loads(outcome.text)) == (True, {"n": [1, 2]})


def test_the_arguments_arrive_on_stdin_as_one_line_of_json(tmp_path: Path) -> None:
    arguments = {"text": "two\nlines", "n": 1}
    outcome = run(tmp_path, """cat > stdin.txt; echo '{"status": "ok", "result": 1}'""", arguments)
    assert outcome.ok
    received = (tmp_path / "stdin.txt").read_text()
    assert received.count("\n") == 1 and json.loads(received) == arguments


def test_the_plugins_own_error_reaches_the_model(tmp_path: Path) -> None:
    outcome = run(tmp_path, """echo '{"status": "error", "error": "no such city"}'; exit 1""")
    assert (outcome.ok, outcome.text, outcome.status) == (False, "no such city", "error")


def test_a_non_zero_exit_is_an_error_with_stderr(tmp_path: Path) -> None:
    outcome = run(tmp_path, """echo '{"status": "ok", "result": 1}'; echo 'oops' >&2; exit 4""")
    assert (outcome.ok, outcome.text) == (False, "tool exited with status 4: oops")


def test_a_crash_is_an_error_naming_the_signal(tmp_path: Path) -> None:
    outcome = run(tmp_path, "kill -SEGV $$")
    assert (outcome.ok, outcome.text) == (False, "tool was killed by SIGSEGV")


def test_no_result_line_is_an_error(tmp_path: Path) -> None:
    outcome = run(tmp_path, "echo 'I did it!'")
    assert not outcome.ok and "printed no result line" in outcome.text


def test_a_hang_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    outcome = run(tmp_path, "sleep 30", timeout=0.3)
    assert time.monotonic() - started < 3
    assert (outcome.ok, outcome.text) == (
        False,
        "tool did not finish within 0.3 s and was stopped (LOOM_TOOL_TIMEOUT)",
    )


def test_a_child_left_holding_the_output_is_stopped_too(tmp_path: Path) -> None:
    body = """(sleep 30 &) ; echo '{"status": "ok", "result": 1}'"""
    started = time.monotonic()
    outcome = run(tmp_path, body, timeout=0.5)
    assert time.monotonic() - started < 3
    assert not outcome.ok and "did not finish" in outcome.text


def test_fifty_megabytes_of_output_are_cut_at_the_cap(tmp_path: Path) -> None:
    started = time.monotonic()
    outcome = run(tmp_path, "head -c 50000000 /dev/zero | tr '\\0' 'a'; echo")
    assert time.monotonic() - started < 5
    assert (outcome.ok, outcome.text) == (
        False,
        f"tool printed more than {OUTPUT_LIMIT} bytes and was stopped",
    )


def test_a_plugin_that_ignores_its_arguments_is_fine(tmp_path: Path) -> None:
    outcome = run(
        tmp_path, """exec 0<&-; echo '{"status": "ok", "result": "x"}'""", {"big": "y" * 300_000}
    )
    assert outcome.ok


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        ("  ", {}),
        ('{"a": 1}', {"a": 1}),
    ],
)
def test_arguments_that_parse(raw: str, expected: dict) -> None:
    assert parse_arguments("t", raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ('{"a": ', "the arguments for t are not valid JSON"),
        ("[1]", "the arguments for t must be a JSON object"),
    ],
)
def test_arguments_that_do_not_are_an_error(raw: str, error: str) -> None:
    outcome = parse_arguments("t", raw)
    assert isinstance(outcome, Invocation) and not outcome.ok and error in outcome.text


# ---------------------------------------------------------------- the toolbox


def toolbox(home: Path, cwd: Path) -> Toolbox:
    agent_dir = home / "agents" / "a"
    agent_dir.mkdir(parents=True, exist_ok=True)
    return Toolbox(
        agent_dir,
        agent="a",
        home=home,
        cwd=cwd,
        env={**os.environ, "OPENAI_API_KEY": "sk-from-the-runner"},
        log=Log(agent_dir / "logs", "a"),
        settings=ToolSettings(timeout=5, describe_timeout=2),
    )


def log_events(home: Path) -> list[dict]:
    lines = "".join(p.read_text() for p in (home / "agents/a/logs").glob("*.ndjson"))
    return [json.loads(line) for line in lines.splitlines()]


def test_progress_calls_and_results_are_logged(loom_home: Path, tmp_path: Path) -> None:
    sh_plugin(
        tmp_path / ".loom/plugins",
        "slow",
        """echo '{"type": "progress", "message": "half way", "percent": 50}'
echo 'some chatter'
echo '{"status": "ok", "result": "finished"}'""",
    )
    box = toolbox(loom_home, tmp_path)
    assert [spec.name for spec in box.offer()] == ["slow"]
    results = box.run((ToolCall("c1", "slow", '{"x": 1}'),), "m.msg")
    assert results == (ToolResult("c1", "slow", "finished"),)
    events = [e for e in log_events(loom_home) if e["event"].startswith("tool_")]
    assert [e["event"] for e in events] == ["tool_call", "tool_progress", "tool_result"]
    call, progress, result = events
    assert (call["msg"], call["tool"], call["call_id"], call["arguments"]) == (
        "m.msg",
        "slow",
        "c1",
        '{"x": 1}',
    )
    assert (progress["message"], progress["percent"]) == ("half way", 50)
    assert (result["status"], result["result"]) == ("ok", "finished")
    assert result["duration_ms"] >= 0


def test_an_invented_tool_and_bad_arguments_are_error_results(
    loom_home: Path, tmp_path: Path
) -> None:
    sh_plugin(tmp_path / ".loom/plugins", "real")
    box = toolbox(loom_home, tmp_path)
    box.offer()
    invented, broken = box.run(
        (ToolCall("c1", "imaginary", "{}"), ToolCall("c2", "real", "{oops")), "m.msg"
    )
    assert invented.is_error and invented.content == (
        "error: there is no tool named 'imaginary'; the tools are: real"
    )
    assert broken.is_error and broken.content.startswith(
        "error: the arguments for real are not valid JSON"
    )
    statuses = [e["status"] for e in log_events(loom_home) if e["event"] == "tool_result"]
    assert statuses == ["error", "error"]


def test_a_long_result_is_cut_in_the_log_only(loom_home: Path, tmp_path: Path) -> None:
    sh_plugin(
        tmp_path / ".loom/plugins",
        "long",
        """z=$(head -c 5000 /dev/zero | tr '\\0' z)
printf '{"status": "ok", "result": "%s"}\\n' "$z" """,
    )
    box = toolbox(loom_home, tmp_path)
    box.offer()
    [result] = box.run((ToolCall("c1", "long", "{}"),), "m.msg")
    assert result.content == "z" * 5000
    [logged] = [e for e in log_events(loom_home) if e["event"] == "tool_result"]
    assert len(logged["result"]) == 500 and logged["result"].endswith("…")


def test_a_plugin_runs_with_the_agents_environment(loom_home: Path, tmp_path: Path) -> None:
    sh_plugin(
        tmp_path / ".loom/plugins",
        "whoami",
        """printf '{"status": "ok", "result": "%s|%s|%s|%s"}\\n' \
"$LOOM_AGENT_NAME" "$LOOM_HOME" "$LOOM_AGENT_DIR" "$(pwd)" """,
    )
    box = toolbox(loom_home, tmp_path)
    box.offer()
    [result] = box.run((ToolCall("c1", "whoami", "{}"),), "m.msg")
    assert result.content.split("|") == [
        "a",
        str(loom_home),
        str(loom_home / "agents" / "a"),
        str(tmp_path),
    ]


def test_problems_are_logged_once(loom_home: Path, tmp_path: Path) -> None:
    write_script(tmp_path / ".loom/plugins", "junk", "#!/bin/sh\necho garbage\n")
    box = toolbox(loom_home, tmp_path)
    assert box.offer() == () and box.offer() == ()
    [problem] = [e for e in log_events(loom_home) if e["event"] == "tool_problem"]
    assert problem["level"] == "warning" and problem["tool"] == "junk"
    assert "not JSON" in problem["error"]
