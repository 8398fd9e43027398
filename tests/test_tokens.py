"""What an agent's model calls spent, end to end: the tokens the fake server reports in
each wire format (OpenAI `usage`, Anthropic `message_start`/`message_delta`, Ollama
`prompt_eval_count`/`eval_count`) add up in `loom stats`, `loom agent ps --json` and
`metrics.prom`, per agent and per model, and survive the runner's restart."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_loom, wait_for
from home_kit import stop_all  # noqa: F401
from llm_server import WIRE_MODELS, LLMServer, Reply

from loom.store.message import new_message

KEY = "sk-test-tokens-5c4d3e"
MODELS = WIRE_MODELS


@pytest.fixture(params=[True, False], ids=["streamed", "whole"])
def server(request: pytest.FixtureRequest) -> Iterator[LLMServer]:
    with LLMServer(stream=request.param) as fake:
        yield fake


def env_for(server: LLMServer, wire: str) -> dict[str, str]:
    key = MODELS[wire][1]
    return {**server.env(), "LOOM_HTTP_TIMEOUT": "5", **({key: KEY} if key else {})}


def ask(server: LLMServer, wire: str, body: str, model: str | None = None) -> None:
    """One message through a new foreground runner (a restart each time)."""
    model = model or MODELS[wire][0]
    r = run_loom(
        "agent", "start", "a", "--model", model, "--stdin", input=body, env=env_for(server, wire)
    )
    assert r.returncode == 0, r.stderr


def stats_of(name: str) -> dict[str, Any]:
    [row] = [p for p in json.loads(run_loom("stats", "--json").stdout)["processes"]]
    assert row["name"] == name
    return row


@pytest.mark.parametrize("wire", list(MODELS))
def test_tokens_add_up_per_agent_and_model_across_restarts(
    server: LLMServer, wire: str, loom_home: Path
) -> None:
    model = MODELS[wire][0]
    server.script(Reply("one", input_tokens=11, output_tokens=3))
    ask(server, wire, "first")
    server.script(Reply("two", input_tokens=13, output_tokens=5))
    ask(server, wire, "second")  # a new runner: it starts from the saved totals
    row = stats_of("a")
    assert (row["input_tokens"], row["output_tokens"]) == (24, 8)
    assert row["tokens_by_model"] == {model: {"input": 24, "output": 8}}
    header, line = run_loom("stats").stdout.splitlines()[:2]
    assert header.split()[-2:] == ["TOKENS-IN", "TOKENS-OUT"]
    assert line.split()[-2:] == ["24", "8"]

    [ps] = json.loads(run_loom("agent", "ps", "--all", "--json").stdout)
    assert (ps["input_tokens"], ps["output_tokens"]) == (24, 8)
    assert ps["tokens_by_model"] == {model: {"input": 24, "output": 8}}


def test_a_model_change_keeps_the_tokens_of_each_model_apart(server: LLMServer) -> None:
    server.script(Reply("one", input_tokens=10, output_tokens=2))
    ask(server, "openai", "first")
    server.script(Reply("two", input_tokens=100, output_tokens=20))
    ask(server, "anthropic", "second", model="anthropic/claude-test")
    row = stats_of("a")
    assert row["tokens_by_model"] == {
        "openai/gpt-test": {"input": 10, "output": 2},
        "anthropic/claude-test": {"input": 100, "output": 20},
    }
    assert (row["input_tokens"], row["output_tokens"]) == (110, 22)


def test_a_failed_answer_still_counts_the_tokens_it_cost(server: LLMServer) -> None:
    server.script(Reply("", input_tokens=9, output_tokens=0))  # an empty answer fails
    r = run_loom(
        "agent", "start", "a", "--model", "openai/gpt-test", "--stdin", input="x",
        env=env_for(server, "openai"),
    )  # fmt: skip
    assert r.returncode != 0
    row = stats_of("a")
    assert (row["failed"], row["input_tokens"], row["output_tokens"]) == (1, 9, 0)


@pytest.mark.usefixtures("stop_all")
@pytest.mark.parametrize("wire", list(MODELS))
def test_metrics_prom_counts_tokens_of_a_detached_agent_across_a_restart(
    wire: str, loom_home: Path
) -> None:
    model = MODELS[wire][0]
    with LLMServer() as server:
        env = env_for(server, wire)
        server.script(*[Reply("ok", input_tokens=20, output_tokens=4)] * 3)
        start = ("agent", "start", "a", "--model", model, "-d")
        assert run_loom(*start, env=env).returncode == 0
        prom = loom_home / "metrics.prom"
        for body in ("one", "two"):
            assert run_loom("send", "a", body).returncode == 0
        label = f'process="a",kind="agent",model="{model}"'
        wanted = [
            f'loom_tokens_total{{{label},type="input"}} 40',
            f'loom_tokens_total{{{label},type="output"}} 8',
        ]
        wait_for(lambda: prom.exists() and all(w in prom.read_text() for w in wanted), 20)
        assert "# TYPE loom_tokens_total counter" in prom.read_text()

        assert run_loom("agent", "stop", "a").returncode == 0
        assert run_loom(*start, env=env).returncode == 0
        assert run_loom("send", "a", "three").returncode == 0
        wanted = [
            f'loom_tokens_total{{{label},type="input"}} 60',
            f'loom_tokens_total{{{label},type="output"}} 12',
        ]
        wait_for(lambda: all(w in prom.read_text() for w in wanted), 20, "totals after restart")


def test_a_hostile_usage_file_reads_as_no_tokens(server: LLMServer, loom_home: Path) -> None:
    ask(server, "openai", "first")
    usage = loom_home / "agents" / "a" / "usage.json"
    for hostile in ("garbage", "fifo"):
        usage.unlink()
        if hostile == "fifo":
            os.mkfifo(usage)  # opened blocking, this would hang ps
        else:
            usage.write_text('{"v": 1, "models": {"m": {"input": -3, "output": "x"}}}')
        r = run_loom("agent", "ps", "--all", "--json", timeout=20)
        assert r.returncode == 0, r.stderr
        [ps] = json.loads(r.stdout)
        assert (ps["input_tokens"], ps["output_tokens"]) == (0, 0)


BURST = 40


def burst(server: LLMServer, loom_home: Path) -> dict[str, Any]:
    """A detached agent answers BURST messages sent at once (faster than usage.json is
    rewritten); its env for later commands."""
    env = env_for(server, "openai")
    server.script(*[Reply("ok", input_tokens=7, output_tokens=2)] * BURST)
    start = ("agent", "start", "a", "--model", "openai/gpt-test", "-d")
    assert run_loom(*start, env=env).returncode == 0
    lines = "".join(f"question {i}\n" for i in range(BURST))
    assert run_loom("send", "a", "--lines", input=lines).returncode == 0
    outbox = loom_home / "agents" / "a" / "outbox"
    wait_for(lambda: len(list(outbox.glob("*.msg"))) == BURST, 30, "the burst's replies")
    return env


def totals(loom_home: Path) -> dict[str, Any] | None:
    try:
        usage: dict[str, Any] = json.loads((loom_home / "agents" / "a" / "usage.json").read_text())
    except FileNotFoundError:
        return None
    return usage["models"]


WHOLE_BURST = {"openai/gpt-test": {"input": 7 * BURST, "output": 2 * BURST}}


@pytest.mark.usefixtures("stop_all")
def test_the_totals_of_a_burst_are_written_whole_once_the_agent_is_idle(
    server: LLMServer, loom_home: Path
) -> None:
    burst(server, loom_home)
    # Rewritten at most twice a second while answers come, then once the burst is over.
    wait_for(lambda: totals(loom_home) == WHOLE_BURST, 10, "the burst's totals")
    [ps] = json.loads(run_loom("agent", "ps", "--json").stdout)
    assert (ps["input_tokens"], ps["output_tokens"]) == (7 * BURST, 2 * BURST)


@pytest.mark.usefixtures("stop_all")
def test_an_agent_stopped_right_after_a_burst_has_written_all_its_tokens(
    server: LLMServer, loom_home: Path
) -> None:
    burst(server, loom_home)
    assert run_loom("agent", "stop", "a").returncode == 0
    assert totals(loom_home) == WHOLE_BURST


def test_a_foreground_runner_writes_the_tokens_of_every_message_it_answered(
    server: LLMServer, loom_home: Path
) -> None:
    server.script(*[Reply("ok", input_tokens=5, output_tokens=1)] * 10)
    # Envelopes on stdin are ten messages, answered one after the other and fast.
    stdin = b"\n".join(new_message("t", f"question {i}").to_bytes() for i in range(10))
    r = run_loom(
        "agent", "start", "a", "--model", "openai/gpt-test", "--stdin",
        input=stdin.decode(), env=env_for(server, "openai"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ok") == 10
    assert totals(loom_home) == {"openai/gpt-test": {"input": 50, "output": 10}}


@pytest.mark.usefixtures("stop_all")
def test_a_usage_file_that_cannot_be_written_stops_no_answer_and_is_said_once(
    server: LLMServer, loom_home: Path
) -> None:
    (loom_home / "agents" / "a" / "usage.json").mkdir(parents=True)  # cannot be replaced
    burst(server, loom_home)
    assert run_loom("agent", "stop", "a").returncode == 0
    processed = loom_home / "agents" / "a" / "inbox" / ".processed"
    assert len(list(processed.glob("*.msg"))) == BURST
    logs = "".join(p.read_text() for p in (loom_home / "agents" / "a").glob("logs/*"))
    errors = [json.loads(line) for line in logs.splitlines() if '"error"' in line]
    assert len(errors) == 1, errors
    assert "usage.json" in errors[0]["error"]
