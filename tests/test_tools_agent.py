"""Agents using tools, end to end (SPEC 12): the real `loom agent start` in a subprocess,
the fake LLM server in each wire format, and the example plugins."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import run_loom, spawn_loom, wait_for
from llm_server import CallTool, LLMServer, Recorded, Reply
from plugin_kit import install_example, sh_plugin

from loom.store.home import pid_alive, pid_is_loom

SECRET = "sk-test-tools-5e4d3c"
MODELS = {
    "openai": ("openai/gpt-test", "OPENAI_API_KEY"),
    "anthropic": ("anthropic/claude-test", "ANTHROPIC_API_KEY"),
    "ollama": ("ollama/qwen3:8b", None),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the example plugins calc, clock and read-file installed."""
    plugins = tmp_path / "project" / ".loom" / "plugins"
    for name in ("calc", "clock", "read-file"):
        install_example(plugins, name)
    return tmp_path / "project"


def env_for(server: LLMServer, wire: str = "openai", **extra: str) -> dict[str, str]:
    _, key = MODELS[wire]
    return {**server.env(), **({key: SECRET} if key else {}), "LOOM_HTTP_TIMEOUT": "5", **extra}


def start(
    server: LLMServer,
    project: Path,
    *options: str,
    wire: str = "openai",
    body: str = "hi",
    **env: str,
) -> Any:
    model, _ = MODELS[wire]
    return run_loom(
        "agent",
        "start",
        "a",
        "--model",
        model,
        "--stdin",
        *options,
        input=body,
        env=env_for(server, wire, **env),
        cwd=project,
        timeout=30,
    )


def offered(request: Recorded) -> list[str]:
    """The tool names a request offered, whatever its wire."""
    tools = request.body.get("tools") or []
    return sorted(t["function"]["name"] if "function" in t else t["name"] for t in tools)


def log_events(home: Path, event: str) -> list[dict[str, Any]]:
    text = "".join(p.read_text() for p in (home / "agents/a/logs").glob("*.ndjson"))
    return [e for e in map(json.loads, text.splitlines()) if e["event"] == event]


def conversation(home: Path) -> list[dict[str, Any]]:
    text = "".join(p.read_text() for p in (home / "agents/a/conversations").glob("*.ndjson"))
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("stream", [None, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("wire", ["openai", "anthropic", "ollama"])
def test_an_agent_completes_a_multi_step_tool_exchange(
    loom_home: Path, project: Path, wire: str, stream: bool | None
) -> None:
    with LLMServer(stream=stream) as server:
        server.script(
            CallTool("calc", {"expression": "6 * 7"}, text="Let me compute."),
            CallTool("clock", {"utc_offset": "+02:00"}),
        )
        r = start(server, project, "--tools", "calc,clock", wire=wire, body="What is 6 * 7?")
        requests = server.requests
    assert r.returncode == 0, r.stderr
    # The text of every round, as streamed; the last round echoes the clock's result.
    first, _, last = r.stdout.partition("\n\n")
    assert first == "Let me compute."
    said = json.loads(last.removeprefix("echo: tool said "))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+02:00", said["time"])
    assert len(requests) == 3
    assert all(offered(request) == ["calc", "clock"] for request in requests)
    assert '"42"' in json.dumps(requests[1].body["messages"][-1])  # calc's result went round

    [claimed] = log_events(loom_home, "claimed")
    calls, results = log_events(loom_home, "tool_call"), log_events(loom_home, "tool_result")
    assert [(c["tool"], c["msg"]) for c in calls] == [
        ("calc", claimed["msg"]),
        ("clock", claimed["msg"]),
    ]
    assert [(x["tool"], x["status"], x["msg"]) for x in results] == [
        ("calc", "ok", claimed["msg"]),
        ("clock", "ok", claimed["msg"]),
    ]
    assert results[0]["result"] == "42" and results[0]["duration_ms"] >= 0
    [replied] = log_events(loom_home, "replied")
    assert replied["tools"] == ["calc", "clock"] and replied["attempts"] == 3

    turns = conversation(loom_home)
    assert [t["role"] for t in turns] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert turns[1]["tool_calls"][0]["name"] == "calc"
    assert (turns[2]["tool"], turns[2]["content"]) == ("calc", "42")
    reply = json.loads(next((loom_home / "agents/a/outbox").iterdir()).read_text())
    assert reply["body"] == r.stdout.rstrip("\n")
    for path in loom_home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_an_invented_tool_and_broken_arguments_go_back_to_the_model(
    server: LLMServer, loom_home: Path, project: Path
) -> None:
    server.script(
        CallTool("teleport", {"to": "mars"}),
        CallTool("calc", '{"expression": "6 *'),
        Reply("I could not do it."),
    )
    r = start(server, project)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "I could not do it.\n"
    first, second = (json.dumps(req.body["messages"][-1]) for req in server.requests[1:])
    assert (
        "error: there is no tool named 'teleport'; the tools are: calc, clock, read-file" in first
    )
    assert "error: the arguments for calc are not valid JSON" in second
    assert [x["status"] for x in log_events(loom_home, "tool_result")] == ["error", "error"]


def test_more_rounds_than_the_limit_fail_the_message(
    server: LLMServer, loom_home: Path, project: Path
) -> None:
    server.script(*[CallTool("calc", {"expression": "1 + 1"})] * 3)
    r = start(server, project, LOOM_TOOL_ROUNDS="2")
    assert r.returncode == 1
    assert "after 2 rounds of tool calls (LOOM_TOOL_ROUNDS is 2)" in r.stderr
    assert len(server.requests) == 3
    failed = loom_home / "agents/a/inbox/.failed"
    record = json.loads(next(failed.glob("*.error.json")).read_text())
    assert (record["error_type"], record["attempts"]) == ("tool_rounds_exceeded", 3)
    [reply] = [json.loads(p.read_text()) for p in (loom_home / "agents/a/outbox").iterdir()]
    assert reply["error"] is True and "LOOM_TOOL_ROUNDS" in reply["body"]


def test_a_tool_that_fails_or_hangs_is_an_error_the_model_sees(
    server: LLMServer, loom_home: Path, project: Path
) -> None:
    sh_plugin(project / ".loom/plugins", "stuck", "sleep 30")
    server.script(CallTool("stuck", {}))
    r = start(server, project, "--tools", "stuck", LOOM_TOOL_TIMEOUT="0.3")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "echo: tool said error: stuck did not finish within 0.3 s and was stopped "
        "(LOOM_TOOL_TIMEOUT)\n"
    )


def test_sigterm_during_a_tool_call_stops_the_plugin_and_puts_the_message_back(
    server: LLMServer, loom_home: Path, project: Path, reap: list
) -> None:
    pidfile = project / "plugin.pid"
    sh_plugin(project / ".loom/plugins", "stuck", f'echo $$ > "{pidfile}"; sleep 30')
    server.script(CallTool("stuck", {}))
    runner = spawn_loom(
        "agent", "start", "a", "--model", "openai/gpt-test", env=env_for(server), cwd=project
    )
    reap.append(runner)
    wait_for(lambda: (loom_home / "agents/a/status").exists(), what="the runner")
    run_loom("send", "a", "run the stuck tool")
    plugin = int(
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the plugin")
    )
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=10) == 0
    inbox = loom_home / "agents/a/inbox"
    assert len(list(inbox.glob("*.msg"))) == 1 and list((inbox / ".in-progress").iterdir()) == []
    assert list((loom_home / "agents/a/outbox").iterdir()) == []
    # The plugin was killed before the runner exited; whoever inherits it reaps it.
    wait_for(lambda: not pid_alive(plugin), what="the plugin to be gone")


# ---------------------------------------------------------------- scoping


def test_tools_chooses_what_the_model_is_offered(
    server: LLMServer, loom_home: Path, project: Path
) -> None:
    links = loom_home / "agents/a/tools"
    assert start(server, project, "--tools", "calc").returncode == 0
    assert offered(server.last) == ["calc"]
    assert [p.name for p in links.iterdir()] == ["calc"]
    assert os.readlink(links / "calc") == str(project / ".loom/plugins/calc")

    assert start(server, project).returncode == 0  # no --tools: all of them
    assert offered(server.last) == ["calc", "clock", "read-file"]
    assert not links.exists()

    assert start(server, project, "--tools", "").returncode == 0  # none at all
    assert "tools" not in server.last.body
    assert links.is_dir() and list(links.iterdir()) == []


def test_an_unknown_tool_is_a_usage_error_before_anything_runs(
    server: LLMServer, loom_home: Path, project: Path
) -> None:
    r = start(server, project, "--tools", "calc,nope")
    assert r.returncode == 2
    assert "no tool named 'nope' for --tools; the tools are: calc, clock, read-file" in r.stderr
    assert server.requests == []
    assert not (loom_home / "agents/a").exists()


def test_a_tool_name_that_cannot_be_one_is_a_usage_error(server: LLMServer, project: Path) -> None:
    r = start(server, project, "--tools", "../../etc")
    assert r.returncode == 2 and "invalid tool name" in r.stderr


def test_global_plugins_are_found_from_any_folder(
    server: LLMServer, loom_home: Path, tmp_path: Path
) -> None:
    install_example(loom_home / "plugins", "calc")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert start(server, elsewhere).returncode == 0
    assert offered(server.last) == ["calc"]


def test_serve_uses_the_chosen_tools_from_any_folder(
    server: LLMServer, loom_home: Path, project: Path, tmp_path: Path, reap: list
) -> None:
    assert start(server, project, "--tools", "clock").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    reap.append(spawn_loom("agent", "serve", "a", env=env_for(server), cwd=elsewhere))
    server.script(CallTool("clock", {}))
    assert run_loom("send", "a", "what time is it?").returncode == 0
    outbox = loom_home / "agents/a/outbox"
    replies = wait_for(lambda: sorted(outbox.glob("*.msg"))[1:], what="the reply")
    assert json.loads(replies[0].read_text())["body"].startswith('echo: tool said {"time": ')
    assert offered(server.last) == ["clock"]


def test_a_detached_agent_keeps_its_tools(
    server: LLMServer, loom_home: Path, project: Path
) -> None:
    model, _ = MODELS["openai"]
    env = env_for(server)
    r = run_loom(
        "agent", "start", "a", "--model", model, "--tools", "calc", "-d", env=env, cwd=project
    )
    try:
        assert r.returncode == 0, r.stderr
        assert [p.name for p in (loom_home / "agents/a/tools").iterdir()] == ["calc"]
        server.script(CallTool("calc", {"expression": "2 ^ 10"}))
        run_loom("send", "a", "how much is 2 ^ 10?")
        outbox = loom_home / "agents/a/outbox"
        [reply] = wait_for(lambda: list(outbox.glob("*.msg")), what="the reply")
        assert json.loads(reply.read_text())["body"] == "echo: tool said 1024"
        assert all(offered(request) == ["calc"] for request in server.requests)
    finally:
        for pidfile in (loom_home / "supervisor.pid", loom_home / "agents/a/pid"):
            raw = pidfile.read_text().strip() if pidfile.exists() else ""
            if raw.isdigit() and pid_is_loom(int(raw)):
                os.kill(int(raw), signal.SIGKILL)


def test_plugins_installed_while_an_agent_serves_are_offered_from_the_next_message(
    server: LLMServer, loom_home: Path, tmp_path: Path, reap: list
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    model, _ = MODELS["openai"]
    runner = spawn_loom("agent", "start", "a", "--model", model, env=env_for(server), cwd=work)
    reap.append(runner)
    wait_for(lambda: (loom_home / "agents/a/status").exists(), what="the runner to start")
    assert run_loom("send", "a", "one").returncode == 0
    wait_for(lambda: len(server.requests) == 1, what="the first request")
    assert offered(server.last) == []  # no plugin folder at all

    install_example(loom_home / "plugins", "calc")
    assert run_loom("send", "a", "two").returncode == 0
    wait_for(lambda: len(server.requests) == 2, what="the second request")
    assert offered(server.last) == ["calc"]

    install_example(work / ".loom" / "plugins", "clock")  # the project's come first
    assert run_loom("send", "a", "three").returncode == 0
    wait_for(lambda: len(server.requests) == 3, what="the third request")
    assert offered(server.last) == ["calc", "clock"]


def test_an_agent_answers_whatever_loops_of_links_its_plugin_folders_hold(
    server: LLMServer, loom_home: Path, tmp_path: Path, reap: list
) -> None:
    # A project folder that is a loop of links when the agent starts, an entry that
    # becomes one while it serves: each is a tool problem said once, never a failure.
    work = tmp_path / "work"
    (work / ".loom").mkdir(parents=True)
    plugins = work / ".loom" / "plugins"
    plugins.symlink_to("plugins")
    model, _ = MODELS["openai"]
    runner = spawn_loom("agent", "start", "a", "--model", model, env=env_for(server), cwd=work)
    reap.append(runner)
    wait_for(lambda: (loom_home / "agents/a/status").exists(), what="the runner to start")
    assert run_loom("send", "a", "one").returncode == 0
    wait_for(lambda: len(log_events(loom_home, "replied")) == 1, what="the first reply")
    assert offered(server.last) == []

    plugins.unlink()
    install_example(plugins, "calc")
    (plugins / "looped").symlink_to("looped")
    for body in ("two", "three"):
        assert run_loom("send", "a", body).returncode == 0
    wait_for(lambda: len(log_events(loom_home, "replied")) == 3, what="two more replies")
    assert offered(server.last) == ["calc"]
    assert log_events(loom_home, "failed") == []
    problems = [e["error"] for e in log_events(loom_home, "tool_problem")]
    assert len(problems) == 2, problems
    assert "cannot be listed" in problems[0]
    assert problems[1] == "a link that leads back to itself"
