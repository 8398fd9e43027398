"""`loom ask`: a one-shot prompt through the real CLI, against the fake model server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import run_loom
from llm_server import LLMServer, Status

KEY = "sk-test-openai-3f9c1a77"


def env_for(server: LLMServer) -> dict[str, str]:
    return {**server.env(), "OPENAI_API_KEY": KEY, "LOOM_HTTP_TIMEOUT": "5"}


def last_user(server: LLMServer) -> str:
    messages = server.last.body["messages"]
    return str([m for m in messages if m["role"] == "user"][-1]["content"])


def ask_dirs(home: Path) -> list[Path]:
    return sorted((home / "agents").glob("ask-*"))


def test_a_prompt_is_answered_on_stdout_and_leaves_an_agent_folder(
    server: LLMServer, loom_home: Path
) -> None:
    r = run_loom("ask", "Name a prime.", "--model", "openai/gpt-4o-mini", env=env_for(server))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "echo: Name a prime.\n"
    [folder] = ask_dirs(loom_home)
    assert (folder / "model").read_text().strip() == "openai/gpt-4o-mini"
    [conversation] = (folder / "conversations").glob("*.ndjson")
    roles = [json.loads(line)["role"] for line in conversation.read_text().splitlines()]
    assert roles == ["user", "assistant"]
    # Its reply can be traced like any agent's.
    [reply] = (folder / "outbox").glob("*.msg")
    r = run_loom("trace", reply.name)
    assert r.returncode == 0, r.stderr
    assert folder.name in r.stdout
    # A second ask gets a folder of its own and none of the first one's context.
    assert run_loom("ask", "again", "-m", "openai/x", env=env_for(server)).returncode == 0
    assert len(ask_dirs(loom_home)) == 2
    assert len(server.last.body["messages"]) == 1


def test_piped_stdin_follows_the_prompt_after_a_blank_line(server: LLMServer) -> None:
    env = env_for(server)
    r = run_loom("ask", "Summarise:", "-m", "openai/gpt-4o-mini", input="line one\n", env=env)
    assert r.returncode == 0, r.stderr
    assert last_user(server) == "Summarise:\n\nline one"
    r = run_loom("ask", "-m", "openai/gpt-4o-mini", input="only stdin\n", env=env)
    assert r.returncode == 0, r.stderr
    assert last_user(server) == "only stdin"


def test_system_prompt_and_options_reach_the_model(server: LLMServer) -> None:
    r = run_loom(
        "ask", "hi", "-m", "openai/gpt-4o-mini", "-s", "Be brief.",
        "-o", "temperature", "0.2", "-o", "max_tokens", "50", env=env_for(server),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    body = server.last.body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["temperature"], body["max_completion_tokens"]) == (0.2, 50)


def test_schema_makes_the_answer_json() -> None:
    schema = '{"type": "object", "properties": {"label": {"enum": ["bug"]}}, "required": ["label"]}'
    r = run_loom("ask", "-m", "echo", "--schema", schema, input='{ "label": "bug" }')
    assert r.returncode == 0, r.stderr
    assert r.stdout == '{"label":"bug"}\n'
    r = run_loom("ask", "-m", "echo", "--schema", schema, input='{"label": "rant"}')
    assert r.returncode == 1
    assert "the reply does not match the schema" in r.stderr


def test_the_model_comes_from_loom_model_else_a_clear_error(loom_home: Path) -> None:
    r = run_loom("ask", "hi")
    assert r.returncode == 2
    assert r.stderr == (
        "loom: no model given: pass --model (e.g. --model openai/gpt-4o-mini) "
        "or set LOOM_MODEL for a default\n"
    )
    assert not ask_dirs(loom_home)
    r = run_loom("ask", "hi", env={"LOOM_MODEL": "echo"})
    assert (r.returncode, r.stdout) == (0, "hi\n")


def test_nothing_to_ask_is_a_usage_error(loom_home: Path) -> None:
    r = run_loom("ask", "-m", "echo")  # stdin: an empty pipe
    assert r.returncode == 2
    assert "stdin is empty: nothing to send (pipe some text in, or give a prompt)" in r.stderr
    assert not ask_dirs(loom_home)


def test_a_failed_call_exits_1_with_the_reason_and_never_the_key(server: LLMServer) -> None:
    server.script(Status(401, message=f"invalid key {KEY}"))
    r = run_loom("ask", "hi", "-m", "openai/gpt-4o-mini", env=env_for(server))
    assert r.returncode == 1
    assert r.stdout == ""
    assert "OpenAI returned HTTP 401" in r.stderr
    assert KEY not in r.stderr
    assert run_loom("ask", "hi", "-m", "opneai/x").returncode == 2


def test_a_named_agent_keeps_its_conversation_between_asks(
    server: LLMServer, loom_home: Path
) -> None:
    env = env_for(server)
    assert (
        run_loom("ask", "My name is Ada.", "--agent", "chat", "-m", "openai/x", env=env).returncode
        == 0
    )
    r = run_loom("ask", "What is my name?", "--agent", "chat", "-m", "openai/x", env=env)
    assert r.returncode == 0, r.stderr
    contents = [m["content"] for m in server.last.body["messages"]]
    assert contents == ["My name is Ada.", "echo: My name is Ada.", "What is my name?"]
    assert not ask_dirs(loom_home)


def test_gc_deletes_old_ask_folders_only(loom_home: Path) -> None:
    for prompt in ("old", "new"):
        assert run_loom("ask", prompt, "-m", "echo").returncode == 0
    assert run_loom("ask", "kept", "-m", "echo", "--agent", "named").returncode == 0
    # An agent a user named ask-... is theirs, whatever its name says.
    assert run_loom("ask", "mine", "-m", "echo", "--agent", "ask-mine").returncode == 0
    mine = loom_home / "agents" / "ask-mine"
    old, new = (d for d in ask_dirs(loom_home) if d != mine)
    two_days_ago = time.time() - 2 * 86400
    for folder in (old, loom_home / "agents" / "named", mine):
        for path in [*folder.rglob("*"), folder]:
            os.utime(path, (two_days_ago, two_days_ago))
    r = run_loom("gc", "--dry-run")
    assert f"would delete agents/{old.name}: folder of a finished loom ask" in r.stdout
    assert old.exists()
    r = run_loom("gc")
    assert r.returncode == 0, r.stderr
    assert f"agents/{old.name}" in r.stdout
    assert sorted(ask_dirs(loom_home)) == sorted([new, mine])
    assert (loom_home / "agents" / "named").is_dir()
