"""The model-call path keeps its connections: an agent's calls reuse one kept-alive
connection (or as many as it has calls in flight), for every wire format, and still work
against a server that closes after each answer or keeps a stream open after its end."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_loom, wait_for
from home_kit import stop_all  # noqa: F401
from llm_server import LLMServer, Reply, Slow, Status

from loom.api import send
from loom.providers.http import DRAIN_WAIT
from loom.store.queue import list_messages, read_message

pytestmark = pytest.mark.usefixtures("stop_all")

MODELS = ["openai/m", "anthropic/claude-x", "ollama/m"]
KEYS = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test"}


def answers(home: Path) -> list[str]:
    outbox = home / "agents" / "a" / "outbox"
    return sorted(read_message(outbox / f).body for f in list_messages(outbox))


def drain(server: LLMServer, home: Path, model: str, count: int, *extra: str) -> None:
    for i in range(count):
        send("a", f"question {i}", create=True)
    env = {**server.env(), **KEYS}
    r = run_loom("agent", "start", "a", "--model", model, "-d", *extra, env=env)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(answers(home)) == count, timeout=30, what=f"{count} answers")


@pytest.mark.parametrize("model", MODELS)
def test_an_agent_makes_its_calls_over_one_connection(
    server: LLMServer, loom_home: Path, model: str
) -> None:
    drain(server, loom_home, model, 12)
    assert len(server.requests) == 12
    assert server.connections == 1
    assert answers(loom_home) == sorted(f"echo: question {i}" for i in range(12))


def test_calls_in_flight_open_no_more_connections_than_the_concurrency(
    server: LLMServer, loom_home: Path
) -> None:
    server.script(*[Slow(0.2)] * 32)
    drain(server, loom_home, "openai/m", 32, "--concurrency", "4")
    assert server.max_open == 4
    assert server.connections <= 4


def test_an_error_answer_leaves_the_connection_usable(server: LLMServer, loom_home: Path) -> None:
    server.script(Status(500), Status(429, retry_after=0))
    drain(server, loom_home, "openai/m", 3)
    assert len(server.requests) == 5
    assert server.connections == 1


@pytest.mark.parametrize("model", MODELS)
def test_a_server_that_closes_after_each_answer_still_answers_every_call(
    loom_home: Path, model: str
) -> None:
    with LLMServer(keep_alive=False) as server:
        drain(server, loom_home, model, 5)
        assert server.connections == 5
        run_loom("agent", "stop", "a")


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_left_open_after_its_end_does_not_hold_up_the_call(
    server: LLMServer, loom_home: Path, model: str
) -> None:
    server.script(Reply(linger=60), Reply(linger=60))
    for i in range(3):
        send("a", f"question {i}", create=True)
    r = run_loom("agent", "start", "a", "--model", model, "-d", env={**server.env(), **KEYS})
    assert r.returncode == 0, r.stderr
    # Each lingering stream costs the call DRAIN_WAIT, not the minute it stays open.
    wait_for(lambda: len(answers(loom_home)) == 3, timeout=4 * DRAIN_WAIT + 5, what="answers")
    assert answers(loom_home) == sorted(f"echo: question {i}" for i in range(3))
    # The two cut streams lost their connections; the last call had a fresh one.
    assert server.connections == 3
