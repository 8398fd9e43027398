"""`loom agent history`: an agent's past turns through the real CLI, against the fake
model server: in order, newest last, with sender, texts, model, tokens, duration and
status; `-n`, `--json`, and the errors of the other agent commands."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import run_loom
from llm_server import WIRE_MODELS, LLMServer, Reply, Status

KEY = "sk-test-history-1f2e3d"
MODELS = WIRE_MODELS


def ask(server: LLMServer, wire: str, body: str) -> int:
    model, key = MODELS[wire]
    env = {**server.env(), "LOOM_HTTP_TIMEOUT": "5", **({key: KEY} if key else {})}
    r = run_loom("agent", "start", "a", "--model", model, "--stdin", input=body, env=env)
    return r.returncode


def history(*args: str) -> list[dict[str, Any]]:
    r = run_loom("agent", "history", "a", "--json", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.mark.parametrize("wire", list(MODELS))
def test_history_lists_turns_in_order_with_their_cost(server: LLMServer, wire: str) -> None:
    server.script(
        Reply("first answer", input_tokens=5, output_tokens=2),
        Status(400, "bad request"),
        Reply("third answer\non two lines", input_tokens=7, output_tokens=4),
    )
    assert ask(server, wire, "question one") == 0
    assert ask(server, wire, "question two") != 0
    assert ask(server, wire, "question three\nlong") == 0
    turns = history()
    assert [t["prompt"] for t in turns] == ["question one", "question two", "question three\nlong"]
    assert [t["status"] for t in turns] == ["ok", "failed", "ok"]
    assert [t["reply"] for t in turns] == ["first answer", None, "third answer\non two lines"]
    tokens = [(t["input_tokens"], t["output_tokens"]) for t in turns]
    assert tokens == [(5, 2), (None, None), (7, 4)]
    assert "bad request" in turns[1]["error"]
    assert {t["model"] for t in turns} == {MODELS[wire][0]}
    assert {t["sender"] for t in turns} == {"stdin"}
    assert all(t["duration_ms"] is not None and t["duration_ms"] >= 0 for t in turns)
    assert turns == sorted(turns, key=lambda t: t["ts"])

    r = run_loom("agent", "history", "a")
    header, *rows = r.stdout.splitlines()
    assert header.split() == [
        "TIME", "MSG", "FROM", "PROMPT", "REPLY", "MODEL", "IN", "OUT", "MS", "STATUS",
    ]  # fmt: skip
    assert len(rows) == 3
    assert "question three long" in rows[2] and "third answer on two lines" in rows[2]
    assert rows[1].split()[-1] == "failed" and rows[2].split()[-1] == "ok"


def test_n_takes_the_newest_turns(server: LLMServer) -> None:
    for body in ("one", "two", "three"):
        assert ask(server, "openai", body) == 0
    assert [t["prompt"] for t in history("-n", "2")] == ["two", "three"]
    assert history("-n", "0") == []
    assert [t["prompt"] for t in history()] == ["one", "two", "three"]  # 10 by default
    r = run_loom("agent", "history", "a", "-n", "-1")
    assert r.returncode == 2 and r.stderr.startswith("loom: ") and r.stdout == ""


def test_unknown_or_hostile_names_are_one_error_line(server: LLMServer) -> None:
    assert ask(server, "openai", "one") == 0
    for name, code in (("nope", 1), ("../x", 2)):
        r = run_loom("agent", "history", name)
        assert r.returncode == code, r.stderr
        assert r.stderr.startswith("loom: ") and len(r.stderr.splitlines()) == 1
        assert r.stdout == ""
    assert run_loom("agent", "logs", "nope").returncode == 1  # as the other agent commands
