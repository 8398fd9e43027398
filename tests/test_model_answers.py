"""What a model's answer carries besides its text, end to end through `loom agent start
--stdin` and the fake server in each wire format: reasoning (kept apart from the reply,
recorded in the conversation file), an answer that is all reasoning (a failure, not an
empty reply), prompt-cache token counts, and tool-call arguments that were not JSON
(answered with an error result and replayed in a form a parsing server accepts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_loom
from llm_server import CallTool, LLMServer, Reply, Think
from plugin_kit import install_example

KEY = "sk-test-answers-9a8b7c"
MODELS = {
    "openai": ("openai/gpt-test", "OPENAI_API_KEY"),
    "anthropic": ("anthropic/claude-test", "ANTHROPIC_API_KEY"),
    "ollama": ("ollama/qwen3:8b", None),
}
WIRES = list(MODELS)


@pytest.fixture(params=[True, False], ids=["streamed", "whole"])
def server(request: pytest.FixtureRequest) -> Iterator[LLMServer]:
    with LLMServer(stream=request.param) as fake:
        yield fake


def ask(server: LLMServer, wire: str, body: str = "hi", cwd: Path | None = None) -> Any:
    model, key = MODELS[wire]
    env = {**server.env(), "LOOM_HTTP_TIMEOUT": "5", **({key: KEY} if key else {})}
    return run_loom(
        "agent", "start", "a", "--model", model, "--stdin", input=body, env=env, cwd=cwd
    )


def records(home: Path, folder: str) -> list[dict[str, Any]]:
    text = "".join(p.read_text() for p in sorted((home / "agents/a" / folder).glob("*.ndjson")))
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("wire", WIRES)
def test_reasoning_stays_out_of_the_reply_and_is_kept_in_the_conversation(
    server: LLMServer, loom_home: Path, wire: str
) -> None:
    server.script(Think("The user greets me. I should greet back.", "Hello!"))
    r = ask(server, wire)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Hello!\n"
    [reply] = [json.loads(p.read_text()) for p in (loom_home / "agents/a/outbox").iterdir()]
    assert reply["body"] == "Hello!"
    user, assistant = records(loom_home, "conversations")
    assert (user["role"], user["content"]) == ("user", "hi")
    assert assistant["content"] == "Hello!"
    assert assistant["reasoning"] == "The user greets me. I should greet back."


@pytest.mark.parametrize("wire", WIRES)
def test_an_answer_that_is_only_reasoning_fails_the_message_saying_so(
    server: LLMServer, loom_home: Path, wire: str
) -> None:
    server.script(Think("Hmm. Let me think about greetings for a long while."))
    r = ask(server, wire)
    assert r.returncode == 1
    assert r.stdout.strip() == ""
    assert "the model's answer was empty: it only reasoned (51 characters" in r.stderr
    failed = loom_home / "agents/a/inbox/.failed"
    record = json.loads(next(failed.glob("*.error.json")).read_text())
    assert record["error_type"] == "empty_answer"
    [reply] = [json.loads(p.read_text()) for p in (loom_home / "agents/a/outbox").iterdir()]
    assert reply["error"] is True and "answer was empty" in reply["body"]
    # The reasoning is not lost: it is in the conversation file.
    assert records(loom_home, "conversations")[-1]["reasoning"].startswith("Hmm.")
    assert len(server.requests) == 1  # not retried: the same prompt gets the same answer


@pytest.mark.parametrize("wire", WIRES)
def test_an_empty_answer_without_reasoning_fails_too(
    server: LLMServer, loom_home: Path, wire: str
) -> None:
    server.script(Reply(""))
    r = ask(server, wire)
    assert r.returncode == 1
    assert "the model's answer was empty: it sent no text" in r.stderr


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_cached_prompt_tokens_are_counted_in_the_input_and_logged_apart(
    server: LLMServer, loom_home: Path, wire: str
) -> None:
    server.script(Reply("ok", input_tokens=34, output_tokens=2, cached_tokens=30))
    r = ask(server, wire)
    assert r.returncode == 0, r.stderr
    [replied] = [e for e in records(loom_home, "logs") if e["event"] == "replied"]
    # The whole prompt, on both wires (Anthropic reports 4 fresh + 30 read from cache).
    assert (replied["input_tokens"], replied["output_tokens"]) == (34, 2)
    assert replied["cache_read_tokens"] == 30
    assert replied.get("cache_write_tokens", 0) == 0


@pytest.mark.parametrize("wire", WIRES)
def test_arguments_that_are_not_json_get_an_error_result_and_replay_as_an_object(
    server: LLMServer, loom_home: Path, tmp_path: Path, wire: str
) -> None:
    install_example(tmp_path / ".loom" / "plugins", "calc")
    broken = '{"expression": "6 *\n 7"'  # a raw newline and no closing brace
    server.script(CallTool("calc", broken), Reply("Sorry, let me fix that."))
    r = ask(server, wire, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Sorry, let me fix that.\n"
    replayed = server.requests[1].body["messages"]
    text = json.dumps(replayed)
    assert "the arguments for calc are not valid JSON" in text
    # The call goes back as something a server that parses it (llama.cpp) accepts.
    if wire == "openai":
        [call] = next(m for m in replayed if m.get("tool_calls"))["tool_calls"]
        assert json.loads(call["function"]["arguments"]) == {}
    elif wire == "anthropic":
        blocks = next(m for m in replayed if m["role"] == "assistant")["content"]
        assert [b["input"] for b in blocks if b["type"] == "tool_use"] == [{}]
    else:
        [call] = next(m for m in replayed if m.get("tool_calls"))["tool_calls"]
        assert call["function"]["arguments"] == {}
    # The conversation file keeps what the model really wrote.
    [assistant] = [t for t in records(loom_home, "conversations") if t.get("tool_calls")]
    assert assistant["tool_calls"][0]["arguments"] == broken


def test_valid_arguments_replay_exactly_as_the_model_wrote_them(
    server: LLMServer, loom_home: Path, tmp_path: Path
) -> None:
    install_example(tmp_path / ".loom" / "plugins", "calc")
    written = '{ "expression" : "6 * 7" }'
    server.script(CallTool("calc", written), Reply("42"))
    r = ask(server, "openai", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [call] = next(m for m in server.requests[1].body["messages"] if m.get("tool_calls"))[
        "tool_calls"
    ]
    assert call["function"]["arguments"] == written
